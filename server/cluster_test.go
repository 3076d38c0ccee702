package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testCluster is a cluster of brokers started in-process on 127.0.0.1.
type testCluster struct {
	t      testing.TB
	voters string
	props  map[string]string
	nodes  []*clusterNode
}

type clusterNode struct {
	id       int32
	dir      string
	addr     string            // Kafka listener, as advertised
	listen   string            // where the Kafka listener is if not addr (a tcpProxy forwards addr to it)
	ctrlAddr string            // "" for a broker-only node
	roles    string            // process.roles; "" for broker,controller
	props    map[string]string // this node's configs (broker.rack...) over the cluster's
	log      io.Writer         // if set, the node's log lines (warnings and up) go here
	srv      *Server
	done     chan error
}

// clusterProps are timeouts short enough for tests on a loaded machine.
var clusterProps = map[string]string{
	"group.initial.rebalance.delay.ms":      "0",
	"controller.quorum.election.timeout.ms": "500",
	"broker.session.timeout.ms":             "1500",
	"replica.fetch.wait.max.ms":             "200",
	"offsets.topic.num.partitions":          "3",
}

func startCluster(t testing.TB, n int, props map[string]string) *testCluster {
	t.Helper()
	return startClusterWith(t, n, props, nil)
}

// startClusterWith is startCluster with each node's own props, from
// nodeProps (nil for none).
func startClusterWith(t testing.TB, n int, props map[string]string, nodeProps func(i int) map[string]string) *testCluster {
	t.Helper()
	c := newCluster(t, n, props)
	if nodeProps != nil {
		for i, nd := range c.nodes {
			nd.props = nodeProps(i)
		}
	}
	c.startAll()
	return c
}

// newCluster is startCluster without starting the nodes (startAll).
func newCluster(t testing.TB, n int, props map[string]string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, props: map[string]string{}}
	for k, v := range clusterProps {
		c.props[k] = v
	}
	for k, v := range props {
		c.props[k] = v
	}
	var vs []string
	for i := range n {
		ctrl := freeAddr(t)
		nd := &clusterNode{id: int32(i), dir: t.TempDir(), addr: freeAddr(t), ctrlAddr: ctrl}
		c.nodes = append(c.nodes, nd)
		vs = append(vs, fmt.Sprintf("%d@%s", i, ctrl))
	}
	c.voters = strings.Join(vs, ",")
	return c
}

// freeAddr returns a loopback address whose port was free just now. The
// port lies below the ephemeral range (32768 up on Linux, higher
// elsewhere), so that no outgoing connection takes it before the node
// listens there: a port Listen picks for ":0" is in that range, and a CI
// run lost one so ("address already in use").
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port from 20000 to 32000")
	return ""
}

