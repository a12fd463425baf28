package repo

import "sync"

// packArenas holds the data arenas of finished upload sessions for the
// next one. Where arenas are mapped outside the Go heap (arena_linux.go)
// they are never unmapped: an HTTP transport may still read a request
// body after the request returned, and reading a released arena must
// yield stale bytes, never a fault. Their memory goes back to the system
// when they enter the pool.
var packArenas arenaPool

type arenaPool struct {
	mu   sync.Mutex
	free [][]byte
}

// get returns an empty arena with room for at least n bytes.
func (p *arenaPool) get(n int) []byte {
	p.mu.Lock()
	best := -1
	for i, a := range p.free {
		if cap(a) >= n && (best < 0 || cap(a) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		a := p.free[best]
		p.free = append(p.free[:best], p.free[best+1:]...)
		p.mu.Unlock()
		return a[:0]
	}
	p.mu.Unlock()
	return mapArena(n)
}

// put takes back arenas nobody uses any more.
func (p *arenaPool) put(arenas ...[]byte) {
	if !arenasMapped {
		return // heap arenas: the collector has them
	}
	for _, a := range arenas {
		releaseArena(a)
	}
	p.mu.Lock()
	p.free = append(p.free, arenas...)
	p.mu.Unlock()
}
