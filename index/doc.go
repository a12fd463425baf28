// Package index is the local Badger index of a repository: where each blob
// is (blob ID → pack, offset, length), which packs and index objects exist,
// and the snapshot catalog per node and path.
//
// The bucket is the truth; this index is an accelerator rebuilt from it.
// Sync brings it up to date incrementally from the index and snapshot
// objects it has not seen; when an index object it knew has gone (garbage
// collection elsewhere rewrote the index) it reloads every blob location.
// Rebuild starts from nothing and also reads the table of contents of every
// pack that no index object describes.
package index
