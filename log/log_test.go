package log

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// gen builds the batch that belongs at offset off: n records whose bytes
// are derived from off, so any reader can tell what must be there.
func gen(off int64, n, valueSize int, ts int64) ([]byte, record.Header) {
	recs := make([]record.Record, n)
	for i := range recs {
		v := bytes.Repeat([]byte(fmt.Sprintf("%d.", off+int64(i))), valueSize+1)[:valueSize]
		recs[i] = record.Record{Key: []byte(fmt.Sprint(off + int64(i))), Value: v}
	}
	b := record.AppendBatch(nil, record.Batch{BaseOffset: off, BaseTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
	h, err := record.Validate(b)
	if err != nil {
		panic(err)
	}
	return b, h
}

func open(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends count batches of n records with timestamps ts0, ts0+1...
func appendN(t testing.TB, l *Log, count, n, size int, ts0 int64) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < count; i++ {
		b, h := gen(l.NextOffset(), n, size, ts0+int64(i))
		if _, err := l.Append(b, &h); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// readAll reads every batch from the log start to the end.
func readAll(t testing.TB, l *Log) [][]byte {
	t.Helper()
	var out [][]byte
	off := l.LogStartOffset()
	for off < l.NextOffset() {
		v, err := l.Read(off, l.NextOffset(), 1<<20, true)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if len(v.Data) == 0 {
			t.Fatalf("empty read at %d below end %d", off, l.NextOffset())
		}
		data := v.Data
		for len(data) > 0 {
			h, err := record.Validate(data)
			if err != nil {
				t.Fatalf("served a bad batch at %d: %v", off, err)
			}
			out = append(out, bytes.Clone(data[:h.Size()]))
			off = h.NextOffset()
			data = data[h.Size():]
		}
		v.Release()
	}
	return out
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Config{SegmentBytes: 4096})
	want := appendN(t, l, 100, 3, 30, 1000)
	if l.Segments() < 5 {
		t.Fatalf("expected rolls, have %d segments", l.Segments())
	}
	if l.NextOffset() != 300 {
		t.Fatalf("next offset %d", l.NextOffset())
	}
	check := func(l *Log) {
		got := readAll(t, l)
		if len(got) != len(want) {
			t.Fatalf("read %d batches, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("batch %d differs", i)
			}
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cp, err := readCheckpoint(dir)
	if err != nil || !cp.clean || cp.recoveryPoint != 300 {
		t.Fatalf("checkpoint after close: %+v %v", cp, err)
	}
	l2 := open(t, dir, Config{SegmentBytes: 4096})
	check(l2)
	// Appends continue at the end; the first append marks the log dirty.
	appendN(t, l2, 1, 1, 10, 2000)
	if cp, _ := readCheckpoint(dir); cp.clean {
		t.Fatal("checkpoint still clean after an append")
	}
}

func TestOutOfRange(t *testing.T) {
	l := open(t, t.TempDir(), Config{})
	appendN(t, l, 3, 2, 10, 0)
	for _, off := range []int64{-1, 7} {
		if _, err := l.Read(off, 100, 100, true); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Errorf("Read(%d) = %v", off, err)
		}
	}
	v, err := l.Read(6, 6, 100, true)
	if err != nil || len(v.Data) != 0 {
		t.Fatalf("read at end: %d bytes, %v", len(v.Data), err)
	}
	// The high watermark bounds reads.
	v, _ = l.Read(0, 2, 1<<20, true)
	if h, _ := record.Parse(v.Data); len(v.Data) != h.Size() {
		t.Fatal("read past maxOffset")
	}
	v.Release()
}

func TestRoll(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		batches  int
		wantSegs int
	}{
		{"size", Config{SegmentBytes: 1000}, 10, 4},                                 // 3 batches of ~300 B per segment
		{"index full", Config{SegmentIndexBytes: 96, IndexIntervalBytes: 1}, 30, 4}, // 8 time index entries: 8 batches a segment
		{"no roll", Config{}, 30, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t, t.TempDir(), tt.cfg)
			want := appendN(t, l, tt.batches, 3, 60, 0)
			if got := l.Segments(); got != tt.wantSegs {
				t.Fatalf("%d segments, want %d", got, tt.wantSegs)
			}
			if got := readAll(t, l); len(got) != len(want) {
				t.Fatalf("read %d batches", len(got))
			}
		})
	}
	t.Run("segment.ms", func(t *testing.T) {
		l := open(t, t.TempDir(), Config{SegmentMs: 1})
		now := time.Now().UnixMilli()
		appendN(t, l, 1, 1, 10, now-10_000)
		time.Sleep(5 * time.Millisecond) // past segment.ms since the segment was made
		appendN(t, l, 1, 1, 10, now)
		if l.Segments() != 2 {
			t.Fatalf("%d segments, want a roll by segment.ms", l.Segments())
		}
	})
	t.Run("batch larger than segment.bytes", func(t *testing.T) {
		l := open(t, t.TempDir(), Config{SegmentBytes: 200})
		b, h := gen(0, 1, 500, 0)
		if _, err := l.Append(b, &h); !errors.Is(err, ErrBatchTooLarge) {
			t.Fatalf("append = %v", err)
		}
	})
	t.Run("segment.bytes raised at runtime", func(t *testing.T) {
		l := open(t, t.TempDir(), Config{SegmentBytes: 1000})
		appendN(t, l, 2, 1, 100, 0)
		cfg := l.Config()
		cfg.SegmentBytes = 1 << 20
		l.SetConfig(cfg)
		appendN(t, l, 20, 1, 100, 0) // the 1000-byte mapping forces rolls
		cfg.SegmentBytes = 100_000
		l.SetConfig(cfg)
		if got := readAll(t, l); len(got) != 22 {
			t.Fatalf("read %d batches", len(got))
		}
	})
}

func TestRetention(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	tests := []struct {
		name      string
		cfg       Config
		ts        []int64 // one batch per segment, by timestamp, then an empty active segment
		wantStart int64   // first surviving batch index
		wantSegs  int
	}{
		{"time keeps recent", Config{RetentionMs: 60_000}, []int64{ms - 120_000, ms - 90_000, ms - 30_000, ms}, 2, 3},
		{"time deletes all, rolls active", Config{RetentionMs: 60_000}, []int64{ms - 120_000, ms - 90_000}, 2, 1},
		{"forever", Config{RetentionMs: -1}, []int64{0, 1, 2}, 0, 4},
		{"bytes", Config{RetentionMs: -1, RetentionBytes: 1000}, []int64{0, 1, 2, 3, 4}, 2, 4},
		{"compact never deletes", Config{RetentionMs: 1, NoDelete: true}, []int64{0, 1, 2}, 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, tt.cfg)
			for _, ts := range tt.ts {
				appendN(t, l, 1, 2, 150, ts) // 381-byte batch
				if err := l.Roll(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := l.EnforceRetention(now); err != nil {
				t.Fatal(err)
			}
			if got := l.LogStartOffset(); got != int64(tt.wantStart*2) {
				t.Fatalf("log start %d, want %d", got, tt.wantStart*2)
			}
			if got := l.Segments(); got != tt.wantSegs {
				t.Fatalf("%d segments, want %d", got, tt.wantSegs)
			}
			if _, err := l.Read(0, l.NextOffset(), 100, true); tt.wantStart > 0 && !errors.Is(err, ErrOffsetOutOfRange) {
				t.Fatalf("read below start = %v", err)
			}
			// Files are gone and the start survives a restart.
			l.Close()
			l2 := open(t, dir, tt.cfg)
			if l2.LogStartOffset() != int64(tt.wantStart*2) || l2.NextOffset() != int64(len(tt.ts)*2) {
				t.Fatalf("after reopen start %d next %d", l2.LogStartOffset(), l2.NextOffset())
			}
		})
	}
}

// TestRetentionWithoutTimestamps: segments whose batches carry no
// timestamp (-1, records of message format v0) are measured by the time
// their .log was last written, not deleted at once.
func TestRetentionWithoutTimestamps(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Config{RetentionMs: 60_000})
	for range 3 {
		appendN(t, l, 1, 2, 150, -1)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if n, err := l.EnforceRetention(now); err != nil || n != 0 {
		t.Fatalf("fresh segments without timestamps: %d deleted (%v)", n, err)
	}
	// The first segment was last written two minutes ago.
	old := now.Add(-2 * time.Minute)
	if err := os.Chtimes(filepath.Join(dir, fmt.Sprintf("%020d.log", 0)), old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := l.EnforceRetention(now); err != nil || n != 1 || l.LogStartOffset() != 2 {
		t.Fatalf("%d deleted (%v), log start %d; want the first segment gone", n, err, l.LogStartOffset())
	}
	// Everything is older than retention.ms a minute and a half later.
	if n, err := l.EnforceRetention(now.Add(90 * time.Second)); err != nil || n != 2 || l.LogStartOffset() != 6 {
		t.Fatalf("%d deleted (%v), log start %d; want all gone", n, err, l.LogStartOffset())
	}
}

func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Config{SegmentBytes: 1000})
	appendN(t, l, 20, 2, 100, 0) // 40 offsets
	segs := l.Segments()
	tests := []struct {
		off       int64
		wantStart int64
		wantErr   error
	}{
		{5, 5, nil},
		{3, 5, nil}, // never moves back
		{20, 20, nil},
		{41, 20, ErrOffsetOutOfRange},
		{40, 40, nil},
	}
	for _, tt := range tests {
		err := l.DeleteRecords(tt.off)
		if !errors.Is(err, tt.wantErr) || l.LogStartOffset() != tt.wantStart {
			t.Fatalf("DeleteRecords(%d) = %v, start %d; want %v, %d", tt.off, err, l.LogStartOffset(), tt.wantErr, tt.wantStart)
		}
	}
	if l.Segments() >= segs {
		t.Fatalf("no segment deleted (%d -> %d)", segs, l.Segments())
	}
	l.Close()
	l2 := open(t, dir, Config{SegmentBytes: 1000})
	if l2.LogStartOffset() != 40 {
		t.Fatalf("log start after restart %d", l2.LogStartOffset())
	}
	appendN(t, l2, 1, 1, 10, 0)
	if got := readAll(t, l2); len(got) != 1 {
		t.Fatalf("read %d batches after delete", len(got))
	}
}

