// Package scheduler is the coordinator of fleet mode.
//
// Terms:
//
//   - Node: a machine running `cairn agent`, registered with an address, a
//     token and the paths to back up on it.
//   - Path: one directory of a node with its interval (Every) and how many
//     snapshots to keep (Keep). Its schedule state (next run, last success,
//     failures) is persisted, so a restart resumes it; a run missed while
//     the coordinator was down runs once.
//   - Session: one backup in progress, opened by the agent, with a lease it
//     renews. Its roots (parent tree, blobs it was told exist, packs it
//     uploaded) keep garbage collection away from what it depends on; a
//     session whose lease expired cannot commit, and a commit is refused if
//     it references a blob the session had no right to.
//
// The coordinator never carries backup data: agents upload packs to the
// bucket themselves and ask the coordinator only which blobs exist. It
// writes snapshot objects on commit (after verifying them), keeps the
// catalog and the chunk index in Badger (synced before a commit is
// acknowledged), applies retention after each commit, runs garbage
// collection on a schedule and on demand, and serves restores.
package scheduler
