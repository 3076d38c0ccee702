package partition

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// keyed builds a batch of records with keys (nil: no key), compressed
// with codec, for producer pid (0: none) from sequence seq.
func keyed(t *testing.T, codec int, pid int64, seq int32, keys ...[]byte) []byte {
	t.Helper()
	recs := make([]record.Record, len(keys))
	for i, k := range keys {
		recs[i] = record.Record{Key: k, Value: []byte("v")}
	}
	b := record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs}
	if pid != 0 {
		b.ProducerID, b.ProducerEpoch, b.BaseSequence = pid, 0, seq
	}
	out, err := record.Recompress(record.AppendBatch(nil, b), codec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCompactedTopicNeedsKeys: a compacted topic refuses a batch holding
// a record without a key (INVALID_RECORD), compressed or not, and stores
// nothing of it; keys may be empty. Other topics take such records.
func TestCompactedTopicNeedsKeys(t *testing.T) {
	compacted := openP(t, t.TempDir(), Config{Log: log.Config{Compact: true}})
	plain := openP(t, t.TempDir(), Config{})
	for _, codec := range []int{record.CodecNone, record.CodecGzip, record.CodecZstd} {
		if _, err := compacted.Append(keyed(t, codec, 0, 0, []byte("a"), []byte{})); err != nil {
			t.Fatalf("codec %d: keyed batch: %v", codec, err)
		}
		end := compacted.LogEndOffset()
		_, err := compacted.Append(keyed(t, codec, 0, 0, []byte("a"), nil))
		if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "without a key") {
			t.Fatalf("codec %d: keyless record on a compacted topic: %v", codec, err)
		}
		if compacted.LogEndOffset() != end {
			t.Fatal("a refused batch was stored")
		}
		if _, err := plain.Append(keyed(t, codec, 0, 0, nil)); err != nil {
			t.Fatalf("codec %d: keyless record on a plain topic: %v", codec, err)
		}
	}
	// compact,delete too, and as soon as the config changes.
	plain.SetConfig(Config{Log: log.Config{Compact: true}})
	if _, err := plain.Append(keyed(t, record.CodecNone, 0, 0, nil)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("after cleanup.policy became compact: %v", err)
	}
}

// TestCompactionKeepsProducerState: a producer whose records compaction
// removed keeps its sequence: with every producer snapshot gone, the
// state rebuilt from the compacted log still knows the last batch, so a
// retry of it is a duplicate and the next sequence is taken.
func TestCompactionKeepsProducerState(t *testing.T) {
	dir := t.TempDir()
	c := log.NewCleaner(log.CleanerConfig{Backoff: 5 * time.Millisecond, DedupeBufferSize: 1 << 20})
	defer c.Close()
	cfg := Config{Log: log.Config{SegmentBytes: 1024, Compact: true, NoDelete: true, MinCleanableDirtyRatio: 0.01, Cleaner: c}}
	p, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Producer 5 writes key "p" three times; another client overwrites
	// it and writes enough to fill sealed segments.
	var last []byte
	for seq := range 3 {
		last = keyed(t, record.CodecNone, 5, int32(seq), []byte("p"))
		if _, err := p.Append(append([]byte(nil), last...)); err != nil {
			t.Fatal(err)
		}
	}
	lastOff := p.LogEndOffset() - 1
	for i := range 200 {
		if _, err := p.Append(keyed(t, record.CodecNone, 0, 0, []byte("p"), []byte(fmt.Sprint(i%7)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	c.Wake()
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Passes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("never cleaned")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var p5 []record.Header
	p.Walk(0, func(_ []byte, h *record.Header) bool {
		if h.ProducerID == 5 {
			p5 = append(p5, *h)
		}
		return true
	})
	if len(p5) != 1 || p5[0].LastOffset() != lastOff || p5[0].RecordCount != 0 {
		t.Fatalf("producer 5's batches after cleaning: %+v", p5)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "*.snapshot"))
	for _, s := range snaps {
		os.Remove(s)
	}
	p, err = Open(dir, Config{Log: log.Config{Compact: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res, err := p.Append(last)
	if err != nil || !res.Duplicate || res.BaseOffset != lastOff {
		t.Fatalf("retry of the last batch: %+v %v", res, err)
	}
	if _, err := p.Append(keyed(t, record.CodecNone, 5, 3, []byte("p"))); err != nil {
		t.Fatalf("next sequence: %v", err)
	}
}

// TestCloseWhileCleaning closes partitions while the cleaner works on
// them: every Close returns, cleanly, and the data reopens.
func TestCloseWhileCleaning(t *testing.T) {
	c := log.NewCleaner(log.CleanerConfig{Threads: 2, Backoff: time.Millisecond, DedupeBufferSize: 1 << 20})
	defer c.Close()
	for round := range 20 {
		dir := t.TempDir()
		cfg := Config{Log: log.Config{SegmentBytes: 1024, Compact: true, NoDelete: true, MinCleanableDirtyRatio: 0.01, Cleaner: c}}
		p, err := Open(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if _, err := p.Append(keyed(t, record.CodecNone, 9, int32(i), []byte(fmt.Sprint(i%5)))); err != nil {
				t.Fatal(err)
			}
		}
		c.Wake()
		time.Sleep(time.Duration(round%4) * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- p.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: close: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close did not return while the cleaner ran", round)
		}
		p2 := openP(t, dir, Config{Log: log.Config{Compact: true}})
		if p2.LogEndOffset() != 100 {
			t.Fatalf("round %d: log end %d after reopen", round, p2.LogEndOffset())
		}
	}
}
