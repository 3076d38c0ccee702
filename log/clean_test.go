package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// kv is one keyed record to append; a nil val is a tombstone, a nil key
// a record without a key.
type kv struct {
	key, val []byte
}

func put(k, v string) kv { return kv{[]byte(k), []byte(v)} }
func del(k string) kv    { return kv{key: []byte(k)} }

// batchOpts shapes a test batch.
type batchOpts struct {
	codec    int
	ts       int64
	producer int64 // -1: none
	epoch    int16
	seq      int32
	txn      bool // transactional (needs a producer)
}

// kvBatch builds a validated batch of recs. t may be nil (a child
// process): it panics then.
func kvBatch(t testing.TB, recs []kv, o batchOpts) ([]byte, record.Header) {
	fatal := func(err error) { panic(err) }
	if t != nil {
		t.Helper()
		fatal = func(err error) { t.Fatal(err) }
	}
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		rs[i] = record.Record{Key: r.key, Value: r.val, TimestampDelta: int64(i)}
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if o.producer >= 0 {
		pid, epoch, seq = o.producer, o.epoch, o.seq
	}
	var attrs int16
	if o.txn {
		attrs = record.Transactional
	}
	b := record.AppendBatch(nil, record.Batch{BaseTimestamp: o.ts, Attributes: attrs, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, Records: rs})
	if o.codec != record.CodecNone {
		var err error
		if b, err = record.Recompress(b, o.codec); err != nil {
			fatal(err)
		}
	}
	h, err := record.Validate(b)
	if err != nil {
		fatal(err)
	}
	return b, h
}

