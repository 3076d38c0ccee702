package log

import (
	"math"
	"sync"
	"testing"
)

// TestStats: an fsync round counts its latency, the bytes and the
// batches appended since the round before, in the Stats shared by every
// log given it.
func TestStats(t *testing.T) {
	st := NewStats()
	a := open(t, t.TempDir(), Config{Stats: st, FlushMaxDelayMs: math.MaxInt64})
	b := open(t, t.TempDir(), Config{Stats: st, FlushMaxDelayMs: math.MaxInt64})
	var size int64
	for _, d := range appendN(t, a, 3, 2, 100, 0) {
		size += int64(len(d))
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := st.FsyncLatency.Snapshot(); s.Count != 1 || s.Sum <= 0 {
		t.Fatalf("fsync latency after one sync: %+v", s)
	}
	if s := st.FsyncBytes.Snapshot(); s.Count != 1 || s.Sum != size {
		t.Fatalf("fsync bytes: count %d sum %d, want 1 and %d", s.Count, s.Sum, size)
	}
	if s := st.GroupCommit.Snapshot(); s.Count != 1 || s.Sum != 3 {
		t.Fatalf("group commit: count %d sum %d, want one fsync of 3 batches", s.Count, s.Sum)
	}
	// A sync with nothing new to sync runs no fsync.
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	// The other log counts into the same Stats.
	appendN(t, b, 1, 1, 10, 0)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := st.GroupCommit.Snapshot(); s.Count != 2 || s.Sum != 4 {
		t.Fatalf("group commit after a second log's sync: count %d sum %d, want 2 and 4", s.Count, s.Sum)
	}
}

// TestStatsGroupCommit: concurrent appenders that each sync share
// fsyncs, and the batches counted per fsync add up to every batch.
func TestStatsGroupCommit(t *testing.T) {
	st := NewStats()
	l := open(t, t.TempDir(), Config{Stats: st, FlushMaxDelayMs: math.MaxInt64})
	const writers, each = 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				mu.Lock()
				b, h := gen(l.NextOffset(), 1, 100, 0)
				_, err := l.Append(b, &h)
				mu.Unlock()
				if err == nil {
					err = l.Sync()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s := st.GroupCommit.Snapshot()
	t.Logf("%d batches in %d fsyncs", s.Sum, s.Count)
	if s.Sum != writers*each {
		t.Fatalf("fsyncs made %d batches durable, want %d", s.Sum, writers*each)
	}
	if s.Count >= writers*each {
		t.Fatalf("%d fsyncs for %d batches: none shared", s.Count, writers*each)
	}
}

// TestAppendAllocatesNothingWithStats: counting adds no allocation to an
// append.
func TestAppendAllocatesNothingWithStats(t *testing.T) {
	l := open(t, t.TempDir(), Config{Stats: NewStats(), FlushMaxDelayMs: math.MaxInt64})
	b, h := gen(0, 1, 100, 0)
	appendN(t, l, 1, 1, 100, 0) // the first append writes the checkpoint
	allocs := testing.AllocsPerRun(100, func() {
		hh := h
		if _, err := l.Append(b, &hh); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Append allocates %v times", allocs)
	}
}
