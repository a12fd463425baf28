//go:build !linux

package repo

func hugePages([]byte) {}
