package bench

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
)

// Spec describes a synthetic tree.
type Spec struct {
	Files int    // number of files
	Seed  uint64 // same seed, same tree
	// Sizes: most files are small (SmallMax), every LargeEvery-th file is
	// large (LargeSize); zero values take defaults.
	SmallMax   int
	LargeEvery int
	LargeSize  int
	// Compressible is the fraction of files holding text-like data; the
	// rest are random bytes.
	Compressible float64
	FilesPerDir  int
}

func (s Spec) withDefaults() Spec {
	if s.SmallMax == 0 {
		s.SmallMax = 32 << 10
	}
	if s.LargeEvery == 0 {
		s.LargeEvery = 500
	}
	if s.LargeSize == 0 {
		s.LargeSize = 8 << 20
	}
	if s.FilesPerDir == 0 {
		s.FilesPerDir = 100
	}
	return s
}

var words = bytes.Fields([]byte("the quick brown fox jumps over lazy dog func return nil error " +
	"package import struct interface context value string int byte map slice"))

func fill(rnd *rand.Rand, n int, text bool) []byte {
	b := make([]byte, 0, n)
	if text {
		for len(b) < n {
			b = append(b, words[rnd.IntN(len(words))]...)
			if rnd.IntN(12) == 0 {
				b = append(b, '\n')
			} else {
				b = append(b, ' ')
			}
		}
		return b[:n]
	}
	b = b[:n]
	for i := 0; i+8 <= n; i += 8 {
		v := rnd.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// Generate writes the tree of spec under dir and returns its size in bytes.
func Generate(dir string, spec Spec) (int64, error) {
	spec = spec.withDefaults()
	rnd := rand.New(rand.NewPCG(spec.Seed, 1))
	var total int64
	for i := 0; i < spec.Files; i++ {
		size := rnd.IntN(spec.SmallMax + 1)
		if spec.LargeEvery > 0 && i%spec.LargeEvery == spec.LargeEvery-1 {
			size = spec.LargeSize
		}
		text := rnd.Float64() < spec.Compressible
		p := filepath.Join(dir, fmt.Sprintf("d%04d", i/spec.FilesPerDir/100), fmt.Sprintf("s%03d", i/spec.FilesPerDir%100), fmt.Sprintf("f%07d", i))
		if i%spec.FilesPerDir == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return total, err
			}
		}
		if err := os.WriteFile(p, fill(rnd, size, text), 0o644); err != nil {
			return total, err
		}
		total += int64(size)
	}
	return total, nil
}

// Change is the change model between two versions of a tree: a fraction of
// files is touched, each in one of these ways.
type Change struct {
	Fraction float64
	Seed     uint64
}

// Mutate applies one version's changes to the tree under dir: of the
// chosen files a fifth each is modified in place, appended to, deleted,
// renamed, or joined by a new file beside it.
func Mutate(dir string, c Change) (changed int, err error) {
	var files []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	sort.Strings(files)
	rnd := rand.New(rand.NewPCG(c.Seed, 2))
	n := int(float64(len(files)) * c.Fraction)
	for _, i := range rnd.Perm(len(files))[:n] {
		p := files[i]
		switch rnd.IntN(5) {
		case 0: // modify in place
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return changed, err
			}
			fi, _ := f.Stat()
			off := int64(0)
			if fi.Size() > 0 {
				off = rnd.Int64N(fi.Size())
			}
			_, err = f.WriteAt(fill(rnd, 64, false), off)
			f.Close()
			if err != nil {
				return changed, err
			}
		case 1: // append
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return changed, err
			}
			_, err = f.Write(fill(rnd, 4096, true))
			f.Close()
			if err != nil {
				return changed, err
			}
		case 2:
			if err := os.Remove(p); err != nil {
				return changed, err
			}
		case 3:
			if err := os.Rename(p, p+".moved"); err != nil {
				return changed, err
			}
		case 4:
			if err := os.WriteFile(p+".new", fill(rnd, rnd.IntN(32<<10), true), 0o644); err != nil {
				return changed, err
			}
		}
		changed++
	}
	return changed, nil
}

// DirSize sums the sizes of regular files under dir.
func DirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}
