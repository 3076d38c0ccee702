package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/meta"
)

// startRolesCluster starts a cluster whose node i has process.roles
// roles[i] ("" for broker,controller): the nodes with the controller
// role are the voters, the broker-only ones follow the metadata log as
// raft learners.
func startRolesCluster(t testing.TB, roles []string, props map[string]string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, props: map[string]string{}}
	for k, v := range clusterProps {
		c.props[k] = v
	}
	for k, v := range props {
		c.props[k] = v
	}
	var vs []string
	for i, r := range roles {
		nd := &clusterNode{id: int32(i), dir: t.TempDir(), addr: freeAddr(t), roles: r}
		if r == "" || strings.Contains(r, "controller") {
			nd.ctrlAddr = freeAddr(t)
			vs = append(vs, fmt.Sprintf("%d@%s", i, nd.ctrlAddr))
		}
		c.nodes = append(c.nodes, nd)
	}
	c.voters = strings.Join(vs, ",")
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	for i := range c.nodes {
		c.start(i)
	}
	return c
}

// brokerIDs are the unfenced brokers node nd's metadata lists.
func brokerIDs(nd *clusterNode) []int32 {
	var ids []int32
	for _, b := range nd.srv.meta.Brokers() {
		if !b.Fenced {
			ids = append(ids, b.ID)
		}
	}
	return ids
}