// appendKV appends recs as one batch and returns the offset of the first.
func appendKV(t testing.TB, l *Log, o batchOpts, recs ...kv) int64 {
	t.Helper()
	b, h := kvBatch(t, recs, o)
	off, err := l.Append(b, &h)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// model is what a log should read back as: the newest value of each key
// (tombstones delete) and the offset it was written at.
type model struct {
	vals map[string]string
	offs map[string]int64
}

func newModel() *model { return &model{vals: map[string]string{}, offs: map[string]int64{}} }

func (m *model) apply(off int64, recs []kv) {
	for i, r := range recs {
		if r.key == nil {
			continue
		}
		k := string(r.key)
		if r.val == nil {
			delete(m.vals, k)
		} else {
			m.vals[k] = string(r.val)
		}
		m.offs[k] = off + int64(i)
	}
}

// readRec is a record as read back from the log.
type readRec struct {
	off      int64
	key, val string
	tomb     bool // null value
	nokey    bool // null key
	batch    record.Header
}

// readRecords reads every record from the log start to the end, checking
// every batch as the log serves it (length, CRC, stored record count)
// and that offsets only increase.
func readRecords(t testing.TB, l *Log) []readRec {
	t.Helper()
	var out []readRec
	off := l.LogStartOffset()
	last := int64(-1)
	for off < l.NextOffset() {
		v, err := l.Read(off, l.NextOffset(), 1<<20, true)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if len(v.Data) == 0 {
			break // a gap runs to the end
		}
		data := v.Data
		for len(data) > 0 {
			var h record.Header
			if err := record.ValidateStored(data, &h); err != nil {
				t.Fatalf("served a bad batch at %d: %v", off, err)
			}
			if h.BaseOffset <= last {
				t.Fatalf("batch at %d after offset %d", h.BaseOffset, last)
			}
			recs, err := record.Decompress(h.Codec(), data[record.HeaderSize:h.Size()])
			if err != nil {
				t.Fatal(err)
			}
			if h.IsControl() {
				// Consumers see no record of a control batch.
				out = append(out, readRec{off: h.BaseOffset, batch: h})
				last = h.LastOffset()
				off = h.NextOffset()
				data = data[h.Size():]
				continue
			}
			err = record.ForEachIn(recs, h.RecordCount, func(r *record.Record) error {
				o := h.BaseOffset + int64(r.OffsetDelta)
				if o <= last || o > h.LastOffset() {
					return fmt.Errorf("record at %d in batch %d..%d after %d", o, h.BaseOffset, h.LastOffset(), last)
				}
				last = o
				out = append(out, readRec{off: o, key: string(r.Key), val: string(r.Value), tomb: r.Value == nil, nokey: r.Key == nil, batch: h})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			last = max(last, h.LastOffset())
			off = h.NextOffset()
			data = data[h.Size():]
		}
		v.Release()
	}
	return out
}

// checkView reads the log and checks that replaying it gives the model:
// the same newest value of every key, at the same offset.
func checkView(t testing.TB, l *Log, m *model) []readRec {
	t.Helper()
	recs := readRecords(t, l)
	got, offs := map[string]string{}, map[string]int64{}
	for _, r := range recs {
		if r.batch.IsControl() || r.nokey {
			continue
		}
		if r.tomb {
			delete(got, r.key)
		} else {
			got[r.key] = r.val
		}
		offs[r.key] = r.off
	}
	for k, v := range m.vals {
		if got[k] != v {
			t.Fatalf("key %q reads %q, want %q", k, got[k], v)
		}
		if offs[k] != m.offs[k] {
			t.Fatalf("key %q: newest record at %d, written at %d", k, offs[k], m.offs[k])
		}
	}
	for k := range got {
		if _, ok := m.vals[k]; !ok {
			t.Fatalf("key %q reads %q, it was deleted or never written", k, got[k])
		}
	}
	return recs
}

func compactCfg() Config {
	return Config{SegmentBytes: 2048, Compact: true, NoDelete: true, MinCleanableDirtyRatio: 0.01, DeleteRetentionMs: 1000}
}

var bigMap = func() *offsetMap { return newOffsetMap(1<<20, 0.9) }

// cleanAt runs one pass at now (Unix ms), due or not.
func cleanAt(t testing.TB, l *Log, now int64, m *offsetMap) cleanStats {
	t.Helper()
	st, err := l.cleanOnce(context.Background(), time.UnixMilli(now), m, newThrottle(0), true)
	if err != nil {
		t.Fatalf("clean: %v", err)
	}
	return st
}

// crash drops a log as a killed process would: nothing more is written
// (no checkpoint, no index file), its files and mappings are let go.
func crash(l *Log) {
	l.appendMu.Lock()
	l.appendMu.closed = true
	l.stopFlushTimerLocked()
	l.appendMu.Unlock()
	l.closing.Store(true)
	if l.cleaner != nil {
		l.cleaner.remove(l)
	}
	l.sealWG.Wait()
	l.timerWG.Wait()
	l.segMu.Lock()
	for _, s := range l.segments {
		s.Release()
	}
	l.segments = nil
	l.segMu.Unlock()
	l.stopFlusher()
}

// checkDir checks that no file of an unfinished cleaning is left.
func checkDir(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), segment.CleanedSuffix) || strings.HasSuffix(e.Name(), swapExt) {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
}

// fillKeys writes rounds of overwrites of keys k0..k(n-1), rolling as
// segment.bytes says, and returns the model.
func fillKeys(t testing.TB, l *Log, m *model, rounds, n int, ts int64) {
	t.Helper()
	for r := range rounds {
		var recs []kv
		for k := range n {
			recs = append(recs, put(fmt.Sprintf("k%d", k), fmt.Sprintf("v%d.%d", k, r)))
			if len(recs) == 5 {
				m.apply(appendKV(t, l, batchOpts{ts: ts, producer: -1}, recs...), recs)
				recs = nil
			}
		}
		if len(recs) > 0 {
			m.apply(appendKV(t, l, batchOpts{ts: ts, producer: -1}, recs...), recs)
		}
	}
}

// TestCleanKeepsNewest: after a pass every key below the active segment
// appears once, at the offset of its newest record, the view is the
// model's, the log is smaller and small segments were merged; it stays
// so across a clean reopen.
func TestCleanKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, compactCfg())
	m := newModel()
	fillKeys(t, l, m, 20, 10, 1000)
	waitSealed(t, l)
	before, segsBefore := l.Size(), l.Segments()
	st := cleanAt(t, l, 2000, bigMap())
	if st.swapped == 0 || st.end != l.active().Base() {
		t.Fatalf("pass %+v, active segment at %d", st, l.active().Base())
	}
	recs := checkView(t, l, m)
	seen := map[string]bool{}
	for _, r := range recs {
		if r.off < st.end {
			if seen[r.key] {
				t.Fatalf("key %q twice below %d", r.key, st.end)
			}
			seen[r.key] = true
		}
	}
	if l.Size() >= before/2 || l.Segments() != segsBefore {
		t.Fatalf("size %d -> %d, segments %d -> %d", before, l.Size(), segsBefore, l.Segments())
	}
	checkDir(t, dir)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := open(t, dir, compactCfg())
	checkView(t, l2, m)
	// More overwrites, another pass: still the model, and the second
	// pass merges the small segments the first one left.
	fillKeys(t, l2, m, 20, 10, 1000)
	waitSealed(t, l2)
	sealed := l2.Segments() - 1
	cleanAt(t, l2, 2000, bigMap())
	checkView(t, l2, m)
	if l2.Segments()-1 >= sealed-1 {
		t.Fatalf("%d sealed segments after the second pass, %d before: nothing merged", l2.Segments()-1, sealed)
	}
	if cs, err := readCleanerState(dir); err != nil || cs.firstDirty != l2.active().Base() {
		t.Fatalf("cleaner checkpoint %+v %v, active at %d", cs, err, l2.active().Base())
	}
}

// TestCleanActiveSegmentUntouched: records of the active segment stay,
// duplicates and all; so do those of a segment still being sealed.
func TestCleanActiveSegmentUntouched(t *testing.T) {
	l := open(t, t.TempDir(), Config{Compact: true, NoDelete: true, MinCleanableDirtyRatio: 0.01})
	m := newModel()
	fillKeys(t, l, m, 10, 3, 1000) // one segment, the active one
	if l.Segments() != 1 {
		t.Fatalf("%d segments", l.Segments())
	}
	n := len(readRecords(t, l))
	st := cleanAt(t, l, 2000, bigMap())
	if st.swapped != 0 || len(readRecords(t, l)) != n {
		t.Fatalf("the active segment was cleaned: %+v", st)
	}
	if p, cfg, _, _ := l.planClean(2000); p.due(&cfg) || p.dirtyBytes != 0 {
		t.Fatalf("plan %+v", p)
	}
}

