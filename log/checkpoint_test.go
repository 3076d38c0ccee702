package log

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"os"
	"sync/atomic"
	"testing"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/segment"
)

func TestCheckpointVersion1(t *testing.T) {
	// A version 1 checkpoint, as older brokers wrote it.
	var b [22]byte
	b[0], b[1] = 1, 1
	binary.BigEndian.PutUint64(b[2:], 300)
	binary.BigEndian.PutUint64(b[10:], 7)
	binary.BigEndian.PutUint32(b[18:], crc32.Checksum(b[:18], castagnoli))
	cp, err := decodeCheckpoint(b[:])
	if err != nil || !cp.clean || cp.recoveryPoint != 300 || cp.logStart != 7 || len(cp.segments) != 0 {
		t.Fatalf("version 1: %+v, %v", cp, err)
	}
}

// FuzzCheckpoint decodes arbitrary bytes as a log checkpoint: no panic,
// and what is accepted holds the invariants Open relies on and survives an
// encode and decode unchanged.
func FuzzCheckpoint(f *testing.F) {
	clean := checkpoint{clean: true, recoveryPoint: 30, logStart: 2, segments: []segment.Meta{
		{Base: 0, Size: 400, NextOffset: 10, MaxTimestamp: 99, FirstTimestamp: 5},
		{Base: 10, Size: 800, NextOffset: 30, MaxTimestamp: -1, FirstTimestamp: -1},
		{Base: 30, Size: 0, NextOffset: 30, MaxTimestamp: -1, FirstTimestamp: -1},
	}}
	f.Add(clean.encode())
	f.Add((&checkpoint{recoveryPoint: 5}).encode())
	var v1 [22]byte
	v1[0] = 1
	binary.BigEndian.PutUint32(v1[18:], crc32.Checksum(v1[:18], castagnoli))
	f.Add(v1[:])
	f.Add([]byte{2, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		if cp.recoveryPoint < 0 || cp.logStart < 0 {
			t.Fatalf("negative offsets accepted: %+v", cp)
		}
		if !cp.clean && len(cp.segments) > 0 {
			t.Fatal("segment rows in an unclean checkpoint")
		}
		for i, m := range cp.segments {
			if m.Base < 0 || m.Size < 0 || m.Size > math.MaxInt32 || m.NextOffset < m.Base {
				t.Fatalf("row %d accepted: %+v", i, m)
			}
			if i > 0 && m.Base < cp.segments[i-1].NextOffset {
				t.Fatalf("row %d overlaps the one before: %+v", i, cp.segments)
			}
		}
		enc := cp.encode()
		if b[0] == checkpointVersion && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoded differently:\n %x\n %x", b, enc)
		}
		cp2, err := decodeCheckpoint(enc)
		if err != nil || cp2.clean != cp.clean || cp2.recoveryPoint != cp.recoveryPoint || cp2.logStart != cp.logStart || len(cp2.segments) != len(cp.segments) {
			t.Fatalf("round trip: %+v, %v; want %+v", cp2, err, cp)
		}
		for i := range cp.segments {
			if cp2.segments[i] != cp.segments[i] {
				t.Fatalf("row %d changed in a round trip", i)
			}
		}
	})
}

// TestCloseIntoBatch: a log closed into a durable.Batch syncs nothing
// itself, and its clean checkpoint appears only when the batch commits,
// so a crash before the commit leaves the log to be recovered, never
// vouched for by a checkpoint written before its data was durable.
func TestCloseIntoBatch(t *testing.T) {
	dir := t.TempDir()
	var syncs atomic.Int64
	cfg := Config{FlushMaxDelayMs: math.MaxInt64, WrapFile: func(f *os.File) segment.File { return &countingFile{File: f, syncs: &syncs} }}
	l := open(t, dir, cfg)
	want := appendN(t, l, 10, 3, 100, 0) // acks=1 style: never synced
	syncs.Store(0)
	var b durable.Batch
	if err := l.CloseInto(&b); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 0 {
		t.Fatalf("CloseInto fdatasynced the segment %d times", n)
	}
	cp, err := readCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cp.clean {
		t.Fatal("the clean checkpoint is in place before the batch committed")
	}
	if err := b.Commit(dir); err != nil {
		t.Fatal(err)
	}
	cp, err = readCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !cp.clean || cp.recoveryPoint != int64(len(want)*3) {
		t.Fatalf("after commit: clean %v, recovery point %d; want clean at %d", cp.clean, cp.recoveryPoint, len(want)*3)
	}
	l2 := open(t, dir, cfg)
	checkBatches(t, readAll(t, l2), want)
}
