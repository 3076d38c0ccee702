package log

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/record"
)

// TestCleanProperty appends random keyed batches (overwrites, tombstones,
// records without a key, every codec, idempotent producers, transactions
// committed, aborted and left open) and, at
// random, rolls, cleans with offset maps of random sizes, moves the clock
// past delete horizons, closes and reopens the log, kills it (as a
// crashed process) with or without a pass stopped at a random step, and
// reopens it. After each step that can change what is stored, reading
// the log from the start as a read_committed consumer does gives the map
// built from the writes: the newest committed value of each key, at the
// offset it was written. After a full compaction (two passes past every
// delete horizon) each key appears at most once below the active segment
// and the last stable offset, no tombstone is left, and every
// transaction marker there has a batch of its transaction before it. The
// last batch of each producer is never lost, nor an aborted transaction's
// .txnindex entry while its marker stays. The seed is fixed and logged;
// FERRY_CLEAN_SEED replays another.
func TestCleanProperty(t *testing.T) {
	seed := uint64(20260101)
	if s := os.Getenv("FERRY_CLEAN_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = n
	}
	steps := 600
	if testing.Short() {
		steps = 150
	}
	t.Logf("seed %d (FERRY_CLEAN_SEED), %d steps", seed, steps)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	const retention = 5000
	producers := map[int64]int64{} // producer id -> last offset of its newest batch
	seqs := map[int64]int32{}
	tx := newTxnModel()
	cfg := Config{
		SegmentBytes:           int64(1024 + rng.IntN(3072)),
		IndexIntervalBytes:     256,
		Compact:                true,
		NoDelete:               true,
		MinCleanableDirtyRatio: 0.01,
		DeleteRetentionMs:      retention,
		ProducerLastOffsets:    func() (map[int64]int64, bool) { return producers, true },
		LastStableOffset:       func() int64 { return tx.lastStable(math.MaxInt64) },
		Recovered:              tx.recovered,
	}
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	m := newModel()
	now := int64(1_000_000)
	mapSizes := []int64{16 * offsetMapSlotSize, 64 * offsetMapSlotSize, 1 << 20}
	reopen := func(what string) {
		t.Helper()
		var err error
		if l, err = Open(dir, cfg); err != nil {
			t.Fatalf("reopen after %s: %v", what, err)
		}
		checkDir(t, dir)
	}
	clean := func(step cleanStep) error {
		l.clean.hook = func(s cleanStep) bool { return s == step }
		defer func() { l.clean.hook = nil }()
		_, err := l.cleanOnce(context.Background(), time.UnixMilli(now), newOffsetMap(mapSizes[rng.IntN(len(mapSizes))], 0.9), newThrottle(0), true)
		return err
	}
	counts := map[string]int{}
	for i := 0; i < steps; i++ {
		now += int64(rng.IntN(800))
		op := rng.IntN(100)
		switch {
		case op < 55: // append
			if len(tx.first) > 0 && rng.IntN(6) == 0 {
				pid := slices.Sorted(maps.Keys(tx.first))[rng.IntN(len(tx.first))]
				tx.end(t, l, m, pid, rng.IntN(2) == 0, now)
				counts["txn end"]++
				continue
			}
			n := 1 + rng.IntN(8)
			var recs []kv
			for range n {
				k := []byte(fmt.Sprintf("k%d", rng.IntN(30)))
				switch r := rng.IntN(100); {
				case r < 15:
					recs = append(recs, kv{key: k})
				case r < 18:
					recs = append(recs, kv{val: []byte("keyless")})
				default:
					recs = append(recs, kv{k, []byte(fmt.Sprintf("v%d", i))})
				}
			}
			o := batchOpts{codec: rng.IntN(5), ts: now, producer: -1}
			txn := false
			switch rng.IntN(8) {
			case 0, 1:
				o.producer = int64(1 + rng.IntN(3))
				o.seq = seqs[o.producer]
			case 2, 3:
				o.producer = int64(10 + rng.IntN(2))
				o.seq = seqs[o.producer]
				txn = true
			}
			var off int64
			if txn {
				off = tx.data(t, l, o, recs)
			} else {
				off = appendKV(t, l, o, recs...)
				m.apply(off, recs)
			}
			if o.producer >= 0 {
				seqs[o.producer] += int32(n)
				producers[o.producer] = off + int64(n) - 1
			}
			counts["append"]++
			continue
		case op < 60:
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			counts["roll"]++
			continue
		case op < 78:
			l.sealWG.Wait()
			if err := clean(0); err != nil {
				t.Fatalf("step %d: clean: %v", i, err)
			}
			counts["clean"]++
		case op < 84: // a pass killed at a random step
			l.sealWG.Wait()
			step := cleanStep(1 + rng.IntN(int(stepManifestsRemoved)))
			err := clean(step)
			if err != nil && !errors.Is(err, errCrashed) {
				t.Fatalf("step %d: clean: %v", i, err)
			}
			crash(l)
			reopen(fmt.Sprintf("a pass killed at step %d", step))
			counts["killed pass"]++
		case op < 89:
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			reopen("close")
			counts["reopen"]++
		case op < 93:
			crash(l)
			reopen("a kill")
			counts["kill"]++
		case op < 96:
			now += 2 * retention
			continue
		default: // full compaction
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			l.sealWG.Wait()
			for range 2 {
				now += retention + 1
				if _, err := l.cleanOnce(context.Background(), time.UnixMilli(now), newOffsetMap(1<<20, 0.9), newThrottle(0), true); err != nil {
					t.Fatalf("step %d: full compaction: %v", i, err)
				}
			}
			recs := tx.check(t, l, m)
			seen := map[string]bool{}
			for _, r := range recs {
				if r.off >= min(l.active().Base(), tx.lastStable(math.MaxInt64)) || r.batch.IsControl() {
					continue
				}
				if r.tomb || r.nokey || seen[r.key] {
					t.Fatalf("step %d: after a full compaction, %+v below the active segment at %d", i, r, l.active().Base())
				}
				seen[r.key] = true
			}
			tx.checkMarkers(t, l)
			counts["full"]++
		}
		tx.check(t, l, m)
		checkProducers(t, l, producers)
	}
	tx.check(t, l, m)
	t.Logf("operations: %v; %d segments, %d bytes at the end", counts, l.Segments(), l.Size())
}

// checkProducers checks that the newest batch of each producer is in the
// log, with the last offset it was appended with.
func checkProducers(t testing.TB, l *Log, last map[int64]int64) {
	t.Helper()
	found := map[int64]bool{}
	if err := l.Walk(l.LogStartOffset(), func(_ []byte, h *record.Header) bool {
		if off, ok := last[h.ProducerID]; ok && h.LastOffset() == off {
			found[h.ProducerID] = true
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for id, off := range last {
		if !found[id] {
			t.Fatalf("producer %d: its last batch (ending at %d) is gone", id, off)
		}
	}
}
