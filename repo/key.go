package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDFParams are the argon2id parameters that turn a password into a key
// encryption key.
type KDFParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
}

// DefaultKDF costs about 0.2 s of one core and 32 MiB: cheap enough to run
// on every command, expensive enough that guessing passwords needs real
// hardware. It was RFC 9106's second setting (3 passes over 64 MiB); six
// passes over 32 MiB cost a guess the same work and the same memory-time
// product (one core: 203 vs 221 ms) and take the memory of restic's
// default scrypt (N=2^15, r=8), so a command that does little besides
// opening the repository peaks at 50 MB instead of 80. Repositories keep
// the parameters their key objects were written with.
var DefaultKDF = KDFParams{Time: 6, Memory: 32 << 10, Threads: 4}

// keyFile is the plaintext JSON of a key object.
type keyFile struct {
	Version  int       `json:"version"`
	Created  time.Time `json:"created"`
	Hostname string    `json:"hostname,omitempty"`
	Username string    `json:"username,omitempty"`
	KDF      string    `json:"kdf"`
	Params   KDFParams `json:"params"`
	Salt     []byte    `json:"salt"`
	Data     []byte    `json:"data"` // sealed masterKey JSON
}

// masterKey is what every key object wraps.
type masterKey struct {
	Encrypt []byte `json:"encrypt"`
}

// KeyInfo describes a key object for `cairn key list`.
type KeyInfo struct {
	ID       string
	Created  time.Time
	Hostname string
	Username string
	Current  bool
}

const keyAD = "cairn key v1"

func deriveKEK(password string, salt []byte, p KDFParams) ([]byte, error) {
	if p.Time == 0 || p.Memory < 8 || p.Threads == 0 || p.Memory > 4<<20 || p.Time > 100 {
		return nil, fmt.Errorf("key derivation parameters %+v out of range: %w", p, ErrCorrupt)
	}
	if p.Memory < prefaultMin {
		return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32), nil
	}
	prefault(int(p.Memory) << 10)
	kek := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	// Hand argon2's memory back to the system: a command that needs less
	// afterwards (a no-change backup, a restore of one file) peaks at the
	// derivation instead of at the derivation plus its own work. The
	// pages keep their huge-page advice, so memory the heap takes back
	// faults in 2 MiB at a time.
	debug.FreeOSMemory()
	return kek, nil
}

// prefaultMin: smaller derivations (tests) are not worth the collection.
const prefaultMin = 8 << 10 // KiB

// prefault writes one byte per page of a fresh heap region of n bytes and
// frees it, so that argon2's allocation right after, which the allocator
// serves from the same pages, finds them mapped and writable. argon2
// first reads its fresh pages (mapping the shared zero page) and then
// writes them: one copy-on-write fault per 4 KiB, each flushing the TLB
// of every CPU its lanes run on. With 64 MiB on 2 vCPUs that cost 230-330
// ms of system time per derivation, wall 205-250 ms; prefaulted, 30-45 ms
// and 120-140 ms, at the same peak RSS (the pages are the same ones).
// Prefaulting still took one fault per 4 KiB page, 16,384 of them and
// about 200 ms on a VM where a fault costs 13 µs; asking for huge pages
// first makes it 32 faults, and `cairn snapshots` went from 335 to 135 ms
// (median of 40 runs, same peak RSS).
func prefault(n int) {
	b := make([]byte, n)
	hugePages(b)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	runtime.GC()
}

func newKeyObject(password string, mk masterKey, p KDFParams) (name string, data []byte, err error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return "", nil, err
	}
	kek, err := deriveKEK(password, salt, p)
	if err != nil {
		return "", nil, err
	}
	s, err := newSealer(kek)
	if err != nil {
		return "", nil, err
	}
	plain, err := json.Marshal(mk)
	if err != nil {
		return "", nil, err
	}
	kf := keyFile{
		Version: 1, Created: time.Now().UTC(), KDF: "argon2id", Params: p, Salt: salt,
		Data: s.seal(nil, plain, []byte(keyAD)),
	}
	kf.Hostname, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		kf.Username = u.Username
	}
	data, err = json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", nil, err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", nil, err
	}
	return "keys/" + hex.EncodeToString(id[:]), data, nil
}

