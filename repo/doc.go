// Package repo defines cairn's repository format and the Store it lives on.
//
// Terms:
//
//   - Store: a flat namespace of objects (local directory, S3 bucket, memory).
//   - Key object (keys/<id>): the master key, wrapped by a key derived from a
//     password with argon2id. The only objects readable without a key.
//   - Config (config): the repository ID, chunking parameters and pack size,
//     encrypted with the master key.
//   - Blob: one chunk of file data or one tree, named by the keyed hash of
//     its plaintext (see package chunk), compressed with zstd when that
//     helps, then sealed with AES-256-GCM whose associated data is the blob's
//     type and ID, so the store cannot swap one blob for another.
//   - Pack (data/<xx>/<id>): many blobs in shuffled order followed by an
//     encrypted table of contents, named by the BLAKE3 hash of its bytes. Data
//     and tree blobs go to separate packs so trees can be read cheaply.
//   - Index object (index/<id>): the tables of contents of the packs one
//     backup wrote, so the bucket is self-describing without reading every
//     pack.
//   - Tree: the encoded listing of one directory; see Tree.
//   - Snapshot (snapshots/<id>): node, path, time and root tree of one
//     backup. A snapshot is written last, after everything it references is
//     durable, so a snapshot is visible only when it is whole.
//   - Lock (locks/<random>): who uses the repository for what, encrypted;
//     shared for backups, exclusive for garbage collection. Refreshed by
//     writing a new object and deleting the old.
//
// No object is ever modified in place; garbage collection is the only thing
// that deletes data, and a process deletes only its own locks (or, by
// `cairn unlock`, stale ones).
package repo
