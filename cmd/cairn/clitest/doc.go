// Package clitest drives the cairn binary end to end: real processes, real
// files, a real MinIO when `make test` provides one.
package clitest
