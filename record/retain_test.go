package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// retainSource builds a batch of 10 records at offsets 100..109 with
// timestamps 1000+3i, keys k0..k9 (k7 has none), tombstones at 2 and 5,
// a header on every record, compressed with codec and, with logAppend,
// timestamped by the broker.
func retainSource(t *testing.T, codec int, logAppend bool) ([]byte, Header) {
	t.Helper()
	var recs []Record
	for i := range 10 {
		r := Record{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{byte('a' + i)}, 20+i),
			Headers: []RecordHeader{{Key: "h", Value: []byte{byte(i)}}}, TimestampDelta: int64(3 * i)}
		if i == 2 || i == 5 {
			r.Value = nil
		}
		if i == 7 {
			r.Key = nil
		}
		recs = append(recs, r)
	}
	b := AppendBatch(nil, Batch{BaseOffset: 100, BaseTimestamp: 1000, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 99, Records: recs})
	if logAppend {
		SetLogAppendTime(b, 5000)
	}
	b, err := Recompress(b, codec)
	if err != nil {
		t.Fatal(err)
	}
	SetBaseOffset(b, 100)
	SetLeaderEpoch(b, 4)
	h, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, h
}

// TestRetain keeps a subset of a batch's records, with and without a
// delete horizon, in every codec, and checks the result as a client reads
// it (franz-go's decoder): the same offsets, keys, values, headers and
// timestamps for the records kept, the header fields kept, and a batch
// that the log accepts (ValidateStored) though not as produced (Validate).
func TestRetain(t *testing.T) {
	for _, codec := range []int{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd} {
		for _, logAppend := range []bool{false, true} {
			for _, horizon := range []int64{-1, 90_000} {
				t.Run(fmt.Sprintf("codec=%d/logappend=%v/horizon=%d", codec, logAppend, horizon), func(t *testing.T) {
					src, h := retainSource(t, codec, logAppend)
					recs, err := Decompress(codec, src[HeaderSize:h.Size()])
					if err != nil {
						t.Fatal(err)
					}
					keep := map[int32]bool{1: true, 2: true, 6: true, 8: true}
					var kept []byte
					n := int32(0)
					if err := ForEachRaw(recs, h.RecordCount, func(r *RawRecord) bool {
						if keep[r.OffsetDelta] {
							kept = append(kept, r.Raw...)
							n++
						}
						return true
					}); err != nil {
						t.Fatal(err)
					}
					out, err := Retain([]byte("prefix"), &h, kept, n, horizon)
					if err != nil {
						t.Fatal(err)
					}
					if string(out[:6]) != "prefix" {
						t.Fatal("prefix clobbered")
					}
					out = out[6:]
					var got Header
					if err := ValidateStored(out, &got); err != nil {
						t.Fatalf("the log would not take it back: %v", err)
					}
					if _, err := Validate(out); !errors.Is(err, ErrInvalid) {
						t.Fatalf("Validate of a batch with gaps: %v, want ErrInvalid", err)
					}
					if got.BaseOffset != 100 || got.LastOffsetDelta != 9 || got.RecordCount != 4 || got.ProducerID != 42 ||
						got.ProducerEpoch != 3 || got.BaseSequence != 99 || got.PartitionLeaderEpoch != 4 || got.Codec() != codec ||
						got.LogAppendTime() != logAppend || got.LastSequence() != h.LastSequence() {
						t.Fatalf("header %+v from %+v", got, h)
					}
					hz, has := got.DeleteHorizonMs()
					if has != (horizon >= 0) || (has && hz != horizon) {
						t.Fatalf("delete horizon %d, %v; want %d", hz, has, horizon)
					}
					wantMax := int64(1000 + 3*8)
					if logAppend {
						wantMax = 5000
					}
					if got.MaxTimestamp != wantMax {
						t.Fatalf("max timestamp %d, want %d", got.MaxTimestamp, wantMax)
					}
					var kb kmsg.RecordBatch
					if err := kb.ReadFrom(out); err != nil {
						t.Fatalf("franz-go cannot read it: %v", err)
					}
					plain, err := Decompress(codec, kb.Records)
					if err != nil {
						t.Fatal(err)
					}
					var i int
					for rest := plain; len(rest) > 0; i++ {
						l, m := binary.Varint(rest)
						var r kmsg.Record
						if err := r.ReadFrom(rest[:m+int(l)]); err != nil {
							t.Fatalf("record %d: %v", i, err)
						}
						rest = rest[m+int(l):]
						d := r.OffsetDelta
						if !keep[d] {
							t.Fatalf("record at delta %d was not kept", d)
						}
						if ts := kb.FirstTimestamp + r.TimestampDelta64; ts != h.BaseTimestamp+3*int64(d) {
							t.Fatalf("record %d: timestamp %d, want %d", d, ts, h.BaseTimestamp+3*int64(d))
						}
						wantV := bytes.Repeat([]byte{byte('a' + d)}, 20+int(d))
						if d == 2 {
							wantV = nil
						}
						if string(r.Key) != fmt.Sprintf("k%d", d) || !bytes.Equal(r.Value, wantV) || (d == 2) != (r.Value == nil) ||
							len(r.Headers) != 1 || r.Headers[0].Key != "h" || r.Headers[0].Value[0] != byte(d) {
							t.Fatalf("record %d: %+v", d, r)
						}
					}
					if i != 4 {
						t.Fatalf("%d records, want 4", i)
					}
				})
			}
		}
	}
}

