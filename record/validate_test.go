package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
)

// handBatch builds a batch around a records section as given, claiming
// count records and lastDelta as its last offset delta, compressed with
// codec, with a correct length and CRC: a batch only the record walk can
// refuse.
func handBatch(codec int, count, lastDelta int32, recs []byte) []byte {
	if codec != CodecNone {
		var err error
		if recs, err = Compress(nil, codec, recs); err != nil {
			panic(err)
		}
	}
	b := make([]byte, HeaderSize, HeaderSize+len(recs))
	be := binary.BigEndian
	be.PutUint32(b[PosLeaderEpoch:], 0)
	b[PosMagic] = Magic
	be.PutUint16(b[PosAttributes:], uint16(codec))
	be.PutUint32(b[PosLastOffsetDelta:], uint32(lastDelta))
	be.PutUint64(b[PosBaseTimestamp:], 1000)
	be.PutUint64(b[PosMaxTimestamp:], 1000)
	be.PutUint64(b[PosProducerID:], math.MaxUint64) // -1
	be.PutUint16(b[PosProducerEpoch:], math.MaxUint16)
	be.PutUint32(b[PosBaseSequence:], math.MaxUint32)
	be.PutUint32(b[PosRecordCount:], uint32(count))
	b = append(b, recs...)
	be.PutUint32(b[PosBatchLength:], uint32(len(b)-LengthOverhead))
	be.PutUint32(b[PosCRC:], Checksum(b))
	return b
}

// recs encodes records with the given offset deltas.
func recs(deltas ...int32) []byte {
	var b []byte
	for _, d := range deltas {
		b = appendRecord(b, &Record{Key: []byte("k"), Value: []byte("value"), Headers: []RecordHeader{{Key: "h", Value: []byte("v")}}}, d)
	}
	return b
}

// rawRecord encodes one record from its body bytes (attributes onwards)
// with a length prefix.
func rawRecord(body ...byte) []byte {
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func TestCheckRecords(t *testing.T) {
	zz := func(v int64) byte { return byte(binary.AppendVarint(nil, v)[0]) } // one-byte varints
	tests := []struct {
		name string
		b    []byte
		want error // from CheckRecords
	}{
		{"one record", handBatch(CodecNone, 1, 0, recs(0)), nil},
		{"three records", handBatch(CodecNone, 3, 2, recs(0, 1, 2)), nil},
		{"franz-go's encoding", kmsgBatch(7, 0), nil},
		{"our own encoding", AppendBatch(nil, Batch{Records: []Record{{Value: nil}, {Key: []byte{}}}}), nil},
		{"null key, value and header value", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(-1), zz(1), zz(1), 'h', zz(-1))), nil},
		{"a large timestamp delta", handBatch(CodecNone, 1, 0, rawRecord(0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, zz(-1), zz(-1), 0)), nil},
		{"one record claiming 2^31-1", handBatch(CodecNone, math.MaxInt32, math.MaxInt32-1, recs(0)), ErrInvalid},
		{"two records claiming three", handBatch(CodecNone, 3, 2, recs(0, 1)), ErrInvalid},
		{"three records claiming two", handBatch(CodecNone, 2, 1, recs(0, 1, 2)), ErrInvalid},
		{"no records claiming one", handBatch(CodecNone, 1, 0, nil), ErrInvalid},
		{"offset deltas from 1", handBatch(CodecNone, 2, 1, recs(1, 2)), ErrInvalid},
		{"offset deltas with a gap", handBatch(CodecNone, 3, 2, recs(0, 1, 3)), ErrInvalid},
		{"offset deltas repeated", handBatch(CodecNone, 2, 1, recs(0, 0)), ErrInvalid},
		{"offset deltas descending", handBatch(CodecNone, 2, 1, recs(1, 0)), ErrInvalid},
		{"record length past the end", handBatch(CodecNone, 1, 0, recs(0)[:10]), ErrInvalid},
		{"second record cut short", handBatch(CodecNone, 2, 1, recs(0, 1)[:25]), ErrInvalid},
		{"negative record length", handBatch(CodecNone, 1, 0, append([]byte{zz(-3)}, recs(0)...)), ErrInvalid},
		{"key past its record", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(40), 'k', zz(-1), 0)), ErrInvalid},
		{"value past its record", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(9), 'v', 0)), ErrInvalid},
		{"fields past the record length", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1))), ErrInvalid},
		{"bytes left in the record", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(-1), 0, 7, 7)), ErrInvalid},
		{"empty record", handBatch(CodecNone, 1, 0, rawRecord()), ErrInvalid},
		{"negative header count", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(-1), zz(-1))), ErrInvalid},
		{"header count past the record", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(-1), zz(60), zz(1), 'h', zz(-1))), ErrInvalid},
		{"negative header key length", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0, zz(-1), zz(-1), zz(1), zz(-1), zz(-1))), ErrInvalid},
		{"offset delta varint too long", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0, zz(-1), zz(-1), 0)), ErrInvalid},
		{"offset delta past 32 bits", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0x80, 0x80, 0x80, 0x80, 0x7f, zz(-1), zz(-1), 0)), ErrInvalid},
		{"timestamp varint too long", handBatch(CodecNone, 1, 0, rawRecord(0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, zz(-1), zz(-1), 0)), ErrInvalid},
		{"truncated varint", handBatch(CodecNone, 1, 0, rawRecord(0, 0, 0x80)), ErrInvalid},
		// Compressed records are checked where they are decompressed
		// (Recompress, below), not here.
		{"compressed, not walked", handBatch(CodecGzip, math.MaxInt32, math.MaxInt32-1, recs(0)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Validate(tt.b)
			if err != nil {
				t.Fatalf("Validate = %v: the header and CRC must pass", err)
			}
			err = CheckRecords(&h, tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckRecords = %v, want %v", err, tt.want)
			}
			if tt.want != nil && testing.Verbose() {
				t.Log(err)
			}
			if h.Codec() != CodecNone {
				return
			}
			// Every codec's decompressed records get the same verdict.
			for _, codec := range []int{CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
				_, err := Recompress(handBatch(codec, h.RecordCount, h.LastOffsetDelta, tt.b[HeaderSize:]), CodecNone)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Recompress from codec %d = %v, want %v", codec, err, tt.want)
				}
			}
		})
	}
}

