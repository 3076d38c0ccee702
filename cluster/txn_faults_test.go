//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTransactionCoordinatorKill runs franz-go's consume-transform-produce
// (GroupTransactSession: read "in", write "out", commit the input offsets
// in the same transaction) on a three-node cluster of `ferry serve`
// processes, and SIGKILLs the node coordinating its transactional id while
// transactions are in flight, then the new coordinator's node too once the
// first is back. The output, read with read_committed, holds each input
// record exactly once, in order; and a transaction that a plain
// transactional producer had open over partitions led by every node when
// its coordinator died ends whole.
func TestTransactionCoordinatorKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	c := newProcCluster(t, 3, append(slices.Clone(faultTimeouts), "transaction.state.log.num.partitions=3")...)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	adm := kadm.NewClient(c.client(t))
	waitFormed(t, ctx, adm)
	const parts = inParts
	for _, topic := range []string{"in", "out", "t"} {
		createTopic(t, ctx, adm, topic, parts)
	}
	const perPartition = inPerPartition
	in := c.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(parts) {
		var rs []*kgo.Record
		for i := range perPartition {
			rs = append(rs, &kgo.Record{Topic: "in", Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
		if err := in.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// An open transaction over every partition of "t" when its
	// coordinator dies.
	tcl := c.client(t, kgo.TransactionalID("plain"), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(10*time.Second))
	if err := tcl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range int32(parts) {
		if err := tcl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: p, Value: []byte("open")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	etlDone := make(chan struct{})
	commits := make(chan int, 1024)
	go func() {
		defer close(etlDone)
		runETL(ctx, t, c, commits)
	}()
	// waitCommits waits for n commits, or reports false when the
	// processor finished first.
	waitCommits := func(n int) bool {
		t.Helper()
		for range n {
			select {
			case <-commits:
			case <-etlDone:
				return false
			case <-ctx.Done():
				t.Fatal("the processor stopped committing")
			}
		}
		return true
	}
	waitCommits(3)

	for round := range 2 {
		coord := findTxnCoordinator(ctx, t, c, "etl")
		t.Logf("round %d: killing node %d, the coordinator of the processor", round, coord)
		for len(commits) > 0 {
			<-commits // commits made before the kill
		}
		killed := time.Now()
		c.kill(c.nodes[coord])
		if round == 1 && waitCommits(1) {
			t.Logf("first commit %v after the kill", time.Since(killed))
		}
		if round == 0 {
			// The plain producer's coordinator may be another node; its
			// transaction ends whole either way.
			if err := tcl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Logf("commit of the open transaction: %v; aborting", err)
				if err := tcl.EndTransaction(ctx, kgo.TryAbort); err != nil {
					t.Fatalf("abort: %v", err)
				}
			}
		}
		waitCommits(3)
		c.healAll(t)
		waitInSync(ctx, t, adm)
	}
	select {
	case <-etlDone:
	case <-ctx.Done():
		t.Fatal("the processor did not finish")
	}

	got := readCommitted(ctx, t, c, "out", parts*perPartition)
	for p := range int32(parts) {
		if len(got[p]) != perPartition {
			t.Errorf("out partition %d: %d records, want %d", p, len(got[p]), perPartition)
		}
		for i, v := range got[p] {
			if want := fmt.Sprintf("out-%d-%d", p, i); v != want {
				t.Fatalf("out partition %d record %d: %q, want %q (input lost or duplicated)", p, i, v, want)
			}
		}
	}
	plain := readCommitted(ctx, t, c, "t", 0)
	n := len(plain[0])
	for p := range int32(parts) {
		if len(plain[p]) != n || n > 1 {
			t.Fatalf("the transaction open when its coordinator died is torn: %v", plain)
		}
	}
	t.Logf("the open transaction %s", map[int]string{0: "aborted", 1: "committed"}[n])
}

// The input of TestTransactionCoordinatorKill.
const (
	inParts        = 3
	inPerPartition = 300
)

// runETL consumes "in" as group "etl" and writes each record to "out"
// (same partition, value prefixed "out-") with its input offsets, in
// transactions, until every input offset is committed or ctx ends. It
// sends the number of records of each commit to commits. A processor
// that could not learn how a transaction ended is replaced by a new one,
// as an application restarts it.
func runETL(ctx context.Context, t *testing.T, c *procCluster, commits chan<- int) {
	adm := kadm.NewClient(c.client(t))
	for ctx.Err() == nil {
		if runETLSession(ctx, t, c, adm, commits) {
			return
		}
		t.Log("starting a new processor")
	}
}

// runETLSession is one processor of runETL; it reports true once every
// input offset is committed.
func runETLSession(ctx context.Context, t *testing.T, c *procCluster, adm *kadm.Client, commits chan<- int) bool {
	var seeds []string
	for _, nd := range c.nodes {
		seeds = append(seeds, nd.addr)
	}
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(seeds...),
		kgo.TransactionalID("etl"),
		kgo.TransactionTimeout(10*time.Second),
		kgo.ConsumerGroup("etl"),
		kgo.ConsumeTopics("in"),
		kgo.SessionTimeout(6*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.MetadataMinAge(100*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
	)
	if err != nil {
		t.Error(err)
		return true
	}
	defer s.Close()
	var lastLog time.Time
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := s.PollRecords(pctx, 20)
		pcancel()
		if fs.NumRecords() == 0 {
			os, err := adm.FetchOffsets(ctx, "etl")
			if err == nil {
				done := true
				for p := range int32(inParts) {
					o, ok := os.Lookup("in", p)
					done = done && ok && o.Err == nil && o.At >= inPerPartition
				}
				if done {
					return true
				}
			}
			if time.Since(lastLog) > 5*time.Second {
				lastLog = time.Now()
				t.Logf("committed input offsets: %v %v", os, err)
			}
			continue
		}
		if err := s.Begin(); err != nil {
			t.Logf("begin: %v", err)
			return false
		}
		fs.EachRecord(func(r *kgo.Record) {
			s.Produce(ctx, &kgo.Record{Topic: "out", Partition: r.Partition, Value: append([]byte("out-"), r.Value...)}, nil)
		})
		committed, err := s.End(ctx, kgo.TryCommit)
		if err != nil {
			// The outcome is unknown: the coordinator may have stored
			// the commit before it died, and then its successor commits
			// it. franz-go's session would rewind to the offsets it knows
			// committed and process the batch again; a new processor
			// reads the committed offsets (require_stable) instead.
			t.Logf("end: %v; replacing the processor", err)
			return false
		}
		if committed {
			t.Logf("committed %d records", fs.NumRecords())
			select {
			case commits <- fs.NumRecords():
			default:
			}
		}
	}
	return true
}

// findTxnCoordinator is the node coordinating a transactional id.
func findTxnCoordinator(ctx context.Context, t *testing.T, c *procCluster, id string) int {
	t.Helper()
	cl := c.client(t)
	var node int32 = -1
	waitFor(t, "the coordinator of "+id, 30*time.Second, func() bool {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType, req.CoordinatorKey = 1, id
		resp, err := req.RequestWith(ctx, cl)
		if err != nil || resp.ErrorCode != 0 {
			return false
		}
		node = resp.NodeID
		return true
	})
	return int(node)
}

// readCommitted reads topic from the start with read_committed up to its
// last stable offsets and returns the values by partition. want, if not
// 0, is how many records to wait for.
func readCommitted(ctx context.Context, t *testing.T, c *procCluster, topic string, want int) map[int32][]string {
	t.Helper()
	cl := c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if want == 0 {
		// Until a poll brings nothing more, once every transaction
		// ended (the last stable offset is the end).
		rctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		want = 1 << 30
	}
	out := map[int32][]string{}
	n := 0
	for n < want {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], string(r.Value))
			n++
		})
	}
	return out
}

// waitInSync waits until every partition of the topics the test uses has
// all three replicas in sync, so that the next kill leaves a majority.
func waitInSync(ctx context.Context, t *testing.T, adm *kadm.Client) {
	t.Helper()
	waitFor(t, "every replica in sync", 60*time.Second, func() bool {
		td, err := adm.ListTopicsWithInternal(ctx, "__transaction_state", "__consumer_offsets", "in", "out", "t")
		if err != nil {
			return false
		}
		for _, d := range td {
			if d.Err != nil {
				return false
			}
			for _, p := range d.Partitions {
				if len(p.ISR) != 3 {
					return false
				}
			}
		}
		return len(td) == 5
	})
}
