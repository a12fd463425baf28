package agent

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// rawFile reads a file through its descriptor alone. An os.File first
// tries to register its descriptor with the runtime's poller (four fcntl
// and a failing epoll_ctl for a regular file): for the many small files
// of a backup, more system calls than reading them takes.
type rawFile struct {
	fd   int
	path string
}

// openDescriptor opens path read-only; tests replace it to make files
// unreadable even for root.
var openDescriptor = func(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// openRaw opens a regular file for reading without following a symlink
// and, where allowed, without updating its access time.
func openRaw(path string) (*rawFile, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := openDescriptor(path, flags|openNoATime)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME is only allowed on files we own.
		fd, err = openDescriptor(path, flags)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := &rawFile{fd: fd, path: path}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if mode := uint32(st.Mode); mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("changed from a regular file to %s during the backup", fileKind(mode))
	}
	return f, nil
}

func (f *rawFile) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *rawFile) Close() error { return unix.Close(f.fd) }

// fileKind names a file type from its stat mode, for messages.
func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return "another kind of file"
}
