package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
)

// Consumers fetching from followers (KIP-392): docs/cluster.md,
// "Consumers read from followers".

// racks are the brokers' broker.rack in these tests, by node.
var racks = []string{"a", "b", "c"}

// startRackCluster starts 3 nodes in racks a, b and c with the
// rack-aware replica selector.
func startRackCluster(t *testing.T, props map[string]string) *testCluster {
	t.Helper()
	all := map[string]string{"replica.selector.class": meta.RackAwareSelector}
	for k, v := range props {
		all[k] = v
	}
	c := startClusterWith(t, 3, all, func(i int) map[string]string {
		return map[string]string{"broker.rack": racks[i]}
	})
	c.waitRegistered()
	waitCluster(t, "every broker registered with its rack", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			for _, b := range nd.srv.meta.Brokers() {
				if b.Rack != racks[b.ID] {
					return false
				}
			}
		}
		return true
	})
	return c
}

// createLedBy creates topic with one partition on replicas (the first
// leads it) and waits until every replica has taken its role.
func (c *testCluster) createLedBy(topic string, replicas ...int32) {
	c.t.Helper()
	req := kmsgCreateWithAssignment(topic, [][]int32{replicas})
	cfg := kmsg.NewCreateTopicsRequestTopicConfig()
	cfg.Name, cfg.Value = "min.insync.replicas", ptr("2")
	req.Topics[0].Configs = append(req.Topics[0].Configs, cfg)
	if err := c.request(context.Background(), req); err != nil {
		c.t.Fatal(err)
	}
	waitCluster(c.t, topic+" led by its first replica", 20*time.Second, func() bool {
		for _, id := range replicas {
			p := c.part(int(id), topic)
			if p == nil {
				return false
			}
			leader, _ := p.Leader()
			if leader != (id == replicas[0]) || !p.Replicated() {
				return false
			}
		}
		st := c.nodes[replicas[0]].srv.meta.Topic(topic).State(0)
		return len(st.ISR) == len(replicas)
	})
}

// part is node i's replica of topic's partition 0, nil if it has none.
func (c *testCluster) part(i int, topic string) *partition.Partition {
	tp := c.nodes[i].srv.meta.Topic(topic)
	if tp == nil {
		return nil
	}
	p, err := tp.Partition(0)
	if err != nil {
		return nil
	}
	return p
}

// consumeN reads records from cl until it has n, at consecutive offsets
// from from; more than n is a failure (no more were committed).
func consumeN(t *testing.T, cl *kgo.Client, from int64, n int, d time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", len(got), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	if len(got) > n {
		t.Fatalf("consumed %d records from offset %d, want %d: records past the high watermark", len(got), from, n)
	}
	for i, r := range got {
		if r.Offset != from+int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
	return got
}

// TestClusterRacksInMetadata: each broker registers its broker.rack, and
// Metadata and DescribeCluster report it.
func TestClusterRacksInMetadata(t *testing.T) {
	c := startRackCluster(t, nil)
	ctx := context.Background()
	for _, nd := range c.nodes {
		adm := kadm.NewClient(c.nodeClient(nd))
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Brokers) != 3 {
			t.Fatalf("node %d lists %d brokers", nd.id, len(md.Brokers))
		}
		for _, b := range md.Brokers {
			if b.Rack == nil || *b.Rack != racks[b.NodeID] {
				t.Errorf("Metadata from node %d: broker %d rack %v, want %q", nd.id, b.NodeID, b.Rack, racks[b.NodeID])
			}
		}
		dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, c.nodeClient(nd))
		if err != nil {
			t.Fatal(err)
		}
		if len(dc.Brokers) != 3 {
			t.Fatalf("DescribeCluster from node %d lists %d brokers", nd.id, len(dc.Brokers))
		}
		for _, b := range dc.Brokers {
			if b.Rack == nil || *b.Rack != racks[b.NodeID] {
				t.Errorf("DescribeCluster from node %d: broker %d rack %v, want %q", nd.id, b.NodeID, b.Rack, racks[b.NodeID])
			}
		}
	}
}

