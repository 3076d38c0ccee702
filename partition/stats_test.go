package partition

import (
	"math"
	"testing"

	"github.com/ferrymq/ferry/log"
)

// TestStats: appends count bytes and records in (a retried batch of an
// idempotent producer does not), CountFetched counts them out, and the
// offsets, size and fsyncs are those of the log.
func TestStats(t *testing.T) {
	st := NewStorageStats()
	p := openP(t, t.TempDir(), Config{Log: log.Config{Stats: st, FlushMaxDelayMs: math.MaxInt64}})
	b1 := batch(bopt{n: 3})
	b2 := batch(bopt{pid: 7, epoch: 0, seq: 0, n: 2})
	size := int64(len(b1) + len(b2))
	for _, b := range [][]byte{b1, b2} {
		if _, err := p.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	// The producer retries its batch: answered, not stored, not counted.
	if res, err := p.Append(batch(bopt{pid: 7, epoch: 0, seq: 0, n: 2})); err != nil || !res.Duplicate {
		t.Fatalf("retry: %+v %v", res, err)
	}
	s := p.Stats()
	if s.BytesIn != size || s.RecordsIn != 5 {
		t.Fatalf("in: %d bytes %d records, want %d and 5", s.BytesIn, s.RecordsIn, size)
	}
	if s.LogEndOffset != 5 || s.HighWatermark != 0 || s.LogStartOffset != 0 || s.Size != size || s.Segments != 1 || s.Failed {
		t.Fatalf("before sync: %+v", s)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.HighWatermark != 5 {
		t.Fatalf("high watermark after sync %d, want 5", s.HighWatermark)
	}
	if f := st.FsyncBytes.Snapshot(); f.Count != 1 || f.Sum != size {
		t.Fatalf("fsync bytes %+v, want one fsync of %d", f, size)
	}
	p.CountFetched(size, 5)
	p.CountFetched(10, 1)
	if s := p.Stats(); s.BytesOut != size+10 || s.RecordsOut != 6 {
		t.Fatalf("out: %d bytes %d records", s.BytesOut, s.RecordsOut)
	}
	// Refused batches count nothing.
	if _, err := p.Append([]byte("garbage")); err == nil {
		t.Fatal("garbage appended")
	}
	if s := p.Stats(); s.BytesIn != size || s.RecordsIn != 5 {
		t.Fatalf("a refused batch was counted: %+v", s)
	}
}
