package repo

import (
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunk"
)

// Every decoder of bytes that come from the store has a fuzz target. Each
// must return an error (never panic, never allocate past its caps) on any
// input, and what it accepts must re-encode to the same bytes.

func seedTree() []byte {
	t := Tree{Nodes: []Node{
		{Name: "a", Type: NodeFile, Mode: 0o644, Size: 3, ModTime: 1, Content: []chunk.ID{{1}}},
		{Name: "b", Type: NodeDir, Mode: 0o755, Subtree: chunk.ID{2}},
		{Name: "c", Type: NodeSymlink, LinkTarget: "a"},
		{Name: "d", Type: NodeCharDev, Rdev: 259},
	}}
	return t.Encode()
}

func FuzzDecodeTree(f *testing.F) {
	f.Add(seedTree())
	f.Add([]byte{treeVersion, 0})
	f.Add([]byte{treeVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTree(b)
		if err != nil {
			return
		}
		for _, n := range tr.Nodes {
			if ValidName(n.Name) != nil {
				t.Fatalf("accepted invalid name %q", n.Name)
			}
		}
		if again := tr.Encode(); string(again) != string(b) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}

func FuzzDecodePackHeader(f *testing.F) {
	entries := []BlobEntry{
		{Type: DataBlob, ID: chunk.ID{1}, Length: 100, RawLength: 200},
		{Type: TreeBlob, ID: chunk.ID{2}, Offset: 100, Length: 50, RawLength: 40},
	}
	f.Add(encodePackHeader(entries), int64(150))
	f.Add([]byte{packVersion, 0}, int64(0))
	f.Fuzz(func(t *testing.T, b []byte, dataLen int64) {
		blobs, err := DecodePackHeader(b, dataLen)
		if err != nil {
			return
		}
		var off int64
		for _, e := range blobs {
			if int64(e.Offset) != off || !e.Type.Valid() {
				t.Fatalf("accepted entry %+v at %d", e, off)
			}
			off += int64(e.Length)
		}
		if off != dataLen {
			t.Fatalf("entries cover %d of %d", off, dataLen)
		}
	})
}

func FuzzParsePackTrailer(f *testing.F) {
	f.Add([]byte{100, 0, 0, 0}, int64(1000))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int64(10))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		n, err := parsePackTrailer(b, size)
		if err != nil {
			return
		}
		if n < Overhead || n > MaxPackHeader || n+trailerSize > size || binary.LittleEndian.Uint32(b) != uint32(n) {
			t.Fatalf("accepted header length %d for pack of %d", n, size)
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(EncodeIndex([]PackInfo{{ID: PackID{9}, Size: 1000, Blobs: []BlobEntry{
		{Type: DataBlob, ID: chunk.ID{1}, Offset: 0, Length: 500, RawLength: 800},
		{Type: TreeBlob, ID: chunk.ID{2}, Offset: 500, Length: 400, RawLength: 300},
	}}}))
	f.Add([]byte{indexVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := DecodeIndex(b)
		if err != nil {
			return
		}
		if again := EncodeIndex(packs); string(again) != string(b) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	sn := Snapshot{Time: time.Unix(1e9, 0).UTC(), Node: "n", Path: "/p", Tree: chunk.ID{1}}
	b, _ := json.Marshal(sn)
	f.Add(b)
	f.Add([]byte(`{"node":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sn, err := DecodeSnapshot(SnapshotID("00"), b)
		if err != nil {
			return
		}
		if sn.Node == "" || sn.Path == "" || sn.Tree.IsZero() {
			t.Fatalf("accepted incomplete snapshot %+v", sn)
		}
	})
}

func FuzzBlobPayload(f *testing.F) {
	r := testRepository(f)
	id := r.hasher.Sum([]byte("hello hello hello hello"))
	sealed := r.sealBlob(nil, DataBlob, id, []byte("hello hello hello hello"))
	inner, err := r.sealer.open(nil, sealed, blobAD(DataBlob, id))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(inner, 23)
	f.Add([]byte{compressZstd, 0x28, 0xb5, 0x2f, 0xfd}, 1000)
	f.Fuzz(func(t *testing.T, inner []byte, rawLen int) {
		// The part of openBlob after authentication: a store cannot forge
		// it without the key, but a bug or a bad disk behind the key can.
		plain, err := decodeBlobPayload(inner, rawLen, nil)
		if err != nil {
			return
		}
		if len(plain) != rawLen {
			t.Fatalf("accepted %d bytes for a claimed %d", len(plain), rawLen)
		}
	})
}

func FuzzOpenKeyObject(f *testing.F) {
	_, data, err := newKeyObject("pw", masterKey{Encrypt: make([]byte, 32)}, KDFParams{Time: 1, Memory: 8, Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"version":1,"kdf":"argon2id","params":{"time":1,"memory_kib":4194304,"threads":255}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Must fail fast on absurd parameters rather than allocate them.
		var kf keyFile
		if json.Unmarshal(b, &kf) == nil && (kf.Params.Memory > 1<<16 || kf.Params.Time > 4) {
			return
		}
		_, _ = openKeyObject(b, "pw")
	})
}