func TestTimestampLookup(t *testing.T) {
	l := open(t, t.TempDir(), Config{SegmentBytes: 2000, IndexIntervalBytes: 200})
	// Batch i: two records with timestamps 100i and 100i (delta 0).
	for i := 0; i < 30; i++ {
		appendN(t, l, 1, 2, 50, int64(i*100))
	}
	tests := []struct {
		ts   int64
		want int64 // base offset, -1 none
	}{
		{-5, 0}, {0, 0}, {1, 2}, {100, 2}, {1550, 32}, {2900, 58}, {2901, -1},
	}
	for _, tt := range tests {
		v, ok, err := l.FindTimestamp(tt.ts)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want < 0 {
			if ok {
				t.Errorf("FindTimestamp(%d) found %d", tt.ts, record.BaseOffset(v.Data))
			}
			continue
		}
		if !ok || record.BaseOffset(v.Data) != tt.want {
			t.Errorf("FindTimestamp(%d) = %v ok=%v, want base %d", tt.ts, v.Data != nil, ok, tt.want)
		}
		v.Release()
	}
	v, ok, _ := l.MaxTimestamp()
	if !ok || record.BaseOffset(v.Data) != 58 {
		t.Fatalf("MaxTimestamp = %v", ok)
	}
	v.Release()
}

