// Package agent is cairn's backup and restore engine.
//
// Backup walks a directory, compares every file with the same path in the
// parent snapshot (type, size, mtime, ctime and inode; files modified too
// close to the parent's start are read again), reads and chunks only the
// files that changed, stores only chunks the index has not seen, builds one
// tree per directory bottom-up and commits a snapshot last.
//
// Restore walks a snapshot's trees, groups the chunks it needs by pack,
// fetches them with range reads, verifies every chunk and writes files
// through an os.Root so nothing lands outside the target; or it streams the
// snapshot as a tar archive.
package agent