// TestCleanTombstones: a tombstone is kept, with a delete horizon of
// delete.retention.ms from the pass that first kept it, and removed by a
// pass after that; the log is due for that pass with nothing dirty.
func TestCleanTombstones(t *testing.T) {
	cfg := compactCfg()
	cfg.DeleteRetentionMs = 10_000
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 5, 10, 1000)
	for _, k := range []string{"k1", "k4"} {
		m.apply(appendKV(t, l, batchOpts{ts: 1000, producer: -1}, del(k)), []kv{del(k)})
	}
	fillKeys(t, l, m, 3, 2, 1000) // k0, k1 again: k1 lives again
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	waitSealed(t, l)
	cleanAt(t, l, 50_000, bigMap())
	recs := checkView(t, l, m)
	tombs := 0
	for _, r := range recs {
		if r.tomb {
			tombs++
			if r.key != "k4" {
				t.Fatalf("tombstone of %q kept though a newer record follows", r.key)
			}
			if hz, ok := r.batch.DeleteHorizonMs(); !ok || hz != 60_000 {
				t.Fatalf("tombstone horizon %d %v, want 60000", hz, ok)
			}
		}
	}
	if tombs != 1 {
		t.Fatalf("%d tombstones kept", tombs)
	}
	if p, c, _, _ := l.planClean(59_999); p.due(&c) {
		t.Fatalf("due before the horizon: %+v", p)
	}
	// Before the horizon a pass keeps it.
	cleanAt(t, l, 59_999, bigMap())
	if n := countTombs(readRecords(t, l)); n != 1 {
		t.Fatalf("%d tombstones before the horizon", n)
	}
	p, c, _, _ := l.planClean(60_000)
	if !p.due(&c) || !p.horizonDue || p.dirtyBytes != 0 {
		t.Fatalf("not due at the horizon: %+v", p)
	}
	cleanAt(t, l, 60_000, bigMap())
	if n := countTombs(checkView(t, l, m)); n != 0 {
		t.Fatalf("%d tombstones after the horizon", n)
	}
	if p, c, _, _ := l.planClean(70_000); p.due(&c) {
		t.Fatalf("still due: %+v", p)
	}
}

func countTombs(recs []readRec) int {
	n := 0
	for _, r := range recs {
		if r.tomb {
			n++
		}
	}
	return n
}

// waitSealed waits for the background seals of rolled segments.
func waitSealed(t testing.TB, l *Log) {
	t.Helper()
	l.sealWG.Wait()
}

// TestCleanPlan: the dirty ratio, min.compaction.lag.ms and
// max.compaction.lag.ms decide whether a log is due, as in Kafka.
func TestCleanPlan(t *testing.T) {
	cfg := compactCfg()
	cfg.MinCleanableDirtyRatio = 0.5
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 3, 100, 1000)
	waitSealed(t, l)
	p, c, _, _ := l.planClean(5000)
	if p.cleanBytes != 0 || p.dirtyBytes == 0 || p.ratio() != 1 || !p.due(&c) {
		t.Fatalf("a new log: %+v", p)
	}
	cleanAt(t, l, 5000, bigMap())
	p, c, _, _ = l.planClean(5000)
	if p.dirtyBytes != 0 || p.due(&c) {
		t.Fatalf("just cleaned: %+v", p)
	}
	// A little more: below the ratio.
	fillKeys(t, l, m, 1, 10, 1000)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	waitSealed(t, l)
	p, c, _, _ = l.planClean(5000)
	if p.dirtyBytes == 0 || p.ratio() > 0.5 || p.due(&c) {
		t.Fatalf("a little dirty: %+v ratio %.2f", p, p.ratio())
	}
	// max.compaction.lag.ms makes it due anyway.
	cfg.MaxCompactionLagMs = 3000
	l.SetConfig(cfg)
	if p, c, _, _ = l.planClean(5000); !p.lagged || !p.due(&c) {
		t.Fatalf("past max.compaction.lag.ms: %+v", p)
	}
	// min.compaction.lag.ms keeps young segments out.
	cfg.MaxCompactionLagMs = 0
	cfg.MinCompactionLagMs = 10_000
	l.SetConfig(cfg)
	if p, _, _, _ = l.planClean(5000); p.dirtyBytes != 0 || p.firstUncleanable != p.firstDirty {
		t.Fatalf("within min.compaction.lag.ms: %+v", p)
	}
	fillKeys(t, l, m, 10, 10, 20_000) // younger segments after old ones
	waitSealed(t, l)
	if p, _, _, _ = l.planClean(15_000); p.dirtyBytes == 0 || p.firstUncleanable >= l.active().Base() {
		t.Fatalf("old segments cleanable, young ones not: %+v", p)
	}
	st := cleanAt(t, l, 15_000, bigMap())
	for _, r := range readRecords(t, l) {
		if r.off >= st.end && r.batch.BaseTimestamp != 20_000 {
			t.Fatalf("pass end %d is not where the young segments start", st.end)
		}
	}
	checkView(t, l, m)
	// Not a compacted log: never due.
	cfg.Compact = false
	l.SetConfig(cfg)
	if _, _, _, ok := l.planClean(1 << 50); ok {
		t.Fatal("a log that is not compacted is planned")
	}
}

// TestCleanRollsAtMaxCompactionLag: a compacted log rolls its active
// segment once max.compaction.lag.ms passed, so it can be cleaned.
func TestCleanRollsAtMaxCompactionLag(t *testing.T) {
	cfg := compactCfg()
	cfg.SegmentBytes = 1 << 20
	cfg.MaxCompactionLagMs = 50
	l := open(t, t.TempDir(), cfg)
	appendKV(t, l, batchOpts{ts: time.Now().UnixMilli(), producer: -1}, put("a", "1"))
	time.Sleep(100 * time.Millisecond)
	appendKV(t, l, batchOpts{ts: time.Now().UnixMilli(), producer: -1}, put("a", "2"))
	if l.Segments() != 2 {
		t.Fatalf("%d segments: no roll at max.compaction.lag.ms", l.Segments())
	}
}

