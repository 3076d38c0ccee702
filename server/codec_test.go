package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// testCodecs lists every producer codec and the attribute bits a batch
// compressed with it carries.
var testCodecs = []struct {
	name  string
	codec kgo.CompressionCodec
	bits  int
}{
	{"none", kgo.NoCompression(), record.CodecNone},
	{"gzip", kgo.GzipCompression(), record.CodecGzip},
	{"snappy", kgo.SnappyCompression(), record.CodecSnappy},
	{"lz4", kgo.Lz4Compression(), record.CodecLZ4},
	{"zstd", kgo.ZstdCompression(), record.CodecZstd},
}

// TestProduceCodecsAcks produces with every codec, every acks level, with
// and without idempotence, then reads the records back with a plain
// consumer and the raw batches with a Fetch request: every record is
// there in order, and every batch is stored compressed as it was sent.
func TestProduceCodecsAcks(t *testing.T) {
	b := startBroker(t, nil)
	acks := []struct {
		name       string
		acks       kgo.Acks
		idempotent bool
	}{
		{"acks0", kgo.NoAck(), false},
		{"acks1", kgo.LeaderAck(), false},
		{"acksall", kgo.AllISRAcks(), false},
		{"acksall-idempotent", kgo.AllISRAcks(), true},
	}
	for _, cc := range testCodecs {
		for _, ac := range acks {
			t.Run(cc.name+"/"+ac.name, func(t *testing.T) {
				t.Parallel()
				ctx := testCtx(t)
				topic := "codec-" + cc.name + "-" + ac.name
				const partitions, n = 4, 300
				if _, err := kadm.NewClient(newTestClient(t, b.addr)).CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
					t.Fatal(err)
				}
				opts := []kgo.Opt{
					kgo.DefaultProduceTopic(topic),
					kgo.ProducerBatchCompression(cc.codec),
					kgo.RequiredAcks(ac.acks),
				}
				if !ac.idempotent {
					opts = append(opts, kgo.DisableIdempotentWrite())
				}
				cl := newTestClient(t, b.addr, opts...)
				want := make(map[int32][]*kgo.Record)
				var mu sync.Mutex
				var errs []error
				recs := make([]*kgo.Record, n)
				for i := range recs {
					recs[i] = testRecord(topic, i)
					cl.Produce(ctx, recs[i], func(r *kgo.Record, err error) {
						if err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					})
				}
				if err := cl.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if len(errs) > 0 {
					t.Fatalf("%d produce errors, first: %v", len(errs), errs[0])
				}
				for _, r := range recs { // Produce order is the order per partition.
					want[r.Partition] = append(want[r.Partition], r)
				}
				// acks=0 has no answer: wait for the records to land.
				waitEndOffsets(t, b.addr, topic, n)
				got := readAll(t, b.addr, topic)
				for p := int32(0); p < partitions; p++ {
					compareRecords(t, fmt.Sprintf("partition %d", p), got[p], want[p], ac.acks != kgo.NoAck())
				}

				// The stored batches carry the producer's codec and
				// producer id and hold exactly the records sent.
				tid := topicIDOf(t, b.addr, topic)
				raw := newTestClient(t, b.addr)
				for p := int32(0); p < partitions; p++ {
					next, count := int64(0), 0
					for _, batch := range fetchBatches(t, raw, topic, tid, p, 0, int64(len(want[p]))) {
						h, err := record.Validate(batch)
						if err != nil {
							t.Fatalf("partition %d: stored batch does not validate: %v", p, err)
						}
						if h.Codec() != cc.bits {
							t.Fatalf("partition %d offset %d: batch codec %d, producer used %d (%s)", p, h.BaseOffset, h.Codec(), cc.bits, cc.name)
						}
						if (h.ProducerID >= 0) != ac.idempotent {
							t.Fatalf("partition %d offset %d: producer id %d, idempotent %v", p, h.BaseOffset, h.ProducerID, ac.idempotent)
						}
						if h.BaseOffset != next {
							t.Fatalf("partition %d: batch at %d, want %d", p, h.BaseOffset, next)
						}
						next = h.NextOffset()
						count += int(h.RecordCount)
					}
					if count != len(want[p]) {
						t.Fatalf("partition %d: %d records in stored batches, produced %d", p, count, len(want[p]))
					}
				}
			})
		}
	}
}

