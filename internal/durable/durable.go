// Package durable writes small files so that they survive a power cut:
// the data is fsynced, the file replaces the old one by rename, and the
// directory is fsynced so the rename itself is on disk. The storage layers
// (log checkpoints, producer snapshots) and the broker (meta.properties,
// partition.metadata) all need exactly this, and nothing else of each
// other, hence a package of its own below them.
//
// The calls that reach the disk differ by system and live in one small
// file per OS: SyncData is fdatasync(2) on Linux, fcntl F_FULLFSYNC on
// macOS and FlushFileBuffers on Windows; SyncDir is a no-op on Windows.
//
// Concurrency: the functions are safe to call from any goroutine; callers
// serialize writes to one path.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data atomically and durably: it writes
// path.tmp, fsyncs it, renames it over path and fsyncs the directory. A
// crash leaves either the old file or the new one (and perhaps a stale
// path.tmp, which readers ignore).
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := SyncData(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that entries created, renamed or removed
// in it survive a power cut.
func SyncDir(dir string) error { return syncDir(dir) }
