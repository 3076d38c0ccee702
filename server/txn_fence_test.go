package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestWriteTxnMarkersCoordinatorFenced sends WriteTxnMarkers by hand: a
// marker from a newer coordinator epoch is taken, and a late duplicate of
// an older coordinator, arriving while the producer's next transaction
// (same epoch, transaction version 1) is open, is refused with
// TRANSACTION_COORDINATOR_FENCED and leaves the log and the transaction
// as they were. DescribeProducers reports the coordinator epoch, which a
// tool aborting a hanging transaction needs.
func TestWriteTxnMarkersCoordinatorFenced(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	cl := b.txnClient(t, "fenced", txnVersions[1].opts...)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIn(t, ctx, cl, "t", 0, "a")
	endTxn(t, ctx, cl, kgo.TryCommit)
	producer := func() kadm.DescribedProducer {
		t.Helper()
		dp, err := adm.DescribeProducers(ctx, kadm.TopicsSet{"t": {0: {}}})
		if err != nil {
			t.Fatal(err)
		}
		var ps []kadm.DescribedProducer
		dp.EachProducer(func(p kadm.DescribedProducer) { ps = append(ps, p) })
		if len(ps) != 1 {
			t.Fatalf("producers %+v", ps)
		}
		return ps[0]
	}
	p := producer()
	if p.CoordinatorEpoch != 0 {
		t.Fatalf("coordinator epoch %d after a commit by this broker's coordinator", p.CoordinatorEpoch)
	}
	logEnd := func() int64 {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := ends.Lookup("t", 0)
		return o.Offset
	}
	// Sent to the broker itself, as a coordinator sends it.
	raw := b.client().Broker(0)
	mark := func(coordEpoch int32) int16 {
		t.Helper()
		wm := kmsg.NewPtrWriteTxnMarkersRequest()
		wm.Markers = []kmsg.WriteTxnMarkersRequestMarker{{
			ProducerID: p.ProducerID, ProducerEpoch: int16(p.ProducerEpoch), Committed: true, CoordinatorEpoch: coordEpoch,
			Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "t", Partitions: []int32{0}}},
		}}
		resp, err := raw.RetriableRequest(ctx, wm)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	end := logEnd()
	if code := mark(3); code != 0 {
		t.Fatalf("marker of coordinator epoch 3: %v", kerr.ErrorForCode(code))
	}
	if got := logEnd(); got != end+1 {
		t.Fatalf("log end %d after a marker, was %d", got, end)
	}
	if p := producer(); p.CoordinatorEpoch != 3 {
		t.Fatalf("coordinator epoch %d after a marker of 3", p.CoordinatorEpoch)
	}
	// The producer's next transaction, then the late duplicate.
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIn(t, ctx, cl, "t", 0, "b")
	open := producer().CurrentTxnStartOffset
	end = logEnd()
	if open != end-1 {
		t.Fatalf("transaction open at %d, log end %d", open, end)
	}
	if code := mark(2); code != kerr.TransactionCoordinatorFenced.Code {
		t.Fatalf("marker of coordinator epoch 2 after 3: %v, want TRANSACTION_COORDINATOR_FENCED", kerr.ErrorForCode(code))
	}
	if got := logEnd(); got != end {
		t.Fatalf("log end %d after a fenced marker, was %d", got, end)
	}
	if p := producer(); p.CurrentTxnStartOffset != open || p.CoordinatorEpoch != 3 {
		t.Fatalf("after a fenced marker: transaction open at %d (was %d), coordinator epoch %d", p.CurrentTxnStartOffset, open, p.CoordinatorEpoch)
	}
	ends, err := adm.ListCommittedOffsets(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("t", 0); o.Offset != open {
		t.Fatalf("last stable offset %d, the open transaction begins at %d", o.Offset, open)
	}
}

