// Package dirlock keeps a data directory to one process: a broker takes
// an exclusive lock on <dir>/.lock (the file Kafka locks in each log
// directory) for as long as it runs, and a second broker on the same
// directory fails to start instead of writing beside the first.
//
// The lock is an advisory file lock (flock on Unix, LockFileEx on
// Windows): the operating system drops it when the process dies, so a
// killed broker never leaves a stale lock behind.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the lock file in the locked directory.
const FileName = ".lock"

// ErrLocked is returned by Lock when another process holds the lock.
var ErrLocked = errors.New("dirlock: directory in use by another process")

// Lock is a held directory lock.
type Lock struct{ f *os.File }

// Acquire locks dir, creating its lock file if needed. It does not wait:
// a directory locked by another process (or another Lock in this one)
// gives ErrLocked.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is locked", ErrLocked, path)
		}
		return nil, fmt.Errorf("dirlock: lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the lock
	l.f = nil
	return err
}
