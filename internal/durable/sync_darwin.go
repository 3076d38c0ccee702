package durable

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// SyncData makes the data written to f durable. On macOS fsync(2) only
// hands the data to the drive, which may keep it in its cache across a
// power cut; fcntl F_FULLFSYNC asks the drive to flush it. File systems
// that do not support F_FULLFSYNC (network mounts) get fsync(2).
func SyncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			_, serr = unix.FcntlInt(fd, unix.F_FULLFSYNC, 0)
			if errors.Is(serr, unix.ENOTSUP) || errors.Is(serr, unix.ENOTTY) || errors.Is(serr, unix.EINVAL) {
				serr = unix.Fsync(int(fd))
			}
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fcntl F_FULLFSYNC", Path: f.Name(), Err: serr}
	}
	return nil
}
