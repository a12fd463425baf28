package repo

import (
	"context"
	"errors"
	"io"
	"sort"
)

// Pieces are the bytes of one object, in order, not joined: a pack is its
// blobs where they were sealed, then its table of contents. Joining them
// would copy every pack once more and hold a second pack-sized buffer.
type Pieces [][]byte

// Len is the object's size.
func (p Pieces) Len() int {
	n := 0
	for _, b := range p {
		n += len(b)
	}
	return n
}

// Join copies the pieces into one buffer.
func (p Pieces) Join() []byte {
	out := make([]byte, 0, p.Len())
	for _, b := range p {
		out = append(out, b...)
	}
	return out
}

// Reader returns a reader of the joined bytes. It also reads at offsets
// and seeks, so an HTTP client can read the object twice (checksum, then
// body) or again on a retry without a copy.
func (p Pieces) Reader() *PiecesReader {
	r := &PiecesReader{pieces: p, starts: make([]int64, len(p))}
	for i, b := range p {
		r.starts[i] = r.size
		r.size += int64(len(b))
	}
	return r
}

// PiecesReader reads Pieces as one stream: io.Reader, io.ReaderAt and
// io.Seeker.
type PiecesReader struct {
	pieces Pieces
	starts []int64 // offset of each piece
	size   int64
	pos    int64
}

// Size is the length of the joined bytes.
func (r *PiecesReader) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt.
func (r *PiecesReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("pieces: negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	// The last piece that starts at or before off.
	i := sort.Search(len(r.starts), func(i int) bool { return r.starts[i] > off }) - 1
	n := 0
	for ; i < len(r.pieces) && n < len(b); i++ {
		piece := r.pieces[i]
		if skip := off + int64(n) - r.starts[i]; skip > 0 {
			piece = piece[skip:]
		}
		n += copy(b[n:], piece)
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// Read implements io.Reader.
func (r *PiecesReader) Read(b []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	n, err := r.ReadAt(b, r.pos)
	r.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *PiecesReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("pieces: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("pieces: negative position")
	}
	r.pos = offset
	return offset, nil
}

// PiecesPutter is implemented by stores that can write an object given in
// pieces without joining them first. PutPieces makes the same promises as
// Put.
type PiecesPutter interface {
	PutPieces(ctx context.Context, name string, p Pieces) error
}

// PutPieces stores the joined pieces under name, joining them only for a
// store that cannot take them as they are.
func PutPieces(ctx context.Context, st Store, name string, p Pieces) error {
	if pp, ok := st.(PiecesPutter); ok {
		return pp.PutPieces(ctx, name, p)
	}
	return st.Put(ctx, name, p.Join())
}
