package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

type bopt struct {
	pid   int64
	epoch int16
	seq   int32
	n     int
	ts    int64
	attrs int16
}

func batch(o bopt) []byte {
	if o.n == 0 {
		o.n = 1
	}
	recs := make([]record.Record, o.n)
	for i := range recs {
		recs[i] = record.Record{Value: []byte("v"), TimestampDelta: int64(i)}
	}
	if o.pid == 0 {
		o.pid, o.epoch, o.seq = -1, -1, -1
	}
	return record.AppendBatch(nil, record.Batch{ProducerID: o.pid, ProducerEpoch: o.epoch, BaseSequence: o.seq, BaseTimestamp: o.ts, Attributes: o.attrs, Records: recs})
}

func openP(t *testing.T, dir string, cfg Config) *Partition {
	t.Helper()
	p, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestIdempotence(t *testing.T) {
	type step struct {
		b       bopt
		wantOff int64
		wantErr error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{bopt{pid: 1, seq: 0, n: 2}, 0, nil}, {bopt{pid: 1, seq: 2, n: 3}, 2, nil}, {bopt{pid: 1, seq: 5}, 5, nil}}},
		{"duplicate answers original offset", []step{{bopt{pid: 1, seq: 0, n: 2}, 0, nil}, {bopt{pid: 1, seq: 2}, 2, nil}, {bopt{pid: 1, seq: 0, n: 2}, 0, nil}, {bopt{pid: 1, seq: 3}, 3, nil}}},
		{"gap", []step{{bopt{pid: 1, seq: 0}, 0, nil}, {bopt{pid: 1, seq: 5}, -1, ErrOutOfOrderSequence}}},
		{"unknown producer takes any sequence", []step{{bopt{pid: 7, seq: 42}, 0, nil}, {bopt{pid: 7, seq: 43}, 1, nil}}},
		{"new epoch must start at 0", []step{{bopt{pid: 1, seq: 0}, 0, nil}, {bopt{pid: 1, epoch: 1, seq: 3}, -1, ErrOutOfOrderSequence}, {bopt{pid: 1, epoch: 1, seq: 0}, 1, nil}}},
		{"old epoch fenced", []step{{bopt{pid: 1, epoch: 2, seq: 0}, 0, nil}, {bopt{pid: 1, epoch: 1, seq: 1}, -1, ErrInvalidProducerEpoch}}},
		{"producers are independent", []step{{bopt{pid: 1, seq: 0}, 0, nil}, {bopt{pid: 2, seq: 0}, 1, nil}, {bopt{pid: 1, seq: 1}, 2, nil}}},
		{"sequence wraps", []step{{bopt{pid: 1, seq: 1<<31 - 1}, 0, nil}, {bopt{pid: 1, seq: 0}, 1, nil}}},
		{"non-idempotent never deduplicated", []step{{bopt{}, 0, nil}, {bopt{}, 1, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := openP(t, t.TempDir(), Config{})
			for i, s := range tt.steps {
				res, err := p.Append(batch(s.b))
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: err %v, want %v", i, err, s.wantErr)
				}
				if err == nil && res.BaseOffset != s.wantOff {
					t.Fatalf("step %d: offset %d, want %d", i, res.BaseOffset, s.wantOff)
				}
			}
		})
	}
}

func TestProducerStateSurvivesRestart(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := "unclean"
		if clean {
			name = "clean"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := Open(dir, Config{})
			if err != nil {
				t.Fatal(err)
			}
			for seq := int32(0); seq < 10; seq++ {
				if _, err := p.Append(batch(bopt{pid: 9, epoch: 3, seq: seq})); err != nil {
					t.Fatal(err)
				}
			}
			if clean {
				p.Close()
			} else {
				// No roll and no close: no snapshot, the log is walked.
				p.Sync()
				t.Cleanup(func() { p.Close() })
				if n := len(snapshotOffsets(dir)); n != 0 {
					t.Fatalf("%d snapshots without a roll or a close", n)
				}
			}
			p2 := openP(t, dir, Config{})
			res, err := p2.Append(batch(bopt{pid: 9, epoch: 3, seq: 8}))
			if err != nil || !res.Duplicate || res.BaseOffset != 8 {
				t.Fatalf("retry after restart: %+v %v", res, err)
			}
			if _, err := p2.Append(batch(bopt{pid: 9, epoch: 3, seq: 12})); !errors.Is(err, ErrOutOfOrderSequence) {
				t.Fatalf("gap after restart = %v", err)
			}
			if res, err := p2.Append(batch(bopt{pid: 9, epoch: 3, seq: 10})); err != nil || res.BaseOffset != 10 {
				t.Fatalf("next after restart: %+v %v", res, err)
			}
		})
	}
}

