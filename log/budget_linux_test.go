package log

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	dir := t.TempDir()
	cache := segment.NewFileCache(16, 16)
	cfg := Config{Files: cache}
	want := manySegments(t, dir, 1000, cfg)
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
	dir := t.TempDir()
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