// TestCleanMapFull: an offset map too small for the dirty part cleans
// what it holds and leaves the rest for the next pass; passes converge.
func TestCleanMapFull(t *testing.T) {
	l := open(t, t.TempDir(), compactCfg())
	m := newModel()
	for r := range 4 {
		for k := 0; k < 40; k += 5 {
			var recs []kv
			for i := k; i < k+5; i++ {
				recs = append(recs, put(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", r)))
			}
			m.apply(appendKV(t, l, batchOpts{ts: 1, producer: -1}, recs...), recs)
		}
	}
	waitSealed(t, l)
	small := newOffsetMap(64*offsetMapSlotSize, 0.5) // 32 keys at most
	var ends []int64
	for range 10 {
		st := cleanAt(t, l, 10, small)
		checkView(t, l, m)
		ends = append(ends, st.end)
		if st.end == l.active().Base() {
			break
		}
	}
	if len(ends) < 2 || ends[len(ends)-1] != l.active().Base() || !slices.IsSorted(ends) {
		t.Fatalf("pass ends %v, active at %d", ends, l.active().Base())
	}
	// One batch larger than the map: an error, nothing changed.
	tiny := newOffsetMap(4*offsetMapSlotSize, 0.5)
	fillKeys(t, l, m, 2, 10, 1)
	waitSealed(t, l)
	before := readRecords(t, l)
	if _, err := l.cleanOnce(context.Background(), time.UnixMilli(10), tiny, newThrottle(0), true); err == nil {
		t.Fatal("a map smaller than a batch cleaned")
	}
	if after := readRecords(t, l); len(after) != len(before) {
		t.Fatal("a failed pass changed the log")
	}
}

// TestCleanKeylessAndControl: records without a key go (as in Kafka),
// a control batch stays (for delete.retention.ms: TestCleanTxnMarkers).
func TestCleanKeylessAndControl(t *testing.T) {
	l := open(t, t.TempDir(), compactCfg())
	m := newModel()
	recs := []kv{put("a", "1"), {val: []byte("no key")}, put("b", "1")}
	m.apply(appendKV(t, l, batchOpts{producer: -1}, recs...), recs)
	// A control batch (an abort marker: key version 0, type 0).
	ctrl := record.AppendBatch(nil, record.Batch{Attributes: record.Control | record.Transactional, ProducerID: 9, ProducerEpoch: 0, BaseSequence: -1,
		Records: []record.Record{{Key: []byte{0, 0, 0, 0}, Value: []byte{0, 0, 0, 0, 0, 0}}}})
	ch, err := record.Validate(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	ctrlOff, err := l.Append(ctrl, &ch)
	if err != nil {
		t.Fatal(err)
	}
	fillKeys(t, l, m, 60, 2, 1)
	waitSealed(t, l)
	if l.segments[0].NextOffset() <= ctrlOff {
		t.Fatal("the test needs the records in a sealed segment")
	}
	cleanAt(t, l, 10, bigMap())
	found := false
	for _, r := range checkView(t, l, m) {
		if r.nokey && !r.batch.IsControl() {
			t.Fatal("a record without a key stayed")
		}
		if r.off == ctrlOff {
			found = r.batch.IsControl()
		}
	}
	if !found {
		t.Fatal("the control batch went")
	}
}

// TestCleanKeepsProducerLastBatch: the newest batch of each producer the
// owner still tracks stays, emptied if all its records are superseded,
// with its sequence numbers; older batches of it go.
func TestCleanKeepsProducerLastBatch(t *testing.T) {
	last := map[int64]int64{}
	cfg := compactCfg()
	cfg.ProducerLastOffsets = func() (map[int64]int64, bool) { return last, true }
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	for i := range 3 {
		recs := []kv{put("p", fmt.Sprint(i))}
		b, h := kvBatch(t, recs, batchOpts{producer: 7, epoch: 2, seq: int32(i)})
		off, err := l.Append(b, &h)
		if err != nil {
			t.Fatal(err)
		}
		m.apply(off, recs)
		last[7] = off
	}
	fillKeys(t, l, m, 10, 3, 1)
	recs := []kv{put("p", "newest")}
	m.apply(appendKV(t, l, batchOpts{producer: -1}, recs...), recs) // supersedes producer 7's record
	fillKeys(t, l, m, 10, 3, 1)
	waitSealed(t, l)
	cleanAt(t, l, 10, bigMap())
	checkView(t, l, m)
	var p7 []record.Header
	if err := l.Walk(0, func(_ []byte, h *record.Header) bool {
		if h.ProducerID == 7 {
			p7 = append(p7, *h)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(p7) != 1 || p7[0].LastOffset() != last[7] || p7[0].RecordCount != 0 || p7[0].BaseSequence != 2 || p7[0].ProducerEpoch != 2 {
		t.Fatalf("producer 7's batches after cleaning: %+v", p7)
	}
	// A producer the owner no longer tracks keeps nothing.
	delete(last, 7)
	fillKeys(t, l, m, 10, 3, 1)
	waitSealed(t, l)
	cleanAt(t, l, 10, bigMap())
	p7 = nil
	l.Walk(0, func(_ []byte, h *record.Header) bool {
		if h.ProducerID == 7 {
			p7 = append(p7, *h)
		}
		return true
	})
	if len(p7) != 0 {
		t.Fatalf("an expired producer's empty batch stayed: %+v", p7)
	}
	// An owner not ready skips the pass.
	cfg.ProducerLastOffsets = nil
	l2 := open(t, t.TempDir(), Config{Compact: true, ProducerLastOffsets: func() (map[int64]int64, bool) { return nil, false }, SegmentBytes: 1024})
	fillKeys(t, l2, newModel(), 10, 3, 1)
	waitSealed(t, l2)
	if st := cleanAt(t, l2, 10, bigMap()); st.swapped != 0 {
		t.Fatalf("cleaned while the owner was not ready: %+v", st)
	}
}

// TestCleanCodecs: batches of every codec are cleaned and read back.
func TestCleanCodecs(t *testing.T) {
	l := open(t, t.TempDir(), compactCfg())
	m := newModel()
	for r := range 30 {
		recs := []kv{put(fmt.Sprintf("k%d", r%7), strings.Repeat("x", r)), put(fmt.Sprintf("k%d", r%5), fmt.Sprint(r))}
		if r%9 == 0 {
			recs = append(recs, del(fmt.Sprintf("k%d", r%4)))
		}
		m.apply(appendKV(t, l, batchOpts{codec: r % 5, ts: int64(r), producer: -1}, recs...), recs)
	}
	fillKeys(t, l, m, 4, 3, 100)
	waitSealed(t, l)
	cleanAt(t, l, 1000, bigMap())
	recs := checkView(t, l, m)
	codecs := map[int]bool{}
	for _, r := range recs {
		codecs[r.batch.Codec()] = true
	}
	if len(codecs) < 3 {
		t.Fatalf("codecs left after cleaning: %v", codecs)
	}
}

// TestCleanCompactDelete: with cleanup.policy compact,delete retention
// deletes old segments and the cleaner compacts the rest.
func TestCleanCompactDelete(t *testing.T) {
	cfg := compactCfg()
	cfg.NoDelete = false
	cfg.RetentionMs = -1
	cfg.RetentionBytes = 3000
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 30, 10, 1)
	waitSealed(t, l)
	if n, err := l.EnforceRetention(time.Now()); err != nil || n == 0 {
		t.Fatalf("retention: %d, %v", n, err)
	}
	start := l.LogStartOffset()
	cleanAt(t, l, 10, bigMap())
	if l.LogStartOffset() != start {
		t.Fatalf("cleaning moved the log start %d -> %d", start, l.LogStartOffset())
	}
	// What retention left compacts to the model's newest values.
	recs := readRecords(t, l)
	seen := map[string]bool{}
	for _, r := range recs {
		if r.off < l.active().Base() && seen[r.key] {
			t.Fatalf("key %q twice", r.key)
		}
		seen[r.key] = true
	}
}

// TestCleanRacesRetention: a pass whose segments retention removed gives
// up without touching the log, and the next one works.
func TestCleanRacesRetention(t *testing.T) {
	cfg := compactCfg()
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 20, 10, 1)
	waitSealed(t, l)
	raced := false
	l.clean.hook = func(s cleanStep) bool {
		if s == stepCleaned && !raced {
			raced = true
			if err := l.DeleteRecords(l.segments[1].Base()); err != nil {
				t.Error(err)
			}
		}
		return false
	}
	_, err := l.cleanOnce(context.Background(), time.UnixMilli(10), bigMap(), newThrottle(0), true)
	if !errors.Is(err, errSwapRaced) {
		t.Fatalf("pass over removed segments: %v", err)
	}
	checkDir(t, l.dir)
	l.clean.hook = nil
	cleanAt(t, l, 10, bigMap())
	readRecords(t, l)
}

// TestCleanReadersKeepBytes: a reader holding a view of segments that a
// pass replaces keeps reading the bytes it was given, under a FileCache
// that allows a single mapping, and fetches after the swap read the new
// segments.
func TestCleanReadersKeepBytes(t *testing.T) {
	cfg := compactCfg()
	cfg.Files = segment.NewFileCache(1, 1)
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 20, 10, 1)
	waitSealed(t, l)
	var views []View
	var copies [][]byte
	for off := int64(0); off < l.active().Base(); {
		v, err := l.Read(off, l.NextOffset(), 300, true)
		if err != nil || len(v.Data) == 0 {
			t.Fatal(err)
		}
		views = append(views, v)
		copies = append(copies, bytes.Clone(v.Data))
		h, _ := record.Parse(v.Data)
		off = h.NextOffset()
	}
	cleanAt(t, l, 10, bigMap())
	checkView(t, l, m)
	for i, v := range views {
		if !bytes.Equal(v.Data, copies[i]) {
			t.Fatalf("view %d changed under its reader", i)
		}
		v.Release()
	}
	if f, mp := cfg.Files.Held(); f > 1 || mp > 1 {
		t.Fatalf("%d files, %d mappings held once idle", f, mp)
	}
}

// TestCleanCloseDuringPass: Close waits for a pass in progress, which
// stops; the log reopens with everything.
func TestCleanCloseDuringPass(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, compactCfg())
	if err != nil {
		t.Fatal(err)
	}
	m := newModel()
	fillKeys(t, l, m, 20, 10, 1)
	waitSealed(t, l)
	closed := make(chan error)
	l.clean.hook = func(s cleanStep) bool {
		if s == stepCleaned {
			go func() { closed <- l.Close() }()
			for !l.closing.Load() {
				time.Sleep(time.Millisecond)
			}
		}
		return false
	}
	_, err = l.cleanOnce(context.Background(), time.UnixMilli(10), bigMap(), newThrottle(0), true)
	if !errors.Is(err, errCleanAborted) {
		t.Fatalf("pass during Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	checkDir(t, dir)
	l2 := open(t, dir, compactCfg())
	checkView(t, l2, m)
}

// TestCleanCrashAtEveryStep stops a pass at each of its steps as if the
// process died there, reopens the log and checks that it holds either
// the old segments or the new ones (never both, never neither): the
// model reads back, no segments overlap, nothing of the pass is left,
// and the log cleans and appends again.
func TestCleanCrashAtEveryStep(t *testing.T) {
	steps := []cleanStep{stepCleaned, stepCommitted, stepOldRemoved, stepLogRenamed, stepSwapped, stepManifestsRemoved}
	variants := []struct {
		name  string
		prior bool // a pass before, leaving small segments to merge
		nth   int  // the group whose step is hit
	}{{"first", false, 1}, {"merged", true, 1}, {"later", true, 2}}
	for _, step := range steps {
		for _, v := range variants {
			nth := v.nth
			t.Run(fmt.Sprintf("step%d/%s", step, v.name), func(t *testing.T) {
				dir := t.TempDir()
				cfg := compactCfg()
				l, err := Open(dir, cfg)
				if err != nil {
					t.Fatal(err)
				}
				m := newModel()
				// Overwritten keys, and keys written once: every
				// segment keeps something.
				fill := func(rounds int) {
					for range rounds {
						fillKeys(t, l, m, 1, 10, 1)
						recs := []kv{put(fmt.Sprintf("u%d", l.NextOffset()), "once")}
						m.apply(appendKV(t, l, batchOpts{producer: -1}, recs...), recs)
					}
				}
				fill(30)
				m.apply(appendKV(t, l, batchOpts{producer: -1}, del("k3")), []kv{del("k3")})
				fillKeys(t, l, m, 10, 2, 1)
				waitSealed(t, l)
				if v.prior {
					// A first pass leaves small segments for the next
					// one to merge: groups of several.
					cleanAt(t, l, 10, bigMap())
					fill(30)
					waitSealed(t, l)
				}
				// What the pass makes of the log, run on a copy.
				before := readRecords(t, l)
				ref := open(t, copyDir(t, dir), cfg)
				cleanAt(t, ref, 10, bigMap())
				after := readRecords(t, ref)
				var bounds []int64
				ref.segMu.RLock()
				for _, s := range ref.segments {
					bounds = append(bounds, s.Base())
				}
				ref.segMu.RUnlock()
				hits := 0
				l.clean.hook = func(s cleanStep) bool {
					if s == step {
						hits++
						return hits == nth || s == stepManifestsRemoved
					}
					return false
				}
				_, err = l.cleanOnce(context.Background(), time.UnixMilli(10), bigMap(), newThrottle(0), true)
				if !errors.Is(err, errCrashed) {
					t.Skipf("the pass did not reach step %d %d times (%v)", step, nth, err)
				}
				crash(l)
				l2, err := Open(dir, cfg)
				if err != nil {
					t.Fatalf("reopen after a crash at step %d: %v", step, err)
				}
				t.Cleanup(func() { l2.Close() })
				checkDir(t, dir)
				got := checkView(t, l2, m)
				// Each group's offsets hold its old records or its new
				// ones: never both, never neither.
				for i := 0; i+1 < len(bounds); i++ {
					in := func(rs []readRec) []readRec {
						var out []readRec
						for _, r := range rs {
							if r.off >= bounds[i] && r.off < bounds[i+1] {
								r.batch = record.Header{}
								out = append(out, r)
							}
						}
						return out
					}
					g, o, n := in(got), in(before), in(after)
					if !slices.Equal(g, o) && !slices.Equal(g, n) {
						t.Fatalf("offsets %d..%d hold %d records: not the %d before the pass nor the %d after", bounds[i], bounds[i+1], len(g), len(o), len(n))
					}
				}
				// It cleans again, and takes appends.
				fillKeys(t, l2, m, 3, 10, 1)
				waitSealed(t, l2)
				cleanAt(t, l2, 10, bigMap())
				checkView(t, l2, m)
				checkDir(t, dir)
			})
		}
	}
}

// TestRecoverSwapRefusesBadManifest: a manifest that does not decode, or
// names a cleaned .log of another size, keeps the log from opening and
// leaves every file in place.
func TestRecoverSwapRefusesBadManifest(t *testing.T) {
	for name, corrupt := range map[string]func(dir string, b []byte) []byte{
		"flipped": func(_ string, b []byte) []byte { b[3] ^= 1; return b },
		"size": func(dir string, b []byte) []byte {
			p := filepath.Join(dir, segment.FileName(0, ".log")+segment.CleanedSuffix)
			os.WriteFile(p, []byte("not what the manifest says"), 0o644)
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, compactCfg())
			if err != nil {
				t.Fatal(err)
			}
			m := newModel()
			fillKeys(t, l, m, 20, 10, 1)
			waitSealed(t, l)
			l.clean.hook = func(s cleanStep) bool { return s == stepCommitted }
			if _, err := l.cleanOnce(context.Background(), time.UnixMilli(10), bigMap(), newThrottle(0), true); !errors.Is(err, errCrashed) {
				t.Fatal(err)
			}
			crash(l)
			p := swapPath(dir, 0)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, corrupt(dir, b), 0o644); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadDir(dir)
			if _, err := Open(dir, compactCfg()); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open with a bad manifest: %v", err)
			}
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) {
				t.Fatalf("files changed: %d -> %d", len(before), len(after))
			}
		})
	}
}

