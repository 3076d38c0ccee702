package txn

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLoadOnLead moves a transactional id's partition between two
// coordinators over one store, as leadership moves in a cluster: before a
// Load the id answers NOT_COORDINATOR; a Load replays it; a transaction
// left prepared by the previous coordinator (whose markers were failing
// when it unloaded) is completed by the next one, with its coordinator
// epoch in the markers, and the previous one writes nothing more.
func TestLoadOnLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		oldMarkers, newMarkers := newFakeMarkers(), newFakeMarkers()
		cfg := testConfig(store, oldMarkers)
		cfg.LoadOnLead = true
		cfg.TransactionTopicPartitions = 4
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		const id = "tx"
		p := a.Partition(id)

		tc := &testClient{t: t, c: a, id: id}
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 5
		req.TransactionalID = ptr(id)
		req.TransactionTimeoutMillis = 60000
		if resp := a.InitProducerID(context.Background(), req); resp.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("InitProducerID before Load: %s, want NOT_COORDINATOR", errName(resp.ErrorCode))
		}
		if err := a.AddPartitionsImplicitly(context.Background(), id, 1, 0, []TopicPartition{{"t", 0}}); err != kerr.NotCoordinator {
			t.Fatalf("AddPartitionsImplicitly before Load: %v", err)
		}
		if err := a.Load(p, 3); err != nil {
			t.Fatal(err)
		}
		tc.init()
		tc.add(TopicPartition{"t", 0}, TopicPartition{"t", 1})
		tc.end(true)
		if w := oldMarkers.take(); len(w) != 2 || w[0].m.CoordinatorEpoch != 3 {
			t.Fatalf("markers of the first commit: %v", w)
		}
		// The next transaction's markers fail on t-1; the partition moves
		// to another coordinator meanwhile.
		tc.add(TopicPartition{"t", 0}, TopicPartition{"t", 1})
		oldMarkers.mu.Lock()
		oldMarkers.fail[TopicPartition{"t", 1}] = -1
		oldMarkers.mu.Unlock()
		pid, epoch := tc.pid, tc.epoch
		tc.end(false)
		oldMarkers.take()
		a.Unload(p)
		if a.Loaded(p) {
			t.Fatal("still loaded after Unload")
		}
		d := kmsg.NewPtrDescribeTransactionsRequest()
		d.TransactionalIDs = []string{id}
		if st := a.DescribeTransactions(context.Background(), d).TransactionStates[0]; st.ErrorCode != kerr.NotCoordinator.Code {
			t.Fatalf("DescribeTransactions after Unload: %s", errName(st.ErrorCode))
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(oldMarkers.take()); n != 0 {
			t.Fatalf("the unloaded coordinator wrote %d markers", n)
		}

		cfg.Markers = newMarkers
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Load(p, 4); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		w := newMarkers.take()
		if len(w) != 2 {
			t.Fatalf("markers completing the abort: %v", w)
		}
		for _, m := range w {
			if m.m.Commit || m.m.ProducerID != pid || m.m.ProducerEpoch != epoch+1 || m.m.CoordinatorEpoch != 4 {
				t.Fatalf("marker %v (epoch %d), want an abort of %d at epoch %d, coordinator epoch 4", m, m.m.CoordinatorEpoch, pid, epoch+1)
			}
		}
		if st := b.DescribeTransactions(context.Background(), d).TransactionStates[0]; st.ErrorCode != 0 || st.State != "CompleteAbort" {
			t.Fatalf("after the new coordinator loaded: %s %s", errName(st.ErrorCode), st.State)
		}
		// The producer goes on with the new coordinator.
		tc.c = b
		tc.add(TopicPartition{"t", 0})
		tc.end(true)
		if w := newMarkers.take(); len(w) != 1 || !w[0].m.Commit {
			t.Fatalf("markers of the commit on the new coordinator: %v", w)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestFencedMarker: a partition refusing a marker as fenced (a newer
// coordinator wrote one for the producer there) makes the coordinator
// give the transaction up, as Kafka's does: no retry, no Complete record;
// the coordinator that owns the partition now completes it.
func TestFencedMarker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		markers := newFakeMarkers()
		cfg := testConfig(store, markers)
		cfg.LoadOnLead = true
		cfg.TransactionTopicPartitions = 4
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		const id = "tx"
		p := a.Partition(id)
		if err := a.Load(p, 3); err != nil {
			t.Fatal(err)
		}
		tc := &testClient{t: t, c: a, id: id}
		tc.init()
		tc.add(TopicPartition{"t", 0}, TopicPartition{"t", 1})
		markers.mu.Lock()
		markers.fenced[TopicPartition{"t", 1}] = true
		markers.mu.Unlock()
		tc.end(true)
		time.Sleep(time.Minute)
		synctest.Wait()
		markers.mu.Lock()
		calls := markers.calls
		markers.mu.Unlock()
		if calls != 2 {
			t.Fatalf("%d marker calls for two partitions, one fenced: the fenced one was retried", calls)
		}
		d := kmsg.NewPtrDescribeTransactionsRequest()
		d.TransactionalIDs = []string{id}
		if st := a.DescribeTransactions(context.Background(), d).TransactionStates[0]; st.ErrorCode != 0 || st.State != "PrepareCommit" {
			t.Fatalf("after a fenced marker: %s %s, want PrepareCommit (no Complete record)", errName(st.ErrorCode), st.State)
		}
		// The partition's new owner completes it.
		a.Unload(p)
		markers.mu.Lock()
		markers.fenced = map[TopicPartition]bool{}
		markers.mu.Unlock()
		markers.take()
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Load(p, 4); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if w := markers.take(); len(w) != 2 || !w[0].m.Commit || w[0].m.CoordinatorEpoch != 4 {
			t.Fatalf("markers of the new coordinator: %v", w)
		}
		if st := b.DescribeTransactions(context.Background(), d).TransactionStates[0]; st.ErrorCode != 0 || st.State != "CompleteCommit" {
			t.Fatalf("after the new coordinator loaded: %s %s", errName(st.ErrorCode), st.State)
		}
	})
}
