package log

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/record"
)

// txnLog appends the batches of transactional producers to a log and
// tracks what its owner (package partition) would: the newest data batch
// of each producer (Config.ProducerLastOffsets) and the aborted
// transactions' index entries.
type txnLog struct {
	t     testing.TB
	l     *Log
	last  map[int64]int64 // producer id -> last offset of its newest data batch
	seqs  map[int64]int32
	first map[int64]int64 // producer id -> first offset of its open transaction
	// markers holds the offset of every marker appended, with its
	// producer.
	markers map[int64]int64
}

func newTxnLog(t testing.TB) *txnLog {
	return &txnLog{t: t, last: map[int64]int64{}, seqs: map[int64]int32{}, first: map[int64]int64{}, markers: map[int64]int64{}}
}

func (x *txnLog) producerLastOffsets() (map[int64]int64, bool) { return maps.Clone(x.last), true }

// data appends recs as one transactional batch of producer pid and
// returns its base offset.
func (x *txnLog) data(pid int64, recs ...kv) int64 {
	x.t.Helper()
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		rs[i] = record.Record{Key: r.key, Value: r.val, TimestampDelta: int64(i)}
	}
	b := record.AppendBatch(nil, record.Batch{Attributes: record.Transactional, ProducerID: pid, ProducerEpoch: 1, BaseSequence: x.seqs[pid], Records: rs})
	h, err := record.Validate(b)
	if err != nil {
		x.t.Fatal(err)
	}
	off, err := x.l.Append(b, &h)
	if err != nil {
		x.t.Fatal(err)
	}
	x.seqs[pid] += int32(len(recs))
	x.last[pid] = h.LastOffset()
	if _, ok := x.first[pid]; !ok {
		x.first[pid] = off
	}
	return off
}

// end appends the marker ending pid's transaction and, for an abort, its
// index entry (last stable offset: the oldest transaction still open).
func (x *txnLog) end(pid int64, commit bool) int64 {
	x.t.Helper()
	b := record.AppendControlBatch(nil, pid, 1, commit, 0, 1)
	h, err := record.Validate(b)
	if err != nil {
		x.t.Fatal(err)
	}
	off, err := x.l.Append(b, &h)
	if err != nil {
		x.t.Fatal(err)
	}
	first, ok := x.first[pid]
	delete(x.first, pid)
	if !commit && ok {
		if err := x.l.AppendAbortedTxn(AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: off, LastStableOffset: x.lastStable(off + 1)}); err != nil {
			x.t.Fatal(err)
		}
	}
	x.markers[off] = pid
	return off
}

// lastStable is the first offset of the oldest open transaction, or end.
func (x *txnLog) lastStable(end int64) int64 {
	for _, f := range x.first {
		end = min(end, f)
	}
	return end
}