// countingFile counts fdatasyncs and can be told to fail.
type countingFile struct {
	*os.File
	syncs   *atomic.Int64
	failAt  int64 // fail writes reaching this file position; 0 = never
	failErr error
}

func (f *countingFile) WriteAt(b []byte, off int64) (int, error) {
	if f.failAt > 0 && off+int64(len(b)) > f.failAt {
		n := max(0, int(f.failAt-off))
		f.File.WriteAt(b[:n], off)
		return n, f.failErr
	}
	return f.File.WriteAt(b, off)
}

func (f *countingFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

func TestGroupCommit(t *testing.T) {
	var syncs atomic.Int64
	l := open(t, t.TempDir(), Config{WrapFile: func(f *os.File) segment.File { return &countingFile{File: f, syncs: &syncs} }})
	const writers, each = 32, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				mu.Lock() // gen reads NextOffset; keep offsets and content in step
				b, h := gen(l.NextOffset(), 1, 100, 0)
				_, err := l.Append(b, &h)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if err := l.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := syncs.Load()
	t.Logf("%d Sync calls served by %d fdatasyncs", writers*each, n)
	if n >= writers*each {
		t.Fatalf("no group commit: %d fdatasyncs for %d Sync calls", n, writers*each)
	}
	if len(readAll(t, l)) != writers*each {
		t.Fatal("lost batches")
	}
}

func TestFlushMessages(t *testing.T) {
	var syncs atomic.Int64
	l := open(t, t.TempDir(), Config{FlushMessages: 10, FlushMaxDelayMs: math.MaxInt64, WrapFile: func(f *os.File) segment.File { return &countingFile{File: f, syncs: &syncs} }})
	syncs.Store(0) // ignore the sync done by Open
	appendN(t, l, 9, 1, 10, 0)
	if syncs.Load() != 0 {
		t.Fatalf("synced early: %d", syncs.Load())
	}
	appendN(t, l, 1, 1, 10, 0)
	if syncs.Load() != 1 {
		t.Fatalf("flush.messages=10 gave %d syncs after 10 records", syncs.Load())
	}
}

func TestFlushMs(t *testing.T) {
	var syncs atomic.Int64
	l := open(t, t.TempDir(), Config{FlushMs: 20, FlushMaxDelayMs: math.MaxInt64, WrapFile: func(f *os.File) segment.File { return &countingFile{File: f, syncs: &syncs} }})
	appendN(t, l, 1, 1, 10, 0)
	deadline := time.Now().Add(5 * time.Second)
	for syncs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if syncs.Load() == 0 {
		t.Fatal("flush.ms never flushed")
	}
}

func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	var syncs atomic.Int64
	enospc := &os.PathError{Op: "write", Path: "x", Err: errNoSpace}
	cf := &countingFile{syncs: &syncs, failAt: 3000, failErr: enospc}
	l, err := Open(dir, Config{WrapFile: func(f *os.File) segment.File { cf.File = f; return cf }})
	if err != nil {
		t.Fatal(err)
	}
	var acked [][]byte
	var werr error
	for i := 0; i < 100; i++ {
		b, h := gen(l.NextOffset(), 1, 200, 0)
		if _, werr = l.Append(b, &h); werr != nil {
			break
		}
		if werr = l.Sync(); werr != nil {
			break
		}
		acked = append(acked, b)
	}
	if !errors.Is(werr, errNoSpace) {
		t.Fatalf("append on a full disk = %v, want ENOSPC", werr)
	}
	b, h := gen(l.NextOffset(), 1, 1, 0)
	if _, err := l.Append(b, &h); !errors.Is(err, errNoSpace) {
		t.Fatalf("later append = %v, want the sticky ENOSPC", err)
	}
	if err := l.Sync(); err == nil {
		t.Fatal("Sync succeeded after a failed write")
	}
	// Still readable and consistent.
	if got := readAll(t, l); len(got) != len(acked) {
		t.Fatalf("readable %d batches, acked %d", len(got), len(acked))
	}
	l.Close()
	// With space again (no wrapper), reopening recovers and appends work.
	l2 := open(t, dir, Config{})
	got := readAll(t, l2)
	if len(got) != len(acked) {
		t.Fatalf("after reopen %d batches, acked %d", len(got), len(acked))
	}
	for i := range got {
		if !bytes.Equal(got[i], acked[i]) {
			t.Fatalf("batch %d changed", i)
		}
	}
	appendN(t, l2, 3, 1, 10, 0)
	if len(readAll(t, l2)) != len(acked)+3 {
		t.Fatal("appends after reopen lost")
	}
}

func TestUncleanReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Config{SegmentBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	want := appendN(t, l, 30, 2, 50, 0)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Abandon l without Close (its files stay open, as after a crash that
	// kept the page cache) and tear the tail of the active segment. Its
	// background seals finish first: two logs on one directory would
	// otherwise trim each other's index files.
	l.sealWG.Wait()
	t.Cleanup(func() { l.Close() })
	last := filepath.Join(dir, segment.FileName(l.active().Base(), ".log"))
	fi, _ := os.Stat(last)
	os.Truncate(last, fi.Size()-5)
	l2 := open(t, dir, Config{SegmentBytes: 2000})
	got := readAll(t, l2)
	if len(got) != len(want)-1 {
		t.Fatalf("recovered %d batches, want %d", len(got), len(want)-1)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("batch %d differs", i)
		}
	}
	if l2.NextOffset() != int64(2*(len(want)-1)) {
		t.Fatalf("next offset %d", l2.NextOffset())
	}
}

func TestCorruptMiddleSegmentDropsLater(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Config{SegmentBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 12, 2, 100, 0)
	l.Close()
	// Mark unclean with a recovery point of 0 and corrupt segment 2.
	bases, _, _ := (&Log{dir: dir}).listSegments()
	if len(bases) < 3 {
		t.Fatalf("%d segments", len(bases))
	}
	os.Remove(filepath.Join(dir, checkpointName))
	p := filepath.Join(dir, segment.FileName(bases[1], ".log"))
	data, _ := os.ReadFile(p)
	data[len(data)-3] ^= 0xff
	os.WriteFile(p, data, 0o644)
	l2 := open(t, dir, Config{SegmentBytes: 1000})
	got := readAll(t, l2)
	for _, b := range got {
		if _, err := record.Validate(b); err != nil {
			t.Fatal("served corrupt batch")
		}
	}
	if l2.NextOffset() >= 24 || l2.Segments() != 2 {
		t.Fatalf("next %d segments %d: later segments should be dropped", l2.NextOffset(), l2.Segments())
	}
	appendN(t, l2, 2, 1, 10, 0)
}

