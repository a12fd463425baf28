package repo

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/chunk"
)

// enc and dec are the small binary codec shared by trees, pack tables and
// index objects. dec never allocates more than the input could hold, so a
// hostile object cannot make a decoder exhaust memory.

type enc struct{ b []byte }

func (e *enc) byte(v byte)      { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) id(id chunk.ID)   { e.b = append(e.b, id[:]...) }
func (e *enc) string(v string)  { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or malformed %s: %w", what, ErrCorrupt)
	}
}

func (d *dec) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// uvarint and varint accept only minimal encodings, so every value has one
// encoding and equal trees always have equal IDs.
func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	if n != uvarintLen(ux) {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarint32 reads a uvarint that must fit 32 bits.
func (d *dec) uvarint32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("32-bit value")
		return 0
	}
	return uint32(v)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// count reads a length and checks that at least min bytes per element remain.
func (d *dec) count(min int, max uint64, what string) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > max || (min > 0 && n > uint64(len(d.b)/min)) {
		d.err = fmt.Errorf("%s count %d exceeds limit or data: %w", what, n, ErrCorrupt)
		return 0
	}
	return int(n)
}

func (d *dec) id() chunk.ID {
	var id chunk.ID
	if d.err != nil || len(d.b) < chunk.IDSize {
		d.fail("id")
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[chunk.IDSize:]
	return id
}

func (d *dec) raw(n int) []byte {
	if d.err != nil || n > len(d.b) {
		d.fail("bytes")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) string(max int) string {
	n := d.count(1, uint64(max), "string length")
	return string(d.raw(n))
}