func FuzzSwapManifest(f *testing.F) {
	f.Add((&swapManifest{base: 5, size: 100, next: 9, old: []int64{5, 7}, exts: segment.Extensions[:]}).encode())
	f.Add(cleanerState{firstDirty: 5, horizon: math.MaxInt64}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeSwapManifest(b); err == nil {
			if !bytes.Equal(m.encode(), b) {
				t.Fatalf("manifest %+v does not encode back", m)
			}
		}
		if cs, err := decodeCleanerState(b); err == nil && !bytes.Equal(cs.encode(), b) {
			t.Fatalf("cleaner state %+v does not encode back", cs)
		}
	})
}

func TestOffsetMap(t *testing.T) {
	m := newOffsetMap(1<<16, 0.9)
	m.reset(1000)
	if float64(len(m.slots))*0.9 < 1000 || len(m.slots)&(len(m.slots)-1) != 0 {
		t.Fatalf("%d slots for 1000 keys", len(m.slots))
	}
	for i := range 1000 {
		m.put([]byte(fmt.Sprint(i%500)), int64(i))
	}
	if m.entries != 500 {
		t.Fatalf("%d entries", m.entries)
	}
	for i := range 500 {
		if got := m.get([]byte(fmt.Sprint(i))); got != int64(i+500) {
			t.Fatalf("key %d: %d", i, got)
		}
	}
	if m.get([]byte("missing")) != -1 || m.get(nil) != -1 {
		t.Fatal("missing key found")
	}
	// A full map says so; reset empties it.
	m.reset(1 << 30)
	if len(m.slots) != m.maxSlots || m.limit != m.maxEntries() {
		t.Fatalf("capped at %d slots (max %d), limit %d", len(m.slots), m.maxSlots, m.limit)
	}
	for i := 0; m.room(1); i++ {
		m.put([]byte(fmt.Sprint(i)), int64(i))
	}
	if m.entries != m.limit || m.get([]byte("0")) != 0 {
		t.Fatal("full map")
	}
	m.reset(10)
	if m.get([]byte("0")) != -1 || m.entries != 0 {
		t.Fatal("reset kept entries")
	}
}