// TestProducerSnapshots checks that a snapshot is written at every roll
// (the newest three kept), that recovery starts from one, and that a
// snapshot above the recovered log end (state a crash lost) is skipped.
func TestProducerSnapshots(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, Config{Log: log.Config{SegmentBytes: 400}})
	if err != nil {
		t.Fatal(err)
	}
	for seq := int32(0); seq < 60; seq += 2 { // two records per batch
		if _, err := p.Append(batch(bopt{pid: 9, seq: seq, n: 2})); err != nil {
			t.Fatal(err)
		}
	}
	if got := snapshotOffsets(dir); len(got) != keptSnapshots {
		t.Fatalf("snapshots %v, want the newest %d", got, keptSnapshots)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	end := p.HighWatermark()
	// A snapshot beyond the log end claims sequence 60 is stored at end+3.
	lost := map[int64]*producer{9: newProducer(0)}
	lost[9].push(batchMeta{firstSeq: 60, lastSeq: 61, base: end + 3, last: end + 4})
	if err := writeProducerSnapshot(nil, dir, end+5, lost); err != nil {
		t.Fatal(err)
	}
	// The stale snapshot's removal is made durable: the directory is
	// synced once it is gone.
	stale := snapshotPath(dir, end+5)
	syncedGone := false
	syncDir = func(d string) error {
		if _, err := os.Stat(stale); d == dir && errors.Is(err, os.ErrNotExist) {
			syncedGone = true
		}
		return durable.SyncDir(d)
	}
	t.Cleanup(func() { syncDir = durable.SyncDir })
	p2 := openP(t, dir, Config{Log: log.Config{SegmentBytes: 400}})
	if !syncedGone {
		t.Fatal("the stale snapshot's removal was not followed by a sync of the directory")
	}
	for _, off := range snapshotOffsets(dir) {
		if off > end {
			t.Fatalf("snapshot at %d above the log end %d kept; it would be taken once the log grows past it", off, end)
		}
	}
	res, err := p2.Append(batch(bopt{pid: 9, seq: 60, n: 2}))
	if err != nil || res.Duplicate || res.BaseOffset != end {
		t.Fatalf("batch after the lost snapshot: %+v %v (want stored at %d)", res, err, end)
	}
	// And the retry of an old batch is still recognised.
	res, err = p2.Append(batch(bopt{pid: 9, seq: 58, n: 2}))
	if err != nil || !res.Duplicate {
		t.Fatalf("retry of seq 58: %+v %v", res, err)
	}
}

func TestExpireProducers(t *testing.T) {
	p := openP(t, t.TempDir(), Config{ProducerIDExpirationMs: 60_000})
	if _, err := p.Append(batch(bopt{pid: 5, seq: 0})); err != nil {
		t.Fatal(err)
	}
	if n := p.ExpireProducers(time.Now()); n != 0 {
		t.Fatalf("expired %d active producers", n)
	}
	if n := p.ExpireProducers(time.Now().Add(2 * time.Minute)); n != 1 {
		t.Fatalf("expired %d idle producers, want 1", n)
	}
	// Forgotten: its next batch is taken at any sequence.
	if _, err := p.Append(batch(bopt{pid: 5, seq: 7})); err != nil {
		t.Fatalf("append after expiry: %v", err)
	}
}

