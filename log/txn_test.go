package log

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ferrymq/ferry/record"
)

func abortedIDs(t *testing.T, l *Log, from, to int64) []int64 {
	t.Helper()
	got, err := l.AbortedTxns(from, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, e := range got {
		ids = append(ids, e.ProducerID)
	}
	return ids
}

// TestAbortedTxns checks that entries go to the segment holding their
// marker, are found across segments, survive a clean reopen and go with
// their segment.
func TestAbortedTxns(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 1000}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// One aborted transaction per segment, whose first offset is in the
	// segment before.
	var markers []int64
	for i := 0; i < 4; i++ {
		appendN(t, l, 8, 1, 50, 0)
		if l.Segments() != i+1 {
			t.Fatalf("%d segments after %d rounds", l.Segments(), i)
		}
		m := l.NextOffset() - 1
		markers = append(markers, m)
		e := AbortedTxn{ProducerID: int64(i), FirstOffset: max(m-10, 0), LastOffset: m, LastStableOffset: m + 1}
		if err := l.AppendAbortedTxn(e); err != nil {
			t.Fatal(err)
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AppendAbortedTxn(AbortedTxn{LastOffset: l.NextOffset()}); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("entry past the log end: %v", err)
	}
	check := func(l *Log) {
		t.Helper()
		if got := abortedIDs(t, l, 0, l.NextOffset()); !slices.Equal(got, []int64{0, 1, 2, 3}) {
			t.Fatalf("all: %v", got)
		}
		// From inside the second transaction to just past its marker.
		if got := abortedIDs(t, l, markers[1]-2, markers[1]+1); !slices.Equal(got, []int64{1}) {
			t.Fatalf("second: %v", got)
		}
		// Below the third's first offset: the second's marker is behind,
		// the third starts later.
		if got := abortedIDs(t, l, markers[1]+1, markers[2]-10); len(got) != 0 {
			t.Fatalf("between: %v", got)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, cfg)
	check(l)
	// Retention takes the first two segments and their indexes.
	if err := l.DeleteRecords(markers[1] + 1); err != nil {
		t.Fatal(err)
	}
	if got := abortedIDs(t, l, 0, l.NextOffset()); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("after DeleteRecords: %v", got)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.txnindex")); len(m) != 2 {
		t.Fatalf("txnindex files left: %v", m)
	}
}

// TestRecoveredRebuildsTxnIndex checks that an unclean open calls
// Config.Recovered with the first scanned segment before the recovery
// point moves past it, and that what it adds is kept.
func TestRecoveredRebuildsTxnIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 1000}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 20, 1, 50, 0)
	// A marker in the active segment: its scan finds a control batch.
	marker := record.AppendControlBatch(nil, 9, 0, false, 0, 0)
	mh, err := record.Validate(marker)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(marker, &mh); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Seals in the background move the recovery point to the active
	// segment; wait for them.
	l.sealWG.Wait()
	active := l.active().Base()
	if err := l.AppendAbortedTxn(AbortedTxn{ProducerID: 9, FirstOffset: 1, LastOffset: l.NextOffset() - 1, LastStableOffset: l.NextOffset()}); err != nil {
		t.Fatal(err)
	}
	// Abandoned without Close: an unclean stop.
	t.Cleanup(func() { l.Close() })
	var from int64 = -1
	cfg.Recovered = func(r *Log, f int64) error {
		from = f
		if got := abortedIDs(t, r, 0, r.NextOffset()); len(got) != 0 {
			t.Errorf("scanned segment kept its entries: %v", got)
		}
		return r.AppendAbortedTxn(AbortedTxn{ProducerID: 10, FirstOffset: 2, LastOffset: r.NextOffset() - 1, LastStableOffset: r.NextOffset()})
	}
	l2, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if from != active {
		t.Fatalf("Recovered from %d, want the active segment %d", from, active)
	}
	if got := abortedIDs(t, l2, 0, l2.NextOffset()); !slices.Equal(got, []int64{10}) {
		t.Fatalf("after recovery: %v", got)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	called := false
	cfg.Recovered = func(*Log, int64) error { called = true; return nil }
	l3 := open(t, dir, cfg)
	if called {
		t.Fatal("Recovered called on a clean open")
	}
	if got := abortedIDs(t, l3, 0, l3.NextOffset()); !slices.Equal(got, []int64{10}) {
		t.Fatalf("after a clean reopen: %v", got)
	}

	// An error from Recovered fails Open.
	l3.Close()
	os.Remove(filepath.Join(dir, checkpointName))
	cfg.Recovered = func(*Log, int64) error { return errors.New("no") }
	if l4, err := Open(dir, cfg); err == nil {
		l4.Close()
		t.Fatal("Open succeeded although Recovered failed")
	}

	// Scanned segments without a control batch have nothing to rebuild:
	// from is the log end.
	dir = t.TempDir()
	l5, err := Open(dir, Config{SegmentBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l5, 5, 1, 50, 0)
	if err := l5.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, checkpointName))
	cfg.Recovered = func(r *Log, f int64) error { from = f; return nil }
	l6 := open(t, dir, cfg)
	if from != l6.NextOffset() {
		t.Fatalf("Recovered from %d without markers, want the log end %d", from, l6.NextOffset())
	}
}
