//go:build !linux

package segment

import "os"

// startWriteback does nothing here: sync_file_range(2) is Linux's; the
// data is written by the next fdatasync (or the kernel's flusher) as
// before.
func startWriteback(f *os.File, off, n int64) {}
