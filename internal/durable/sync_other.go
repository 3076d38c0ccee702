//go:build !linux && !darwin && !windows

package durable

import "os"

// SyncData makes the data written to f durable with fsync(2).
func SyncData(f *os.File) error { return f.Sync() }
