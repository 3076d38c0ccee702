//go:build !linux

package meta

import (
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
)

// syncCreated makes the partition directories just created in dataDir,
// and everything in them, durable: every file and each directory is
// fsynced, in parallel, then dataDir itself. (Linux does it with one
// syncfs(2).)
func syncCreated(dataDir string, dirs []string) error {
	errs := make([]error, len(dirs))
	parallel(len(dirs), func(i int) { errs[i] = syncTree(dirs[i]) })
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return durable.SyncDir(dataDir)
}

// syncTree fsyncs every file in dir, then dir.
func syncTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return durable.SyncDir(dir)
}
