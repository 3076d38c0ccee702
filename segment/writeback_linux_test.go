package segment

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// dirtyPages counts the pages of the segment's .log that are dirty in the
// page cache (cachestat(2), Linux 6.5+): written, and no writeback
// started.
func dirtyPages(t *testing.T, s *Segment) uint64 {
	t.Helper()
	f, err := os.Open(s.path(".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cs unix.Cachestat_t
	err = unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &cs, 0)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("cachestat: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cs.Dirty
}

// TestEarlyWriteback: appends hand every WritebackBytes of data to the
// kernel for writing, so what an fdatasync finds dirty stays below that.
// Without it, every appended page waits dirty for the fdatasync (or the
// kernel's flusher, 30 s later by default).
func TestEarlyWriteback(t *testing.T) {
	const total = 8 << 20
	for _, tt := range []struct {
		name      string
		writeback int
	}{
		{"off", -1},
		{"1MiB", 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSeg(t, 0, Config{MaxBytes: 64 << 20, WritebackBytes: tt.writeback})
			fill(t, s, total/(16<<10), 16, 1000) // batches of about 16 KiB
			dirty := dirtyPages(t, s) * uint64(os.Getpagesize())
			t.Logf("%d of %d bytes dirty", dirty, s.Size())
			switch {
			case tt.writeback < 0 && dirty < total/2:
				// tmpfs, or a flusher that ran: nothing to compare with.
				t.Skipf("only %d of %d bytes dirty without early writeback", dirty, s.Size())
			case tt.writeback > 0 && dirty > uint64(tt.writeback)+64<<10:
				t.Fatalf("%d bytes dirty after %d bytes of appends; early writeback every %d bytes", dirty, s.Size(), tt.writeback)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
