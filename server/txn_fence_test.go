package server

import (
	"testing"

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