func TestValidation(t *testing.T) {
	good := batch(bopt{n: 3})
	mut := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	recrc := func(b []byte) { binary.BigEndian.PutUint32(b[17:], record.Checksum(b)) }
	// claim makes a batch claim n records, header consistent, CRC good.
	claim := func(b []byte, n int32) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint32(b[23:], uint32(n-1))
		binary.BigEndian.PutUint32(b[57:], uint32(n))
		recrc(b)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		cfg  Config
		want error
	}{
		{"good", good, Config{}, nil},
		{"two batches", append(bytes.Clone(good), good...), Config{}, nil},
		{"bad crc", mut(func(b []byte) { b[len(b)-1] ^= 1 }), Config{}, ErrCorruptMessage},
		{"partial trailing batch", append(bytes.Clone(good), good[:30]...), Config{}, ErrCorruptMessage},
		{"truncated", good[:len(good)-1], Config{}, ErrCorruptMessage},
		{"empty", nil, Config{}, ErrCorruptMessage},
		{"magic 1", mut(func(b []byte) { b[16] = 1 }), Config{}, ErrInvalidRecord},
		{"count mismatch", mut(func(b []byte) { binary.BigEndian.PutUint32(b[57:], 9); recrc(b) }), Config{}, ErrInvalidRecord},
		{"one record claiming 2^31-1", claim(batch(bopt{}), 1<<31-1), Config{}, ErrInvalidRecord},
		{"three records claiming two", claim(good, 2), Config{}, ErrInvalidRecord},
		{"three records claiming four", claim(good, 4), Config{}, ErrInvalidRecord},
		{"second batch claims too many", append(bytes.Clone(good), claim(good, 1000)...), Config{}, ErrInvalidRecord},
		{"offset deltas from 1", mut(func(b []byte) {
			// The first record's offset delta (its fourth byte, after
			// length, attributes and timestamp delta) becomes 1.
			b[record.HeaderSize+3] = 2
			recrc(b)
		}), Config{}, ErrInvalidRecord},
		{"negative last offset delta", mut(func(b []byte) { binary.BigEndian.PutUint32(b[23:], 0xffffffff); recrc(b) }), Config{}, ErrInvalidRecord},
		{"producer id without a sequence", mut(func(b []byte) { binary.BigEndian.PutUint64(b[43:], 5); binary.BigEndian.PutUint16(b[51:], 0); recrc(b) }), Config{}, ErrInvalidRecord},
		{"compressed, recompressed for compression.type, claiming too many", claim(zstdBatch(t, 0, []int64{0, 1}), 1<<31-1), Config{Recompress: true, Codec: record.CodecNone}, ErrInvalidRecord},
		{"control batch", mut(func(b []byte) { b[22] |= record.Control; recrc(b) }), Config{}, ErrInvalidRecord},
		{"too large", good, Config{MaxMessageBytes: 50}, ErrMessageTooLarge},
		{"second batch over segment.bytes", append(bytes.Clone(good), batch(bopt{n: 40})...), Config{Log: log.Config{SegmentBytes: int64(len(good)) + 10}}, ErrRecordListTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := openP(t, t.TempDir(), tt.cfg)
			_, err := p.Append(bytes.Clone(tt.b))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Append = %v, want %v", err, tt.want)
			}
			if tt.want != nil && p.HighWatermark() != 0 {
				t.Fatal("a rejected record set was stored")
			}
		})
	}
}

// TestOffsetOverflow: a record set whose offsets would pass MaxInt64 is
// refused as a whole, without a sticky error: the partition goes on
// taking batches that fit.
func TestOffsetOverflow(t *testing.T) {
	dir := t.TempDir()
	// A log whose only (empty) segment starts 5 below the largest offset.
	const base = math.MaxInt64 - 5
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.log", int64(base))), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := openP(t, dir, Config{})
	if p.log.NextOffset() != base {
		t.Fatalf("log starts at %d", p.log.NextOffset())
	}
	for _, n := range []int{6, 7, 100} {
		if _, err := p.Append(batch(bopt{n: n})); !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("%d records at %d: %v, want ErrInvalidRecord", n, base, err)
		}
	}
	two := append(batch(bopt{n: 3}), batch(bopt{n: 3})...)
	if _, err := p.Append(two); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("two batches of 3 at %d: %v, want ErrInvalidRecord", base, err)
	}
	if p.log.NextOffset() != base || p.log.Err() != nil {
		t.Fatalf("after refusals: next %d, sticky error %v", p.log.NextOffset(), p.log.Err())
	}
	res, err := p.Append(batch(bopt{n: 5}))
	if err != nil || res.BaseOffset != base {
		t.Fatalf("5 records at %d: %+v %v", base, res, err)
	}
	if _, err := p.Append(batch(bopt{})); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("one more at %d: %v, want ErrInvalidRecord", p.log.NextOffset(), err)
	}
}

