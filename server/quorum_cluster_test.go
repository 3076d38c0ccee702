package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/meta"
)

// describeQuorum sends DescribeQuorum at version v to node nd itself (not
// to the controller, where a client sends admin requests).
func describeQuorum(ctx context.Context, t *testing.T, nd *clusterNode, v int16, opts ...kgo.Opt) *kmsg.DescribeQuorumResponse {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(nd.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeQuorumRequest()
	req.Version = v
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = append(rt.Partitions, kmsg.NewDescribeQuorumRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		t.Fatalf("DescribeQuorum v%d to node %d: %v", v, nd.id, err)
	}
	resp := kresp.(*kmsg.DescribeQuorumResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("DescribeQuorum v%d to node %d: %+v", v, nd.id, resp)
	}
	return resp
}

// unregisterBroker sends UnregisterBroker for id to node nd and returns
// its error code.
func unregisterBroker(ctx context.Context, t *testing.T, nd *clusterNode, id int32) error {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrUnregisterBrokerRequest()
	req.BrokerID = id
	kresp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return kerr.ErrorForCode(kresp.(*kmsg.UnregisterBrokerResponse).ErrorCode)
}

func replicaIDs(rs []kmsg.DescribeQuorumResponseTopicPartitionReplicaState) []int32 {
	var out []int32
	for _, r := range rs {
		out = append(out, r.ReplicaID)
	}
	return out
}

// TestClusterQuorum: three voters (broker,controller) and a broker-only
// node (a raft learner). DescribeQuorum, asked of any node, shows the
// leader, its epoch and high watermark, the voters and the learner as an
// observer, their log ends reaching the high watermark, and when the
// leader last heard from them. The broker-only node stops; UnregisterBroker,
// sent to a node that is not the controller, removes it from the brokers
// of every node and from the raft learners, without touching the
// replicas of its partitions. Started again, it registers and joins
// again, and rejoins the ISR.
func TestClusterQuorum(t *testing.T) {
	c := startRolesCluster(t, []string{"", "", "", "broker"}, nil)
	ctx := testCtx(t)
	all := []int32{0, 1, 2, 3}
	for _, nd := range c.nodes {
		waitCluster(t, "every broker registered", 20*time.Second, func() bool {
			return slices.Equal(brokerIDs(nd), all) && slices.Equal(nd.srv.raft.Learners(), []int32{3})
		})
	}
	adm := kadm.NewClient(c.client())
	// A partition with a replica on broker 3, led by broker 0.
	if err := c.request(ctx, kmsgCreateWithAssignment("quorum", [][]int32{{0, 3}})); err != nil {
		t.Fatal(err)
	}
	if err := c.client(kgo.DefaultProduceTopic("quorum")).ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Any node answers, the leader itself or by forwarding to it.
	for _, nd := range c.nodes {
		var p kmsg.DescribeQuorumResponseTopicPartition
		waitCluster(t, "every member's log at the high watermark", 10*time.Second, func() bool {
			resp := describeQuorum(ctx, t, nd, 2)
			p = resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || len(resp.Nodes) != 3 {
				t.Fatalf("node %d: %+v", nd.id, resp)
			}
			for _, r := range append(slices.Clone(p.CurrentVoters), p.Observers...) {
				if r.LogEndOffset != p.HighWatermark || r.LastCaughtUpTimestamp < 0 {
					return false
				}
			}
			return true
		})
		now := time.Now().UnixMilli()
		if p.LeaderID != nd.srv.raft.LeaderID() || p.LeaderEpoch < 1 || p.HighWatermark < 10 {
			t.Fatalf("node %d: leader %d epoch %d high watermark %d", nd.id, p.LeaderID, p.LeaderEpoch, p.HighWatermark)
		}
		if got := replicaIDs(p.CurrentVoters); !slices.Equal(got, []int32{0, 1, 2}) {
			t.Fatalf("node %d: voters %v", nd.id, got)
		}
		if got := replicaIDs(p.Observers); !slices.Equal(got, []int32{3}) {
			t.Fatalf("node %d: observers %v", nd.id, got)
		}
		for _, r := range append(slices.Clone(p.CurrentVoters), p.Observers...) {
			if now-r.LastFetchTimestamp > 5000 || r.LastFetchTimestamp > now+1000 {
				t.Fatalf("node %d: replica %d last heard from at %d, now %d", nd.id, r.ReplicaID, r.LastFetchTimestamp, now)
			}
		}
	}
	// The voters' controller endpoints (v2), and the older versions.
	resp := describeQuorum(ctx, t, c.nodes[3], 2)
	for i, n := range resp.Nodes {
		_, port, _ := net.SplitHostPort(c.nodes[i].ctrlAddr)
		if n.NodeID != int32(i) || len(n.Listeners) != 1 || n.Listeners[0].Name != "CONTROLLER" || strconv.Itoa(int(n.Listeners[0].Port)) != port {
			t.Fatalf("node %d: %+v, controller listener %s", i, n, c.nodes[i].ctrlAddr)
		}
	}
	for v := range int16(2) {
		if p := describeQuorum(ctx, t, c.nodes[1], v).Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.CurrentVoters) != 3 {
			t.Fatalf("v%d: %+v", v, p)
		}
	}
	// A request forwarded already is not forwarded again.
	leader := c.nodes[0].srv.raft.LeaderID()
	follower := c.nodes[(leader+1)%3]
	if p := describeQuorum(ctx, t, follower, 2, kgo.ClientID(shareForwardPrefix+"test")).Topics[0].Partitions[0]; p.ErrorCode != kerr.NotLeaderForPartition.Code || p.LeaderID != leader {
		t.Fatalf("forwarded request to follower %d: %+v", follower.id, p)
	}

	if err := unregisterBroker(ctx, t, follower, 7); err != kerr.BrokerIDNotRegistered {
		t.Fatalf("unregistering broker 7: %v", err)
	}
	// A broker that runs comes back at once, as in Kafka: it registers
	// again, and the leader adds it back as a learner.
	if err := unregisterBroker(ctx, t, follower, 3); err != nil {
		t.Fatalf("unregistering running broker 3: %v", err)
	}
	for _, nd := range c.nodes {
		waitCluster(t, "running broker 3 registered and a learner again", 20*time.Second, func() bool {
			return slices.Equal(brokerIDs(nd), all) && slices.Equal(nd.srv.raft.Learners(), []int32{3})
		})
	}
	if err := c.request(ctx, kmsgCreateWithAssignment("quorum-after", [][]int32{{3, 0}})); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "broker 3 applying the metadata again", 10*time.Second, func() bool { return c.nodes[3].srv.meta.Topic("quorum-after") != nil })

	c.stop(3)
	for _, nd := range c.nodes[:3] {
		waitCluster(t, "broker 3 fenced", 10*time.Second, func() bool { return slices.Equal(brokerIDs(nd), []int32{0, 1, 2}) })
	}
	if err := unregisterBroker(ctx, t, follower, 3); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes[:3] {
		waitCluster(t, "broker 3 gone from the metadata and the learners", 10*time.Second, func() bool {
			return len(nd.srv.raft.Learners()) == 0 && !slices.ContainsFunc(nd.srv.meta.Brokers(), func(b meta.Broker) bool { return b.ID == 3 })
		})
		if p := describeQuorum(ctx, t, nd, 2).Topics[0].Partitions[0]; len(p.Observers) != 0 {
			t.Fatalf("node %d: observers %v after unregistering", nd.id, replicaIDs(p.Observers))
		}
	}
	dc, err := adm.BrokerMetadata(ctx)
	if err != nil || !slices.Equal(dc.Brokers.NodeIDs(), []int32{0, 1, 2}) {
		t.Fatalf("brokers %v, %v", dc.Brokers.NodeIDs(), err)
	}
	// As in Kafka, the assignments stay; broker 3 is out of the ISR.
	if st := c.nodes[0].srv.meta.Topic("quorum").State(0); !slices.Equal(st.Replicas, []int32{0, 3}) || !slices.Equal(st.ISR, []int32{0}) || st.Leader != 0 {
		t.Fatalf("partition after unregistering broker 3: %+v", st)
	}
	if err := unregisterBroker(ctx, t, c.nodes[leader], 3); err != kerr.BrokerIDNotRegistered {
		t.Fatalf("unregistering broker 3 twice: %v", err)
	}

	// Back, it joins the metadata log, registers, and rejoins the ISR.
	c.start(3)
	for _, nd := range c.nodes {
		waitCluster(t, "broker 3 registered again", 20*time.Second, func() bool {
			return slices.Equal(brokerIDs(nd), all) && slices.Equal(nd.srv.raft.Learners(), []int32{3})
		})
	}
	waitCluster(t, "broker 3 back in the ISR", 20*time.Second, func() bool {
		return slices.Equal(c.nodes[0].srv.meta.Topic("quorum").State(0).ISR, []int32{0, 3})
	})
	if p := describeQuorum(ctx, t, c.nodes[3], 1).Topics[0].Partitions[0]; !slices.Equal(replicaIDs(p.Observers), []int32{3}) {
		t.Fatalf("observers %v after broker 3 returned", replicaIDs(p.Observers))
	}
}

