package log

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/segment"
)

// handlesUnder counts the open file descriptors and the memory mappings of
// this process whose file lies under dir.
func handlesUnder(t *testing.T, dir string) (files, maps int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			files++
		}
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), " "+dir+"/") {
			maps++
		}
	}
	return files, maps
}

// fastDir returns a fresh directory on a tmpfs where one can be mounted
// (building thousands of segments on a disk is thousands of fsyncs), and
// a plain temporary directory otherwise.
func fastDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1g"); err == nil {
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				syscall.Unmount(dir, syscall.MNT_DETACH)
			}
		})
	}
	return dir
}

// manySegments makes a log of n segments of three small batches each and
// closes it cleanly; it returns every batch appended.
func manySegments(t *testing.T, dir string, n int, cfg Config) [][]byte {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for l.Segments() < n {
		want = append(want, appendN(t, l, 3, 1, 20, int64(len(want)))...)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

// TestCleanOpenMapsNothing: a cleanly closed log of thousands of segments
// opens without opening or mapping any segment file, reading across it
// holds no more than the file cache allows, and closing releases all.
func TestCleanOpenMapsNothing(t *testing.T) {
	dir := fastDir(t)
	cache := segment.NewFileCache(16, 16)
	cfg := Config{Files: cache}
	want := manySegments(t, dir, 3000, cfg)
	if f, m := handlesUnder(t, dir); f != 0 || m != 0 {
		t.Fatalf("after close: %d files and %d mappings still held", f, m)
	}
	l := open(t, dir, cfg)
	if f, m := handlesUnder(t, dir); f != 0 || m != 0 {
		t.Fatalf("a clean open holds %d files and %d mappings", f, m)
	}
	checkBatches(t, readAll(t, l), want)
	if f, m := handlesUnder(t, dir); f > 16 || m > 16 {
		t.Fatalf("after reading %d segments: %d files and %d mappings held, cache of 16", l.Segments(), f, m)
	}
	want = append(want, appendN(t, l, 5, 1, 20, 0)...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if f, m := handlesUnder(t, dir); f != 0 || m != 0 {
		t.Fatalf("after close: %d files and %d mappings still held", f, m)
	}
	checkBatches(t, readAll(t, open(t, dir, cfg)), want)
}

// TestFileCacheCap runs many logs of many segments under a cache of 64
// files and mappings: random reads from many goroutines, appends and rolls
// meanwhile, all data correct, and the process holds no more than the cap
// (plus what readers hold at the moment) under the data directory.
func TestFileCacheCap(t *testing.T) {
	dir := fastDir(t)
	cache := segment.NewFileCache(64, 64)
	cfg := Config{Files: cache, SegmentBytes: 4096}
	const logs = 5
	ls := make([]*Log, logs)
	wants := make([][][]byte, logs)
	var wmu sync.Mutex
	for i := range ls {
		d := filepath.Join(dir, fmt.Sprint(i))
		wants[i] = manySegments(t, d, 100, cfg)
		ls[i] = open(t, d, cfg)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(logs)
				l := ls[i]
				off := rng.Int64N(l.NextOffset())
				v, err := l.Read(off, l.NextOffset(), 1<<10, true)
				if err != nil {
					t.Error(err)
					return
				}
				wmu.Lock()
				want := wants[i][off/1]
				wmu.Unlock()
				if !bytes.HasPrefix(v.Data, want) {
					t.Errorf("log %d offset %d: wrong batch", i, off)
				}
				v.Release()
			}
		}()
	}
	for range 200 {
		for i, l := range ls {
			b, h := gen(l.NextOffset(), 1, 300, 0)
			if _, err := l.Append(b, &h); err != nil {
				t.Fatal(err)
			}
			wmu.Lock()
			wants[i] = append(wants[i], b)
			wmu.Unlock()
		}
	}
	close(stop)
	wg.Wait()
	for i, l := range ls {
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		checkBatches(t, readAll(t, l), wants[i])
	}
	if f, m := cache.Held(); f > 64 || m > 64 {
		t.Fatalf("idle cache holds %d files and %d mappings, cap 64", f, m)
	}
	if f, m := handlesUnder(t, dir); f > 64 || m > 64 {
		t.Fatalf("process holds %d files and %d mappings under the data directory, cap 64", f, m)
	}
	t.Logf("%d logs of %d segments or more read and appended under a cap of 64", logs, ls[0].Segments())
}

// TestManyLogs measures the life of a broker's worth of partitions: set
// FERRY_MANY_LOGS to their number (25000 for the goal in the README). It
// creates them, writes a few batches to each, closes them, opens them all
// again in parallel and reads from each, and reports times and the process's
// mapping and file counts. The data goes to a tmpfs where one can be
// mounted, so that the figures are the broker's and not the disk's
// (FERRY_MANY_LOGS_ON_DISK=1 keeps it on the disk).
func TestManyLogs(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FERRY_MANY_LOGS"))
	if n <= 0 {
		t.Skip("set FERRY_MANY_LOGS to a number of logs")
	}
	dir := t.TempDir()
	if os.Getenv("FERRY_MANY_LOGS_ON_DISK") == "" {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4g"); err == nil {
			t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		}
	}
	each := func(fn func(i int)) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 2 * runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					fn(i)
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	logs := make([]*Log, n)
	name := func(i int) string { return filepath.Join(dir, fmt.Sprintf("t-%d", i)) }
	open := func(i int) {
		l, err := Open(name(i), Config{})
		if err != nil {
			t.Error(err)
			return
		}
		logs[i] = l
	}
	created := each(open)
	if t.Failed() {
		return
	}
	fs, ms := processHandles(t)
	t.Logf("created %d logs in %v (%v each); process holds %d files, %d mappings", n, created, created/time.Duration(n), fs, ms)
	written := each(func(i int) {
		appendN(t, logs[i], 3, 2, 100, 0)
		if err := logs[i].Sync(); err != nil {
			t.Error(err)
		}
	})
	fs, ms = processHandles(t)
	t.Logf("wrote and synced 3 batches to each in %v; process holds %d files, %d mappings", written, fs, ms)
	closed := each(func(i int) { logs[i].Close() })
	t.Logf("closed them in %v", closed)
	reopened := each(open)
	fs, ms = processHandles(t)
	t.Logf("opened %d logs after a clean close in %v; process holds %d files, %d mappings", n, reopened, fs, ms)
	read := each(func(i int) {
		v, err := logs[i].Read(0, logs[i].NextOffset(), 1<<20, true)
		if err != nil || len(v.Data) == 0 {
			t.Errorf("read log %d: %v", i, err)
		}
		v.Release()
	})
	fs, ms = processHandles(t)
	files, maps := segment.DefaultFileCache().Held()
	t.Logf("read from each in %v; process holds %d files, %d mappings (cache: %d files, %d mappings)", read, fs, ms, files, maps)
	each(func(i int) { logs[i].Close() })
}

// processHandles counts the process's open files and memory mappings.
func processHandles(t *testing.T) (files, maps int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents), bytes.Count(b, []byte("\n"))
}
