package record

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestRecompress converts a batch between every pair of codecs and checks
// that the header is kept, the codec bits, length and CRC are new, and
// the records are the same.
func TestRecompress(t *testing.T) {
	var recs []Record
	for i := range 50 {
		recs = append(recs, Record{
			Key:            fmt.Appendf(nil, "k%d", i),
			Value:          bytes.Repeat(fmt.Appendf(nil, "value %d ", i), 30),
			Headers:        []RecordHeader{{Key: "h", Value: []byte{byte(i)}}},
			TimestampDelta: int64(i * 3),
		})
	}
	plain := AppendBatch(nil, Batch{BaseOffset: 7, BaseTimestamp: 1000, ProducerID: 42, ProducerEpoch: 3, BaseSequence: 99, Records: recs})
	want, err := Validate(plain)
	if err != nil {
		t.Fatal(err)
	}
	codecs := []int{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}
	for _, from := range codecs {
		src, err := Recompress(plain, from)
		if err != nil {
			t.Fatalf("to codec %d: %v", from, err)
		}
		for _, to := range codecs {
			out, err := Recompress(src, to)
			if err != nil {
				t.Fatalf("%d -> %d: %v", from, to, err)
			}
			h, err := Validate(out)
			if err != nil {
				t.Fatalf("%d -> %d: %v", from, to, err)
			}
			if h.Codec() != to || h.BaseOffset != want.BaseOffset || h.ProducerID != want.ProducerID ||
				h.ProducerEpoch != want.ProducerEpoch || h.BaseSequence != want.BaseSequence ||
				h.BaseTimestamp != want.BaseTimestamp || h.MaxTimestamp != want.MaxTimestamp ||
				h.RecordCount != want.RecordCount || h.LastOffsetDelta != want.LastOffsetDelta {
				t.Fatalf("%d -> %d: header %+v, want %+v with codec %d", from, to, h, want, to)
			}
			body, err := Decompress(to, out[HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, plain[HeaderSize:]) {
				t.Fatalf("%d -> %d: records differ", from, to)
			}
		}
	}
	bad := bytes.Clone(plain)
	bad[21+1] |= CodecGzip // claims gzip, holds plain records
	if _, err := Recompress(bad, CodecNone); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("undecodable records: %v, want ErrCorrupt", err)
	}
}
