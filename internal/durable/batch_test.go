package durable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func readOr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBatch: files written through a Batch keep their old contents until
// Commit, then have the new ones, with no temporary file left and the
// After functions run last; with syncfs and with the per-file fallback.
func TestBatch(t *testing.T) {
	for _, perFile := range []bool{false, true} {
		dir := t.TempDir()
		sub := filepath.Join(dir, "p-0")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		a, c := filepath.Join(dir, "a"), filepath.Join(sub, "c")
		if err := WriteFile(a, []byte("old")); err != nil {
			t.Fatal(err)
		}
		in := filepath.Join(sub, "index")
		if err := os.WriteFile(in, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		var b Batch
		if perFile {
			b.syncFS = func(string) error { return errors.ErrUnsupported }
		}
		if err := b.WriteFile(a, []byte("new")); err != nil {
			t.Fatal(err)
		}
		if err := b.WriteFile(c, []byte("c")); err != nil {
			t.Fatal(err)
		}
		b.Written(in)
		b.SyncDir(dir)
		var ran []string
		b.After(func() { ran = append(ran, readOr(t, a)) })
		if got := readOr(t, a); got != "old" {
			t.Fatalf("before commit: %q", got)
		}
		if got := readOr(t, c); got != "<none>" {
			t.Fatalf("before commit: %q", got)
		}
		if err := b.Commit(dir); err != nil {
			t.Fatal(err)
		}
		if readOr(t, a) != "new" || readOr(t, c) != "c" {
			t.Fatalf("perFile %v: after commit %q, %q", perFile, readOr(t, a), readOr(t, c))
		}
		if len(ran) != 1 || ran[0] != "new" {
			t.Fatalf("After ran %q", ran)
		}
		for _, p := range []string{a + ".tmp", c + ".tmp"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s left: %v", p, err)
			}
		}
		if err := b.Commit(dir); err == nil {
			t.Fatal("a second Commit succeeded")
		}
	}
}

// TestBatchSyncError: when the file system cannot be synced, no file
// takes its new name and After does not run.
func TestBatchSyncError(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := WriteFile(a, []byte("old")); err != nil {
		t.Fatal(err)
	}
	eio := errors.New("EIO")
	b := Batch{syncFS: func(string) error { return eio }}
	if err := b.WriteFile(a, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b.After(func() { t.Error("After ran") })
	if err := b.Commit(dir); !errors.Is(err, eio) {
		t.Fatalf("Commit = %v", err)
	}
	if got := readOr(t, a); got != "old" {
		t.Fatalf("after a failed commit: %q", got)
	}
	// Per file: a file the batch was told of that cannot be synced.
	b = Batch{syncFS: func(string) error { return errors.ErrUnsupported }}
	if err := b.WriteFile(a, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b.Written(filepath.Join(dir, "missing"))
	if err := b.Commit(dir); err == nil {
		t.Fatal("Commit synced a missing file")
	}
	if got := readOr(t, a); got != "old" {
		t.Fatalf("after a failed commit: %q", got)
	}
}

// TestNilBatch writes at once.
func TestNilBatch(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	var b *Batch
	if err := b.WriteFile(a, []byte("now")); err != nil {
		t.Fatal(err)
	}
	b.Written(a)
	if err := b.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	ran := false
	b.After(func() { ran = true })
	if readOr(t, a) != "now" || !ran {
		t.Fatalf("nil batch: %q, After ran %v", readOr(t, a), ran)
	}
}