// testRecord is record i of a test topic: a key most of the time, a
// compressible value (so every codec is used), headers, and now and then
// a nil key, an empty header value or a nil value.
func testRecord(topic string, i int) *kgo.Record {
	r := &kgo.Record{
		Key:   []byte(fmt.Sprintf("key-%02d", i%23)),
		Value: []byte(fmt.Sprintf("%s %05d %s", topic, i, strings.Repeat("payload ", 30))),
		Headers: []kgo.RecordHeader{
			{Key: "seq", Value: []byte(fmt.Sprint(i))},
			{Key: "topic", Value: []byte(topic)},
		},
	}
	switch {
	case i%10 == 3:
		r.Key = nil
	case i%10 == 5:
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "empty"})
	case i%50 == 7:
		r.Value = nil
	}
	return r
}

// compareRecords fails unless got holds the records of want, in order,
// with identical keys, values, headers and timestamps; with offsets,
// the offsets the producer was given must match too.
func compareRecords(t testing.TB, what string, got, want []*kgo.Record, offsets bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: read %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		if err := diffRecord(got[i], want[i], offsets); err != nil {
			t.Fatalf("%s: record %d (offset %d): %v", what, i, got[i].Offset, err)
		}
	}
}

func diffRecord(got, want *kgo.Record, offsets bool) error {
	switch {
	case !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil):
		return fmt.Errorf("key %q, want %q", got.Key, want.Key)
	case !bytes.Equal(got.Value, want.Value) || (got.Value == nil) != (want.Value == nil):
		return fmt.Errorf("value %.40q, want %.40q", got.Value, want.Value)
	case got.Timestamp.UnixMilli() != want.Timestamp.UnixMilli():
		return fmt.Errorf("timestamp %d, want %d", got.Timestamp.UnixMilli(), want.Timestamp.UnixMilli())
	case offsets && got.Offset != want.Offset:
		return fmt.Errorf("offset %d, producer was told %d", got.Offset, want.Offset)
	case !slices.EqualFunc(got.Headers, want.Headers, func(a, b kgo.RecordHeader) bool {
		return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
	}):
		return fmt.Errorf("headers %v, want %v", got.Headers, want.Headers)
	}
	return nil
}

