package repo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

const (
	nonceSize = 12
	tagSize   = 16
	// Overhead is what sealing adds to a plaintext.
	Overhead = nonceSize + tagSize
)

// sealer encrypts and authenticates with AES-256-GCM and random nonces.
// Random 96-bit nonces are safe for 2^32 messages per key; at one blob per
// chunk of the default sizes (about 190 KiB on average) that is over 700
// TiB of unique data per repository.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal appends nonce || ciphertext || tag to dst.
func (s *sealer) seal(dst, plaintext, ad []byte) []byte {
	var nonce [nonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		// crypto/rand.Read never returns an error on supported platforms.
		panic(err)
	}
	dst = append(dst, nonce[:]...)
	return s.aead.Seal(dst, nonce[:], plaintext, ad)
}

// open authenticates and decrypts a sealed message, appending to dst.
func (s *sealer) open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed message of %d bytes is too short: %w", len(sealed), ErrCorrupt)
	}
	out, err := s.aead.Open(dst, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("authentication failed: %w", ErrCorrupt)
	}
	return out, nil
}
