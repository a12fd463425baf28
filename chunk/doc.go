// Package chunk cuts byte streams into content-defined chunks and names them.
//
// A chunk boundary is chosen by a Rabin fingerprint over a sliding window
// (github.com/restic/chunker) with a polynomial drawn at random for each
// repository, so the same data cut by two nodes of one repository yields the
// same chunks while an observer of chunk sizes learns nothing that transfers
// between repositories.
//
// A chunk's ID is the keyed BLAKE3-256 hash of its plaintext. The key is
// random per repository and never leaves the encrypted repository config, so
// chunk IDs reveal nothing about file contents to the store.
package chunk
