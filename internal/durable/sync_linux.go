package durable

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// SyncData makes the data written to f durable with fdatasync(2): the
// file's bytes and its size, without its timestamps.
func SyncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// SyncFS makes everything written to the file system holding path durable
// with one syncfs(2): file data, new and renamed entries, directories. A
// caller that created many files and directories at once (thousands of
// partitions) calls it once instead of an fsync per file and directory.
func SyncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: serr}
	}
	return nil
}
