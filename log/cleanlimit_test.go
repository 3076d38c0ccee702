package log

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCleanLimit: with Config.CleanLimit, a pass cleans only the segments
// wholly below the limit (a replica's high watermark): a newer record of
// a key past it, which a truncation may still remove, does not make the
// older one go. Once the limit passes them, they are cleaned.
func TestCleanLimit(t *testing.T) {
	cfg := compactCfg()
	var limit atomic.Int64
	cfg.CleanLimit = limit.Load
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 40, 10, 1000)
	waitSealed(t, l)
	if l.Segments() < 4 {
		t.Fatalf("%d segments", l.Segments())
	}
	// The limit inside the second segment: only the first may be cleaned,
	// with a map of its own keys only.
	segs := l.segments
	limit.Store(segs[1].Base() + 1)
	st := cleanAt(t, l, 2000, bigMap())
	if st.end > segs[1].Base() {
		t.Fatalf("a pass with the limit at %d cleaned up to %d", limit.Load(), st.end)
	}
	// Every record at or past the second segment is still there.
	n := 0
	for _, r := range readRecords(t, l) {
		if r.off >= segs[1].Base() {
			n++
		}
	}
	if want := int(l.NextOffset() - segs[1].Base()); n != want {
		t.Fatalf("%d records past the limit's segment, want %d: cleaned past the limit", n, want)
	}
	// The limit at the log end: cleaned up to the active segment.
	limit.Store(l.NextOffset())
	st = cleanAt(t, l, 2000, bigMap())
	if st.end != l.active().Base() {
		t.Fatalf("pass %+v, active segment at %d", st, l.active().Base())
	}
	checkView(t, l, m)
}

// TestTruncateWaitsForCleaning: a replica's truncation (PauseCleaning,
// TruncateFullyAndStartAt, ResumeCleaning) started while a cleaning pass
// runs waits for the pass to end, so that the pass never swaps in
// segments built from what the truncation removed; the log is then
// empty at the new start, also after a reopen.
func TestTruncateWaitsForCleaning(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, compactCfg())
	fillKeys(t, l, newModel(), 40, 10, 1)
	waitSealed(t, l)
	start := l.NextOffset() + 100
	var truncated atomic.Bool
	done := make(chan error, 1)
	var once sync.Once
	l.clean.hook = func(s cleanStep) bool {
		if s != stepCleaned {
			return false
		}
		once.Do(func() { // the first group's
			go func() {
				l.PauseCleaning()
				defer l.ResumeCleaning()
				err := l.TruncateFullyAndStartAt(start)
				truncated.Store(true)
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			if truncated.Load() {
				t.Error("truncated while a cleaning pass ran")
			}
		})
		return false
	}
	cleanAt(t, l, 10, bigMap())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.clean.hook = nil
	check := func(l *Log) {
		t.Helper()
		if l.LogStartOffset() != start || l.NextOffset() != start || len(readRecords(t, l)) != 0 {
			t.Fatalf("log %d-%d with %d records, want empty at %d", l.LogStartOffset(), l.NextOffset(), len(readRecords(t, l)), start)
		}
	}
	check(l)
	checkDir(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(open(t, dir, compactCfg()))
}
