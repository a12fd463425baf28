package agent

import (
	"bytes"
	"testing"
)

func TestCopyPool(t *testing.T) {
	for _, c := range []struct {
		n       int
		wantCap int // 0: not pooled, an exact copy
	}{
		{0, 4 << 10},
		{1, 4 << 10},
		{4 << 10, 4 << 10},
		{4<<10 + 1, 8 << 10},
		{300 << 10, 512 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 0},
	} {
		var p copyPool
		src := bytes.Repeat([]byte{7}, c.n)
		got := p.copyOf(src)
		if !bytes.Equal(got, src) {
			t.Fatalf("%d bytes: copy differs", c.n)
		}
		if want := max(c.wantCap, c.n); cap(got) != want {
			t.Errorf("%d bytes: copy of capacity %d, want %d", c.n, cap(got), want)
		}
		if c.n > 0 && &got[0] == &src[0] {
			t.Fatalf("%d bytes: not a copy", c.n)
		}
		// A copy handed back serves the next chunk of its class; the
		// content is the new chunk's.
		p.put(got)
		src2 := bytes.Repeat([]byte{9}, c.n)
		if again := p.copyOf(src2); !bytes.Equal(again, src2) {
			t.Fatalf("%d bytes: reused copy holds the wrong bytes", c.n)
		}
	}
}
