package record

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// appendLegacyBytes appends an int32-length-prefixed byte string, -1 for nil.
func appendLegacyBytes(dst, v []byte) []byte {
	if v == nil {
		return binary.BigEndian.AppendUint32(dst, 0xffffffff)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// legacyBody encodes a message of format v0/v1 from magic through value:
// what its CRC covers.
func legacyBody(magic, attrs int8, ts int64, key, value []byte) []byte {
	b := []byte{byte(magic), byte(attrs)}
	if magic == 1 {
		b = binary.BigEndian.AppendUint64(b, uint64(ts))
	}
	b = appendLegacyBytes(b, key)
	return appendLegacyBytes(b, value)
}

// appendLegacyRaw appends offset, size and CRC32 (IEEE) of body, then body.
func appendLegacyRaw(dst []byte, offset int64, body []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(offset))
	dst = binary.BigEndian.AppendUint32(dst, uint32(4+len(body)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(body))
	return append(dst, body...)
}

// appendLegacy appends one message of format v0/v1 to a message set, as the
// Kafka protocol lays it out: offset int64, size int32, crc uint32, magic
// int8, attributes int8, timestamp int64 (magic 1 only), key and value
// (int32 length, -1 for null, then the bytes). ts is ignored for magic 0.
func appendLegacy(dst []byte, offset int64, magic, attrs int8, ts int64, key, value []byte) []byte {
	return appendLegacyRaw(dst, offset, legacyBody(magic, attrs, ts, key, value))
}

func TestAppendLegacyFormat(t *testing.T) {
	// Hand-written from the protocol spec.
	v0body := []byte{0, 0, 0, 0, 0, 1, 'k', 0xff, 0xff, 0xff, 0xff}
	v0 := []byte{0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 15}
	v0 = binary.BigEndian.AppendUint32(v0, crc32.ChecksumIEEE(v0body))
	v0 = append(v0, v0body...)
	if got := appendLegacy(nil, 5, 0, 0, 12345, []byte("k"), nil); !bytes.Equal(got, v0) {
		t.Fatalf("magic 0 message\n got %x\nwant %x", got, v0)
	}
	v1body := []byte{1, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 'v', 'w'}
	v1 := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 24}
	v1 = binary.BigEndian.AppendUint32(v1, crc32.ChecksumIEEE(v1body))
	v1 = append(v1, v1body...)
	if got := appendLegacy(nil, -1, 1, 0x08, 0x0102030405060708, nil, []byte("vw")); !bytes.Equal(got, v1) {
		t.Fatalf("magic 1 message\n got %x\nwant %x", got, v1)
	}

	// Second source: franz-go's decoders read back what the helper wrote.
	var m0 kmsg.MessageV0
	if err := m0.ReadFrom(v0); err != nil {
		t.Fatal(err)
	}
	if m0.Offset != 5 || m0.MessageSize != 15 || uint32(m0.CRC) != crc32.ChecksumIEEE(v0body) || m0.Magic != 0 ||
		m0.Attributes != 0 || string(m0.Key) != "k" || m0.Value != nil {
		t.Fatalf("kmsg reads magic 0 message as %+v", m0)
	}
	var m1 kmsg.MessageV1
	if err := m1.ReadFrom(v1); err != nil {
		t.Fatal(err)
	}
	if m1.Offset != -1 || m1.MessageSize != 24 || uint32(m1.CRC) != crc32.ChecksumIEEE(v1body) || m1.Magic != 1 ||
		m1.Attributes != 0x08 || m1.Timestamp != 0x0102030405060708 || m1.Key != nil || string(m1.Value) != "vw" {
		t.Fatalf("kmsg reads magic 1 message as %+v", m1)
	}
	if got := m1.AppendTo(nil); !bytes.Equal(got, v1) {
		t.Fatalf("kmsg re-encodes magic 1 message as %x, want %x", got, v1)
	}
}

// legacyCompressor compresses a message set for a wrapper message.
type legacyCompressor struct {
	name     string
	codec    int
	compress func([]byte) []byte
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf) // the standard library's, not the one codec.go uses
	if _, err := w.Write(b); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func snappyRaw(b []byte) []byte { return s2.EncodeSnappy(nil, b) }

// snappyXerial frames b as the Java xerial SnappyOutputStream does: magic,
// version 1, compatible version 1, then 32 KiB blocks, each an int32 length
// and a raw snappy block.
func snappyXerial(b []byte) []byte {
	out := []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
	for len(b) > 0 {
		n := min(len(b), 32<<10)
		blk := s2.EncodeSnappy(nil, b[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(blk)))
		out = append(out, blk...)
		b = b[n:]
	}
	return out
}

func lz4Frame(b []byte) []byte {
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// javaLZ4 writes an LZ4 frame as Kafka's Java KafkaLZ4BlockOutputStream
// lays it out (FLG 0x60: version 1, independent blocks; BD 0x40: 64 KiB
// blocks), with the data in stored (uncompressed) blocks. With brokenHC
// the header checksum covers the magic number too, as Kafka clients write
// it for message format v0 (KAFKA-3160).
func javaLZ4(b []byte, brokenHC bool) []byte {
	out := binary.LittleEndian.AppendUint32(nil, 0x184D2204)
	out = append(out, 0x60, 0x40)
	hc := byte(xxh32(out[4:6]) >> 8)
	if brokenHC {
		hc = byte(xxh32(out[0:6]) >> 8)
	}
	out = append(out, hc)
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		out = binary.LittleEndian.AppendUint32(out, uint32(n)|0x80000000)
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return binary.LittleEndian.AppendUint32(out, 0)
}

var legacyCompressors = []legacyCompressor{
	{"gzip", CodecGzip, gzipBytes},
	{"snappy", CodecSnappy, snappyRaw},
	{"snappy-xerial", CodecSnappy, snappyXerial},
	{"lz4", CodecLZ4, lz4Frame},
	{"lz4-java", CodecLZ4, func(b []byte) []byte { return javaLZ4(b, false) }},
}

func TestLegacyHelpersAgree(t *testing.T) {
	// The hand-built framings decompress with the libraries' own readers
	// (independently of Decompress), and xxh32 matches the
	// header checksum pierrec/lz4 writes.
	in := bytes.Repeat([]byte("0123456789abcdef"), 9000)
	if d, err := io.ReadAll(lz4.NewReader(bytes.NewReader(javaLZ4(in, false)))); err != nil || !bytes.Equal(d, in) {
		t.Fatalf("hand-built lz4 frame: %d bytes, err %v", len(d), err)
	}
	f := lz4Frame([]byte("x"))
	if f[4]&0x08 != 0 {
		t.Fatalf("pierrec/lz4 wrote a content size (FLG %#x): the checksum check below needs none", f[4])
	}
	if f[6] != byte(xxh32(f[4:6])>>8) {
		t.Fatalf("xxh32 helper disagrees with pierrec/lz4: %x vs %x", byte(xxh32(f[4:6])>>8), f[6])
	}
	x := snappyXerial(in)
	var got []byte
	for rest := x[16:]; len(rest) > 0; {
		n := binary.BigEndian.Uint32(rest)
		d, err := s2.Decode(nil, rest[4:4+n])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d...)
		rest = rest[4+n:]
	}
	if !bytes.Equal(got, in) {
		t.Fatal("xerial helper does not round trip")
	}
}

// legacyRec is one record to send and to find again in the converted batch.
type legacyRec struct {
	key, value []byte
	ts         int64
}

// legacySet encodes recs as a message set of the given magic, uncompressed
// (comp nil) or as one wrapper compressed by comp. Offsets are 0..n-1 as a
// producer writes them (relative inside a v1 wrapper). A v1 wrapper gets
// CreateTime and the max timestamp of its records, as the Java client
// writes it.
func legacySet(magic int8, comp *legacyCompressor, recs []legacyRec) []byte {
	var set []byte
	maxTS := int64(-1)
	for i, r := range recs {
		set = appendLegacy(set, int64(i), magic, 0, r.ts, r.key, r.value)
		maxTS = max(maxTS, r.ts)
	}
	if comp == nil {
		return set
	}
	return appendLegacy(nil, int64(len(recs)-1), magic, int8(comp.codec), maxTS, nil, comp.compress(set))
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// checkLegacyBatch checks that out is one valid batch v2 holding want, in
// order, compressed with one of codecs.
func checkLegacyBatch(t *testing.T, out []byte, codecs []int, logAppend bool, want []legacyRec) {
	t.Helper()
	h, err := Validate(out)
	if err != nil {
		t.Fatalf("converted batch does not validate: %v", err)
	}
	if h.Size() != len(out) {
		t.Fatalf("batch of %d bytes followed by %d more", h.Size(), len(out)-h.Size())
	}
	if !slices.Contains(codecs, h.Codec()) {
		t.Fatalf("codec %d, want one of %v", h.Codec(), codecs)
	}
	if h.BaseOffset != 0 || h.ProducerID != -1 || h.ProducerEpoch != -1 || h.BaseSequence != -1 ||
		h.IsTransactional() || h.IsControl() || h.Magic != Magic {
		t.Fatalf("header %+v", h)
	}
	if h.RecordCount != int32(len(want)) || h.LastOffsetDelta != int32(len(want)-1) {
		t.Fatalf("%d records (last offset delta %d), want %d", h.RecordCount, h.LastOffsetDelta, len(want))
	}
	if h.LogAppendTime() != logAppend {
		t.Fatalf("LogAppendTime = %v, want %v (attributes %#x)", h.LogAppendTime(), logAppend, h.Attributes)
	}
	maxTS := want[0].ts
	for _, r := range want {
		maxTS = max(maxTS, r.ts)
	}
	if h.MaxTimestamp != maxTS {
		t.Fatalf("max timestamp %d, want %d", h.MaxTimestamp, maxTS)
	}
	recs, err := Decompress(h.Codec(), out[HeaderSize:h.Size()])
	if err != nil {
		t.Fatalf("records do not decompress: %v", err)
	}
	i := 0
	err = ForEachIn(recs, h.RecordCount, func(r *Record) error {
		w := want[i]
		switch {
		case r.OffsetDelta != int32(i):
			return fmt.Errorf("record %d: offset delta %d", i, r.OffsetDelta)
		case !sameBytes(r.Key, w.key):
			return fmt.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, w.key, w.key == nil)
		case !sameBytes(r.Value, w.value):
			return fmt.Errorf("record %d: value of %d bytes (nil %v), want %d (nil %v)", i, len(r.Value), r.Value == nil, len(w.value), w.value == nil)
		case h.BaseTimestamp+r.TimestampDelta != w.ts:
			return fmt.Errorf("record %d: timestamp %d+%d, want %d", i, h.BaseTimestamp, r.TimestampDelta, w.ts)
		case len(r.Headers) != 0:
			return fmt.Errorf("record %d: %d headers", i, len(r.Headers))
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != len(want) {
		t.Fatalf("walked %d records, want %d", i, len(want))
	}
	if h.Codec() == CodecNone {
		if err := ForEach(out, func(*Record) error { return nil }); err != nil {
			t.Fatalf("ForEach: %v", err)
		}
	}
	// franz-go reads the batch too.
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(out); err != nil || kb.NumRecords != h.RecordCount || kb.Attributes != h.Attributes {
		t.Fatalf("kmsg reads %+v, err %v", kb, err)
	}
}

// legacyTestRecs covers a nil key, a nil value, empty key and value, a
// timestamp below the first, and a value spanning several compression
// blocks. Magic 0 has no timestamps: -1.
func legacyTestRecs(magic int8) []legacyRec {
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	recs := []legacyRec{
		{key: []byte("k0"), value: []byte("v0"), ts: 1_700_000_000_000},
		{key: nil, value: []byte("value without a key"), ts: 1_700_000_000_005},
		{key: []byte("tombstone"), value: nil, ts: 1_699_999_999_990},
		{key: []byte{}, value: []byte{}, ts: 1_700_000_000_001},
		{key: []byte("big"), value: big, ts: 1_700_000_000_003},
		{key: nil, value: nil, ts: 1_700_000_000_002},
	}
	if magic == 0 {
		for i := range recs {
			recs[i].ts = -1
		}
	}
	return recs
}

func TestConvertLegacyRoundTrip(t *testing.T) {
	comps := []*legacyCompressor{nil} // nil: uncompressed
	for i := range legacyCompressors {
		comps = append(comps, &legacyCompressors[i])
	}
	for _, magic := range []int8{0, 1} {
		for _, comp := range comps {
			name, codec := "none", CodecNone
			if comp != nil {
				name, codec = comp.name, comp.codec
			}
			t.Run(fmt.Sprintf("v%d/%s", magic, name), func(t *testing.T) {
				recs := legacyTestRecs(magic)
				set := legacySet(magic, comp, recs)
				orig := bytes.Clone(set)
				out, err := ConvertLegacy(set)
				if err != nil {
					t.Fatalf("ConvertLegacy: %v", err)
				}
				if !bytes.Equal(set, orig) {
					t.Fatal("ConvertLegacy modified its input")
				}
				checkLegacyBatch(t, out, []int{codec}, false, recs)
				if h, _ := Parse(out); magic == 0 && h.BaseTimestamp != -1 {
					t.Fatalf("v0 base timestamp %d, want -1", h.BaseTimestamp)
				}
			})
		}
	}
	t.Run("single record", func(t *testing.T) {
		recs := []legacyRec{{key: nil, value: []byte("only"), ts: 42}}
		out, err := ConvertLegacy(legacySet(1, &legacyCompressors[0], recs))
		if err != nil {
			t.Fatal(err)
		}
		checkLegacyBatch(t, out, []int{CodecGzip}, false, recs)
	})
}

// Kafka's Java client writes the LZ4 frame of message format v0 with a
// header checksum over the magic number too (KAFKA-3160); Kafka brokers
// accept it (KafkaLZ4BlockInputStream ignores the checksum for magic 0),
// and so does librdkafka.
func TestConvertLegacyJavaLZ4V0(t *testing.T) {
	recs := legacyTestRecs(0)[:3]
	var inner []byte
	for i, r := range recs {
		inner = appendLegacy(inner, int64(i), 0, 0, -1, r.key, r.value)
	}
	set := appendLegacy(nil, 2, 0, CodecLZ4, -1, nil, javaLZ4(inner, true))
	out, err := ConvertLegacy(set)
	if err != nil {
		t.Fatalf("ConvertLegacy of a magic 0 LZ4 wrapper as the Java client writes it: %v", err)
	}
	checkLegacyBatch(t, out, []int{CodecLZ4}, false, recs)
}

func TestConvertLegacyMixed(t *testing.T) {
	gz, snappy, xerial, lz, jlz := &legacyCompressors[0], &legacyCompressors[1], &legacyCompressors[2], &legacyCompressors[3], &legacyCompressors[4]
	type part struct {
		comp *legacyCompressor // nil: uncompressed messages
		n    int
	}
	tests := []struct {
		magic  int8
		parts  []part
		codecs []int
	}{
		{1, []part{{nil, 3}, {gz, 2}, {gz, 3}}, []int{CodecGzip}},
		{0, []part{{nil, 2}, {snappy, 2}, {xerial, 4}}, []int{CodecSnappy}},
		{1, []part{{nil, 1}, {lz, 3}, {jlz, 1}, {nil, 2}}, []int{CodecLZ4}},
		{0, []part{{gz, 1}, {gz, 1}, {gz, 1}, {gz, 1}}, []int{CodecGzip}},
		{1, []part{{nil, 2}, {gz, 2}, {snappy, 2}, {lz, 2}}, []int{CodecGzip, CodecSnappy, CodecLZ4}},
		{1, []part{{nil, 5}}, []int{CodecNone}},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("v%d", tt.magic)
		for _, p := range tt.parts {
			c := "none"
			if p.comp != nil {
				c = p.comp.name
			}
			name += fmt.Sprintf("_%s*%d", c, p.n)
		}
		t.Run(name, func(t *testing.T) {
			var set []byte
			var want []legacyRec
			for pi, p := range tt.parts {
				var recs []legacyRec
				for i := 0; i < p.n; i++ {
					r := legacyRec{
						key:   []byte(fmt.Sprintf("key-%d-%d", pi, i)),
						value: []byte(fmt.Sprintf("value-%d-%d", pi, i)),
						ts:    int64(1000 + 10*pi - i),
					}
					if i == 1 {
						r.key = nil
					}
					if tt.magic == 0 {
						r.ts = -1
					}
					recs = append(recs, r)
				}
				set = append(set, legacySet(tt.magic, p.comp, recs)...)
				want = append(want, recs...)
			}
			out, err := ConvertLegacy(set)
			if err != nil {
				t.Fatalf("ConvertLegacy: %v", err)
			}
			checkLegacyBatch(t, out, tt.codecs, false, want)
		})
	}
}

// TestConvertLegacyLogAppendTime: records inside a wrapper marked
// LogAppendTime take the wrapper's timestamp; the batch is CreateTime
// whatever the producer marked (the topic decides, in the partition).
func TestConvertLegacyLogAppendTime(t *testing.T) {
	gz, snappy, lz := &legacyCompressors[0], &legacyCompressors[1], &legacyCompressors[3]
	// wrapper returns a wrapper of the given magic and timestamp type
	// holding n CreateTime messages with timestamps 1..n, and the records
	// expected from it.
	wrapper := func(magic int8, comp *legacyCompressor, lat bool, ts int64, tag string, n int) ([]byte, []legacyRec) {
		var inner []byte
		var recs []legacyRec
		for i := 0; i < n; i++ {
			r := legacyRec{key: []byte(tag), value: []byte(fmt.Sprintf("%s-%d", tag, i)), ts: int64(i + 1)}
			inner = appendLegacy(inner, int64(i), magic, 0, r.ts, r.key, r.value)
			switch {
			case magic == 0:
				r.ts = -1
			case lat:
				r.ts = ts
			}
			recs = append(recs, r)
		}
		attrs := int8(comp.codec)
		if lat {
			attrs |= TimestampLogAppend
		}
		return appendLegacy(nil, int64(n-1), magic, attrs, ts, nil, comp.compress(inner)), recs
	}
	plain := func(lat bool, ts int64) ([]byte, []legacyRec) {
		var attrs int8
		if lat {
			attrs = TimestampLogAppend
		}
		r := legacyRec{key: []byte("plain"), value: []byte("p"), ts: ts}
		return appendLegacy(nil, 0, 1, attrs, ts, r.key, r.value), []legacyRec{r}
	}
	type piece func() ([]byte, []legacyRec)
	w := func(magic int8, comp *legacyCompressor, lat bool, ts int64, tag string, n int) piece {
		return func() ([]byte, []legacyRec) { return wrapper(magic, comp, lat, ts, tag, n) }
	}
	p := func(lat bool, ts int64) piece { return func() ([]byte, []legacyRec) { return plain(lat, ts) } }
	tests := []struct {
		name   string
		pieces []piece
		codec  int
	}{
		{"one wrapper", []piece{w(1, gz, true, 5000, "a", 3)}, CodecGzip},
		{"two wrappers", []piece{w(1, snappy, true, 5000, "a", 2), w(1, snappy, true, 6000, "b", 2)}, CodecSnappy},
		{"log append then create time", []piece{w(1, lz, true, 5000, "a", 2), w(1, lz, false, 6000, "b", 2)}, CodecLZ4},
		{"create time then log append", []piece{w(1, gz, false, 6000, "a", 2), w(1, gz, true, 5000, "b", 2)}, CodecGzip},
		{"create time message then wrapper", []piece{p(false, 7000), w(1, gz, true, 5000, "b", 2)}, CodecGzip},
		{"log append message then wrapper", []piece{p(true, 7000), w(1, gz, true, 5000, "b", 2)}, CodecGzip},
		{"magic 0 ignores the bit", []piece{w(0, gz, true, 5000, "a", 2)}, CodecGzip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var set []byte
			var want []legacyRec
			for _, pc := range tt.pieces {
				b, recs := pc()
				set = append(set, b...)
				want = append(want, recs...)
			}
			out, err := ConvertLegacy(set)
			if err != nil {
				t.Fatalf("ConvertLegacy: %v", err)
			}
			checkLegacyBatch(t, out, []int{tt.codec}, false, want) // always CreateTime
		})
	}
}

func TestConvertLegacyErrors(t *testing.T) {
	be := binary.BigEndian
	good1 := appendLegacy(nil, 0, 1, 0, 1000, []byte("k"), []byte("v"))
	good0 := appendLegacy(nil, 0, 0, 0, -1, []byte("k"), []byte("v"))
	mutate := func(b []byte, f func(b []byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	// sized is a message whose size field says n, followed by n bytes.
	sized := func(n int32, body []byte) []byte {
		b := be.AppendUint64(nil, 0)
		b = be.AppendUint32(b, uint32(n))
		return append(b, body...)
	}
	wrap := func(magic int8, attrs int8, value []byte) []byte {
		return appendLegacy(nil, 0, magic, attrs, 1000, nil, value)
	}
	zstdBytes := func(b []byte) []byte {
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(b, nil)
	}
	neg := []byte{0xff, 0xff, 0xff, 0xff}
	gzGood1 := gzipBytes(good1)
	tests := []struct {
		name string
		set  []byte
		want error
	}{

		{"bad crc", mutate(good1, func(b []byte) { b[12] ^= 0x01 }), ErrCorrupt},
		{"flipped value byte", mutate(good1, func(b []byte) { b[len(b)-1] ^= 0x40 }), ErrCorrupt},
		{"flipped magic byte", mutate(good0, func(b []byte) { b[16] = 1 }), ErrCorrupt},
		{"bad crc in second message", cat(good1, mutate(good1, func(b []byte) { b[15] ^= 0x80 })), ErrCorrupt},

		{"size 13", sized(13, make([]byte, 13)), ErrCorrupt},
		{"size 0", sized(0, nil), ErrCorrupt},
		{"size -1", sized(-1, make([]byte, 20)), ErrCorrupt},
		{"magic 1 too short for timestamp", appendLegacyRaw(nil, 0, cat([]byte{1, 0}, neg, neg, make([]byte, 4))), ErrCorrupt},

		{"key length past end", appendLegacyRaw(nil, 0, cat([]byte{0, 0, 0, 0, 0, 100}, neg)), ErrCorrupt},
		{"key length -2", appendLegacyRaw(nil, 0, cat([]byte{0, 0, 0xff, 0xff, 0xff, 0xfe}, neg)), ErrCorrupt},
		{"v1 key length past end", appendLegacyRaw(nil, 0, cat([]byte{1, 0}, make([]byte, 8), []byte{0, 0, 0, 9}, neg, []byte("abcd"))), ErrCorrupt},
		{"value length past end", appendLegacyRaw(nil, 0, cat([]byte{0, 0}, neg, []byte{0, 0, 0, 5, 'a'})), ErrCorrupt},
		{"value length -5", appendLegacyRaw(nil, 0, cat([]byte{0, 0}, neg, []byte{0xff, 0xff, 0xff, 0xfb, 'a'})), ErrCorrupt},
		{"trailing byte after value v0", appendLegacyRaw(nil, 0, append(legacyBody(0, 0, -1, nil, []byte("v")), 0)), ErrCorrupt},
		{"trailing bytes after value v1", appendLegacyRaw(nil, 0, append(legacyBody(1, 0, 9, []byte("k"), nil), 1, 2, 3)), ErrCorrupt},

		{"magic 2", appendLegacy(nil, 0, 2, 0, 0, []byte("k"), []byte("v")), ErrCorrupt},
		{"magic 2 after magic 1", cat(good1, appendLegacy(nil, 1, 2, 0, 0, nil, []byte("v"))), ErrCorrupt},
		{"magic -1", appendLegacy(nil, 0, -1, 0, 0, nil, []byte("v")), ErrCorrupt},

		{"compressed inside compressed", wrap(1, CodecGzip, gzipBytes(wrap(1, CodecGzip, gzGood1))), ErrInvalid},
		{"snappy inside gzip", wrap(0, CodecGzip, gzipBytes(wrap(0, CodecSnappy, snappyRaw(good0)))), ErrInvalid},
		{"inner codec 7", wrap(1, CodecGzip, gzipBytes(appendLegacy(nil, 0, 1, 7, 0, nil, []byte("v")))), ErrInvalid},
		{"magic 1 wrapper, magic 0 inner", wrap(1, CodecGzip, gzipBytes(good0)), ErrInvalid},
		{"magic 0 wrapper, magic 1 inner", wrap(0, CodecGzip, gzGood1), ErrInvalid},
		{"magic 1 wrapper, inner magic 0 after magic 1", wrap(1, CodecLZ4, lz4Frame(cat(good1, good0))), ErrInvalid},

		{"zstd v1", wrap(1, CodecZstd, zstdBytes(good1)), ErrCodec},
		{"zstd v0", wrap(0, CodecZstd, zstdBytes(good0)), ErrCodec},
		{"zstd after good", cat(good1, wrap(1, CodecZstd, zstdBytes(good1))), ErrCodec},
		{"zstd nil value", wrap(1, CodecZstd, nil), ErrCodec},
		{"zstd garbage value", wrap(0, CodecZstd, []byte("not zstd")), ErrCodec},
		{"codec 5", wrap(1, 5, gzGood1), ErrCodec},
		{"codec 5 nil value", wrap(0, 5, nil), ErrCodec},
		{"codec 6", wrap(0, 6, gzipBytes(good0)), ErrCodec},
		{"codec 7", wrap(1, 7, gzGood1), ErrCodec},
		{"codec 7 with log append time", wrap(1, 7|TimestampLogAppend, gzGood1), ErrCodec},

		{"gzip garbage", wrap(1, CodecGzip, []byte("definitely not gzip")), ErrCorrupt},
		{"gzip empty value", wrap(1, CodecGzip, []byte{}), ErrCorrupt},
		{"gzip truncated", wrap(1, CodecGzip, gzGood1[:len(gzGood1)-6]), ErrCorrupt},
		{"snappy garbage", wrap(1, CodecSnappy, []byte{0x40, 0xff, 0xff, 0xff}), ErrCorrupt},
		{"snappy empty value", wrap(0, CodecSnappy, []byte{}), ErrCorrupt},
		{"xerial truncated block", wrap(1, CodecSnappy, snappyXerial(good1)[:20]), ErrCorrupt},
		{"xerial block length past end", wrap(1, CodecSnappy, mutate(snappyXerial(good1), func(b []byte) { be.PutUint32(b[16:], 1000) })), ErrCorrupt},
		{"xerial bad block", wrap(1, CodecSnappy, cat(snappyXerial(nil), []byte{0, 0, 0, 3, 0x40, 0xff, 0xff})), ErrCorrupt},
		{"lz4 garbage", wrap(1, CodecLZ4, []byte("not an lz4 frame at all")), ErrCorrupt},
		{"lz4 truncated", wrap(1, CodecLZ4, func() []byte { f := lz4Frame(good1); return f[:len(f)-5] }()), ErrCorrupt},
		{"lz4 bad header checksum v1", wrap(1, CodecLZ4, javaLZ4(good1, true)), ErrCorrupt},
		{"inner bad crc", wrap(1, CodecGzip, gzipBytes(mutate(good1, func(b []byte) { b[len(b)-1]++ }))), ErrCorrupt},

		{"wrapper nil value v1", wrap(1, CodecGzip, nil), ErrInvalid},
		{"wrapper nil value v0", wrap(0, CodecSnappy, nil), ErrInvalid},
		{"wrapper nil value after good", cat(good1, wrap(1, CodecLZ4, nil)), ErrInvalid},
		{"snappy claims more than MaxDecompressed", wrap(1, CodecSnappy, cat(binary.AppendUvarint(nil, MaxDecompressed+1), []byte{0, 0, 0, 0})), ErrInvalid},
	}
	sentinels := []error{ErrCorrupt, ErrInvalid, ErrCodec}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ConvertLegacy(tt.set)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ConvertLegacy = %v, want %v", err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Fatalf("error %q is also %v", err, s)
				}
			}
			if out != nil {
				t.Fatalf("returned %d bytes with the error", len(out))
			}
		})
	}
}