// waitEndOffsets waits until the end offsets of topic add up to n.
func waitEndOffsets(t testing.TB, addr, topic string, n int64) {
	t.Helper()
	adm := kadm.NewClient(newTestClient(t, addr))
	deadline := time.Now().Add(20 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(testCtx(t), topic)
		var sum int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		}
		if err == nil && sum == n {
			return
		}
		if err == nil && sum > n {
			t.Fatalf("%s: end offsets add up to %d, only %d produced", topic, sum, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: end offsets add up to %d after 20s, want %d (err %v)", topic, sum, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// readAll reads every partition of topic from its start to the end offset
// it has when readAll is called, with a plain (groupless) consumer.
func readAll(t testing.TB, addr, topic string) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := ends.Error(); err != nil {
		t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	end := map[int32]int64{}
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		end[o.Partition] = o.Offset
		if o.Offset > 0 {
			parts[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	got := map[int32][]*kgo.Record{}
	if len(parts) == 0 {
		return got
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	done := func() bool {
		for p := range parts {
			rs := got[p]
			if len(rs) == 0 || rs[len(rs)-1].Offset < end[p]-1 {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: timed out; have %s, want end offsets %v", topic, countPerPartition(got), end)
		}
		fs.EachError(func(_ string, p int32, err error) {
			t.Fatalf("reading %s partition %d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < end[r.Partition] {
				got[r.Partition] = append(got[r.Partition], r)
			}
		})
	}
	return got
}

func countPerPartition(m map[int32][]*kgo.Record) string {
	var parts []string
	for p, rs := range m {
		parts = append(parts, fmt.Sprintf("%d:%d", p, len(rs)))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// topicIDOf returns the topic id the broker gives topic.
func topicIDOf(t testing.TB, addr, topic string) [16]byte {
	t.Helper()
	td, err := kadm.NewClient(newTestClient(t, addr)).ListTopics(testCtx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := td.Error(); err != nil {
		t.Fatal(err)
	}
	return td[topic].ID
}

// fetchBatches reads the raw record batches of one partition from offset
// from up to end with Fetch requests (naming the topic both by name and by
// id, so any Fetch version works).
func fetchBatches(t testing.TB, cl *kgo.Client, topic string, id [16]byte, partition int32, from, end int64) [][]byte {
	t.Helper()
	ctx := testCtx(t)
	var out [][]byte
	for off := from; off < end; {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 100
		req.MinBytes = 1
		req.MaxBytes = 64 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.FetchOffset = off
		rp.LogStartOffset = -1
		rp.CurrentLeaderEpoch = -1
		rp.PartitionMaxBytes = 8 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch %s/%d at %d: error %d, %d topics", topic, partition, off, resp.ErrorCode, len(resp.Topics))
		}
		fp := resp.Topics[0].Partitions[0]
		if fp.ErrorCode != 0 {
			t.Fatalf("fetch %s/%d at %d: partition error %d", topic, partition, off, fp.ErrorCode)
		}
		data := fp.RecordBatches
		progressed := false
		for len(data) > 0 {
			n, err := record.BatchSize(data)
			if err != nil {
				t.Fatalf("fetch %s/%d at %d: %v", topic, partition, off, err)
			}
			if n > len(data) {
				break // a partial batch at the end of the response
			}
			h, err := record.Parse(data[:n])
			if err != nil {
				t.Fatalf("fetch %s/%d at %d: %v", topic, partition, off, err)
			}
			if h.NextOffset() > off {
				out = append(out, bytes.Clone(data[:n]))
				off = h.NextOffset()
				progressed = true
			}
			data = data[n:]
		}
		if !progressed {
			t.Fatalf("fetch %s/%d at %d (end %d): no batch returned", topic, partition, off, end)
		}
	}
	return out
}

// compressBatch returns the uncompressed batch raw with its records
// section compressed by codec, the attributes, length and CRC updated:
// a batch as a client would send it.
func compressBatch(t testing.TB, raw []byte, codec kgo.CompressionCodec) []byte {
	t.Helper()
	comp, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	if comp == nil {
		return raw
	}
	records, typ := comp.Compress(new(bytes.Buffer), raw[record.HeaderSize:])
	if records == nil {
		t.Fatalf("compress failed")
	}
	b := append(bytes.Clone(raw[:record.HeaderSize]), records...)
	be := binary.BigEndian
	be.PutUint32(b[8:], uint32(len(b)-record.LengthOverhead))
	be.PutUint16(b[21:], be.Uint16(b[21:])&^record.CodecMask|uint16(typ))
	be.PutUint32(b[17:], record.Checksum(b))
	return b
}

// testBatch builds an uncompressed batch of n records, for producing raw.
func testBatch(tag string, n int, baseTimestamp int64) []byte {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{
			Key:            []byte(fmt.Sprintf("%s-key-%d", tag, i)),
			Value:          []byte(fmt.Sprintf("%s-value-%d-%s", tag, i, strings.Repeat("x", 100))),
			Headers:        []record.RecordHeader{{Key: "h", Value: []byte(tag)}},
			TimestampDelta: int64(i),
		}
	}
	return record.AppendBatch(nil, record.Batch{
		BaseTimestamp: baseTimestamp,
		ProducerID:    -1,
		ProducerEpoch: -1,
		BaseSequence:  -1,
		Records:       recs,
	})
}

// produceRaw sends one Produce request with records for topic/partition
// and returns the partition's answer.
func produceRaw(t testing.TB, cl *kgo.Client, topic string, id [16]byte, partition int32, acks int16, records []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = acks
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response has %d topics", len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// TestStoredBatchExact produces hand-built batches with every codec and
// fetches them back: every byte past the base offset and leader epoch is
// what was sent.
func TestStoredBatchExact(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	const topic = "exact"
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	tid := topicIDOf(t, b.addr, topic)
	cl := b.client()
	ts := time.Now().UnixMilli()
	var sent [][]byte
	next := int64(0)
	for _, cc := range testCodecs {
		batch := compressBatch(t, testBatch(cc.name, 20, ts), cc.codec)
		if h, err := record.Validate(batch); err != nil || h.Codec() != cc.bits {
			t.Fatalf("%s: built batch: codec %d, %v", cc.name, h.Codec(), err)
		}
		// Two batches in one request, to check both are stored.
		second := compressBatch(t, testBatch(cc.name+"-2", 5, ts), cc.codec)
		sp := produceRaw(t, cl, topic, tid, 0, -1, append(bytes.Clone(batch), second...))
		if sp.ErrorCode != 0 || sp.BaseOffset != next {
			t.Fatalf("%s: produce: error %d base offset %d, want 0 and %d", cc.name, sp.ErrorCode, sp.BaseOffset, next)
		}
		sent = append(sent, batch, second)
		next += 25
	}
	got := fetchBatches(t, cl, topic, tid, 0, 0, next)
	if len(got) != len(sent) {
		t.Fatalf("fetched %d batches, sent %d", len(got), len(sent))
	}
	off := int64(0)
	for i := range sent {
		if base := record.BaseOffset(got[i]); base != off {
			t.Fatalf("batch %d: base offset %d, want %d", i, base, off)
		}
		h, _ := record.Parse(sent[i])
		off += int64(h.RecordCount)
		// Bytes 0-15 are the base offset, length and leader epoch; the
		// rest, from the magic byte on, must be untouched.
		if !bytes.Equal(got[i][8:12], sent[i][8:12]) || !bytes.Equal(got[i][16:], sent[i][16:]) {
			t.Fatalf("batch %d (codec %d) stored differently from what was sent", i, h.Codec())
		}
	}
	// A consumer decodes every record of every codec.
	recs := readAll(t, b.addr, topic)[0]
	if len(recs) != int(next) {
		t.Fatalf("consumer read %d records, want %d", len(recs), next)
	}
	for i, r := range recs[:20] {
		if want := fmt.Sprintf("none-key-%d", i); string(r.Key) != want || r.Timestamp.UnixMilli() != ts+int64(i) {
			t.Fatalf("record %d: key %q ts %d, want %q %d", i, r.Key, r.Timestamp.UnixMilli(), want, ts+int64(i))
		}
	}
	if r := recs[len(recs)-1]; string(r.Key) != "zstd-2-key-4" || string(r.Headers[0].Value) != "zstd-2" {
		t.Fatalf("last record: key %q headers %v", r.Key, r.Headers)
	}
}

// consumeFrom reads n records of one partition starting at start.
func consumeFrom(t testing.TB, addr, topic string, partition int32, start kgo.Offset, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: start}}),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s/%d from %v: have %d of %d records after 20s", topic, partition, start, len(got), n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consuming %s from %v: %v", topic, start, err) })
		got = append(got, fs.Records()...)
	}
	return got
}

// TestReplay replays a partition from an offset, from timestamps and the
// last N records, for a topic of each codec (a timestamp inside a
// compressed batch needs the batch decompressed).
func TestReplay(t *testing.T) {
	b := startBroker(t, nil)
	for _, cc := range testCodecs {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			topic := "replay-" + cc.name
			adm := kadm.NewClient(newTestClient(t, b.addr))
			if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			cl := newTestClient(t, b.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(cc.codec))
			// 100 records one second apart, an hour ago, in batches of 10.
			const n = 100
			base := time.Now().Add(-time.Hour).UnixMilli()
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = testRecord(topic, i)
				recs[i].Timestamp = time.UnixMilli(base + int64(i)*1000)
			}
			for i := 0; i < n; i += 10 {
				if err := cl.ProduceSync(ctx, recs[i:i+10]...).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			tests := []struct {
				name  string
				start kgo.Offset
				first int
			}{
				{"offset 0", kgo.NewOffset().At(0), 0},
				{"offset 37", kgo.NewOffset().At(37), 37},
				{"offset 40 (batch start)", kgo.NewOffset().At(40), 40},
				{"timestamp before all", kgo.NewOffset().AfterMilli(base - 5000), 0},
				{"timestamp exact", kgo.NewOffset().AfterMilli(base + 55*1000), 55},
				{"timestamp just before", kgo.NewOffset().AfterMilli(base + 55*1000 - 1), 55},
				{"timestamp just after", kgo.NewOffset().AfterMilli(base + 55*1000 + 1), 56},
				{"timestamp at batch start", kgo.NewOffset().AfterMilli(base + 70*1000), 70},
				{"timestamp of last", kgo.NewOffset().AfterMilli(base + 99*1000), 99},
			}
			for _, tt := range tests {
				got := consumeFrom(t, b.addr, topic, 0, tt.start, n-tt.first)
				if got[0].Offset != int64(tt.first) {
					t.Fatalf("%s: first record at offset %d, want %d", tt.name, got[0].Offset, tt.first)
				}
				compareRecords(t, tt.name, got[:n-tt.first], recs[tt.first:], true)
			}
			// A timestamp after every record lists the end offset.
			lo, err := adm.ListOffsetsAfterMilli(ctx, base+1000*1000, topic)
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := lo.Lookup(topic, 0); o.Err != nil || o.Offset != n {
				t.Fatalf("offset after the last timestamp: %d (%v), want %d", o.Offset, o.Err, n)
			}
			lo, err = adm.ListOffsetsAfterMilli(ctx, base+42*1000, topic)
			if err != nil {
				t.Fatal(err)
			}
			if o, _ := lo.Lookup(topic, 0); o.Err != nil || o.Offset != 42 || o.Timestamp != base+42*1000 {
				t.Fatalf("offset for timestamp of record 42: %d at %d (%v)", o.Offset, o.Timestamp, o.Err)
			}
			// The last N: end offset minus N.
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			end, _ := ends.Lookup(topic, 0)
			if end.Offset != n {
				t.Fatalf("end offset %d, want %d", end.Offset, n)
			}
			const last = 3
			got := consumeFrom(t, b.addr, topic, 0, kgo.NewOffset().At(end.Offset-last), last)
			if len(got) != last {
				t.Fatalf("last %d: read %d records", last, len(got))
			}
			compareRecords(t, "last N", got, recs[n-last:], true)
		})
	}
}

// TestManyPartitions produces keyed records to a 64-partition topic: each
// record comes back from the partition the key hashes to, in order.
func TestManyPartitions(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	const topic, partitions, n = "wide", 64, 3000
	if _, err := b.admin().CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	cl := b.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	hash := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	recs := make([]*kgo.Record, n)
	want := map[int32][]*kgo.Record{}
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("user-%d", i%701)), Value: []byte(fmt.Sprintf("event %d", i))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if p := int32(hash.Partition(r, partitions)); p != r.Partition {
			t.Fatalf("key %s: producer chose partition %d, the key hashes to %d", r.Key, r.Partition, p)
		}
		want[r.Partition] = append(want[r.Partition], r)
	}
	if len(want) != partitions {
		t.Fatalf("records landed on %d partitions, want all %d", len(want), partitions)
	}
	got := readAll(t, b.addr, topic)
	for p := int32(0); p < partitions; p++ {
		for _, r := range got[p] {
			if r.Partition != p || int32(hash.Partition(r, partitions)) != p {
				t.Fatalf("record %q key %s read from partition %d", r.Value, r.Key, p)
			}
		}
		compareRecords(t, fmt.Sprintf("partition %d", p), got[p], want[p], true)
	}
}
