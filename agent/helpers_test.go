package agent_test

import "github.com/cairn-backup/cairn/index"

type agentLoc = index.Location