// TestConvertLegacyIncomplete: as in Kafka, an incomplete message at the
// end of a set (or of a wrapper's inner set) is ignored, and a set without
// a complete message converts to nothing, without an error.
func TestConvertLegacyIncomplete(t *testing.T) {
	good1 := appendLegacy(nil, 0, 1, 0, 1000, []byte("k"), []byte("v"))
	good0 := appendLegacy(nil, 0, 0, 0, -1, []byte("k"), []byte("v"))
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	wrap := func(magic int8, attrs int8, value []byte) []byte {
		return appendLegacy(nil, 0, magic, attrs, 1000, nil, value)
	}
	sized := func(n int32, body []byte) []byte {
		b := binary.BigEndian.AppendUint64(nil, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		return append(b, body...)
	}
	tests := []struct {
		name string
		set  []byte
		n    int32 // complete messages
	}{
		{"nil set", nil, 0},
		{"empty set", []byte{}, 0},
		{"truncated in first header", good1[:5], 0},
		{"truncated in second header", cat(good1, good1[:11]), 1},
		{"truncated in message", good1[:len(good1)-1], 0},
		{"truncated after header", good1[:12], 0},
		{"truncated in second message", cat(good0, good0[:len(good0)-3]), 1},
		{"size past end", sized(1000, good1[12:]), 0},
		{"inner truncated", wrap(1, CodecSnappy, snappyRaw(good1[:len(good1)-2])), 0},
		{"inner trailing header bytes", wrap(0, CodecGzip, gzipBytes(cat(good0, []byte{1, 2, 3}))), 1},
		{"wrapper of an empty set", wrap(1, CodecGzip, gzipBytes(nil)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := ConvertLegacy(tt.set)
			if err != nil {
				t.Fatalf("ConvertLegacy: %v", err)
			}
			if tt.n == 0 {
				if out != nil {
					t.Fatalf("%d bytes from a set without a complete message", len(out))
				}
				return
			}
			h, err := Validate(out)
			if err != nil || h.RecordCount != tt.n {
				t.Fatalf("batch of %d records (%v), want %d", h.RecordCount, err, tt.n)
			}
		})
	}
}

// The batch ConvertLegacy returns must decompress within MaxDecompressed,
// or the conversion must fail with ErrInvalid as documented: otherwise the
// broker stores a batch it cannot read back (Decompress fails with
// ErrTooLarge) and several small wrappers add up to a decompression bomb.
func TestConvertLegacyTotalSize(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	inner := appendLegacy(nil, 0, 1, 0, 1, nil, make([]byte, MaxDecompressed/2+1024))
	w := appendLegacy(nil, 0, 1, CodecSnappy, 1, nil, snappyRaw(inner))
	out, err := ConvertLegacy(append(bytes.Clone(w), w...))
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("ConvertLegacy = %v, want ErrInvalid", err)
		}
		return
	}
	h, err := Validate(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decompress(h.Codec(), out[HeaderSize:h.Size()]); err != nil {
		t.Fatalf("ConvertLegacy accepted two wrappers of %d bytes each and returned a batch that does not decompress: %v", len(inner), err)
	}
}