// controlBatches returns the control batches in the log by offset.
func controlBatches(t testing.TB, l *Log) map[int64]record.Header {
	t.Helper()
	out := map[int64]record.Header{}
	if err := l.Walk(l.LogStartOffset(), func(_ []byte, h *record.Header) bool {
		if h.IsControl() {
			out[h.BaseOffset] = *h
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCleanTxnMarkers: a transaction marker (commit or abort) stays while
// a batch of its transaction stays, even one emptied because it is its
// producer's newest; once none does, a pass gives it a delete horizon of
// delete.retention.ms and the first pass past the horizon removes it, an
// abort marker with its .txnindex entry. A marker at or past the last
// stable offset is not touched. No offset changes, and the log reads the
// same before and after, across a reopen.
func TestCleanTxnMarkers(t *testing.T) {
	dir := t.TempDir()
	x := newTxnLog(t)
	var lso int64 = math.MaxInt64
	cfg := compactCfg() // delete.retention.ms 1000
	cfg.ProducerLastOffsets = x.producerLastOffsets
	cfg.LastStableOffset = func() int64 { return lso }
	var err error
	if x.l, err = Open(dir, cfg); err != nil {
		t.Fatal(err)
	}
	defer func() { x.l.Close() }()
	m := newModel()
	commit := func(pid int64, recs ...kv) int64 {
		m.apply(x.data(pid, recs...), recs)
		return x.end(pid, true)
	}
	// Producer 1: a transaction every record of which is superseded
	// later, then one whose records stay.
	superseded := commit(1, put("a", "1"), put("b", "1"))
	// Producer 2: an aborted transaction, then a committed one, so the
	// aborted batch is not its newest.
	x.data(2, put("a", "aborted"))
	aborted := x.end(2, false)
	staying := commit(1, put("c", "1"))
	commit(2, put("e", "1"))
	// Producer 3: a transaction whose only batch is superseded but is
	// its producer's newest: it stays, emptied, and so does its marker.
	emptied := commit(3, put("d", "1"))
	recs := []kv{put("a", "2"), put("b", "2"), put("d", "2")}
	m.apply(appendKV(t, x.l, batchOpts{producer: -1}, recs...), recs)
	// Producer 5's transaction is superseded too, but its marker comes
	// after producer 4's transaction, still open: past the last stable
	// offset.
	m.apply(x.data(5, put("f", "1")), []kv{put("f", "1")})
	recs = []kv{put("f", "2")}
	m.apply(appendKV(t, x.l, batchOpts{producer: -1}, recs...), recs)
	lso = x.data(4, put("g", "open"))
	m.apply(lso, []kv{put("g", "open")}) // read as a read_uncommitted consumer does
	pastLSO := x.end(5, true)
	fillKeys(t, x.l, m, 40, 3, 1)
	waitSealed(t, x.l)
	if last := x.l.segments[len(x.l.segments)-1]; last.Base() <= lso {
		t.Fatal("the test needs the open transaction in a sealed segment")
	}
	offsets := func() []int64 {
		var offs []int64
		for _, r := range readRecords(t, x.l) {
			offs = append(offs, r.off)
		}
		return offs
	}
	// check reads the log: the same view, markers with and without a
	// horizon as wanted, the others gone, and the aborted transactions'
	// entries.
	check := func(when string, horizon, gone []int64, entries []int64) {
		t.Helper()
		checkView(t, x.l, m)
		ctrl := controlBatches(t, x.l)
		for off := range x.markers {
			h, ok := ctrl[off]
			_, has := h.DeleteHorizonMs()
			switch {
			case slices.Contains(gone, off):
				if ok {
					t.Errorf("%s: the marker at %d stayed", when, off)
				}
			case !ok:
				t.Errorf("%s: the marker at %d went", when, off)
			case has != slices.Contains(horizon, off):
				t.Errorf("%s: the marker at %d has a delete horizon: %v", when, off, has)
			case h.RecordCount != 1:
				t.Errorf("%s: the marker at %d holds %d records", when, off, h.RecordCount)
			}
		}
		if got := abortedIDs(t, x.l, 0, x.l.NextOffset()); !slices.Equal(got, entries) {
			t.Errorf("%s: aborted transactions %v, want %v", when, got, entries)
		}
	}
	check("before cleaning", nil, nil, []int64{2})
	cleanAt(t, x.l, 10, bigMap())
	before := offsets()
	check("after the first pass", []int64{superseded, aborted}, nil, []int64{2})
	if h := x.l.clean.horizon.Load(); h != 1010 {
		t.Fatalf("the cleaner checkpoint's delete horizon is %d, want 1010", h)
	}
	if p, _, _, _ := x.l.planClean(1009); p.horizonDue {
		t.Fatal("a pass is due before the markers' horizon")
	}
	if p, _, _, _ := x.l.planClean(1010); !p.horizonDue {
		t.Fatal("no pass is due at the markers' horizon")
	}
	cleanAt(t, x.l, 500, bigMap())
	check("before the horizon", []int64{superseded, aborted}, nil, []int64{2})
	cleanAt(t, x.l, 1010, bigMap())
	check("past the horizon", nil, []int64{superseded, aborted}, nil)
	after := offsets()
	for _, off := range after {
		if !slices.Contains(before, off) {
			t.Fatalf("offset %d read after the markers went was not there before", off)
		}
	}
	if len(after) != len(before)-2 {
		t.Fatalf("%d records and markers before the markers went, %d after", len(before), len(after))
	}
	for _, off := range []int64{staying, emptied, pastLSO} {
		if !slices.Contains(after, off) {
			t.Fatalf("marker %d went", off)
		}
	}
	if err := x.l.Close(); err != nil {
		t.Fatal(err)
	}
	if x.l, err = Open(dir, cfg); err != nil {
		t.Fatal(err)
	}
	check("after a reopen", nil, []int64{superseded, aborted}, nil)
	checkDir(t, dir)
	// Producer 3 writes again: its emptied batch is no longer its
	// newest, goes, and so, later, does its marker.
	commit(3, put("h", "1"))
	fillKeys(t, x.l, m, 20, 3, 1)
	waitSealed(t, x.l)
	cleanAt(t, x.l, 2000, bigMap())
	check("producer 3 wrote again", []int64{emptied}, []int64{superseded, aborted}, nil)
	cleanAt(t, x.l, 3000, bigMap())
	check("producer 3 wrote again, past the horizon", nil, []int64{superseded, aborted, emptied}, nil)
}

// TestCleanTxnMarkerKeepsEntry: an abort marker whose transaction keeps
// a batch (its producer's newest, emptied) stays with its .txnindex
// entry, pass after pass, so a read_committed reader still skips it.
func TestCleanTxnMarkerKeepsEntry(t *testing.T) {
	x := newTxnLog(t)
	cfg := compactCfg()
	cfg.ProducerLastOffsets = x.producerLastOffsets
	var err error
	if x.l, err = Open(t.TempDir(), cfg); err != nil {
		t.Fatal(err)
	}
	defer x.l.Close()
	m := newModel()
	x.data(7, put("a", "aborted"))
	marker := x.end(7, false)
	fillKeys(t, x.l, m, 40, 3, 1)
	waitSealed(t, x.l)
	for _, now := range []int64{10, 2000, 4000} {
		cleanAt(t, x.l, now, bigMap())
		checkView(t, x.l, m)
		h, ok := controlBatches(t, x.l)[marker]
		if !ok {
			t.Fatalf("at %d: the abort marker went", now)
		}
		if _, has := h.DeleteHorizonMs(); has {
			t.Fatalf("at %d: the abort marker has a delete horizon", now)
		}
		if got := abortedIDs(t, x.l, 0, x.l.NextOffset()); !slices.Equal(got, []int64{7}) {
			t.Fatalf("at %d: aborted transactions %v", now, got)
		}
	}
	var p7 []record.Header
	x.l.Walk(0, func(_ []byte, h *record.Header) bool {
		if h.ProducerID == 7 && !h.IsControl() {
			p7 = append(p7, *h)
		}
		return true
	})
	if len(p7) != 1 || p7[0].RecordCount != 0 {
		t.Fatalf("producer 7's data batches: %+v", p7)
	}
}

// txnModel follows the transactions of a property test as their owner
// (package partition) would.
type txnModel struct {
	first   map[int64]int64        // producer id -> first offset of its open transaction
	pending map[int64][]pendingRec // producer id -> its open transaction's records
	entries map[int64]AbortedTxn   // abort marker offset -> its index entry
}

// pendingRec is a record of a transaction not yet decided.
type pendingRec struct {
	off int64
	rec kv
}

func newTxnModel() *txnModel {
	return &txnModel{first: map[int64]int64{}, pending: map[int64][]pendingRec{}, entries: map[int64]AbortedTxn{}}
}

// lastStable is the first offset of the oldest open transaction, or end.
func (x *txnModel) lastStable(end int64) int64 {
	for _, f := range x.first {
		end = min(end, f)
	}
	return end
}

// data appends recs as a transactional batch of o.producer, in its open
// transaction or a new one.
func (x *txnModel) data(t testing.TB, l *Log, o batchOpts, recs []kv) int64 {
	t.Helper()
	o.txn = true
	off := appendKV(t, l, o, recs...)
	if _, ok := x.first[o.producer]; !ok {
		x.first[o.producer] = off
	}
	for i, r := range recs {
		x.pending[o.producer] = append(x.pending[o.producer], pendingRec{off + int64(i), r})
	}
	return off
}

// end appends the marker of pid's open transaction: a commit applies its
// records to m (where no newer record of the key came before the
// commit), an abort adds its index entry. It returns the marker's offset.
func (x *txnModel) end(t testing.TB, l *Log, m *model, pid int64, commit bool, ts int64) int64 {
	t.Helper()
	b := record.AppendControlBatch(nil, pid, 0, commit, 0, ts)
	h, err := record.Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	off, err := l.Append(b, &h)
	if err != nil {
		t.Fatal(err)
	}
	first := x.first[pid]
	delete(x.first, pid)
	if commit {
		for _, p := range x.pending[pid] {
			if o, ok := m.offs[string(p.rec.key)]; p.rec.key != nil && (!ok || o < p.off) {
				m.apply(p.off, []kv{p.rec})
			}
		}
	} else {
		e := AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: off, LastStableOffset: x.lastStable(off + 1)}
		if err := l.AppendAbortedTxn(e); err != nil {
			t.Fatal(err)
		}
		x.entries[off] = e
	}
	delete(x.pending, pid)
	return off
}

// recovered is Config.Recovered: it adds back the entries of the abort
// markers from from on.
func (x *txnModel) recovered(l *Log, from int64) error {
	var err error
	werr := l.Walk(from, func(_ []byte, h *record.Header) bool {
		if e, ok := x.entries[h.BaseOffset]; ok && h.IsControl() && h.BaseOffset >= from {
			err = l.AppendAbortedTxn(e)
		}
		return err == nil
	})
	return errors.Join(werr, err)
}

// check reads the log as a read_committed consumer does (the records of
// aborted transactions, by the log's index, and of open ones left out)
// and checks that it gives the model; and that every entry of the
// aborted-transaction index has its marker in the log.
func (x *txnModel) check(t testing.TB, l *Log, m *model) []readRec {
	t.Helper()
	recs := readRecords(t, l)
	aborted, err := l.AbortedTxns(l.LogStartOffset(), l.NextOffset(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, offs := map[string]string{}, map[string]int64{}
	for _, r := range recs {
		h := &r.batch
		if h.IsControl() || r.nokey {
			continue
		}
		if h.IsTransactional() {
			if f, ok := x.first[h.ProducerID]; ok && r.off >= f {
				continue
			}
			if slices.ContainsFunc(aborted, func(e AbortedTxn) bool {
				return e.ProducerID == h.ProducerID && e.FirstOffset <= r.off && r.off <= e.LastOffset
			}) {
				continue
			}
		}
		if r.tomb {
			delete(got, r.key)
		} else {
			got[r.key] = r.val
		}
		offs[r.key] = r.off
	}
	for k, v := range m.vals {
		if got[k] != v || offs[k] != m.offs[k] {
			t.Fatalf("key %q reads %q at %d, want %q at %d", k, got[k], offs[k], v, m.offs[k])
		}
	}
	for k := range got {
		if _, ok := m.vals[k]; !ok {
			t.Fatalf("key %q reads %q, it was deleted or never committed", k, got[k])
		}
	}
	ctrl := controlBatches(t, l)
	for _, e := range aborted {
		if h, ok := ctrl[e.LastOffset]; !ok || h.ProducerID != e.ProducerID {
			t.Fatalf("aborted transaction %+v: its marker is not in the log", e)
		}
	}
	return recs
}

// checkMarkers checks, after a full compaction, that every marker below
// the last stable offset and the active segment has a batch of its
// transaction before it: the others are gone.
func (x *txnModel) checkMarkers(t testing.TB, l *Log) {
	t.Helper()
	limit := min(x.lastStable(math.MaxInt64), l.active().Base())
	batch := map[int64]bool{}
	var bad []int64
	if err := l.Walk(l.LogStartOffset(), func(_ []byte, h *record.Header) bool {
		switch {
		case !h.IsTransactional():
		case !h.IsControl():
			batch[h.ProducerID] = true
		default:
			if h.BaseOffset < limit && !batch[h.ProducerID] {
				bad = append(bad, h.BaseOffset)
			}
			delete(batch, h.ProducerID)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("markers without a batch of their transaction left after a full compaction: %v", bad)
	}
}

// TestCleanTxnMarkersCrash stops the pass that removes an abort marker
// and a commit marker at each of its steps as if the process died there
// and reopens the log: a read_committed reader reads the same, the abort
// marker and its .txnindex entry are both there or both gone, and the
// next pass removes both markers.
func TestCleanTxnMarkersCrash(t *testing.T) {
	steps := []cleanStep{stepCleaned, stepCommitted, stepOldRemoved, stepLogRenamed, stepSwapped, stepManifestsRemoved}
	for _, step := range steps {
		t.Run(fmt.Sprintf("step%d", step), func(t *testing.T) {
			dir := t.TempDir()
			x := newTxnModel()
			last := map[int64]int64{}
			cfg := compactCfg()
			cfg.ProducerLastOffsets = func() (map[int64]int64, bool) { return maps.Clone(last), true }
			cfg.Recovered = x.recovered
			l, err := Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := newModel()
			seqs := map[int64]int32{}
			txn := func(pid int64, commit bool, recs ...kv) int64 {
				off := x.data(t, l, batchOpts{producer: pid, seq: seqs[pid]}, recs)
				seqs[pid] += int32(len(recs))
				last[pid] = off + int64(len(recs)) - 1
				return x.end(t, l, m, pid, commit, 1)
			}
			gone := []int64{txn(10, false, put("a", "aborted")), txn(11, true, put("b", "1"))}
			recs := []kv{put("b", "2")}
			m.apply(appendKV(t, l, batchOpts{producer: -1}, recs...), recs)
			// Newer batches of both producers, so their first ones go.
			txn(10, true, put("c", "1"))
			txn(11, true, put("d", "1"))
			fillKeys(t, l, m, 40, 3, 1)
			waitSealed(t, l)
			cleanAt(t, l, 10, bigMap()) // the first two markers get a horizon
			markersThere := func(l *Log) (abort, commit bool) {
				ctrl := controlBatches(t, l)
				_, abort = ctrl[gone[0]]
				_, commit = ctrl[gone[1]]
				return abort, commit
			}
			if a, c := markersThere(l); !a || !c {
				t.Fatalf("markers at %v after the first pass: abort %v, commit %v", gone, a, c)
			}
			l.clean.hook = func(s cleanStep) bool { return s == step }
			if _, err := l.cleanOnce(context.Background(), time.UnixMilli(2000), bigMap(), newThrottle(0), true); !errors.Is(err, errCrashed) {
				t.Fatalf("the pass removing the markers did not reach step %d (%v)", step, err)
			}
			crash(l)
			if l, err = Open(dir, cfg); err != nil {
				t.Fatalf("reopen after a crash at step %d: %v", step, err)
			}
			defer func() { l.Close() }()
			checkDir(t, dir)
			x.check(t, l, m)
			abort, _ := markersThere(l)
			if entries := abortedIDs(t, l, 0, l.NextOffset()); abort != slices.Contains(entries, 10) {
				t.Fatalf("after a crash at step %d: abort marker there %v, aborted transactions %v", step, abort, entries)
			}
			cleanAt(t, l, 3000, bigMap())
			x.check(t, l, m)
			if a, c := markersThere(l); a || c {
				t.Fatalf("markers at %v after the pass past their horizon: abort %v, commit %v", gone, a, c)
			}
			if entries := abortedIDs(t, l, 0, l.NextOffset()); len(entries) != 0 {
				t.Fatalf("aborted transactions left: %v", entries)
			}
		})
	}
}