// TestClusterQuorumControllerOnly: the voters are controllers only, so
// the quorum's leader is no broker; each registers its Kafka listener as
// a controller (listed to no client), and DescribeQuorum, asked of the
// broker or sent by a client to the controller it is told of (a broker),
// is forwarded there.
func TestClusterQuorumControllerOnly(t *testing.T) {
	c := startRolesCluster(t, []string{"controller", "controller", "controller", "broker"}, nil)
	ctx := testCtx(t)
	for _, nd := range c.nodes {
		waitCluster(t, "the broker and the controllers registered", 20*time.Second, func() bool {
			var ctls []int32
			for _, ct := range nd.srv.meta.Controllers() {
				ctls = append(ctls, ct.ID)
			}
			return slices.Equal(brokerIDs(nd), []int32{3}) && slices.Equal(ctls, []int32{0, 1, 2})
		})
	}
	for _, ct := range c.nodes[3].srv.meta.Controllers() {
		if net.JoinHostPort(ct.Host, strconv.Itoa(int(ct.Port))) != c.nodes[ct.ID].addr {
			t.Fatalf("controller %+v, its Kafka listener is %s", ct, c.nodes[ct.ID].addr)
		}
	}
	check := func(who string, resp *kmsg.DescribeQuorumResponse) {
		t.Helper()
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.LeaderID < 0 || p.LeaderID > 2 || !slices.Equal(replicaIDs(p.CurrentVoters), []int32{0, 1, 2}) || !slices.Equal(replicaIDs(p.Observers), []int32{3}) {
			t.Fatalf("%s: %+v", who, p)
		}
	}
	for _, nd := range c.nodes {
		check(fmt.Sprint("node ", nd.id), describeQuorum(ctx, t, nd, 2))
	}
	// A client sends it to the controller it is told of: broker 3.
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = append(rt.Partitions, kmsg.NewDescribeQuorumRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.client())
	if err != nil {
		t.Fatal(err)
	}
	check("a client", resp)
	if got := brokerIDs(c.nodes[0]); !slices.Equal(got, []int32{3}) {
		t.Fatalf("brokers %v: a controller registered as a broker", got)
	}
}
