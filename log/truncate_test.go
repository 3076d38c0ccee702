package log

import (
	"testing"

	"github.com/ferrymq/ferry/record"
)

func appendPairs(t *testing.T, l *Log, n int) {
	t.Helper()
	for range n {
		b := record.AppendBatch(nil, record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: []record.Record{{Value: make([]byte, 100)}, {Value: []byte("x")}}})
		h, err := record.Validate(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(b, &h); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTruncateTo(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Config{SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	appendPairs(t, l, 40) // 80 records over several segments
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	// A reader holding a view of the tail keeps it across the cut.
	v, err := l.Read(70, l.NextOffset(), 1<<20, true)
	if err != nil || len(v.Data) == 0 {
		t.Fatal(err, len(v.Data))
	}
	held := append([]byte(nil), v.Data...)
	end, err := l.TruncateTo(31) // inside the batch 30-31
	if err != nil {
		t.Fatal(err)
	}
	if end != 30 || l.NextOffset() != 30 || l.DurableOffset() != 30 {
		t.Fatalf("end %d next %d durable %d, want 30", end, l.NextOffset(), l.DurableOffset())
	}
	if string(v.Data) != string(held) {
		t.Fatal("a view taken before the cut changed")
	}
	v.Release()
	if l.Segments() >= segs {
		t.Fatalf("segments %d, were %d", l.Segments(), segs)
	}
	appendPairs(t, l, 5)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.NextOffset() != 40 {
		t.Fatalf("next %d, want 40", l.NextOffset())
	}
	var offs []int64
	if err := l.Walk(0, func(b []byte, h *record.Header) bool { offs = append(offs, h.BaseOffset); return true }); err != nil {
		t.Fatal(err)
	}
	for i, o := range offs {
		if o != int64(2*i) {
			t.Fatalf("batch %d at %d", i, o)
		}
	}
	// Unclean: reopen recovers the truncated and appended log.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, Config{SegmentBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.NextOffset() != 40 {
		t.Fatalf("after reopen next %d, want 40", l.NextOffset())
	}
	if err := l.TruncateFullyAndStartAt(100); err != nil {
		t.Fatal(err)
	}
	if l.LogStartOffset() != 100 || l.NextOffset() != 100 {
		t.Fatalf("start %d next %d", l.LogStartOffset(), l.NextOffset())
	}
	appendPairs(t, l, 1)
	if err := l.Sync(); err != nil || l.NextOffset() != 102 {
		t.Fatal(err, l.NextOffset())
	}
}