// TestClusterOffsetsMarkerFenced sends WriteTxnMarkers by hand to the
// leader of a group's __consumer_offsets partition in a cluster, where
// the marker is also appended to that partition: a marker from a newer
// coordinator epoch resolves the transaction's offsets, and a late one of
// an older coordinator, arriving once the producer has committed offsets
// again in its transaction, is refused with TRANSACTION_COORDINATOR_FENCED
// and leaves them pending. The partition's next leader loads the group
// past the markers and refuses the late marker too.
func TestClusterOffsetsMarkerFenced(t *testing.T) {
	c := startTxnCluster(t, "t")
	ctx := testCtx(t)
	const id, group = "offsets-fenced", "g"
	waitCluster(t, "__consumer_offsets", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv.meta.Topic(offsetsTopic) == nil {
				return false
			}
		}
		return true
	})
	cl := c.client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIn(t, ctx, cl, "t", 0, "x")
	pid, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := c.client()
	ao := kmsg.NewPtrAddOffsetsToTxnRequest()
	ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = id, pid, epoch, group
	if resp, err := ao.RequestWith(ctx, raw); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("AddOffsetsToTxn: %v %v", err, resp)
	}
	commitOffset := func(off int64) {
		t.Helper()
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch, req.Generation = id, group, pid, epoch, -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "t", c.liveNode().srv.meta.Topic("t").ID() // v6+ names topics by id
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, off
		rt.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{rp}
		req.Topics = []kmsg.TxnOffsetCommitRequestTopic{rt}
		resp, err := req.RequestWith(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("TxnOffsetCommit of %d: %v", off, kerr.ErrorForCode(code))
		}
	}
	committed := func() int64 {
		t.Helper()
		// A client of its own: one that knew the old coordinator keeps
		// dialing it.
		cl := c.client()
		defer cl.Close()
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			return -2 // the coordinator moving
		}
		o, ok := offs.Lookup("t", 0)
		if !ok || o.Err != nil {
			return -1
		}
		return o.At
	}
	nd := c.liveNode()
	gp := nd.srv.groups.Partition(group)
	leader := nd.srv.meta.Topic(offsetsTopic).State(gp).Leader
	mark := func(coordEpoch int32) int16 {
		t.Helper()
		wm := kmsg.NewPtrWriteTxnMarkersRequest()
		wm.Markers = []kmsg.WriteTxnMarkersRequestMarker{{
			ProducerID: pid, ProducerEpoch: epoch, Committed: true, CoordinatorEpoch: coordEpoch,
			Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: offsetsTopic, Partitions: []int32{gp}}},
		}}
		resp, err := raw.Broker(int(leader)).RetriableRequest(ctx, wm)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	commitOffset(10)
	if code := mark(5); code != 0 {
		t.Fatalf("marker of coordinator epoch 5: %v", kerr.ErrorForCode(code))
	}
	if got := committed(); got != 10 {
		t.Fatalf("committed offset %d after the marker, want 10", got)
	}
	commitOffset(20)
	if code := mark(4); code != kerr.TransactionCoordinatorFenced.Code {
		t.Fatalf("marker of coordinator epoch 4 after 5: %v, want TRANSACTION_COORDINATOR_FENCED", kerr.ErrorForCode(code))
	}
	if got := committed(); got != 10 {
		t.Fatalf("committed offset %d after a fenced marker, want 10 (20 pending)", got)
	}
	if code := mark(5); code != 0 {
		t.Fatalf("marker of coordinator epoch 5 again: %v", kerr.ErrorForCode(code))
	}
	if got := committed(); got != 20 {
		t.Fatalf("committed offset %d after the marker, want 20", got)
	}
	old := leader
	c.stop(int(old))
	waitCluster(t, "another leader of the group's partition", 20*time.Second, func() bool {
		leader = c.liveNode().srv.meta.Topic(offsetsTopic).State(gp).Leader
		return leader >= 0 && leader != old
	})
	waitCluster(t, "the group loaded by the new leader", 20*time.Second, func() bool { return committed() == 20 })
	if code := mark(4); code != kerr.TransactionCoordinatorFenced.Code {
		t.Fatalf("marker of coordinator epoch 4 on the new leader: %v, want TRANSACTION_COORDINATOR_FENCED", kerr.ErrorForCode(code))
	}
}
