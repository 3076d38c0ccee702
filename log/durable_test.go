package log

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/faultfile"
)

// TestDurableOffset: the durable offset moves only when a sync returns,
// OnDurable is called after it moved, and a batch nobody syncs is synced
// by the background flush (flush.max.delay.ms).
func TestDurableOffset(t *testing.T) {
	gate := faultfile.NewGate()
	var calls atomic.Int64
	var l *Log
	var seen atomic.Int64 // the durable offset OnDurable saw
	l = open(t, t.TempDir(), Config{
		WrapFile:        gate.Wrap,
		FlushMaxDelayMs: 1,
		OnDurable: func() {
			calls.Add(1)
			seen.Store(l.DurableOffset())
		},
	})
	t.Cleanup(gate.Open) // before Close, which syncs
	gate.Close()
	appendN(t, l, 3, 2, 10, 0) // offsets 0-5
	if l.DurableOffset() != 0 || l.NextOffset() != 6 {
		t.Fatalf("after appends: durable %d, next %d", l.DurableOffset(), l.NextOffset())
	}
	// The background flush reaches the file and is held there.
	select {
	case <-gate.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("no background flush")
	}
	synced := make(chan error, 1)
	go func() { synced <- l.Sync() }()
	if l.DurableOffset() != 0 || calls.Load() != 0 {
		t.Fatalf("while the sync is held: durable %d, %d calls", l.DurableOffset(), calls.Load())
	}
	select {
	case err := <-synced:
		t.Fatalf("Sync returned %v while the fdatasync is held", err)
	default:
	}
	gate.Open()
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if l.DurableOffset() != 6 || calls.Load() == 0 || seen.Load() != 6 {
		t.Fatalf("after the sync: durable %d, %d calls, OnDurable saw %d", l.DurableOffset(), calls.Load(), seen.Load())
	}

	// Nobody syncs: the background flush does, within the bound.
	appendN(t, l, 1, 4, 10, 0)
	deadline := time.Now().Add(10 * time.Second)
	for l.DurableOffset() != 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l.DurableOffset() != 10 || seen.Load() != 10 {
		t.Fatalf("background flush: durable %d, OnDurable saw %d, want 10", l.DurableOffset(), seen.Load())
	}
}