// TestRetainKeepsHorizon: a batch that has a delete horizon keeps it when
// rewritten without one, and its records keep their timestamps.
func TestRetainKeepsHorizon(t *testing.T) {
	src, h := retainSource(t, CodecNone, false)
	all := src[HeaderSize:h.Size()]
	once, err := Retain(nil, &h, all, h.RecordCount, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	var h2 Header
	if err := ValidateStored(once, &h2); err != nil {
		t.Fatal(err)
	}
	var kept []byte
	ForEachRaw(once[HeaderSize:], h2.RecordCount, func(r *RawRecord) bool {
		if r.OffsetDelta%2 == 0 {
			kept = append(kept, r.Raw...)
		}
		return true
	})
	twice, err := Retain(nil, &h2, kept, 5, -1)
	if err != nil {
		t.Fatal(err)
	}
	var h3 Header
	if err := ValidateStored(twice, &h3); err != nil {
		t.Fatal(err)
	}
	if hz, ok := h3.DeleteHorizonMs(); !ok || hz != 50_000 {
		t.Fatalf("horizon %d, %v", hz, ok)
	}
	ForEachRaw(twice[HeaderSize:], h3.RecordCount, func(r *RawRecord) bool {
		if ts := h3.BaseTimestamp + r.TimestampDelta; ts != 1000+3*int64(r.OffsetDelta) {
			t.Fatalf("record %d: timestamp %d", r.OffsetDelta, ts)
		}
		return true
	})
}

// TestRetainEmpty: no records kept gives Kafka's empty batch, which keeps
// the producer's last sequence and that franz-go reads.
func TestRetainEmpty(t *testing.T) {
	src, h := retainSource(t, CodecZstd, false)
	out, err := Retain(nil, &h, nil, 0, 70_000)
	if err != nil {
		t.Fatal(err)
	}
	var got Header
	if err := ValidateStored(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.RecordCount != 0 || got.Size() != HeaderSize || got.Codec() != CodecNone || got.BaseTimestamp != -1 ||
		got.MaxTimestamp != -1 || got.LastOffset() != h.LastOffset() || got.LastSequence() != h.LastSequence() {
		t.Fatalf("empty batch %+v from %+v", got, h)
	}
	if _, ok := got.DeleteHorizonMs(); ok {
		t.Fatal("an empty batch has no delete horizon")
	}
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(out); err != nil || kb.NumRecords != 0 {
		t.Fatalf("franz-go: %v, %d records", err, kb.NumRecords)
	}
	_ = src
}

func TestCheckStored(t *testing.T) {
	for _, tc := range []struct {
		count, last int32
		want        error
	}{
		{0, 0, nil}, {1, 0, nil}, {3, 9, nil}, {10, 9, nil},
		{11, 9, ErrInvalid}, {-1, 9, ErrInvalid}, {0, -1, ErrInvalid},
	} {
		b := handBatch(CodecNone, tc.count, tc.last, nil)
		var h Header
		if err := ValidateStored(b, &h); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("count %d, last delta %d: %v, want %v", tc.count, tc.last, err, tc.want)
		}
	}
	b := handBatch(CodecNone, 1, 0, nil)
	b[len(b)-1] ^= 1
	var h Header
	if err := ValidateStored(b, &h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad CRC: %v", err)
	}
}

func TestCheckKeys(t *testing.T) {
	for _, codec := range []int{CodecNone, CodecGzip, CodecZstd} {
		keyed := AppendBatch(nil, Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []Record{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte{}, Value: nil}}})
		keyless := AppendBatch(nil, Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []Record{{Key: []byte("a"), Value: []byte("1")}, {Key: nil, Value: []byte("2")}}})
		for _, tc := range []struct {
			b    []byte
			want error
		}{{keyed, nil}, {keyless, ErrNoKey}} {
			b, err := Recompress(tc.b, codec)
			if err != nil {
				t.Fatal(err)
			}
			h, err := Validate(b)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckKeys(&h, b)
			if tc.want == nil && err != nil || tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, ErrInvalid)) {
				t.Fatalf("codec %d: %v, want %v", codec, err, tc.want)
			}
		}
	}
	// Records that do not decode are corrupt.
	b := handBatch(CodecNone, 2, 1, recs(0))
	h, _ := Parse(b)
	if err := CheckKeys(&h, b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short records: %v", err)
	}
}

func TestForEachRawAllocs(t *testing.T) {
	b := kmsgBatch(100, 0)
	h, _ := Parse(b)
	n := testing.AllocsPerRun(100, func() {
		it := NewRawRecords(b[HeaderSize:], h.RecordCount)
		for it.Next() {
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// FuzzForEachRaw: any bytes give records inside the section or an error,
// never a panic; what it finds, Retain writes back as a batch the log
// takes.
func FuzzForEachRaw(f *testing.F) {
	f.Add(kmsgBatch(3, 0)[HeaderSize:], int32(3))
	f.Add(recs(0, 1, 2), int32(3))
	f.Add([]byte{2, 0, 0}, int32(1))
	f.Fuzz(func(t *testing.T, b []byte, count int32) {
		var kept []byte
		n := int32(0)
		err := ForEachRaw(b, count, func(r *RawRecord) bool {
			if len(r.Raw) == 0 || len(r.Raw) > len(b) {
				t.Fatalf("raw record of %d bytes in %d", len(r.Raw), len(b))
			}
			kept = append(kept, r.Raw...)
			n++
			return true
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		h := Header{BaseOffset: 5, LastOffsetDelta: max(n-1, 0), BaseTimestamp: 10, ProducerID: -1, BaseSequence: -1}
		out, err := Retain(nil, &h, kept, n, 20)
		if err != nil {
			t.Fatal(err)
		}
		var got Header
		if err := ValidateStored(out, &got); err != nil {
			t.Fatal(err)
		}
	})
}
