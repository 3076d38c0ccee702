package log

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// smallFS mounts a tmpfs of size bytes on a fresh directory and unmounts it
// when the test ends. It skips the test where mounting is refused (not
// root, or no CAP_SYS_ADMIN in a container).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root): %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillFS writes path until the file system is full and returns how many
// bytes it took.
func fillFS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return n
		}
	}
}

// TestFullFileSystem appends to a log on a small tmpfs until the file
// system is full: the first failed write is a sticky ENOSPC (no fault
// from a mapped page), what was synced before reads back intact, a
// recovery open on the still-full file system does not crash, and once
// space is freed a reopen serves every acknowledged batch and appends go
// on.
func TestFullFileSystem(t *testing.T) {
	fs := smallFS(t, "8m")
	filler := filepath.Join(fs, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 5<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dir := filepath.Join(fs, "p-0")
	cfg := Config{SegmentBytes: 256 << 10, IndexIntervalBytes: 64}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var acked [][]byte
	var werr error
	for i := 0; i < 10_000; i++ {
		b, h := gen(l.NextOffset(), 1+i%3, 100+i%900, int64(i))
		if _, werr = l.Append(b, &h); werr != nil {
			break
		}
		if werr = l.Sync(); werr != nil {
			break
		}
		acked = append(acked, b)
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("append on a full file system = %v, want ENOSPC", werr)
	}
	if l.Segments() < 3 {
		t.Fatalf("%d segments: the test wants rolls (and background seals) on the way", l.Segments())
	}
	b, h := gen(l.NextOffset(), 1, 1, 0)
	if _, err := l.Append(b, &h); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append after the failure = %v, want the sticky ENOSPC", err)
	}
	if err := l.Sync(); err == nil {
		t.Fatal("Sync succeeded after a failed write")
	}
	checkBatches(t, readAll(t, l), acked)
	l.Close()

	// A recovery open on the full file system rebuilds indexes without
	// writing through a mapping.
	if l2, err := Open(dir, cfg); err == nil {
		checkBatches(t, readAll(t, l2), acked)
		l2.Close()
	} else {
		t.Logf("recovery open on a full file system: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	l3 := open(t, dir, cfg)
	checkBatches(t, readAll(t, l3), acked)
	more := appendN(t, l3, 20, 2, 500, 0)
	if err := l3.Sync(); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, readAll(t, l3), append(acked, more...))
}

// TestFullFileSystemIndexPage fills the file system while the active
// segment's last .log page still has room, so that appends succeed while
// each one adds index entries: those must never reach a page of an index
// file that has no blocks behind it (a SIGBUS through a mapping), and the
// first write that finds no space is a sticky ENOSPC.
func TestFullFileSystemIndexPage(t *testing.T) {
	fs := smallFS(t, "1m")
	dir := filepath.Join(fs, "p-0")
	cfg := Config{IndexIntervalBytes: 1}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	acked := appendN(t, l, 1, 1, 10, 0)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	fillFS(t, filler)
	var werr error
	for i := 1; i < 1000 && werr == nil; i++ {
		b, h := gen(l.NextOffset(), 1, 10, int64(i))
		if _, werr = l.Append(b, &h); werr == nil {
			if werr = l.Sync(); werr == nil {
				acked = append(acked, b)
			}
		}
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("append on a full file system = %v, want ENOSPC", werr)
	}
	if len(acked) < 10 {
		t.Fatalf("only %d appends fit in the first page", len(acked))
	}
	l.Close()
	if cp, err := readCheckpoint(dir); err == nil && cp.clean {
		t.Fatal("close after ENOSPC wrote a clean checkpoint")
	}
	os.Remove(filler)
	l2 := open(t, dir, cfg)
	checkBatches(t, readAll(t, l2), acked)
	appendN(t, l2, 3, 1, 10, 0)
}

// TestFullFileSystemAtSeal fills the file system after the data is
// written, so that the roll's background seal (index files) and the close
// are what meet ENOSPC.
func TestFullFileSystemAtSeal(t *testing.T) {
	fs := smallFS(t, "4m")
	dir := filepath.Join(fs, "p-0")
	cfg := Config{IndexIntervalBytes: 32}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	acked := appendN(t, l, 400, 1, 200, 0) // ~100 KiB of index entries
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	fillFS(t, filler)
	if err := l.Roll(); err != nil {
		t.Logf("roll on a full file system: %v", err)
	}
	err = l.Close()
	if err == nil {
		err = l.Err()
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("seal and close on a full file system = %v, want ENOSPC", err)
	}
	os.Remove(filler)
	l2 := open(t, dir, cfg)
	checkBatches(t, readAll(t, l2), acked)
	appendN(t, l2, 3, 1, 10, 0)
}