func checkBatches(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d batches, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("batch %d differs", i)
		}
	}
}

func TestWalk(t *testing.T) {
	l := open(t, t.TempDir(), Config{SegmentBytes: 1000, IndexIntervalBytes: 100})
	appendN(t, l, 40, 2, 60, 0) // offsets 0..79, batches of two
	for _, from := range []int64{0, 1, 7, 20, 33, 78, 79, 80} {
		var got []int64
		if err := l.Walk(from, func(_ []byte, h *record.Header) bool {
			got = append(got, h.BaseOffset)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		var want []int64
		for b := from &^ 1; b < 80; b += 2 {
			want = append(want, b)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Walk(%d) = %v, want %v", from, got, want)
		}
	}
	n := 0
	l.Walk(10, func([]byte, *record.Header) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("Walk went on after false: %d calls", n)
	}
}

// TestCleanOpenDamagedFiles damages segment files of a cleanly closed log
// while it is stopped: indexes with entries past the log or cut short, a
// sealed segment's .log cut short. The clean open trusts its checkpoint,
// and the first read of each damaged segment finds the damage, rebuilds its
// indexes and serves every whole batch that is left, never a torn one.
func TestCleanOpenDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 2000, IndexIntervalBytes: 100}
	l := open(t, dir, cfg)
	want := appendN(t, l, 60, 2, 60, 1000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	bases, _, _ := (&Log{dir: dir}).listSegments()
	if len(bases) < 5 {
		t.Fatalf("%d segments", len(bases))
	}
	path := func(i int, ext string) string { return filepath.Join(dir, segment.FileName(bases[i], ext)) }
	// Segment 1: an offset index entry pointing past the log.
	f, _ := os.OpenFile(path(1, ".index"), os.O_RDWR, 0)
	f.WriteAt([]byte{0, 0, 0, 9, 0x7f, 0, 0, 0}, 0)
	f.Close()
	// Segment 2: the time index cut short.
	os.Truncate(path(2, ".timeindex"), 5)
	// Segment 3: its .log cut in the middle of its last batch.
	fi, _ := os.Stat(path(3, ".log"))
	os.Truncate(path(3, ".log"), fi.Size()-10)
	// The active segment: garbage in its index.
	os.WriteFile(path(len(bases)-1, ".index"), bytes.Repeat([]byte{0xee}, 16), 0o644)

	l2 := open(t, dir, cfg)
	got := readAll(t, l2)
	// Segment 3 lost its last batch; everything else is served.
	var keep [][]byte
	for _, b := range want {
		off := record.BaseOffset(b)
		if off >= bases[3] && off < bases[4] && off+2 == bases[4] {
			continue
		}
		keep = append(keep, b)
	}
	checkBatches(t, got, keep)
	if v, ok, err := l2.FindTimestamp(1000 + 30); err != nil || !ok || record.BaseOffset(v.Data) != 60 {
		t.Fatalf("FindTimestamp after repair: ok %v err %v", ok, err)
	} else {
		v.Release()
	}
	more := appendN(t, l2, 3, 1, 10, 0)
	l2.Close()
	checkBatches(t, readAll(t, open(t, dir, cfg)), append(keep, more...))
}