func openKeyObject(data []byte, password string) (masterKey, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return masterKey{}, fmt.Errorf("decode key: %v: %w", err, ErrCorrupt)
	}
	if kf.KDF != "argon2id" || kf.Version != 1 {
		return masterKey{}, fmt.Errorf("key version %d kdf %q not supported: %w", kf.Version, kf.KDF, ErrCorrupt)
	}
	kek, err := deriveKEK(password, kf.Salt, kf.Params)
	if err != nil {
		return masterKey{}, err
	}
	s, err := newSealer(kek)
	if err != nil {
		return masterKey{}, err
	}
	plain, err := s.open(nil, kf.Data, []byte(keyAD))
	if err != nil {
		return masterKey{}, ErrWrongPassword
	}
	var mk masterKey
	if err := json.Unmarshal(plain, &mk); err != nil || len(mk.Encrypt) != 32 {
		return masterKey{}, fmt.Errorf("decode master key: %w", ErrCorrupt)
	}
	return mk, nil
}

// findKey tries every key object against password. Key derivation is
// memory-hard, so keys are tried one after another, not in parallel.
func findKey(ctx context.Context, st Store, password string) (mk masterKey, keyName string, err error) {
	var names []string
	if err := st.List(ctx, "keys/", func(oi ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		return masterKey{}, "", err
	}
	if len(names) == 0 {
		return masterKey{}, "", ErrNoRepository
	}
	var corrupt error
	for _, name := range names {
		data, err := st.Get(ctx, name, 0, -1)
		if err != nil {
			return masterKey{}, "", err
		}
		mk, err := openKeyObject(data, password)
		switch {
		case err == nil:
			return mk, name, nil
		case errors.Is(err, ErrWrongPassword):
			continue
		default:
			corrupt = errors.Join(corrupt, fmt.Errorf("key %s: %w", name, err))
		}
	}
	if corrupt != nil {
		return masterKey{}, "", errors.Join(ErrWrongPassword, corrupt)
	}
	return masterKey{}, "", ErrWrongPassword
}

// AddKey wraps the open repository's master key with another password and
// returns the new key's ID.
func (r *Repository) AddKey(ctx context.Context, password string, p KDFParams) (string, error) {
	name, data, err := newKeyObject(password, r.mk, p)
	if err != nil {
		return "", err
	}
	if err := r.store.Put(ctx, name, data); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	return strings.TrimPrefix(name, "keys/"), nil
}

// Keys lists the repository's key objects.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := r.store.List(ctx, "keys/", func(oi ObjectInfo) error {
		data, err := r.store.Get(ctx, oi.Name, 0, -1)
		if err != nil {
			return err
		}
		var kf keyFile
		if err := json.Unmarshal(data, &kf); err != nil {
			return fmt.Errorf("decode key %s: %w", oi.Name, ErrCorrupt)
		}
		out = append(out, KeyInfo{
			ID: strings.TrimPrefix(oi.Name, "keys/"), Created: kf.Created,
			Hostname: kf.Hostname, Username: kf.Username, Current: oi.Name == r.keyName,
		})
		return nil
	})
	return out, err
}

// RemoveKey deletes a key object. The key in use and the last key cannot be
// removed: the first would strand this session, the second the repository.
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	keys, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	var match []KeyInfo
	for _, k := range keys {
		if strings.HasPrefix(k.ID, id) {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 0:
		return fmt.Errorf("key %s: %w", id, ErrNotFound)
	case len(match) > 1:
		return fmt.Errorf("key prefix %s is ambiguous (%d keys)", id, len(match))
	case match[0].Current:
		return fmt.Errorf("key %s is the one this command opened the repository with; use another password to remove it", match[0].ID)
	case len(keys) == 1:
		return errors.New("refusing to remove the last key")
	}
	return r.store.Delete(ctx, "keys/"+match[0].ID)
}

// ChangePassword adds a key for the new password, then removes the key in
// use, in that order so a failure never leaves the repository without a key.
func (r *Repository) ChangePassword(ctx context.Context, password string, p KDFParams) (string, error) {
	id, err := r.AddKey(ctx, password, p)
	if err != nil {
		return "", err
	}
	old := r.keyName
	if err := r.store.Delete(ctx, old); err != nil {
		return id, fmt.Errorf("new key %s added, but removing old key %s failed: %w", id, old, err)
	}
	r.keyName = "keys/" + id
	return id, nil
}