func TestThrottle(t *testing.T) {
	th := newThrottle(1 << 20) // 1 MiB/s
	start := time.Now()
	for range 4 {
		if err := th.wait(context.Background(), 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	// 256 KiB at 1 MiB/s, less the 0.1 s burst: at least 0.1 s.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("256 KiB in %v at 1 MiB/s", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := th.wait(ctx, 10<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait: %v", err)
	}
	if err := newThrottle(0).wait(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the files of dir into a new directory.
func copyDir(t testing.TB, dir string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestCleaner: the Cleaner's threads find the dirty compacted logs among
// those registered, clean them in the background and leave the others;
// a log closed while registered leaves; Close stops every thread.
func TestCleaner(t *testing.T) {
	base := runtime.NumGoroutine()
	c := NewCleaner(CleanerConfig{Threads: 2, Backoff: 10 * time.Millisecond, DedupeBufferSize: 1 << 20})
	var logs []*Log
	var models []*model
	for i := range 4 {
		cfg := compactCfg()
		cfg.Cleaner = c
		cfg.Compact = i != 3 // the last one only deletes
		l := open(t, t.TempDir(), cfg)
		m := newModel()
		fillKeys(t, l, m, 30, 10, 1)
		logs, models = append(logs, l), append(models, m)
	}
	c.Wake()
	deadline := time.Now().Add(30 * time.Second)
	for i, l := range logs[:3] {
		for {
			p, cfg, _, _ := l.planClean(time.Now().UnixMilli())
			if !p.due(&cfg) && p.cleanBytes > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log %d not cleaned: %+v", i, p)
			}
			time.Sleep(10 * time.Millisecond)
		}
		checkView(t, l, models[i])
	}
	if cs, err := readCleanerState(logs[3].Dir()); err == nil {
		t.Fatalf("a log that is not compacted was cleaned: %+v", cs)
	}
	if st := c.Stats(); st.Passes < 3 || st.DirtyBytes == 0 || st.BytesWritten == 0 {
		t.Fatalf("stats %+v", st)
	}
	logs[0].Close()
	c.mu.Lock()
	n := len(c.mu.logs)
	c.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d logs registered after one closed", n)
	}
	c.Close()
	c.Close()
	for _, l := range logs {
		l.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), base)
		}
	}
}