func FuzzConvertLegacy(f *testing.F) {
	recs := []legacyRec{
		{key: []byte("k"), value: []byte("v"), ts: 1000},
		{key: nil, value: []byte("value"), ts: 999},
		{key: []byte("t"), value: nil, ts: 1001},
	}
	f.Add(legacySet(0, nil, recs))
	f.Add(legacySet(1, nil, recs))
	f.Add(legacySet(0, &legacyCompressors[0], recs))
	f.Add(legacySet(1, &legacyCompressors[0], recs))
	f.Add(legacySet(1, &legacyCompressors[1], recs))
	f.Add(append(legacySet(1, nil, recs), legacySet(1, &legacyCompressors[0], recs)...))
	f.Add(appendLegacy(nil, 0, 1, CodecGzip|TimestampLogAppend, 5, nil, gzipBytes(legacySet(1, nil, recs))))
	// Invalid ones.
	f.Add([]byte{})
	f.Add(legacySet(1, nil, recs)[:20])
	f.Add(appendLegacy(nil, 0, 2, 0, 0, nil, []byte("v")))
	f.Add(appendLegacy(nil, 0, 1, CodecZstd, 0, nil, []byte("v")))
	f.Add(appendLegacy(nil, 0, 1, CodecGzip, 0, nil, nil))
	f.Add(appendLegacy(nil, 0, 0, CodecGzip, 0, nil, gzipBytes(legacySet(1, nil, recs))))
	f.Fuzz(func(t *testing.T, set []byte) {
		orig := bytes.Clone(set)
		out, err := ConvertLegacy(set)
		if !bytes.Equal(set, orig) {
			t.Fatal("ConvertLegacy modified its input")
		}
		if err != nil {
			if out != nil {
				t.Fatalf("%d bytes returned with error %v", len(out), err)
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCodec) {
				t.Fatalf("error %v wraps none of ErrCorrupt, ErrInvalid, ErrCodec", err)
			}
			return
		}
		if out == nil {
			return // no complete message: nothing to append
		}
		h, err := Validate(out)
		if err != nil {
			t.Fatalf("output does not validate: %v", err)
		}
		if h.RecordCount < 1 || h.Size() != len(out) || h.Codec() > CodecLZ4 {
			t.Fatalf("output header %+v (len %d)", h, len(out))
		}
		recs, err := Decompress(h.Codec(), out[HeaderSize:h.Size()])
		if err != nil {
			t.Fatalf("output records do not decompress: %v", err)
		}
		n := int32(0)
		err = ForEachIn(recs, h.RecordCount, func(r *Record) error {
			if r.OffsetDelta != n {
				return fmt.Errorf("record %d has offset delta %d", n, r.OffsetDelta)
			}
			n++
			return nil
		})
		if err != nil || n != h.RecordCount {
			t.Fatalf("walked %d of %d records: %v", n, h.RecordCount, err)
		}
	})
}
