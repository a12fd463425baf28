// Package bench measures backup tools on large trees, side by side.
//
// A data set is a folder: a synthetic tree grown from a seed (Spec), with
// a change model that turns one version into the next (Mutate), or a real
// folder. A Tool is a backup program driven through its command line:
// cairn itself, and restic when its binary is found. Every scenario
// (initial backup, no-change backup, next-version backup, full restore,
// single-file restore) runs as child processes, so wall time, CPU time and
// peak RSS come from the kernel's accounting of each process. Tools run
// interleaved, several repetitions each, on a shared and noisy machine;
// the report gives medians with min–max and each figure as cairn/peer.
package bench
