package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kmsgBatch encodes a batch with franz-go's independent encoder, so the
// parser is checked against bytes it did not produce itself.
func kmsgBatch(n int, attrs int16) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta: int32(i), Key: []byte("k"), Value: []byte("value")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(n - 1),
		FirstTimestamp:       1000,
		MaxTimestamp:         1000 + int64(n-1),
		ProducerID:           7,
		ProducerEpoch:        1,
		FirstSequence:        3,
		NumRecords:           int32(n),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

func TestParseValidate(t *testing.T) {
	good := kmsgBatch(3, 0)
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"good", good, nil},
		{"good with trailing bytes", append(bytes.Clone(good), 1, 2, 3), nil},
		{"empty", nil, ErrShort},
		{"11 bytes", good[:11], ErrShort},
		{"header only", good[:HeaderSize], ErrShort},
		{"one byte short", good[:len(good)-1], ErrShort},
		{"length below header", mutate(func(b []byte) { binary.BigEndian.PutUint32(b[8:], 10) }), ErrCorrupt},
		{"negative length", mutate(func(b []byte) { binary.BigEndian.PutUint32(b[8:], 0xffffffff) }), ErrCorrupt},
		{"magic 1", mutate(func(b []byte) { b[16] = 1 }), ErrMagic},
		{"flipped record byte", mutate(func(b []byte) { b[len(b)-1] ^= 1 }), ErrCorrupt},
		{"flipped crc", mutate(func(b []byte) { b[17] ^= 0x80 }), ErrCorrupt},
		{"count mismatch", mutate(func(b []byte) {
			binary.BigEndian.PutUint32(b[57:], 5)
			binary.BigEndian.PutUint32(b[17:], Checksum(b))
		}), ErrInvalid},
		{"bad codec", mutate(func(b []byte) {
			b[22] |= 7
			binary.BigEndian.PutUint32(b[17:], Checksum(b))
		}), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Validate(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHeaderFields(t *testing.T) {
	b := kmsgBatch(4, Transactional|CodecNone)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{
		BaseOffset: 0, BatchLength: int32(len(b) - 12), PartitionLeaderEpoch: -1, Magic: 2,
		CRC: h.CRC, Attributes: Transactional, LastOffsetDelta: 3, BaseTimestamp: 1000,
		MaxTimestamp: 1003, ProducerID: 7, ProducerEpoch: 1, BaseSequence: 3, RecordCount: 4,
	}
	if h != want {
		t.Fatalf("header\n got %+v\nwant %+v", h, want)
	}
	if !h.IsTransactional() || h.IsControl() || h.Codec() != CodecNone || h.LastSequence() != 6 || h.NextOffset() != 4 {
		t.Fatalf("accessors wrong: %+v", h)
	}
	SetBaseOffset(b, 1<<40)
	SetLeaderEpoch(b, 9)
	h2, err := Validate(b)
	if err != nil {
		t.Fatalf("rewriting base offset broke the batch: %v", err)
	}
	if h2.BaseOffset != 1<<40 || h2.PartitionLeaderEpoch != 9 || h2.LastOffset() != 1<<40+3 {
		t.Fatalf("rewrite not visible: %+v", h2)
	}
	SetLogAppendTime(b, 5555)
	h3, err := Validate(b)
	if err != nil {
		t.Fatalf("log append time broke the batch: %v", err)
	}
	if !h3.LogAppendTime() || h3.MaxTimestamp != 5555 {
		t.Fatalf("log append time not set: %+v", h3)
	}
}

func TestLastSequenceWraps(t *testing.T) {
	h := Header{BaseSequence: 1<<31 - 2, LastOffsetDelta: 3}
	if got := h.LastSequence(); got != 1 {
		t.Fatalf("LastSequence = %d, want 1", got)
	}
}

func TestBuildAndIterate(t *testing.T) {
	in := []Record{
		{Key: []byte("a"), Value: []byte("1"), Headers: []RecordHeader{{Key: "h", Value: []byte("v")}}},
		{Key: nil, Value: []byte("2"), TimestampDelta: 5},
		{Key: []byte("tomb"), Value: nil},
	}
	b := AppendBatch([]byte("prefix"), Batch{BaseOffset: 10, BaseTimestamp: 100, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: in})
	if string(b[:6]) != "prefix" {
		t.Fatal("prefix clobbered")
	}
	b = b[6:]
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.RecordCount != 3 || h.MaxTimestamp != 105 || h.BaseOffset != 10 {
		t.Fatalf("header %+v", h)
	}
	// The same bytes decode with franz-go's decoder.
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(b); err != nil {
		t.Fatalf("kmsg cannot read our batch: %v", err)
	}
	var got []Record
	err = ForEach(b, func(r *Record) error {
		c := Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), TimestampDelta: r.TimestampDelta, OffsetDelta: r.OffsetDelta}
		for _, h := range r.Headers {
			c.Headers = append(c.Headers, RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
		}
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || string(got[0].Key) != "a" || got[0].Headers[0].Key != "h" || got[1].Key != nil ||
		got[1].TimestampDelta != 5 || got[2].Value != nil || got[2].OffsetDelta != 2 {
		t.Fatalf("round trip: %+v", got)
	}
	// franz-go-built records iterate too.
	n := 0
	if err := ForEach(kmsgBatch(5, 0), func(r *Record) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("ForEach over kmsg batch: n=%d err=%v", n, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(kmsgBatch(1, 0))
	f.Add(kmsgBatch(3, CodecZstd))
	f.Add(AppendBatch(nil, Batch{Records: []Record{{Value: []byte("x")}}}))
	f.Add([]byte{})
	f.Add(handBatch(CodecNone, 3, 2, recs(0, 1, 2)))
	f.Add(handBatch(CodecNone, 2, 1, recs(0, 1, 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Validate(b)
		if err != nil {
			return
		}
		if h.Size() > len(b) || h.Size() < HeaderSize || h.RecordCount != h.LastOffsetDelta+1 {
			t.Fatalf("accepted inconsistent batch %+v (len %d)", h, len(b))
		}
		// Iterating a valid uncompressed batch must not panic.
		if h.Codec() == CodecNone {
			_ = ForEach(b, func(*Record) error { return nil })
		}
		// A batch whose records pass the walk holds exactly the records
		// its header says, at offset deltas 0, 1, 2, ...
		if h.Codec() != CodecNone || CheckRecords(&h, b) != nil {
			return
		}
		var n int32
		err = ForEach(b, func(r *Record) error {
			if r.OffsetDelta != n {
				t.Fatalf("record %d at offset delta %d passed the walk", n, r.OffsetDelta)
			}
			n++
			return nil
		})
		if err != nil || n != h.RecordCount {
			t.Fatalf("walk passed, but ForEach read %d of %d records: %v", n, h.RecordCount, err)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	batch := kmsgBatch(100, 0)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(batch); err != nil {
			b.Fatal(err)
		}
	}
}
