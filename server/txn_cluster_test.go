package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnClusterProps keep __transaction_state small, so a cluster creates
// and loads it quickly.
var txnClusterProps = map[string]string{
	"transaction.state.log.num.partitions": "3",
	"replica.lag.time.max.ms":              "3000",
}

// startTxnCluster starts three nodes and creates topic with a partition
// led by each.
func startTxnCluster(t *testing.T, topic string) *testCluster {
	t.Helper()
	c := startCluster(t, 3, txnClusterProps)
	ctx := testCtx(t)
	c.waitRegistered()
	req := kmsgCreateWithAssignment(topic, [][]int32{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}})
	if err := c.request(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "__transaction_state and "+topic, 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv.meta.Topic(transactionStateTopic) == nil || nd.srv.meta.Topic(topic) == nil {
				return false
			}
		}
		return true
	})
	return c
}

// liveNode returns a running node of c.
func (c *testCluster) liveNode() *clusterNode {
	for _, nd := range c.nodes {
		if nd.srv != nil {
			return nd
		}
	}
	c.t.Fatal("no node runs")
	return nil
}

// txnCoordinatorOf is the node leading the __transaction_state partition
// of a transactional id, or -1.
func (c *testCluster) txnCoordinatorOf(id string) int32 {
	nd := c.liveNode()
	t := nd.srv.meta.Topic(transactionStateTopic)
	if t == nil {
		return -1
	}
	return t.State(nd.srv.txn.Partition(id)).Leader
}

// readCommitted reads topic from its start with read_committed until it
// has want records or wait passes, and returns the values by partition.
func (c *testCluster) readCommitted(t *testing.T, topic string, want int, wait time.Duration) map[int32][]string {
	t.Helper()
	cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
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
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], string(r.Value))
			n++
		})
	}
	return out
}

// TestClusterTransactions runs transactions on a three-node cluster over
// partitions led by every node, committing and aborting, with franz-go's
// producer at both transaction versions: a read_committed consumer sees
// exactly the committed records, the coordinator is the leader of the
// id's __transaction_state partition, and the producer ids the nodes hand
// out never collide.
func TestClusterTransactions(t *testing.T) {
	c := startTxnCluster(t, "t")
	ctx := testCtx(t)
	want := map[int32][]string{}
	for _, tv := range txnVersions {
		cl := c.client(append([]kgo.Opt{kgo.TransactionalID("tx-" + tv.name), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.TransactionTimeout(20 * time.Second)}, tv.opts...)...)
		for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 3; p++ {
				v := fmt.Sprintf("%s-%d-%d", tv.name, i, p)
				produceIn(t, ctx, cl, "t", p, v)
				if commit {
					want[p] = append(want[p], v)
				}
			}
			endTxn(t, ctx, cl, commit)
		}
		// FindCoordinator answers the leader of the id's partition.
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorType, fc.CoordinatorKey = 1, "tx-"+tv.name
		resp, err := fc.RequestWith(ctx, cl)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("FindCoordinator: %v %+v", err, resp)
		}
		if l := c.txnCoordinatorOf("tx-" + tv.name); resp.NodeID != l {
			t.Fatalf("FindCoordinator answered %d, the partition's leader is %d", resp.NodeID, l)
		}
	}
	got := c.readCommitted(t, "t", 12, 20*time.Second)
	for p := range int32(3) {
		if !slices.Equal(got[p], want[p]) {
			t.Errorf("read_committed partition %d: %v, want %v", p, got[p], want[p])
		}
	}

	// Producer ids from every node at once are unique.
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		cl := c.nodeClient(nd)
		wg.Go(func() {
			for range 50 {
				req := kmsg.NewPtrInitProducerIDRequest()
				kresp, err := cl.Broker(int(nd.id)).Request(ctx, req)
				if err != nil {
					t.Error(err)
					return
				}
				resp := kresp.(*kmsg.InitProducerIDResponse)
				if resp.ErrorCode != 0 {
					t.Errorf("InitProducerID on node %d: code %d", i, resp.ErrorCode)
					return
				}
				mu.Lock()
				if j, ok := seen[resp.ProducerID]; ok {
					t.Errorf("producer id %d from nodes %d and %d", resp.ProducerID, j, i)
				}
				seen[resp.ProducerID] = i
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestClusterTransactionCoordinatorFailover stops the node that
// coordinates a transactional id while its transaction is open over
// partitions led by every node: the producer finds the new coordinator,
// the transaction ends whole, and the next one commits. A commit sent
// once the new coordinator leads commits; one sent at once fails while
// the old coordinator is still named, and the producer aborts (franz-go
// recovers with InitProducerId, which aborts the transaction and bumps
// its epoch).
func TestClusterTransactionCoordinatorFailover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		commit bool // commit once the new coordinator leads, rather than at once
	}{
		{"commit", true},
		{"abort", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startTxnCluster(t, "t")
			ctx := testCtx(t)
			const id = "tx-failover"
			cl := c.client(kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(20*time.Second))
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 3; p++ {
				produceIn(t, ctx, cl, "t", p, fmt.Sprintf("first-%d", p))
			}
			endTxn(t, ctx, cl, kgo.TryCommit)

			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 3; p++ {
				produceIn(t, ctx, cl, "t", p, fmt.Sprintf("second-%d", p))
			}
			coord := c.txnCoordinatorOf(id)
			if coord < 0 {
				t.Fatal("no coordinator")
			}
			c.stop(int(coord))
			if tc.commit {
				waitCluster(t, "a new coordinator", 20*time.Second, func() bool {
					nc := c.txnCoordinatorOf(id)
					return nc >= 0 && nc != coord
				})
			}
			secondCommitted := true
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Logf("commit after the coordinator stopped: %v; aborting", err)
				secondCommitted = false
				if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
					t.Fatalf("abort: %v", err)
				}
			}
			if tc.commit && !secondCommitted {
				t.Error("the commit did not outlive the failover")
			}
			// franz-go's abort after a commit that could not be sent may
			// return before the controller fenced the stopped node (its
			// InitProducerId retries give up first).
			waitCluster(t, "a new coordinator", 20*time.Second, func() bool {
				nc := c.txnCoordinatorOf(id)
				return nc >= 0 && nc != coord
			})
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 3; p++ {
				produceIn(t, ctx, cl, "t", p, fmt.Sprintf("third-%d", p))
			}
			endTxn(t, ctx, cl, kgo.TryCommit)

			c.start(int(coord))
			n := 6
			if secondCommitted {
				n = 9
			}
			got := c.readCommitted(t, "t", n, 30*time.Second)
			for p := range int32(3) {
				want := []string{fmt.Sprintf("first-%d", p), fmt.Sprintf("second-%d", p), fmt.Sprintf("third-%d", p)}
				if !secondCommitted {
					want = slices.Delete(want, 1, 2)
				}
				if !slices.Equal(got[p], want) {
					t.Errorf("read_committed partition %d: %v, want %v", p, got[p], want)
				}
			}
		})
	}
}
