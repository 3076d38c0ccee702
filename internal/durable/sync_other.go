//go:build !linux && !darwin && !windows

package durable

import (
	"errors"
	"os"
)

// SyncData makes the data written to f durable with fsync(2).
func SyncData(f *os.File) error { return f.Sync() }

// SyncFS is not available here (it is syncfs(2) on Linux): it returns
// errors.ErrUnsupported, and the caller syncs each file and directory.
func SyncFS(path string) error { return errors.ErrUnsupported }
