package server

import (
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// listOffsetsRequest asks for partition p of topic at each timestamp.
func listOffsetsRequest(version int16, topic string, p int32, timestamps ...int64) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(version)
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, ts := range timestamps {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp, rp.MaxNumOffsets = p, ts, 1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// bigZstdBatch is one zstd batch of n records of 256 bytes, the i-th
// at timestamp base+i.
func bigZstdBatch(t testing.TB, n int, base int64) []byte {
	t.Helper()
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Value: make([]byte, 256), TimestampDelta: int64(i)}
	}
	plain := record.AppendBatch(nil, record.Batch{BaseTimestamp: base, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
	b, err := record.Recompress(plain, record.CodecZstd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestListOffsetsDuplicates: from v1 a partition named twice gets
// INVALID_REQUEST at both places, as in Kafka, and the others are
// answered; v0 answers every occurrence.
func TestListOffsetsDuplicates(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.admin().CreateTopic(testCtx(t), 2, 1, nil, "dup"); err != nil {
		t.Fatal(err)
	}
	nc := dialRaw(t, b.addr)
	for _, v := range []int16{1, 7, 11} {
		req := listOffsetsRequest(v, "dup", 0, -1, -2)
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = 1, -1
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, rp)
		resp := roundTrip(t, nc, req, int32(v)).(*kmsg.ListOffsetsResponse)
		ps := resp.Topics[0].Partitions
		if len(ps) != 3 || ps[0].ErrorCode != kerr.InvalidRequest.Code || ps[1].ErrorCode != kerr.InvalidRequest.Code || ps[2].ErrorCode != 0 || ps[2].Offset != 0 {
			t.Errorf("v%d: partition 0 twice and 1 once answered %+v", v, ps)
		}
	}
	resp := roundTrip(t, nc, listOffsetsRequest(0, "dup", 0, -1, -2), 100).(*kmsg.ListOffsetsResponse)
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 || len(p.OldStyleOffsets) != 1 {
			t.Errorf("v0: partition 0 twice answered %+v", resp.Topics[0].Partitions)
		}
	}
}

// TestListOffsetsDecompressOnce: a v0 request naming one partition at
// two hundred timestamps, all in one compressed batch of 1 MiB of
// records, decompresses that batch once, not two hundred times, and
// answers each timestamp with its record.
func TestListOffsetsDecompressOnce(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client()
	if _, err := b.admin().CreateTopic(testCtx(t), 1, 1, nil, "ts"); err != nil {
		t.Fatal(err)
	}
	const n, base = 4096, 1_000_000
	if sp := produceRaw(t, cl, "ts", topicIDOf(t, b.addr, "ts"), 0, -1, bigZstdBatch(t, n, base)); sp.ErrorCode != 0 {
		t.Fatalf("produce: error %d", sp.ErrorCode)
	}
	var want []int64
	var timestamps []int64
	for i := range 200 {
		off := int64(i * 20)
		want = append(want, off)
		timestamps = append(timestamps, base+off)
	}
	// Out of order, as a client may send them.
	timestamps[0], timestamps[199] = timestamps[199], timestamps[0]
	want[0], want[199] = want[199], want[0]
	nc := dialRaw(t, b.addr)
	req := listOffsetsRequest(0, "ts", 0, timestamps...)
	roundTrip(t, nc, req, 1) // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp := roundTrip(t, nc, req, 2).(*kmsg.ListOffsetsResponse)
	runtime.ReadMemStats(&after)
	for i, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 || len(p.OldStyleOffsets) != 1 || p.OldStyleOffsets[0] != want[i] {
			t.Fatalf("timestamp %d answered %+v, want offset %d", timestamps[i], p, want[i])
		}
	}
	allocated := int64(after.TotalAlloc - before.TotalAlloc)
	t.Logf("one request of %d lookups in a batch of %d KiB of records allocated %d KiB", len(timestamps), n*260>>10, allocated>>10)
	if limit := int64(n * 260 * 10); allocated > limit {
		t.Errorf("allocated %d KiB, want under %d KiB: the batch is decompressed more than once", allocated>>10, limit>>10)
	}
}
