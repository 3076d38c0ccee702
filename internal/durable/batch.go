package durable

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// Batch defers the fsyncs of many small file writes to one syncfs(2), for
// a caller that writes thousands of files at once: the broker closing
// every partition at shutdown writes a checkpoint, a producer snapshot
// and index files for each, which cost several fsyncs apiece one by one.
//
// Files written through a Batch reach their final names only in Commit,
// after everything written to the file system before it is durable, so a
// crash at any moment leaves each file either old or new, as WriteFile
// does, and a file that vouches for others (a clean-shutdown checkpoint)
// is never on disk before what it vouches for. A nil *Batch writes at
// once, durably, file by file.
//
// Concurrency: the methods are safe to call from any goroutine; Commit
// runs once, after every write.
type Batch struct {
	mu       sync.Mutex
	written  []string    // files written in place, to fsync without syncfs
	renames  [][2]string // tmp, final
	dirs     map[string]bool
	after    []func()
	syncFS   func(string) error // SyncFS; tests replace it
	finished bool
}

// WriteFile replaces path with data as package-level WriteFile does, but
// the new file takes path's name only in Commit.
func (b *Batch) WriteFile(path string, data []byte) error {
	if b == nil {
		return WriteFile(path, data)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	b.mu.Lock()
	b.renames = append(b.renames, [2]string{tmp, path})
	b.mu.Unlock()
	return nil
}

// Written records that the caller wrote path in place without syncing
// it; Commit makes it durable. With a nil Batch the caller syncs it.
func (b *Batch) Written(path string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.written = append(b.written, path)
	b.mu.Unlock()
}

// SyncDir records that dir's entries must be durable after Commit (a
// directory just created). With a nil Batch it is fsynced at once.
func (b *Batch) SyncDir(dir string) error {
	if b == nil {
		return SyncDir(dir)
	}
	b.mu.Lock()
	if b.dirs == nil {
		b.dirs = make(map[string]bool)
	}
	b.dirs[dir] = true
	b.mu.Unlock()
	return nil
}

// After runs fn once Commit has made every file durable (removing files
// the new ones replace), perhaps beside other such functions. With a nil
// Batch it runs at once.
func (b *Batch) After(fn func()) {
	if b == nil {
		fn()
		return
	}
	b.mu.Lock()
	b.after = append(b.after, fn)
	b.mu.Unlock()
}

// Commit makes every write of the batch durable and puts each file under
// its final name: one syncfs of the file system holding root, the
// renames, a second syncfs. Where syncfs is not supported each file and
// each directory involved is fsynced instead. All files must be on the
// file system holding root. On an error no file written through
// WriteFile whose data may not be durable takes its final name.
func (b *Batch) Commit(root string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return errors.New("durable: batch committed twice")
	}
	b.finished = true
	syncFS := b.syncFS
	if syncFS == nil {
		syncFS = SyncFS
	}
	err := syncFS(root)
	perFile := errors.Is(err, errors.ErrUnsupported)
	if perFile {
		err = b.syncEach()
	}
	if err != nil {
		return err
	}
	dirs := b.dirs
	if dirs == nil {
		dirs = make(map[string]bool)
	}
	// In parallel: a rename over a file frees the old one's blocks,
	// which waits for the device where the file system discards them.
	errs := make([]error, len(b.renames))
	parallel(len(b.renames), func(i int) { errs[i] = os.Rename(b.renames[i][0], b.renames[i][1]) })
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, r := range b.renames {
		dirs[filepath.Dir(r[1])] = true
	}
	if perFile {
		for _, p := range b.written {
			dirs[filepath.Dir(p)] = true
		}
		for dir := range dirs {
			if err := SyncDir(dir); err != nil {
				return err
			}
		}
	} else if err := syncFS(root); err != nil {
		return err
	}
	parallel(len(b.after), func(i int) { b.after[i]() })
	return nil
}

// commitWorkers bounds the renames and After functions run at once.
const commitWorkers = 16

// parallel runs fn(0..n-1) on up to commitWorkers goroutines.
func parallel(n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(n, commitWorkers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// syncEach fsyncs every file written, for systems without syncfs.
func (b *Batch) syncEach() error {
	paths := append([]string(nil), b.written...)
	for _, r := range b.renames {
		paths = append(paths, r[0])
	}
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = SyncData(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
