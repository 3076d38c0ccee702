package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/record"
)

// TestBatchValidation sends raw Produce requests whose batches have a good
// CRC but records that do not match their header, as Kafka's
// LogValidator refuses them: each gets INVALID_RECORD (a bad CRC stays
// CORRUPT_MESSAGE), nothing of it is stored, offsets do not jump, and the
// partition goes on taking batches and keeps them across a restart.
func TestBatchValidation(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, nil, dir)
	ctx := testCtx(t)
	for _, tc := range []struct {
		topic   string
		configs map[string]*string
	}{
		{"plain", nil},
		{"recompressed", map[string]*string{"compression.type": kadm.StringPtr("zstd")}},
	} {
		if _, err := b.admin().CreateTopic(ctx, 1, 1, tc.configs, tc.topic); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[string][16]byte{"plain": topicIDOf(t, b.addr, "plain"), "recompressed": topicIDOf(t, b.addr, "recompressed")}
	ts := time.Now().UnixMilli()
	// claim makes a batch say it holds n records (last offset delta
	// n-1), with a CRC that matches.
	claim := func(raw []byte, n int32) []byte {
		raw = bytes.Clone(raw)
		binary.BigEndian.PutUint32(raw[23:], uint32(n-1))
		binary.BigEndian.PutUint32(raw[57:], uint32(n))
		binary.BigEndian.PutUint32(raw[17:], record.Checksum(raw))
		return raw
	}
	// deltas rewrites the offset delta of every record of an
	// uncompressed batch of one-byte-delta records.
	deltas := func(raw []byte, ds ...int64) []byte {
		h, err := record.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		var recs []record.Record
		if err := record.ForEach(raw, func(r *record.Record) error {
			c := *r
			c.Headers = append([]record.RecordHeader(nil), r.Headers...)
			recs = append(recs, c)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out := record.AppendBatch(nil, record.Batch{BaseTimestamp: h.BaseTimestamp, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
		// Each record is: length, attributes, timestamp delta, offset
		// delta; here all one byte each.
		pos := record.HeaderSize
		for i := range recs {
			size, n := binary.Varint(out[pos:])
			if out[pos+n+1] >= 0x80 || out[pos+n+2] >= 0x80 {
				t.Fatal("deltas: not a one-byte timestamp and offset delta")
			}
			out[pos+n+2] = binary.AppendVarint(nil, ds[i])[0]
			pos += n + int(size)
		}
		binary.BigEndian.PutUint32(out[17:], record.Checksum(out))
		return out
	}
	good := func(tag string, n int) []byte { return testBatch(tag, n, ts) }
	cl := b.client()
	stored := map[string]int64{} // records stored per topic
	produce := func(t *testing.T, topic string, raw []byte, want *kerr.Error) {
		t.Helper()
		sp := produceRaw(t, cl, topic, ids[topic], 0, -1, raw)
		if want == nil {
			if sp.ErrorCode != 0 {
				t.Fatalf("good batch to %s: %v (%v)", topic, kerr.ErrorForCode(sp.ErrorCode), sp.ErrorMessage)
			}
			h, _ := record.Parse(raw)
			if sp.BaseOffset != stored[topic] {
				t.Fatalf("good batch to %s at offset %d, want %d", topic, sp.BaseOffset, stored[topic])
			}
			stored[topic] += int64(h.RecordCount)
			return
		}
		if sp.ErrorCode != want.Code {
			t.Fatalf("produce to %s: %v, want %v", topic, kerr.ErrorForCode(sp.ErrorCode), want)
		}
		if sp.ErrorMessage != nil {
			t.Logf("%s: %s", want, *sp.ErrorMessage)
		}
	}
	compressed := func(raw []byte) []byte { return compressBatch(t, raw, kgo.Lz4Compression()) }

	produce(t, "plain", good("first", 3), nil)
	produce(t, "recompressed", good("first", 3), nil)
	for _, tc := range []struct {
		name  string
		topic string
		raw   []byte
		want  *kerr.Error
	}{
		// Three of them: each would have moved the log end by 2^31, and
		// the second past what a segment can index.
		{"one record claiming 2^31-1", "plain", claim(good("big", 1), 1<<31-1), kerr.InvalidRecord},
		{"one record claiming 2^31-1, again", "plain", claim(good("big", 1), 1<<31-1), kerr.InvalidRecord},
		{"one record claiming 2^31-1, a third time", "plain", claim(good("big", 1), 1<<31-1), kerr.InvalidRecord},
		{"two records claiming three", "plain", claim(good("short", 2), 3), kerr.InvalidRecord},
		{"three records claiming two", "plain", claim(good("long", 3), 2), kerr.InvalidRecord},
		{"offset deltas from 1", "plain", deltas(good("from1", 3), 1, 2, 3), kerr.InvalidRecord},
		{"offset deltas with a gap", "plain", deltas(good("gap", 3), 0, 1, 5), kerr.InvalidRecord},
		{"negative last offset delta", "plain", claim(good("neg", 1), 0), kerr.InvalidRecord},
		{"bad CRC", "plain", func() []byte { r := good("crc", 2); r[len(r)-1] ^= 1; return r }(), kerr.CorruptMessage},
		// Compressed batches are checked when they are decompressed for
		// compression.type.
		{"compressed, claiming 2^31-1", "recompressed", claim(compressed(good("big", 1)), 1<<31-1), kerr.InvalidRecord},
		{"compressed, offset deltas with a gap", "recompressed", compressed(deltas(good("gap", 2), 0, 2)), kerr.InvalidRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			produce(t, tc.topic, tc.raw, tc.want)
			produce(t, tc.topic, good(fmt.Sprintf("after %s", tc.name), 2), nil)
		})
	}
	check := func(t *testing.T) {
		t.Helper()
		ends, err := b.admin().ListEndOffsets(ctx, "plain", "recompressed")
		if err != nil {
			t.Fatal(err)
		}
		for topic, n := range stored {
			if e, _ := ends.Lookup(topic, 0); e.Err != nil || e.Offset != n {
				t.Fatalf("%s ends at %d (%v), want %d", topic, e.Offset, e.Err, n)
			}
			got := readAll(t, b.addr, topic)[0]
			if int64(len(got)) != n {
				t.Fatalf("%s: read %d records, want %d", topic, len(got), n)
			}
			for i, r := range got {
				if r.Offset != int64(i) {
					t.Fatalf("%s: record %d at offset %d", topic, i, r.Offset)
				}
			}
		}
	}
	check(t)
	b.stop()
	b = startBroker(t, nil, dir)
	cl = b.client()
	check(t)
	produce(t, "plain", good("after restart", 4), nil)
	produce(t, "recompressed", good("after restart", 4), nil)
	check(t)
}
