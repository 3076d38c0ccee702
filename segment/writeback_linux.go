package segment

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to
// the disk and returns without waiting (sync_file_range(2) with
// SYNC_FILE_RANGE_WRITE): the pages are on their way when the next
// fdatasync comes, which then has less to write, and dirty pages never
// pile up for the kernel's flusher to write in a burst. It makes nothing
// durable (no metadata, no disk cache flush); it is advice, and a failure
// shows again at the fdatasync, so it is ignored here.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