// startAll starts every node, to be stopped at the test's end.
func (c *testCluster) startAll() {
	c.t.Helper()
	for i := range c.nodes {
		c.start(i)
	}
	c.t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	props := map[string]string{"controller.quorum.voters": c.voters, "node.id": fmt.Sprint(nd.id)}
	for k, v := range c.props {
		props[k] = v
	}
	if nd.roles != "" {
		props["process.roles"] = nd.roles
	}
	for k, v := range nd.props {
		props[k] = v
	}
	level := slog.LevelWarn
	if os.Getenv("FERRY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var ln, cl net.Listener
	var err error
	listen := nd.addr
	if nd.listen != "" {
		listen = nd.listen
	}
	for range 100 {
		if ln, err = net.Listen("tcp", listen); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	for range 100 {
		if nd.ctrlAddr == "" {
			break
		}
		if cl, err = net.Listen("tcp", nd.ctrlAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	var w io.Writer = os.Stderr
	if nd.log != nil {
		w = io.MultiWriter(os.Stderr, nd.log)
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("node", nd.id)
	cfg := Config{DataDir: nd.dir, NodeID: nd.id, AdvertisedAddr: nd.addr, Props: props, Logger: logger}
	if cl != nil {
		cfg.controllerListener = cl
	}
	srv, err := New(cfg)
	if err != nil {
		ln.Close()
		c.t.Fatal(err)
	}
	nd.srv = srv
	nd.done = make(chan error, 1)
	go func() { nd.done <- srv.Serve(ln) }()
}

func (c *testCluster) stop(i int) {
	nd := c.nodes[i]
	if nd.srv == nil {
		return
	}
	if err := nd.srv.Close(); err != nil {
		c.t.Errorf("node %d close: %v", nd.id, err)
	}
	<-nd.done
	nd.srv = nil
}

func (c *testCluster) addrs() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.addr)
	}
	return out
}

func (c *testCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.addrs()...), kgo.MetadataMinAge(50 * time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

func waitCluster(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterMetadataAndReplicatedProduce(t *testing.T) {
	c := startCluster(t, 3, nil)
	cl := c.client()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	c.waitRegistered()
	// A topic created through one node appears on every node.
	resp, err := kadm.NewClient(c.nodeClient(c.nodes[2])).CreateTopics(ctx, 2, 3, map[string]*string{"min.insync.replicas": ptr("2")}, "orders")
	if err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	for _, nd := range c.nodes {
		waitCluster(t, "the topic on every node", 10*time.Second, func() bool { return nd.srv.meta.Topic("orders") != nil })
	}
	td, err := adm.ListTopics(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range td["orders"].Partitions {
		if len(p.Replicas) != 3 || len(p.ISR) != 3 || p.Leader < 0 {
			t.Fatalf("partition %d: leader %d replicas %v isr %v", p.Partition, p.Leader, p.Replicas, p.ISR)
		}
	}
	// acks=all produce, then a consumer reads every record.
	pcl := c.client(kgo.DefaultProduceTopic("orders"))
	const n = 200
	for i := range n {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 7)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	ccl := c.client(kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for got < n {
		fs := ccl.PollFetches(cctx)
		if err := cctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		got += fs.NumRecords()
	}
	// Every replica holds every record.
	waitCluster(t, "followers caught up", 10*time.Second, func() bool {
		for _, nd := range c.nodes {
			tp := nd.srv.meta.Topic("orders")
			total := int64(0)
			for i := range tp.NumPartitions() {
				p, err := tp.Partition(i)
				if err != nil {
					return false
				}
				total += p.LogEndOffset()
			}
			if total != n {
				return false
			}
		}
		return true
	})
	// Share groups are served in a cluster, their offset APIs too
	// (docs/cluster.md, Share groups).
	av, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	advertised := map[int16]bool{}
	for _, k := range av.ApiKeys {
		advertised[k.ApiKey] = true
	}
	for _, k := range []int16{76, 77, 78, 79, 84, 85, 90, 91, 92} {
		if !advertised[k] {
			t.Errorf("a node of a cluster does not advertise %s", kmsg.NameForKey(k))
		}
	}
}

// waitRegistered waits until every node lists every broker.
func (c *testCluster) waitRegistered() {
	c.t.Helper()
	waitCluster(c.t, "every broker registered", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			n := 0
			for _, b := range nd.srv.meta.Brokers() {
				if !b.Fenced {
					n++
				}
			}
			if n != len(c.nodes) {
				return false
			}
		}
		return true
	})
}

// nodeClient is a client that talks to one node only.
func (c *testCluster) nodeClient(nd *clusterNode) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.addr))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// TestClusterFailover stops the leader of a partition while an
// idempotent acks=all producer writes to it: the producer goes on through
// the new leader, nothing acknowledged is lost, nothing is duplicated, and
// the old leader rejoins as a follower when it returns.
func TestClusterFailover(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := context.Background()
	adm := kadm.NewClient(c.client())
	c.waitRegistered()
	if resp, err := adm.CreateTopics(ctx, 1, 3, map[string]*string{"min.insync.replicas": ptr("2")}, "ha"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	leaderOf := func() int32 {
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			if tp := nd.srv.meta.Topic("ha"); tp != nil {
				return tp.State(0).Leader
			}
		}
		return -1
	}
	waitCluster(t, "a leader", 10*time.Second, func() bool { return leaderOf() >= 0 })
	pcl := c.client(kgo.DefaultProduceTopic("ha"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var acked []string
	produce := func(i int) error {
		v := fmt.Sprint(i)
		err := pcl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr()
		if err == nil {
			acked = append(acked, v)
		}
		return err
	}
	i := 0
	for ; i < 100; i++ {
		if err := produce(i); err != nil {
			t.Fatal(err)
		}
	}
	old := leaderOf()
	stopped := time.Now()
	c.stop(int(old))
	var firstAck time.Duration
	for deadline := time.Now().Add(30 * time.Second); len(acked) < 200; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledged after the leader stopped", len(acked))
		}
		if err := produce(i); err == nil && firstAck == 0 {
			firstAck = time.Since(stopped)
		}
	}
	t.Logf("first acknowledged produce %v after the leader stopped", firstAck)
	if nl := leaderOf(); nl == old || nl < 0 {
		t.Fatalf("leader %d after stopping %d", nl, old)
	}
	c.start(int(old))
	ccl := c.client(kgo.ConsumeTopics("ha"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for len(got) < len(acked) {
		fs := ccl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("consumed %d of %d", len(got), len(acked))
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	seen := map[string]bool{}
	for _, v := range got {
		if seen[v] {
			t.Fatalf("record %s read twice", v)
		}
		seen[v] = true
	}
	for _, v := range acked {
		if !seen[v] {
			t.Fatalf("acknowledged record %s lost", v)
		}
	}
	// The old leader catches up as a follower.
	waitCluster(t, "the old leader caught up", 20*time.Second, func() bool {
		nd := c.nodes[old]
		tp := nd.srv.meta.Topic("ha")
		if tp == nil {
			return false
		}
		p, err := tp.Partition(0)
		return err == nil && p.LogEndOffset() >= int64(len(got))
	})
}

// TestClusterReassignAndElect moves a partition to other brokers
// (AlterPartitionReassignments), watches it complete, and moves its
// leadership back to the preferred replica (ElectLeaders).
func TestClusterReassignAndElect(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := context.Background()
	c.waitRegistered()
	adm := kadm.NewClient(c.client())
	var req kadm.AlterPartitionAssignmentsReq
	if _, err := adm.CreateTopic(ctx, -1, -1, nil, "move"); err != nil {
		t.Fatal(err)
	}
	// Create it on brokers 0 and 1 explicitly, then move it to 1 and 2.
	if _, err := adm.DeleteTopics(ctx, "move"); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "the topic deleted", 10*time.Second, func() bool { return c.nodes[0].srv.meta.Topic("move") == nil })
	creq := kmsgCreateWithAssignment("move", [][]int32{{0, 1}})
	if err := c.request(ctx, creq); err != nil {
		t.Fatal(err)
	}
	pcl := c.client(kgo.DefaultProduceTopic("move"))
	for i := range 50 {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	req.Assign("move", 0, []int32{2, 1})
	res, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil || res.Error() != nil {
		t.Fatal(err, res.Error())
	}
	waitCluster(t, "the reassignment done", 20*time.Second, func() bool {
		st := c.nodes[1].srv.meta.Topic("move").State(0)
		return st.Target == nil && len(st.Replicas) == 2 && st.Replicas[0] == 2
	})
	lr, err := adm.ListPartitionReassignments(ctx, nil)
	if err != nil || len(lr) != 0 {
		t.Fatalf("reassignments in progress after completion: %v %v", lr, err)
	}
	// Broker 0 dropped its replica; broker 2 holds every record.
	waitCluster(t, "the moved replica", 10*time.Second, func() bool {
		_, err0 := c.nodes[0].srv.meta.Topic("move").Partition(0)
		p2, err2 := c.nodes[2].srv.meta.Topic("move").Partition(0)
		return err0 != nil && err2 == nil && p2.LogEndOffset() == 50
	})
	// The leader is 1 or 2; a preferred election makes it 2.
	waitCluster(t, "the preferred leader", 20*time.Second, func() bool {
		st := c.nodes[0].srv.meta.Topic("move").State(0)
		if st.Leader == 2 {
			return true
		}
		// PREFERRED_LEADER_NOT_AVAILABLE until broker 2 is in sync.
		adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"move": {0: {}}})
		return false
	})
	ccl := c.client(kgo.ConsumeTopics("move"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := 0
	for got < 50 {
		fs := ccl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("read %d of 50 after the move", got)
		}
		got += fs.NumRecords()
	}
}

func kmsgCreateWithAssignment(topic string, asg [][]int32) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions, rt.ReplicationFactor = -1, -1
	for i, reps := range asg {
		ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		ra.Partition = int32(i)
		ra.Replicas = reps
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
	}
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	return req
}

// request sends req through a client and fails on any error code in a
// CreateTopics answer.
func (c *testCluster) request(ctx context.Context, req *kmsg.CreateTopicsRequest) error {
	resp, err := req.RequestWith(ctx, c.client())
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		if t.ErrorCode != 0 {
			return kerr.ErrorForCode(t.ErrorCode)
		}
	}
	return nil
}