// TestClusterRackConsumerReadsFromFollower: a consumer in rack b reads
// every record of a partition led by the rack-a broker, and the follower
// in rack b served them (the follower in rack c served none).
func TestClusterRackConsumerReadsFromFollower(t *testing.T) {
	c := startRackCluster(t, nil)
	ctx := context.Background()
	c.createLedBy("near", 0, 1, 2)
	pcl := c.client(kgo.DefaultProduceTopic("near"))
	const n = 300
	for i := range n {
		if err := pcl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	ccl := c.client(kgo.ConsumeTopics("near"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Rack("b"))
	for i, r := range consumeN(t, ccl, 0, n, 30*time.Second) {
		if string(r.Value) != fmt.Sprint(i) {
			t.Fatalf("record %d is %q", i, r.Value)
		}
	}
	// Nothing replicates from a follower: what its partition counted
	// fetched went to consumers.
	if got := c.part(1, "near").Stats().RecordsOut; got < n {
		t.Errorf("the follower in rack b served %d records to consumers, want at least %d", got, n)
	}
	if got := c.part(2, "near").Stats().RecordsOut; got != 0 {
		t.Errorf("the follower in rack c served %d records, want none", got)
	}
}

// holdFetchesOf holds broker id's fetches at their leader
// (fetchRespondHook) from hold() until release(); release is safe to
// call more than once. The caller registers release as a cleanup after
// starting the nodes, so that it runs before they stop.
func holdFetchesOf(t *testing.T, id int32) (hold, release func()) {
	var held atomic.Bool
	released := make(chan struct{})
	var once sync.Once
	fetchRespondHook = func(req *kmsg.FetchRequest) {
		if held.Load() && (req.ReplicaID == id || req.ReplicaState.ID == id) {
			<-released
		}
	}
	t.Cleanup(func() { fetchRespondHook = nil })
	return func() { held.Store(true) }, func() { once.Do(func() { held.Store(false); close(released) }) }
}

// TestClusterFollowerServesCommittedOnly: records the leader has not
// committed (acks=1, while one in-sync follower is held back) are on the
// rack-b follower but never served by it; once the held follower catches
// up they are.
func TestClusterFollowerServesCommittedOnly(t *testing.T) {
	// Hold back broker 2's fetches at the leader: it stays in the ISR
	// (replica.lag.time.max.ms is long) and the leader's high
	// watermark stays where broker 2 is.
	hold, unpause := holdFetchesOf(t, 2)
	c := startRackCluster(t, map[string]string{"replica.lag.time.max.ms": "120000"})
	t.Cleanup(unpause) // before the nodes stop
	ctx := context.Background()
	c.createLedBy("held", 0, 1, 2)
	acked := c.client(kgo.DefaultProduceTopic("held"))
	const n, m = 100, 50
	for i := range n {
		if err := acked.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	leader, follower := c.part(0, "held"), c.part(1, "held")
	waitCluster(t, "the rack-b follower's high watermark at the end", 20*time.Second, func() bool {
		return follower.HighWatermark() == n && c.part(2, "held").LogEndOffset() == n
	})
	hold()
	one := c.client(kgo.DefaultProduceTopic("held"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	for i := range m {
		if err := one.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(n+i))).FirstErr(); err != nil {
			t.Fatalf("acks=1 produce %d: %v", i, err)
		}
	}
	waitCluster(t, "the rack-b follower holding the uncommitted records", 20*time.Second, func() bool {
		return follower.LogEndOffset() == n+m
	})
	if hw := leader.HighWatermark(); hw != n {
		t.Fatalf("the leader's high watermark is %d with broker 2 held back at %d", hw, n)
	}
	ccl := c.client(kgo.ConsumeTopics("held"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Rack("b"), kgo.FetchMaxWait(300*time.Millisecond))
	consumeN(t, ccl, 0, n, 30*time.Second)
	// Polls for a while: nothing past the high watermark comes.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	fs := ccl.PollFetches(pctx)
	cancel()
	if k := fs.NumRecords(); k > 0 {
		t.Fatalf("a consumer got %d records past the high watermark %d (first at offset %d)", k, n, fs.Records()[0].Offset)
	}
	if got := follower.Stats().RecordsOut; got < n {
		t.Fatalf("the rack-b follower served %d records, want %d: the consumer did not read from it", got, n)
	}
	if hw := follower.HighWatermark(); hw != n {
		t.Fatalf("the rack-b follower's high watermark is %d, want %d", hw, n)
	}
	served := follower.Stats().RecordsOut
	unpause()
	rest := consumeN(t, ccl, n, m, 30*time.Second)
	for i, r := range rest {
		if r.Offset != int64(n+i) || string(r.Value) != fmt.Sprint(n+i) {
			t.Fatalf("after the release, record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
	if got := follower.Stats().RecordsOut - served; got < m {
		t.Errorf("the rack-b follower served %d of the %d records committed late", got, m)
	}
}

// TestClusterFollowerFetchErrors checks the answers of KIP-392 fetches
// request by request: a leader's redirect by rack, a follower's read up
// to its high watermark, and Kafka's errors.
func TestClusterFollowerFetchErrors(t *testing.T) {
	c := startRackCluster(t, nil)
	ctx := context.Background()
	c.createLedBy("pair", 0, 1) // broker 2 holds no replica
	pcl := c.client(kgo.DefaultProduceTopic("pair"))
	const n = 10
	for i := range n {
		if err := pcl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitCluster(t, "the follower's high watermark", 20*time.Second, func() bool { return c.part(1, "pair").HighWatermark() == n })
	_, epoch := c.part(0, "pair").Leader()

	fetch := func(node int, version int16, offset int64, rack string, isolation int8) kmsg.FetchResponseTopicPartition {
		t.Helper()
		return c.rawFetch(node, version, "pair", epoch, offset, rack, isolation)
	}
	records := func(rp kmsg.FetchResponseTopicPartition) int { return batchRecords(t, rp.RecordBatches) }
	for _, tc := range []struct {
		name      string
		node      int
		version   int16
		offset    int64
		rack      string
		err       error
		preferred int32
		records   int
	}{
		{"the leader sends a rack-b consumer to the rack-b follower", 0, 12, 0, "b", nil, 1, 0},
		{"the leader serves a consumer in its own rack", 0, 12, 0, "a", nil, -1, n},
		{"the leader serves a consumer in a rack with no replica", 0, 12, 0, "c", nil, -1, n},
		{"the leader serves a consumer naming no rack", 0, 12, 0, "", nil, -1, n},
		{"the leader serves a rack-b consumer before v11", 0, 10, 0, "", nil, -1, n},
		{"a follower serves a consumer up to its high watermark", 1, 12, 0, "b", nil, -1, n},
		{"a follower answers its high watermark empty", 1, 12, n, "b", nil, -1, 0},
		{"a follower behind the offset", 1, 12, n + 5, "b", kerr.OffsetNotAvailable, -1, 0},
		{"a follower before v11", 1, 10, 0, "", kerr.NotLeaderForPartition, -1, 0},
		{"a broker with no replica", 2, 12, 0, "c", kerr.NotLeaderForPartition, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := fetch(tc.node, tc.version, tc.offset, tc.rack, 0)
			if err := kerr.ErrorForCode(rp.ErrorCode); err != tc.err {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.version >= 11 && rp.PreferredReadReplica != tc.preferred {
				t.Errorf("PreferredReadReplica %d, want %d", rp.PreferredReadReplica, tc.preferred)
			}
			if got := records(rp); got != tc.records {
				t.Errorf("%d records, want %d", got, tc.records)
			}
			if tc.err == nil && rp.HighWatermark != n {
				t.Errorf("high watermark %d, want %d", rp.HighWatermark, n)
			}
		})
	}

	// OffsetForLeaderEpoch: a consumer may ask the follower it reads
	// from, not a broker without a replica.
	for _, tc := range []struct {
		node int
		err  error
	}{{1, nil}, {2, kerr.NotLeaderForPartition}} {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "pair"
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = epoch, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := c.nodeClient(c.nodes[tc.node]).SeedBrokers()[0].Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(sp.ErrorCode); err != tc.err {
			t.Fatalf("OffsetForLeaderEpoch on node %d: error %v, want %v", tc.node, err, tc.err)
		}
		if tc.err == nil && (sp.LeaderEpoch != epoch || sp.EndOffset != n) {
			t.Errorf("OffsetForLeaderEpoch on the follower: epoch %d end %d, want %d %d", sp.LeaderEpoch, sp.EndOffset, epoch, n)
		}
	}

	// read_committed on a follower stops at its last stable offset: an
	// open transaction's records, committed to the high watermark, are
	// not returned until the transaction commits.
	tcl := c.client(kgo.DefaultProduceTopic("pair"), kgo.TransactionalID("pair-tx"))
	if err := tcl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	const k = 3
	for i := range k {
		if err := tcl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint("tx", i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitCluster(t, "the transaction's records under the follower's high watermark", 20*time.Second, func() bool {
		return c.part(1, "pair").HighWatermark() == n+k
	})
	rp := fetch(1, 12, 0, "b", 1)
	if rp.ErrorCode != 0 || rp.LastStableOffset != n || rp.HighWatermark != n+k || records(rp) != n {
		t.Fatalf("read_committed on the follower with a transaction open: error %d, last stable offset %d, high watermark %d, %d records; want %d, %d, %d", rp.ErrorCode, rp.LastStableOffset, rp.HighWatermark, records(rp), n, n+k, n)
	}
	if rp := fetch(1, 12, 0, "b", 0); records(rp) != n+k {
		t.Fatalf("read_uncommitted on the follower: %d records, want %d", records(rp), n+k)
	}
	if err := tcl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "the follower's last stable offset past the commit marker", 20*time.Second, func() bool {
		rp := fetch(1, 12, 0, "b", 1)
		return rp.ErrorCode == 0 && rp.LastStableOffset == n+k+1 && records(rp) == n+k+1
	})
}

// TestClusterRackConsumerFollowerStops: a consumer reading from the
// follower in its rack goes on through the leader when that follower
// stops, missing and repeating nothing: the leader does not send it back
// to the stopped follower. (franz-go keeps fetching from a preferred
// replica that went away until RecheckPreferredReplicaInterval, 30 min
// by default, has passed; then it asks the leader again.)
func TestClusterRackConsumerFollowerStops(t *testing.T) {
	c := startRackCluster(t, nil)
	ctx := context.Background()
	c.createLedBy("gone", 0, 1, 2)
	pcl := c.client(kgo.DefaultProduceTopic("gone"))
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			if err := pcl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	const n = 100
	produce(0, n)
	ccl := c.client(kgo.ConsumeTopics("gone"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Rack("b"), kgo.FetchMaxWait(300*time.Millisecond), kgo.RecheckPreferredReplicaInterval(time.Second))
	consumeN(t, ccl, 0, n, 30*time.Second)
	if got := c.part(1, "gone").Stats().RecordsOut; got < n {
		t.Fatalf("the rack-b follower served %d records, want %d", got, n)
	}
	c.stop(1)
	produce(n, 2*n)
	for i, r := range consumeN(t, ccl, n, n, 60*time.Second) {
		if string(r.Value) != fmt.Sprint(n+i) {
			t.Fatalf("record %d after the stop is %q", n+i, r.Value)
		}
	}
}

// rawFetch sends node a consumer's Fetch of topic's partition 0 at
// version, from offset at leader epoch epoch, and returns its answer.
func (c *testCluster) rawFetch(node int, version int16, topic string, epoch int32, offset int64, rack string, isolation int8) kmsg.FetchResponseTopicPartition {
	c.t.Helper()
	vs := kversion.Stable()
	vs.SetMaxKeyVersion(1, version)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.nodes[node].addr), kgo.MaxVersions(vs))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	req.Rack = rack
	req.IsolationLevel = isolation
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, epoch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.SeedBrokers()[0].Request(context.Background(), req)
	if err != nil {
		c.t.Fatal(err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if fr.Version != version {
		c.t.Fatalf("fetch answered at v%d, want v%d", fr.Version, version)
	}
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
		c.t.Fatalf("fetch answer %+v", fr)
	}
	return fr.Topics[0].Partitions[0]
}

// batchRecords counts the records of the batches in data.
func batchRecords(t *testing.T, data []byte) int {
	t.Helper()
	n := 0
	for pos := 0; pos+61 <= len(data); {
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[pos:]); err != nil {
			t.Fatal(err)
		}
		n += int(b.NumRecords)
		pos += 12 + int(b.Length)
	}
	return n
}

// TestClusterFollowerOutOfISRServes: a follower dropped from the ISR
// still serves consumers up to its own high watermark, and the leader no
// longer sends consumers to it.
func TestClusterFollowerOutOfISRServes(t *testing.T) {
	hold, unpause := holdFetchesOf(t, 2)
	c := startRackCluster(t, map[string]string{"replica.lag.time.max.ms": "1000"})
	t.Cleanup(unpause)
	ctx := context.Background()
	c.createLedBy("lag", 0, 1, 2)
	pcl := c.client(kgo.DefaultProduceTopic("lag"))
	const n, m = 20, 5
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			if err := pcl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	produce(0, n)
	waitCluster(t, "broker 2's high watermark", 20*time.Second, func() bool { return c.part(2, "lag").HighWatermark() == n })
	hold()
	produce(n, n+m)
	waitCluster(t, "broker 2 out of the ISR", 30*time.Second, func() bool {
		isr := c.nodes[0].srv.meta.Topic("lag").State(0).ISR
		return len(isr) == 2 && !slices.Contains(isr, 2)
	})
	_, epoch := c.part(0, "lag").Leader()
	rp := c.rawFetch(2, 12, "lag", epoch, 0, "c", 0)
	if rp.ErrorCode != 0 || rp.HighWatermark != n || batchRecords(t, rp.RecordBatches) != n {
		t.Fatalf("broker 2 out of the ISR: error %d, high watermark %d, %d records; want 0, %d, %d", rp.ErrorCode, rp.HighWatermark, batchRecords(t, rp.RecordBatches), n, n)
	}
	rp = c.rawFetch(0, 12, "lag", epoch, 0, "c", 0)
	if rp.ErrorCode != 0 || rp.PreferredReadReplica != -1 || batchRecords(t, rp.RecordBatches) != n+m {
		t.Fatalf("the leader, to a rack-c consumer with broker 2 out of the ISR: error %d, preferred %d, %d records; want 0, -1, %d", rp.ErrorCode, rp.PreferredReadReplica, batchRecords(t, rp.RecordBatches), n+m)
	}
}

// TestReplicaSelectorClassChecked: replica.selector.class takes Kafka's
// selectors only; another class name is refused at start.
func TestReplicaSelectorClassChecked(t *testing.T) {
	for _, v := range []string{meta.RackAwareSelector, meta.LeaderSelector} {
		srv, err := New(Config{DataDir: t.TempDir(), Props: map[string]string{"replica.selector.class": v}})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		srv.Close()
	}
	_, err := New(Config{DataDir: t.TempDir(), Props: map[string]string{"replica.selector.class": "com.example.NearestSelector"}})
	if err == nil || !strings.Contains(err.Error(), "replica.selector.class") || !strings.Contains(err.Error(), meta.RackAwareSelector) {
		t.Fatalf("an unknown selector class: %v", err)
	}
}