// TestCleanerThrottles: with log.cleaner.io.max.bytes.per.second set, a
// pass takes as long as its bytes at that rate.
func TestCleanerThrottles(t *testing.T) {
	l := open(t, t.TempDir(), compactCfg())
	fillKeys(t, l, newModel(), 60, 10, 1)
	waitSealed(t, l)
	const rate = 200 << 10
	start := time.Now()
	st, err := l.cleanOnce(context.Background(), time.UnixMilli(10), bigMap(), newThrottle(rate), true)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	io := st.mapBytes + st.bytesRead + st.bytesWritten
	if min := time.Duration(float64(io-rate/10) / rate * float64(time.Second)); took < min {
		t.Fatalf("%d bytes in %v at %d B/s: under the %v the rate allows", io, took, rate, min)
	}
}

// TestCleanConcurrentReaders reads the whole log over and over from
// several goroutines while batches are appended and passes swap segments
// in, under a FileCache of four mappings: every batch read is whole and
// valid and offsets only increase. Run with -race.
func TestCleanConcurrentReaders(t *testing.T) {
	cfg := compactCfg()
	cfg.Files = segment.NewFileCache(4, 4)
	l := open(t, t.TempDir(), cfg)
	m := newModel()
	fillKeys(t, l, m, 20, 10, 1)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var err error
			defer func() { errs <- err }()
			for {
				select {
				case <-done:
					return
				default:
				}
				last := int64(-1)
				for off := l.LogStartOffset(); off < l.NextOffset(); {
					v, rerr := l.Read(off, l.NextOffset(), 1000, true)
					if rerr != nil {
						err = rerr
						return
					}
					if len(v.Data) == 0 {
						break
					}
					for data := v.Data; len(data) > 0; {
						var h record.Header
						if err = record.ValidateStored(data, &h); err != nil {
							v.Release()
							return
						}
						if h.BaseOffset <= last {
							v.Release()
							err = fmt.Errorf("batch at %d after %d", h.BaseOffset, last)
							return
						}
						last, off = h.LastOffset(), h.NextOffset()
						data = data[h.Size():]
					}
					v.Release()
				}
			}
		}()
	}
	for range 40 {
		fillKeys(t, l, m, 2, 10, 1)
		waitSealed(t, l)
		cleanAt(t, l, 10, bigMap())
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkView(t, l, m)
}

