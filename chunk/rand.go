package chunk

import "crypto/rand"

var randRead = rand.Read
