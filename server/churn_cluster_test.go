package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterLeaderChurn moves the leadership of every partition from
// broker to broker several times a second (a reassignment that only
// reorders the replicas, then a preferred election) while idempotent
// producers keep many batches in flight with acks=all. Each move sends
// requests in flight at the old leader back to the client
// (NOT_LEADER_OR_FOLLOWER), which retries them, with their sequences,
// at the new one. At the end every acknowledged record is read back at
// its offset, once, in each producer's order.
func TestClusterLeaderChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster under load")
	}
	c := startCluster(t, 3, nil)
	c.waitRegistered()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client())
	const topic, parts = "churn", 3
	if r, err := adm.CreateTopics(ctx, parts, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, topic); err != nil || r.Error() != nil {
		t.Fatal(err, r.Error())
	}

	type at struct {
		p   int32
		off int64
	}
	var (
		mu     sync.Mutex
		acked  = map[string]at{}
		failed int
	)
	pctx, stopProducing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for prod := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(2*time.Millisecond))
			window := make(chan struct{}, 64)
			var pending sync.WaitGroup
			for n := 0; ; n++ {
				select {
				case window <- struct{}{}:
				case <-pctx.Done():
				}
				if pctx.Err() != nil {
					break
				}
				v := fmt.Sprintf("p%d-%08d", prod, n)
				pending.Add(1)
				cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(n % parts), Value: []byte(v)}, func(r *kgo.Record, err error) {
					defer pending.Done()
					<-window
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failed++
						return
					}
					acked[v] = at{r.Partition, r.Offset}
				})
			}
			pending.Wait()
		}()
	}

	// Rotate each partition's replica order and elect the preferred
	// (first) replica, over and over.
	moves := 0
	deadline := time.Now().Add(6 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		var req kadm.AlterPartitionAssignmentsReq
		for p := range int32(parts) {
			k := (i + int(p)) % 3
			req.Assign(topic, p, []int32{int32(k), int32((k + 1) % 3), int32((k + 2) % 3)})
		}
		if res, err := adm.AlterPartitionAssignments(ctx, req); err != nil || res.Error() != nil {
			t.Fatalf("reassignment %d: %v %v", i, err, res.Error())
		}
		waitCluster(t, "the reorder applied", 10*time.Second, func() bool {
			tp := c.nodes[0].srv.meta.Topic(topic)
			for p := range int32(parts) {
				if st := tp.State(p); st.Target != nil || st.Replicas[0] != int32((i+int(p))%3) {
					return false
				}
			}
			return true
		})
		res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{topic: {0: {}, 1: {}, 2: {}}})
		if err != nil {
			t.Fatalf("election %d: %v", i, err)
		}
		for _, r := range res[topic] {
			if r.Err == nil {
				moves++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopProducing()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d leadership moves; %d records acknowledged, %d failed", moves, len(acked), failed)
	if moves < 10 {
		t.Fatalf("only %d leadership moves", moves)
	}

	// Read everything back.
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	log := map[at]string{}
	next := map[int32]int64{}
	for p := range int32(parts) {
		for next[p] < end[p] {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read to %v of %v", next, end)
			}
			fs.EachRecord(func(r *kgo.Record) {
				log[at{r.Partition, r.Offset}] = string(r.Value)
				next[r.Partition] = r.Offset + 1
			})
		}
	}
	var errs []string
	where := map[string]at{}
	for k, v := range log {
		if old, dup := where[v]; dup {
			errs = append(errs, fmt.Sprintf("duplicate: %s at %d@%d and %d@%d", v, old.p, old.off, k.p, k.off))
		}
		where[v] = k
	}
	for v, a := range acked {
		if got := log[a]; got != v {
			errs = append(errs, fmt.Sprintf("lost: %s acknowledged at %d@%d, the log has %q", v, a.p, a.off, got))
		}
	}
	for p := range int32(parts) {
		last := map[string]string{}
		for off := int64(0); off < end[p]; off++ {
			v, ok := log[at{p, off}]
			if !ok {
				continue
			}
			prod := v[:strings.IndexByte(v, '-')]
			if v <= last[prod] {
				errs = append(errs, fmt.Sprintf("order: partition %d has %s after %s", p, v, last[prod]))
			}
			last[prod] = v
		}
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("... and %d more", len(errs)-20))
		}
		t.Fatalf("history check failed:\n%s", strings.Join(errs, "\n"))
	}
}
