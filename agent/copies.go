package agent

import (
	"math/bits"
	"sync"
)

// chunkCopies recycles the copies new chunks travel in from readers to
// savers. Every new chunk of a backup is copied once (the splitter reuses
// its buffer), so without reuse an initial backup allocates about as much
// as it reads, and the collector runs every few MiB of it. Copies come in
// power-of-two sizes so one reused copy fits any chunk of its class;
// chunks beyond the largest class are rare (custom chunk sizes) and are
// left to the collector.
var chunkCopies copyPool

const (
	minCopyShift = 12 // 4 KiB
	maxCopyShift = 20 // 1 MiB, the default largest chunk
)

type copyPool struct {
	classes [maxCopyShift - minCopyShift + 1]sync.Pool
}

// copyOf returns a copy of b, in a buffer from the pool when one fits.
func (p *copyPool) copyOf(b []byte) []byte {
	c, ok := classOf(len(b))
	if !ok {
		c := make([]byte, len(b))
		copy(c, b)
		return c
	}
	buf, _ := p.classes[c].Get().(*[]byte)
	if buf == nil {
		nb := make([]byte, 0, 1<<(c+minCopyShift))
		buf = &nb
	}
	return append((*buf)[:0], b...)
}

// put returns a copy nobody uses any more.
func (p *copyPool) put(b []byte) {
	c, ok := classOf(cap(b))
	if !ok || cap(b) != 1<<(c+minCopyShift) {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}

// classOf returns the smallest class holding n bytes.
func classOf(n int) (int, bool) {
	shift := minCopyShift
	if n > 1<<minCopyShift {
		shift = bits.Len(uint(n - 1))
	}
	if shift > maxCopyShift {
		return 0, false
	}
	return shift - minCopyShift, true
}
