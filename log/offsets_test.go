package log

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// claiming returns a valid batch of one record whose header claims n
// records (last offset delta n-1), as a hostile producer could send.
func claiming(t *testing.T, n int32) ([]byte, record.Header) {
	t.Helper()
	b, _ := gen(0, 1, 10, 0)
	binary.BigEndian.PutUint32(b[23:], uint32(n-1)) // lastOffsetDelta
	binary.BigEndian.PutUint32(b[57:], uint32(n))   // records count
	binary.BigEndian.PutUint32(b[17:], record.Checksum(b))
	h, err := record.Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, h
}

// TestHugeOffsetJumpsRoll appends batches whose offsets jump by 2^31 each:
// the log rolls before relative offsets pass uint32 instead of failing,
// and stays writable, readable and reopenable.
func TestHugeOffsetJumpsRoll(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Config{})
	var want [][]byte
	for i := range 6 {
		b, h := claiming(t, math.MaxInt32)
		if _, err := l.Append(b, &h); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want = append(want, b)
		want = append(want, appendN(t, l, 1, 2, 10, 0)...)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("sticky error after huge batches: %v", err)
	}
	if l.Segments() < 3 {
		t.Fatalf("%d segments: offsets 2^32 past a base need a roll", l.Segments())
	}
	checkBatches(t, readAll(t, l), want)
	l.Close()
	checkBatches(t, readAll(t, open(t, dir, Config{})), want)
}

// TestOffsetOverflowRefused: a batch whose offsets would pass the largest
// int64 is refused with an error that is not sticky.
func TestOffsetOverflowRefused(t *testing.T) {
	dir := t.TempDir()
	base := int64(math.MaxInt64 - 1000)
	s, err := segment.Create(dir, base, segment.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	l := open(t, dir, Config{})
	if l.NextOffset() != base {
		t.Fatalf("next offset %d, want %d", l.NextOffset(), base)
	}
	b, h := claiming(t, 2000)
	if _, err := l.Append(b, &h); !errors.Is(err, ErrOffsetOverflow) {
		t.Fatalf("append past the largest offset = %v, want ErrOffsetOverflow", err)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("refused batch left a sticky error: %v", err)
	}
	want := appendN(t, l, 3, 2, 10, 0)
	b, h = claiming(t, 994) // ends at MaxInt64-1: the next offset is MaxInt64
	if _, err := l.Append(b, &h); err != nil {
		t.Fatalf("append up to the last offset: %v", err)
	}
	want = append(want, b)
	b, h = gen(l.NextOffset(), 1, 1, 0)
	if _, err := l.Append(b, &h); !errors.Is(err, ErrOffsetOverflow) {
		t.Fatalf("append after the last offset = %v, want ErrOffsetOverflow", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, readAll(t, l), want)
}