// TestValidateOffsetRange: a negative last offset delta, or a count that
// does not match it, is INVALID_RECORD in Kafka, not corruption.
func TestValidateOffsetRange(t *testing.T) {
	for _, tc := range []struct{ count, delta int32 }{{1, -1}, {0, -1}, {math.MinInt32, math.MaxInt32}, {0, 0}, {-5, -6}, {2, 0}} {
		b := handBatch(CodecNone, tc.count, tc.delta, recs(0))
		if _, err := Validate(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("count %d, last offset delta %d: %v, want ErrInvalid", tc.count, tc.delta, err)
		}
	}
}

// TestCheckRecordsAllocs: the walk allocates nothing on a good batch.
func TestCheckRecordsAllocs(t *testing.T) {
	b := kmsgBatch(100, 0)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := CheckRecords(&h, b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per walk", n)
	}
}

func TestVarints(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, -64, 64, -65, 1 << 20, math.MaxInt32, math.MinInt32} {
		b := append([]byte{9}, binary.AppendVarint(nil, v)...)
		if got, p := varint32(b, 1); p != len(b) || int64(got) != v {
			t.Errorf("varint32(%d) = %d, ends at %d of %d", v, got, p, len(b))
		}
	}
	for _, v := range []int64{0, -1, math.MaxInt32 + 1, math.MinInt32 - 1, math.MaxInt64, math.MinInt64} {
		b := append([]byte{9}, binary.AppendVarint(nil, v)...)
		if got, p := varint64(b, 1); p != len(b) || got != v {
			t.Errorf("varint64(%d) = %d, ends at %d of %d", v, got, p, len(b))
		}
		if v > math.MaxInt32 || v < math.MinInt32 {
			if _, p := varint32(b, 1); p != -1 {
				t.Errorf("varint32 took %d, past 32 bits", v)
			}
		}
	}
	for _, b := range [][]byte{nil, {0x80}, bytes.Repeat([]byte{0x80}, 11), append(bytes.Repeat([]byte{0xff}, 9), 2)} {
		if _, p := varint64(b, 0); p != -1 {
			t.Errorf("varint64(%x) read to %d", b, p)
		}
		if _, p := varint64(b, len(b)+1); p != -1 {
			t.Errorf("varint64 past the end read to %d", p)
		}
	}
}

// BenchmarkValidateRecords measures what a produced batch costs:
// Validate (header and CRC) plus the record walk.
func BenchmarkValidateRecords(b *testing.B) {
	for _, tc := range []struct {
		n, size int
	}{{100, 5}, {16, 1024}} {
		var rs []Record
		for range tc.n {
			rs = append(rs, Record{Key: []byte("k"), Value: make([]byte, tc.size)})
		}
		batch := AppendBatch(nil, Batch{Records: rs})
		b.Run(fmt.Sprintf("%dx%dB", tc.n, tc.size), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				h, err := Validate(batch)
				if err == nil {
					err = CheckRecords(&h, batch)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCheckRecords walks arbitrary records sections. The walk never
// panics, and what it accepts decodes into exactly count records at
// offset deltas 0, 1, 2, ...
func FuzzCheckRecords(f *testing.F) {
	f.Add(recs(0, 1, 2), int32(3))
	f.Add(recs(0, 1, 2), int32(2))
	f.Add(kmsgBatch(4, 0)[HeaderSize:], int32(4))
	f.Add(rawRecord(0, 0, 0, 1, 1, 0), int32(1))
	f.Add([]byte{}, int32(0))
	f.Fuzz(func(t *testing.T, b []byte, count int32) {
		if checkRecords(b, count) != nil {
			return
		}
		var n int32
		err := ForEachIn(b, count, func(r *Record) error {
			if r.OffsetDelta != n {
				t.Fatalf("record %d at offset delta %d passed the walk", n, r.OffsetDelta)
			}
			n++
			return nil
		})
		if err != nil || n != max(count, 0) {
			t.Fatalf("walk passed, but ForEachIn read %d of %d records: %v", n, count, err)
		}
	})
}
