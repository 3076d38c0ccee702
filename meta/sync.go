package meta

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
)

// syncCreated makes the partition directories just created in dataDir,
// and everything in them, durable: with one syncfs(2) of the file system
// holding dataDir (durable.SyncFS), which writes back every dirty file and
// directory of it and reports a write-back error of any of them; for
// thousands of new partitions that is one sync instead of several each.
// Where syncfs is not supported every file and directory is fsynced, in
// parallel, then dataDir.
func syncCreated(dataDir string, dirs []string) error {
	err := durable.SyncFS(dataDir)
	if !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
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