func TestLogAppendTime(t *testing.T) {
	p := openP(t, t.TempDir(), Config{LogAppendTime: true})
	before := time.Now().UnixMilli()
	res, err := p.Append(batch(bopt{ts: 5, n: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if res.LogAppendTime < before {
		t.Fatalf("log append time %d", res.LogAppendTime)
	}
	if err := p.Sync(); err != nil { // only durable batches are read
		t.Fatal(err)
	}
	v, _ := p.Read(0, 1<<20, true)
	defer v.Release()
	h, err := record.Validate(v.Data)
	if err != nil || !h.LogAppendTime() || h.MaxTimestamp != res.LogAppendTime {
		t.Fatalf("stored header %+v, %v", h, err)
	}
}

func TestWatch(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	ch := make(chan struct{}, 1)
	p.Watch(ch)
	defer p.Unwatch(ch)
	select {
	case <-ch:
		t.Fatal("closed before any append")
	default:
	}
	// The batch becomes durable (the background flush, or this Sync)
	// and that wakes the waiter.
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Append(batch(bopt{}))
		p.Sync()
	}()
	defer func() { <-done }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a durable append did not wake the waiter")
	}
}

// zstdBatch builds a zstd-compressed batch with the given record timestamps.
func zstdBatch(t *testing.T, base int64, deltas []int64) []byte {
	recs := make([]record.Record, len(deltas))
	for i, d := range deltas {
		recs[i] = record.Record{Value: []byte("x"), TimestampDelta: d}
	}
	plain := record.AppendBatch(nil, record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: base, Records: recs})
	enc, _ := zstd.NewWriter(nil)
	comp := enc.EncodeAll(plain[record.HeaderSize:], nil)
	b := append(bytes.Clone(plain[:record.HeaderSize]), comp...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	b[22] |= record.CodecZstd
	binary.BigEndian.PutUint32(b[17:], record.Checksum(b))
	return b
}

func TestOffsetForTimestamp(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	p.Append(zstdBatch(t, 1000, []int64{0, 5, 10, 15}))  // offsets 0-3: 1000..1015
	p.Append(batch(bopt{ts: 2000, n: 3}))                // offsets 4-6: 2000..2002
	p.Append(zstdBatch(t, 3000, []int64{0, 100, 50, 1})) // offsets 7-10: max 3100 at 8
	tests := []struct {
		ts      int64
		wantOff int64
		ok      bool
	}{
		{0, 0, true}, {1000, 0, true}, {1006, 2, true}, {1015, 3, true}, {1016, 4, true},
		{2001, 5, true}, {3050, 8, true}, {3101, 0, false},
	}
	for _, tt := range tests {
		off, _, ok, err := p.OffsetForTimestamp(tt.ts)
		if err != nil || ok != tt.ok || (ok && off != tt.wantOff) {
			t.Errorf("OffsetForTimestamp(%d) = %d %v %v, want %d %v", tt.ts, off, ok, err, tt.wantOff, tt.ok)
		}
	}
	off, ts, ok, err := p.MaxTimestamp()
	if err != nil || !ok || off != 8 || ts != 3100 {
		t.Fatalf("MaxTimestamp = %d %d %v %v", off, ts, ok, err)
	}
}

// TestDecompressionBomb: a small batch that claims a huge decompressed
// size is not expanded by a timestamp lookup; the batch answers as a whole.
func TestDecompressionBomb(t *testing.T) {
	// One record whose value is 200 MiB of zeros, zstd-compressed to a few KiB.
	big := make([]byte, 200<<20)
	plain := record.AppendBatch(nil, record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: 1000, Records: []record.Record{{Value: big}}})
	enc, _ := zstd.NewWriter(nil)
	comp := enc.EncodeAll(plain[record.HeaderSize:], nil)
	b := append(bytes.Clone(plain[:record.HeaderSize]), comp...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	b[22] |= record.CodecZstd
	binary.BigEndian.PutUint32(b[17:], record.Checksum(b))
	big, plain = nil, nil
	p := openP(t, t.TempDir(), Config{})
	if _, err := p.Append(b); err != nil {
		t.Fatal(err)
	}
	if _, err := record.Decompress(record.CodecZstd, comp); err == nil {
		t.Fatal("a 200 MiB batch decompressed")
	}
	off, _, ok, err := p.OffsetForTimestamp(500)
	if err != nil || !ok || off != 0 {
		t.Fatalf("lookup in a bomb batch = %d %v %v", off, ok, err)
	}
}
