package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/faultfile"
	"github.com/ferrymq/ferry/partition"
)

// TestConsumersSeeOnlyDurable holds every fdatasync of one topic and
// produces to it with acks=1 (answered from the page cache) and acks=all
// (not answered): while the fdatasync is held, a kgo consumer reads
// nothing, ListOffsets latest is 0 and a lookup by timestamp finds
// nothing, and a fetch between the high watermark and the log end is
// empty, not out of range. Once the fdatasync returns, the acks=all
// producer is answered and the consumer reads both records.
func TestConsumersSeeOnlyDurable(t *testing.T) {
	gate := faultfile.NewGate()
	b := startBrokerConfig(t, Config{
		DataDir: t.TempDir(),
		testPartitionConfig: func(topic string, cfg *partition.Config) {
			if topic == "gated" {
				cfg.Log.WrapFile = gate.Wrap
			}
		},
	})
	t.Cleanup(gate.Open) // before the broker stops, which syncs
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "gated"); err != nil {
		t.Fatal(err)
	}
	id := topicIDOf(t, b.addr, "gated")
	consumer := b.client(kgo.ConsumeTopics("gated"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	acksOne := b.client(kgo.DefaultProduceTopic("gated"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))
	acksAll := b.client(kgo.DefaultProduceTopic("gated"), kgo.ProducerLinger(0))
	raw := b.client()

	gate.Close()
	if r, err := acksOne.ProduceSync(ctx, &kgo.Record{Value: []byte("acks=1")}).First(); err != nil || r.Offset != 0 {
		t.Fatalf("acks=1 produce while fdatasync is held: %v", err)
	}
	select {
	case <-gate.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("the background flush never reached the file")
	}
	allDone := make(chan error, 1)
	acksAll.Produce(ctx, &kgo.Record{Value: []byte("acks=all")}, func(_ *kgo.Record, err error) { allDone <- err })

	// Both records are in the log (the acks=all one once the broker has
	// appended it), none is visible.
	fetchAt := func(off int64) kmsg.FetchResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.MaxBytes, req.SessionEpoch = -1, 1<<20, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "gated", id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.LogStartOffset, rp.CurrentLeaderEpoch, rp.PartitionMaxBytes = off, -1, -1, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	listOffset := func(ts int64) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "gated"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp, rp.CurrentLeaderEpoch = ts, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
			t.Fatalf("list offsets at %d: %v", ts, err)
		}
		return sp.Offset
	}
	if latest := listOffset(-1); latest != 0 {
		t.Fatalf("ListOffsets latest %d while nothing is durable, want 0", latest)
	}
	if off := listOffset(0); off != -1 {
		t.Fatalf("ListOffsets by timestamp found offset %d while nothing is durable", off)
	}
	if fp := fetchAt(0); fp.ErrorCode != 0 || fp.HighWatermark != 0 || len(fp.RecordBatches) != 0 {
		t.Fatalf("fetch at 0 while nothing is durable: error %d, high watermark %d, %d bytes", fp.ErrorCode, fp.HighWatermark, len(fp.RecordBatches))
	}
	// Offset 1 is past the high watermark but not the log end: empty,
	// not OFFSET_OUT_OF_RANGE (which would reset a consumer).
	if fp := fetchAt(1); fp.ErrorCode != 0 || len(fp.RecordBatches) != 0 {
		t.Fatalf("fetch at 1, below the log end: error %v, %d bytes", kerr.ErrorForCode(fp.ErrorCode), len(fp.RecordBatches))
	}
	if fp := fetchAt(5); fp.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch at 5, past the log end: error %v, want OFFSET_OUT_OF_RANGE", kerr.ErrorForCode(fp.ErrorCode))
	}
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	fs := consumer.PollFetches(pctx)
	cancel()
	if n := fs.NumRecords(); n != 0 {
		t.Fatalf("the consumer read %d records not yet durable", n)
	}
	select {
	case err := <-allDone:
		t.Fatalf("acks=all produce answered (%v) before its fdatasync", err)
	default:
	}

	gate.Open()
	if err := <-allDone; err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		fs := consumer.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 2 || got[0] != "acks=1" || got[1] != "acks=all" {
		t.Fatalf("consumed %q", got)
	}
	if latest := listOffset(-1); latest != 2 {
		t.Fatalf("ListOffsets latest %d, want 2", latest)
	}
	if off := listOffset(0); off != 0 {
		t.Fatalf("ListOffsets by timestamp: %d, want 0", off)
	}
}
