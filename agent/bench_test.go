package agent_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/repo/dir"
)

// genTree writes files of mixed sizes and compressibility: mostly small
// text files, some binaries, a few large ones (about 100 MiB in all).
func genTree(b *testing.B, root string) int64 {
	rnd := rand.New(rand.NewPCG(11, 12))
	var total int64
	text := bytes.Repeat([]byte("func example() { return nil } // some source text\n"), 2000)
	for i := range 2000 {
		var data []byte
		switch {
		case i%400 == 0:
			data = randBytes(rnd, 8<<20+rnd.IntN(1<<20))
		case i%10 == 0:
			data = randBytes(rnd, 20000+rnd.IntN(100000))
		default:
			n := 500 + rnd.IntN(len(text)-500)
			data = append([]byte(fmt.Sprintf("file %d\n", i)), text[:n]...)
		}
		p := filepath.Join(root, fmt.Sprintf("d%02d/s%d/f%04d", i%40, i%7, i))
		writeFile(b, p, data)
		total += int64(len(data))
	}
	return total
}

func BenchmarkSnapshot(b *testing.B) {
	src := b.TempDir()
	size := genTree(b, src)
	b.Run("initial", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			st, err := dir.New(filepath.Join(b.TempDir(), "repo"))
			if err != nil {
				b.Fatal(err)
			}
			l := newLocal(b, st)
			b.StartTimer()
			snapshot(b, l, src, nil)
		}
	})
	b.Run("nochange", func(b *testing.B) {
		st, err := dir.New(filepath.Join(b.TempDir(), "repo"))
		if err != nil {
			b.Fatal(err)
		}
		l := newLocal(b, st)
		ageTree(b, src)
		snapshot(b, l, src, nil)
		b.SetBytes(size)
		b.ResetTimer()
		for b.Loop() {
			sn := snapshot(b, l, src, nil)
			if sn.Summary.BytesRead != 0 {
				b.Fatalf("no-change snapshot read %d bytes", sn.Summary.BytesRead)
			}
		}
	})
}
