package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// txnVersions are the two ways a franz-go producer runs transactions
// against Ferry: transaction version 2 (KIP-890: Produce v12, EndTxn v5
// bumping the epoch, partitions added by the leaders), which it picks from
// ApiVersions, and the older protocol (AddPartitionsToTxn, Produce v11,
// leaders verifying), with the request versions capped below.
var txnVersions = []struct {
	name string
	opts []kgo.Opt
}{
	{"v2", nil},
	{"v1", []kgo.Opt{kgo.MaxVersions(capVersions(map[int16]int16{0: 11, 26: 4, 28: 4}))}},
}

func capVersions(caps map[int16]int16) *kversion.Versions {
	v := kversion.Stable()
	for key, max := range caps {
		v.SetMaxKeyVersion(key, max)
	}
	return v
}

// txnClient is a transactional producer with a fresh transactional id.
func (b *testBroker) txnClient(t testing.TB, id string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return b.client(append([]kgo.Opt{
		kgo.TransactionalID(id),
		kgo.TransactionTimeout(30 * time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	}, opts...)...)
}

func produceIn(t testing.TB, ctx context.Context, cl *kgo.Client, topic string, part int32, values ...string) {
	t.Helper()
	var rs []*kgo.Record
	for _, v := range values {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: part, Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %v: %v", values, err)
	}
}

func endTxn(t testing.TB, ctx context.Context, cl *kgo.Client, commit kgo.TransactionEndTry) {
	t.Helper()
	if err := cl.EndTransaction(ctx, commit); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// consumeAll reads topic from the start until it has seen want records
// or the wait passes, and returns the values by partition.
func consumeAll(t testing.TB, b *testBroker, topic string, committed bool, want int, wait time.Duration) map[int32][]string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out := map[int32][]string{}
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, err := range fs.Errors() {
			t.Fatalf("fetch %s/%d: %v", err.Topic, err.Partition, err.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], string(r.Value))
			n++
		})
	}
	return out
}

func TestTransactionsCommitAndAbort(t *testing.T) {
	for _, tv := range txnVersions {
		t.Run(tv.name, func(t *testing.T) {
			b := startBroker(t, nil)
			ctx := testCtx(t)
			if _, err := b.admin().CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
				t.Fatal(err)
			}
			cl := b.txnClient(t, "tx-"+tv.name, tv.opts...)
			for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit, kgo.TryAbort} {
				if err := cl.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				produceIn(t, ctx, cl, "t", 0, fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i))
				produceIn(t, ctx, cl, "t", 1, fmt.Sprintf("c%d", i))
				endTxn(t, ctx, cl, commit)
			}
			// Non-transactional records between them are always visible.
			plain := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceIn(t, ctx, plain, "t", 0, "plain")
			got := consumeAll(t, b, "t", true, 5, 20*time.Second)
			want := map[int32][]string{0: {"a0", "b0", "a2", "b2", "plain"}, 1: {"c0", "c2"}}
			for p := range want {
				if !slices.Equal(got[p], want[p]) {
					t.Errorf("read_committed partition %d: %v, want %v", p, got[p], want[p])
				}
			}
			all := consumeAll(t, b, "t", false, 13, 20*time.Second)
			if len(all[0]) != 9 || len(all[1]) != 4 {
				t.Errorf("read_uncommitted: %v", all)
			}
			// The last stable offset is the end: nothing is open.
			adm := b.admin()
			ends, err := adm.ListCommittedOffsets(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			hws, err := adm.ListEndOffsets(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 2; p++ {
				c, _ := ends.Lookup("t", p)
				h, _ := hws.Lookup("t", p)
				if c.Offset != h.Offset {
					t.Errorf("partition %d: last stable offset %d, high watermark %d", p, c.Offset, h.Offset)
				}
			}
		})
	}
}

