package chunk

import (
	"encoding/binary"
	"hash"

	"lukechampine.com/blake3/guts"
)

// groupSize is what one SIMD pass of BLAKE3 compresses: 16 of its 1 KiB
// chunks, side by side.
const groupSize = guts.MaxSIMD * guts.ChunkSize

// groupHeight is the height of a group's subtree in BLAKE3's tree.
const groupHeight = 4 // log2(guts.MaxSIMD)

// serialHash is BLAKE3-256, keyed or not, computed on the calling
// goroutine. blake3.Hasher.Write starts a goroutine per power-of-two
// subtree of what it is given and, inside each subtree of more than 16
// KiB, one per 16 KiB: about ten per 128 KiB chunk, as many again when
// the blob is verified before upload, and a few per blob written into a
// pack's ID. cairn already hashes on every core, one chunk or pack per
// worker, so those goroutines only added scheduling, stack growth (each
// one's first SIMD call outgrows a fresh stack) and allocation: one 128
// KiB input hashed at 1.7-2.0 GB/s per core instead of 3.6.
//
// The tree is BLAKE3's: 16 KiB groups are compressed in one SIMD pass and
// kept on a stack of subtree roots by height, merged as they pair up, as
// blake3.Hasher does. The last group (empty input, or 1 byte to 16 KiB)
// is held back until Sum: it is the rightmost subtree, which the stack
// then folds into the root.
type serialHash struct {
	key     [8]uint32
	flags   uint32
	stack   [64][8]uint32
	counter uint64 // 1 KiB chunks compressed; bit h set: a subtree of 2^h chunks waits on the stack
	buf     [groupSize]byte
	buflen  int
}

var _ hash.Hash = (*serialHash)(nil)

// NewBLAKE3 returns a BLAKE3-256 hash, keyed with a 32-byte key or unkeyed
// when key is nil, that never starts goroutines. It is for callers that
// already hash on every core.
func NewBLAKE3(key *[32]byte) hash.Hash {
	return newSerialHash(key)
}

func newSerialHash(key *[32]byte) *serialHash {
	s := &serialHash{key: guts.IV}
	if key != nil {
		for i := range s.key {
			s.key[i] = binary.LittleEndian.Uint32(key[i*4:])
		}
		s.flags = guts.FlagKeyedHash
	}
	return s
}

// push compresses a full group that is not the last one.
func (s *serialHash) push(group *[groupSize]byte) {
	cv := guts.ChainingValue(guts.CompressBuffer(group, groupSize, &s.key, s.counter, s.flags))
	h := groupHeight
	for s.counter&(1<<h) != 0 {
		cv = guts.ChainingValue(guts.ParentNode(s.stack[h], cv, &s.key, s.flags))
		h++
	}
	s.stack[h] = cv
	s.counter += guts.MaxSIMD
}

// root returns the hash of everything pushed followed by the first n
// bytes of last.
func (s *serialHash) root(last *[groupSize]byte, n int) [32]byte {
	node := guts.CompressBuffer(last, n, &s.key, s.counter, s.flags)
	for h := groupHeight; h < len(s.stack); h++ {
		if s.counter&(1<<h) != 0 {
			node = guts.ParentNode(s.stack[h], guts.ChainingValue(node), &s.key, s.flags)
		}
	}
	node.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(node))
	return [32]byte(out[:32])
}

// Write implements hash.Hash.
func (s *serialHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.buflen == groupSize {
			s.push(&s.buf)
			s.buflen = 0
		}
		if s.buflen == 0 && len(p) > groupSize {
			s.push((*[groupSize]byte)(p))
			p = p[groupSize:]
			continue
		}
		c := copy(s.buf[s.buflen:], p)
		s.buflen += c
		p = p[c:]
	}
	return n, nil
}

// Sum implements hash.Hash; it does not change the state.
func (s *serialHash) Sum(b []byte) []byte {
	sum := s.root(&s.buf, s.buflen)
	return append(b, sum[:]...)
}

// Reset implements hash.Hash.
func (s *serialHash) Reset() { s.counter, s.buflen = 0, 0 }

// Size implements hash.Hash.
func (s *serialHash) Size() int { return 32 }

// BlockSize implements hash.Hash.
func (s *serialHash) BlockSize() int { return 64 }

// sum returns the hash of data alone, as Reset, Write and Sum would, but
// without copying data's last group when the slice's capacity reaches 16
// KiB past its start: the SIMD pass reads all 16 KiB, and what lies past
// len(data) is computed and discarded.
func (s *serialHash) sum(data []byte) [32]byte {
	s.Reset()
	for len(data) > groupSize {
		s.push((*[groupSize]byte)(data))
		data = data[groupSize:]
	}
	if cap(data) >= groupSize {
		return s.root((*[groupSize]byte)(data[:groupSize]), len(data))
	}
	s.buflen = copy(s.buf[:], data)
	return s.root(&s.buf, s.buflen)
}
