//go:build !linux || race

package repo

// Elsewhere, and under the race detector, arenas are ordinary heap memory.
const arenasMapped = false

func mapArena(n int) []byte { return make([]byte, 0, n) }

func releaseArena([]byte) {}