// TestOpenTransactionHoldsLSO: a read_committed consumer stops at the
// first offset of an open transaction, even for records produced after
// it outside it, until the transaction ends.
func TestOpenTransactionHoldsLSO(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	plain := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceIn(t, ctx, plain, "t", 0, "before")
	cl := b.txnClient(t, "holder")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIn(t, ctx, cl, "t", 0, "in-txn")
	produceIn(t, ctx, plain, "t", 0, "after")

	lso := func() int64 {
		o, err := adm.ListCommittedOffsets(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		l, _ := o.Lookup("t", 0)
		return l.Offset
	}
	if got := lso(); got != 1 {
		t.Fatalf("last stable offset %d with a transaction open at 1", got)
	}
	consumer := b.client(kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	var mu sync.Mutex
	var seen []string
	pollDone := make(chan struct{})
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		defer close(pollDone)
		for pollCtx.Err() == nil {
			fs := consumer.PollFetches(pollCtx)
			fs.EachRecord(func(r *kgo.Record) {
				mu.Lock()
				seen = append(seen, string(r.Value))
				mu.Unlock()
			})
		}
	}()
	defer func() { stopPoll(); <-pollDone }()
	waitFor := func(what string, want []string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			got := slices.Clone(seen)
			mu.Unlock()
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: consumer saw %v, want %v", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("while open", []string{"before"})
	time.Sleep(500 * time.Millisecond) // several fetches
	waitFor("still open", []string{"before"})
	endTxn(t, ctx, cl, kgo.TryCommit)
	waitFor("after the commit", []string{"before", "in-txn", "after"})
	if got := lso(); got != 4 {
		t.Fatalf("last stable offset %d after the commit marker at 3", got)
	}
}

// TestZombieFenced: a second producer with the same transactional id
// fences the first; the first's open transaction is aborted and its
// writes never become visible to read_committed.
func TestZombieFenced(t *testing.T) {
	for _, tv := range txnVersions {
		t.Run(tv.name, func(t *testing.T) {
			b := startBroker(t, nil)
			ctx := testCtx(t)
			if _, err := b.admin().CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
				t.Fatal(err)
			}
			zombie := b.txnClient(t, "same", tv.opts...)
			if err := zombie.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			produceIn(t, ctx, zombie, "t", 0, "zombie-0")
			next := b.txnClient(t, "same", tv.opts...)
			if err := next.BeginTransaction(); err != nil { // InitProducerID fences the zombie
				t.Fatal(err)
			}
			produceIn(t, ctx, next, "t", 0, "next")
			// The zombie's next writes fail, in a partition it wrote and in
			// one it did not, and so does its commit.
			for p := int32(0); p < 2; p++ {
				err := zombie.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: p, Value: []byte("zombie-late")}).FirstErr()
				if err == nil {
					t.Fatalf("zombie produced to partition %d", p)
				}
				t.Logf("zombie produce to %d: %v", p, err)
			}
			if err := zombie.EndTransaction(ctx, kgo.TryCommit); err == nil {
				t.Fatal("zombie committed")
			}
			endTxn(t, ctx, next, kgo.TryCommit)
			got := consumeAll(t, b, "t", true, 1, 10*time.Second)
			if !slices.Equal(got[0], []string{"next"}) || len(got[1]) != 0 {
				t.Fatalf("read_committed: %v", got)
			}
		})
	}
}

// TestTransactionAPIs checks the admin side: ApiVersions' feature, the
// transaction coordinator, DescribeTransactions, ListTransactions,
// DescribeProducers, and WriteTxnMarkers sent by hand.
func TestTransactionAPIs(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	raw := b.client()
	av := kmsg.NewPtrApiVersionsRequest()
	av.ClientSoftwareName, av.ClientSoftwareVersion = "test", "1"
	avr, err := av.RequestWith(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range avr.FinalizedFeatures {
		if f.Name == "transaction.version" && f.MaxVersionLevel == 2 {
			found = true
		}
	}
	if !found || avr.FinalizedFeaturesEpoch < 0 {
		t.Fatalf("transaction.version not finalized at 2: %+v", avr.FinalizedFeatures)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType, fc.CoordinatorKey = 1, "x"
	if r, err := fc.RequestWith(ctx, raw); err != nil || r.ErrorCode != 0 || r.NodeID != 0 {
		t.Fatalf("FindCoordinator for a transaction: %+v %v", r, err)
	}

	cl := b.txnClient(t, "described")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIn(t, ctx, cl, "t", 0, "x", "y")
	dt, err := adm.DescribeTransactions(ctx, "described")
	if err != nil {
		t.Fatal(err)
	}
	d := dt["described"]
	if d.State != "Ongoing" || len(d.Topics["t"]) != 1 {
		t.Fatalf("described: %+v", d)
	}
	lt, err := adm.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil || len(lt) != 1 {
		t.Fatalf("listed: %+v %v", lt, err)
	}
	dp, err := adm.DescribeProducers(ctx, kadm.TopicsSet{"t": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var ps []kadm.DescribedProducer
	dp.EachProducer(func(p kadm.DescribedProducer) { ps = append(ps, p) })
	if len(ps) != 1 || ps[0].ProducerID != d.ProducerID || ps[0].CurrentTxnStartOffset != 0 || ps[0].LastSequence != 1 {
		t.Fatalf("producers %+v, transaction %+v", ps, d)
	}

	// WriteTxnMarkers by hand: an abort of the open transaction at the
	// producer's epoch, as a tool would end a hanging transaction.
	wm := kmsg.NewPtrWriteTxnMarkersRequest()
	wm.Markers = []kmsg.WriteTxnMarkersRequestMarker{{
		ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch, Committed: false,
		Topics: []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "t", Partitions: []int32{0}}, {Topic: "gone", Partitions: []int32{0}}},
	}}
	// Sent to the broker itself: franz-go's client would split it by
	// partition leader and answer the unknown topic on its own.
	br := raw.Broker(0)
	wr2, err := br.RetriableRequest(ctx, wm)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range wr2.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics {
		want := int16(0)
		if rt.Topic == "gone" {
			want = kerr.UnknownTopicOrPartition.Code
		}
		if rt.Partitions[0].ErrorCode != want {
			t.Fatalf("direct marker to %s: %v", rt.Topic, kerr.ErrorForCode(rt.Partitions[0].ErrorCode))
		}
	}
	ends, err := adm.ListCommittedOffsets(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("t", 0); o.Offset != 3 {
		t.Fatalf("last stable offset %d after the hand-written abort", o.Offset)
	}
	if got := consumeAll(t, b, "t", true, 1, 2*time.Second); len(got[0]) != 0 {
		t.Fatalf("aborted records read: %v", got)
	}
}