// TestClusterRoles: three controller-only nodes (the voters) and two
// broker-only nodes (raft learners) form one cluster. Clients see the
// brokers only, replicas are placed on them only, acks=all produce and
// consume work through them; a broker-only node killed costs the quorum
// nothing (topics are still created) and its partitions fail over; back,
// it catches up and rejoins the ISR.
func TestClusterRoles(t *testing.T) {
	c := startRolesCluster(t, []string{"controller", "controller", "controller", "broker", "broker"}, nil)
	ctx := testCtx(t)
	brokers := []int32{3, 4}
	for _, nd := range c.nodes {
		waitCluster(t, "the two brokers registered", 20*time.Second, func() bool { return slices.Equal(brokerIDs(nd), brokers) })
	}
	for _, nd := range c.nodes[3:] {
		if got := nd.srv.raft.Learners(); !slices.Equal(got, brokers) || nd.srv.raft.Addr() != nil {
			t.Fatalf("broker %d: learners %v, controller listener %v", nd.id, got, nd.srv.raft.Addr())
		}
	}
	// Clients, whichever node they ask, are told of the brokers only.
	// The quorum's leader is a controller-only node, which clients cannot
	// reach: they are told of a broker as their controller (Kafka's KRaft
	// brokers do the same), and every broker takes admin requests.
	for _, nd := range c.nodes {
		adm := kadm.NewClient(c.nodeClient(nd))
		var meta kadm.Metadata
		waitCluster(t, "metadata listing the brokers", 10*time.Second, func() bool {
			var err error
			meta, err = adm.Metadata(ctx)
			return err == nil && slices.Equal(meta.Brokers.NodeIDs(), brokers)
		})
		if !slices.Contains(brokers, meta.Controller) {
			t.Fatalf("node %d names controller %d", nd.id, meta.Controller)
		}
		if l := nd.srv.raft.LeaderID(); l < 0 || l > 2 {
			t.Fatalf("node %d: the quorum's leader is %d", nd.id, l)
		}
	}
	adm := kadm.NewClient(c.client())
	for _, spec := range []struct {
		topic string
		rf    int16
	}{{"roles", 2}, {"roles-one", 1}} {
		if resp, err := adm.CreateTopics(ctx, 4, spec.rf, nil, spec.topic); err != nil || resp.Error() != nil {
			t.Fatal(err, resp.Error())
		}
	}
	// RF 3 needs three brokers: there are two.
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "roles-three"); err == nil && resp.Error() == nil {
		t.Fatal("a topic with 3 replicas on 2 brokers was created")
	}
	// Nor can a client place a replica on a controller.
	if err := c.request(ctx, kmsgCreateWithAssignment("roles-ctl", [][]int32{{3, 0}})); err == nil {
		t.Fatal("a replica was placed on controller 0")
	}
	td, err := adm.ListTopics(ctx, "roles", "roles-one")
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range td {
		for _, p := range tp.Partitions {
			for _, r := range append(append([]int32{p.Leader}, p.Replicas...), p.ISR...) {
				if !slices.Contains(brokers, r) {
					t.Fatalf("%s %d: leader %d replicas %v isr %v: placed on a controller", tp.Topic, p.Partition, p.Leader, p.Replicas, p.ISR)
				}
			}
		}
	}

	pcl := c.client(kgo.DefaultProduceTopic("roles"))
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := pcl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 5)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	consume := func(want int) {
		t.Helper()
		ccl := c.client(kgo.ConsumeTopics("roles"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		seen := map[string]bool{}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		for len(seen) < want {
			fs := ccl.PollFetches(cctx)
			if err := cctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d: %v", len(seen), want, err)
			}
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		}
		ccl.Close()
	}
	produce(0, 100)
	consume(100)

	// Broker 3 dies: the controllers fence it, its partitions are led by
	// broker 4, the quorum (the three controllers) still commits.
	c.stop(3)
	ctl := c.nodes[0]
	waitCluster(t, "broker 3 fenced and its partitions moved", 15*time.Second, func() bool {
		if !slices.Equal(brokerIDs(ctl), []int32{4}) {
			return false
		}
		tp := ctl.srv.meta.Topic("roles")
		for i := range tp.NumPartitions() {
			if tp.State(i).Leader != 4 {
				return false
			}
		}
		return true
	})
	if resp, err := adm.CreateTopics(ctx, 1, 1, nil, "roles-after"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	produce(100, 200)
	consume(200)

	// Back, it catches up from the controllers and rejoins every ISR.
	c.start(3)
	waitCluster(t, "broker 3 back in every ISR", 20*time.Second, func() bool {
		if !slices.Equal(brokerIDs(ctl), brokers) {
			return false
		}
		tp := ctl.srv.meta.Topic("roles")
		for i := range tp.NumPartitions() {
			if !slices.Contains(tp.State(i).ISR, 3) {
				return false
			}
		}
		return c.nodes[3].srv.meta.Topic("roles-after") != nil
	})
	tp := c.nodes[3].srv.meta.Topic("roles")
	total := int64(0)
	for i := range tp.NumPartitions() {
		p, err := tp.Partition(i)
		if err != nil {
			t.Fatal(err)
		}
		total += p.LogEndOffset()
	}
	if total != 200 {
		t.Fatalf("broker 3 holds %d records of 200", total)
	}
}

// TestClusterRolesRefused: a controller whose node.id is not a voter, a
// broker-only node whose node.id is one, and a broker-only node with a
// controller listener are refused at start.
func TestClusterRolesRefused(t *testing.T) {
	voters := "0@127.0.0.1:1"
	for _, tc := range []struct {
		roles string
		id    int32
		ctrl  string
		want  string
	}{
		{"controller", 1, "", "not in controller.quorum.voters"},
		{"broker,controller", 1, "", "not in controller.quorum.voters"},
		{"broker", 0, "", "is in controller.quorum.voters"},
		{"broker", 1, "127.0.0.1:0", "no controller listener"},
		{"broker", 1, "listeners", "no controller listener"},
	} {
		props := map[string]string{"controller.quorum.voters": voters, "process.roles": tc.roles}
		if tc.ctrl == "listeners" {
			// Kafka's way of naming a controller listener.
			props["listeners"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0"
			props["controller.listener.names"] = "CONTROLLER"
			tc.ctrl = ""
		}
		srv, err := New(Config{DataDir: t.TempDir(), NodeID: tc.id, ControllerListen: tc.ctrl, Props: props})
		if err == nil {
			srv.Close()
			t.Fatalf("%s node %d started", tc.roles, tc.id)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s node %d: %v, want %q", tc.roles, tc.id, err, tc.want)
		}
	}
}

// TestClusterRolesMixed: three combined nodes and a broker-only one.
// Replicas are placed on all four; the broker-only node leads some; its
// death leaves the quorum whole and its partitions fail over.
func TestClusterRolesMixed(t *testing.T) {
	c := startRolesCluster(t, []string{"broker,controller", "broker,controller", "", "broker"}, nil)
	ctx := testCtx(t)
	for _, nd := range c.nodes {
		waitCluster(t, "four brokers registered", 20*time.Second, func() bool { return slices.Equal(brokerIDs(nd), []int32{0, 1, 2, 3}) })
	}
	adm := kadm.NewClient(c.client())
	if resp, err := adm.CreateTopics(ctx, 4, 3, nil, "mixed"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	// Node 0 may apply the topic's records a moment after the
	// controller answered.
	ctl := c.nodes[0]
	var tp *meta.Topic
	waitCluster(t, "node 0 has the topic's partitions", 20*time.Second, func() bool {
		tp = ctl.srv.meta.Topic("mixed")
		return tp != nil && tp.NumPartitions() == 4
	})
	led := 0
	for i := range tp.NumPartitions() {
		if tp.State(i).Leader == 3 {
			led++
		}
	}
	if led == 0 {
		t.Fatalf("the broker-only node leads none of %v", tp.States())
	}
	pcl := c.client(kgo.DefaultProduceTopic("mixed"))
	for i := range 50 {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 4)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	c.stop(3)
	waitCluster(t, "the broker-only node's partitions moved", 15*time.Second, func() bool {
		for i := range tp.NumPartitions() {
			if l := tp.State(i).Leader; l < 0 || l == 3 {
				return false
			}
		}
		return true
	})
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "mixed-after"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	for i := range 50 {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 4)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d after the broker-only node died: %v", i, err)
		}
	}
}

// TestClusterRolesKeepBroker: a node that registered as a broker is
// refused when it restarts as a controller only (its broker record,
// replicas and leaderships would stay behind); restarted with another
// voter list it keeps its cluster id, and another cluster.id is refused.
func TestClusterRolesKeepBroker(t *testing.T) {
	c := startRolesCluster(t, []string{""}, nil)
	nd := c.nodes[0]
	waitCluster(t, "the broker registered", 20*time.Second, func() bool { return slices.Equal(brokerIDs(nd), []int32{0}) })
	c.stop(0)
	cl, err := net.Listen("tcp", nd.ctrlAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	props := map[string]string{"controller.quorum.voters": c.voters, "process.roles": "controller"}
	srv, err := New(Config{DataDir: nd.dir, NodeID: 0, Props: props, controllerListener: cl})
	if err == nil {
		srv.Close()
		t.Fatal("a registered broker restarted as a controller only")
	}
	if !strings.Contains(err.Error(), "registered as a broker") {
		t.Fatal(err)
	}
	// Another voter list keeps the cluster id of meta.properties (the
	// voters of a running cluster change with AddRaftVoter and
	// RemoveRaftVoter, not with the list); another cluster.id is refused.
	id := func() string {
		t.Helper()
		cid, err := meta.ReadClusterID(nd.dir)
		if err != nil || cid == "" {
			t.Fatalf("meta.properties: %q, %v", cid, err)
		}
		return cid
	}
	was := id()
	for _, tc := range []struct {
		clusterID string
		refused   string
	}{
		{clusterID: "another", refused: "belongs to cluster"},
		{clusterID: ""},
		{clusterID: was},
	} {
		cl, err = net.Listen("tcp", nd.ctrlAddr)
		if err != nil {
			t.Fatal(err)
		}
		props = map[string]string{"controller.quorum.voters": c.voters + ",1@127.0.0.1:1", "cluster.id": tc.clusterID}
		srv, err = New(Config{DataDir: nd.dir, NodeID: 0, Props: props, controllerListener: cl})
		switch {
		case tc.refused == "" && err != nil:
			t.Fatalf("restarted with another voter list, cluster.id %q: %v", tc.clusterID, err)
		case tc.refused == "":
			if got := srv.meta.ClusterID(); got != was {
				t.Fatalf("cluster id %s after another voter list, was %s", got, was)
			}
			srv.Close()
		case err == nil:
			srv.Close()
			t.Fatalf("restarted with cluster.id %q", tc.clusterID)
		case !strings.Contains(err.Error(), tc.refused):
			t.Fatal(err)
		default:
			cl.Close()
		}
	}
	if id() != was {
		t.Fatalf("meta.properties holds cluster %s, was %s", id(), was)
	}
}

// TestControllerListenerNames: a listener named in
// controller.listener.names is the controller listener (plain TCP, no
// security protocol needed in the map, or TLS; never SASL_PLAINTEXT),
// not a Kafka listener.
func TestControllerListenerNames(t *testing.T) {
	props := map[string]string{
		"listeners":                 "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
		"controller.listener.names": "CONTROLLER",
	}
	ls, err := ParseListeners(props)
	if err != nil || len(ls) != 1 || ls[0].Name != "PLAINTEXT" {
		t.Fatalf("listeners %+v, %v", ls, err)
	}
	if addr, err := ControllerListenerAddr(props); err != nil || addr != "127.0.0.1:9093" {
		t.Fatalf("controller listener %q, %v", addr, err)
	}
	// A broker-only node names it without listening on it.
	delete(props, "listeners")
	if addr, err := ControllerListenerAddr(props); err != nil || addr != "" {
		t.Fatalf("controller listener %q, %v", addr, err)
	}
	for _, bad := range []map[string]string{
		{"listeners": "CONTROLLER://127.0.0.1:9093", "controller.listener.names": "CONTROLLER"},
		{"listeners": "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093", "controller.listener.names": "CONTROLLER", "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"},
	} {
		_, err1 := ParseListeners(bad)
		_, err2 := ControllerListenerAddr(bad)
		if err1 == nil && err2 == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestBootstrapServers: the single-node config Kafka ships, whose
// controller.quorum.bootstrap.servers names the node's own controller
// listener, starts a single broker; bootstrap servers naming other nodes
// (a dynamic quorum, KIP-853) are refused with a pointer to
// controller.quorum.voters instead of starting a broker on its own.
func TestBootstrapServers(t *testing.T) {
	for _, tc := range []struct {
		bootstrap string
		ok        bool
	}{
		{"localhost:0", true},
		{"127.0.0.1:0", true},
		{" 127.0.0.1:0 ", true},
		{"127.0.0.1:0,10.9.9.2:0", false},
		{"10.9.9.2:0", false},
		{"localhost:9", false}, // not the controller listener's port
	} {
		props := map[string]string{
			"process.roles":                       "broker,controller",
			"listeners":                           "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
			"controller.listener.names":           "CONTROLLER",
			"controller.quorum.bootstrap.servers": tc.bootstrap,
		}
		srv, err := New(Config{DataDir: t.TempDir(), NodeID: 1, Props: props})
		if err == nil {
			srv.Close()
		}
		switch {
		case tc.ok && err != nil:
			t.Errorf("bootstrap %q: %v", tc.bootstrap, err)
		case !tc.ok && err == nil:
			t.Errorf("bootstrap %q: started a broker on its own", tc.bootstrap)
		case !tc.ok && !strings.Contains(err.Error(), "controller.quorum.voters"):
			t.Errorf("bootstrap %q: %v, want a pointer to controller.quorum.voters", tc.bootstrap, err)
		}
	}
}