// TestCleanTransactions: the cleaner leaves the records of a transaction
// not yet decided (at or past the owner's last stable offset) as they
// are; an aborted transaction's records supersede nothing and go; its
// abort marker stays (for delete.retention.ms: TestCleanTxnMarkers), and
// so does its entry in the aborted-transaction index, carried into the
// cleaned segment and kept across a reopen.
func TestCleanTransactions(t *testing.T) {
	dir := t.TempDir()
	var lso atomic.Int64
	lso.Store(math.MaxInt64)
	cfg := compactCfg()
	cfg.LastStableOffset = lso.Load
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	txnBatch := func(pid int64, attrs int16, recs ...record.Record) int64 {
		t.Helper()
		b := record.AppendBatch(nil, record.Batch{Attributes: attrs | record.Transactional, ProducerID: pid, ProducerEpoch: 0, BaseSequence: 0, Records: recs})
		if attrs&record.Control != 0 {
			b = record.AppendBatch(nil, record.Batch{Attributes: attrs | record.Transactional, ProducerID: pid, ProducerEpoch: 0, BaseSequence: -1, Records: recs})
		}
		h, err := record.Validate(b)
		if err != nil {
			t.Fatal(err)
		}
		off, err := l.Append(b, &h)
		if err != nil {
			t.Fatal(err)
		}
		return off
	}
	m := newModel()
	committed := appendKV(t, l, batchOpts{producer: -1}, put("a", "committed"))
	aborted := txnBatch(5, 0, record.Record{Key: []byte("a"), Value: []byte("aborted")})
	fillKeys(t, l, m, 30, 3, 1)
	// The abort marker (key version 0, type 0), and its index entry.
	marker := txnBatch(5, record.Control, record.Record{Key: []byte{0, 0, 0, 0}, Value: []byte{0, 0, 0, 0, 0, 0}})
	if err := l.AppendAbortedTxn(AbortedTxn{ProducerID: 5, FirstOffset: aborted, LastOffset: marker, LastStableOffset: marker + 1}); err != nil {
		t.Fatal(err)
	}
	// A transaction still open, superseded by a later record: the
	// cleaner must not touch it.
	open := txnBatch(6, 0, record.Record{Key: []byte("b"), Value: []byte("open")})
	lso.Store(open)
	appendKV(t, l, batchOpts{producer: -1}, put("b", "later"))
	fillKeys(t, l, m, 30, 3, 1)
	waitSealed(t, l)
	if l.segments[len(l.segments)-1].Base() <= open+1 {
		t.Fatal("the test needs the open transaction in a sealed segment")
	}
	st := cleanAt(t, l, 10, bigMap())
	if st.end > open {
		t.Fatalf("the pass mapped up to %d, past the last stable offset %d", st.end, open)
	}
	check := func(l *Log) {
		t.Helper()
		seen := map[int64]readRec{}
		for _, r := range readRecords(t, l) {
			seen[r.off] = r
		}
		if r, ok := seen[committed]; !ok || r.val != "committed" {
			t.Errorf("the committed record of a, superseded only by an aborted one, is gone: %+v %v", r, ok)
		}
		if _, ok := seen[aborted]; ok {
			t.Error("the aborted record stayed")
		}
		if r, ok := seen[marker]; !ok || !r.batch.IsControl() {
			t.Error("the abort marker went")
		}
		if r, ok := seen[open]; !ok || r.val != "open" {
			t.Errorf("the open transaction's record was cleaned: %+v %v", r, ok)
		}
		if got := abortedIDs(t, l, 0, l.NextOffset()); !slices.Equal(got, []int64{5}) {
			t.Errorf("aborted transactions after cleaning: %v", got)
		}
	}
	check(l)
	if st.swapped == 0 {
		t.Fatal("nothing was cleaned")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(l)
	checkDir(t, dir)
}
