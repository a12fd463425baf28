package repo_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/cairn-backup/cairn/repo"
)

func TestPiecesReader(t *testing.T) {
	pieces := repo.Pieces{[]byte("abc"), nil, []byte("d"), {}, []byte("efghij")}
	joined := []byte("abcdefghij")
	if pieces.Len() != len(joined) || !bytes.Equal(pieces.Join(), joined) {
		t.Fatalf("Len %d, Join %q", pieces.Len(), pieces.Join())
	}
	for _, c := range []struct {
		off  int64
		n    int
		want string
		eof  bool
	}{
		{0, 3, "abc", false},
		{0, 10, "abcdefghij", false},
		{2, 3, "cde", false},
		{3, 1, "d", false},
		{4, 6, "efghij", false},
		{8, 5, "ij", true},
		{10, 1, "", true},
		{12, 1, "", true},
	} {
		buf := make([]byte, c.n)
		n, err := pieces.Reader().ReadAt(buf, c.off)
		if string(buf[:n]) != c.want || (err == io.EOF) != c.eof || (err != nil && err != io.EOF) {
			t.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q, EOF %v", c.n, c.off, buf[:n], err, c.want, c.eof)
		}
	}
	// Read in small steps, then rewind and read it all again, as an HTTP
	// client does for a checksum and then the body.
	r := pieces.Reader()
	var got []byte
	buf := make([]byte, 4)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, joined) {
		t.Fatalf("Read: %q", got)
	}
	if pos, err := r.Seek(-4, io.SeekEnd); err != nil || pos != 6 {
		t.Fatalf("Seek from end: %d, %v", pos, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "ghij" {
		t.Errorf("after Seek: %q", rest)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to a negative position succeeded")
	}
	if pos, _ := r.Seek(0, io.SeekStart); pos != 0 {
		t.Errorf("rewind: %d", pos)
	}
	if all, _ := io.ReadAll(r); !bytes.Equal(all, joined) {
		t.Errorf("after rewind: %q", all)
	}
}
