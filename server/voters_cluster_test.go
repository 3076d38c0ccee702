package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// addRaftVoter sends AddRaftVoter for node id, its controller listener at
// ctrl, to node nd, and returns its error code.
func addRaftVoter(ctx context.Context, t *testing.T, nd *clusterNode, id int32, ctrl, clusterID string) error {
	t.Helper()
	host, port, err := net.SplitHostPort(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	req := kmsg.NewPtrAddRaftVoterRequest()
	req.VoterID, req.TimeoutMillis = id, 10000
	if clusterID != "" {
		req.ClusterID = &clusterID
	}
	l := kmsg.NewAddRaftVoterRequestListener()
	l.Name, l.Host, l.Port = "CONTROLLER", host, uint16(p)
	req.Listeners = append(req.Listeners, l)
	resp, err := req.RequestWith(ctx, singleNodeClient(t, nd))
	if err != nil {
		t.Fatalf("AddRaftVoter %d to node %d: %v", id, nd.id, err)
	}
	if resp.ErrorCode != 0 {
		t.Logf("AddRaftVoter %d to node %d: %s", id, nd.id, derefOr(resp.ErrorMessage, ""))
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// removeRaftVoter sends RemoveRaftVoter for node id to node nd.
func removeRaftVoter(ctx context.Context, t *testing.T, nd *clusterNode, id int32) error {
	t.Helper()
	req := kmsg.NewPtrRemoveRaftVoterRequest()
	req.VoterID = id
	resp, err := req.RequestWith(ctx, singleNodeClient(t, nd))
	if err != nil {
		t.Fatalf("RemoveRaftVoter %d to node %d: %v", id, nd.id, err)
	}
	if resp.ErrorCode != 0 {
		t.Logf("RemoveRaftVoter %d to node %d: %s", id, nd.id, derefOr(resp.ErrorMessage, ""))
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// removeVoterEventually removes voter id through node nd, again while
// the answer is REQUEST_TIMED_OUT (a leader elected a moment ago has not
// applied its term's start; another change is pending).
func removeVoterEventually(ctx context.Context, t *testing.T, nd func() *clusterNode, id int32) {
	t.Helper()
	timedOut := false
	waitCluster(t, fmt.Sprintf("voter %d removed", id), 30*time.Second, func() bool {
		err := removeRaftVoter(ctx, t, nd(), id)
		switch {
		case err == kerr.VoterNotFound && timedOut:
			return true // the change that timed out was applied since
		case err == kerr.RequestTimedOut:
			timedOut = true
		case err != nil:
			t.Fatalf("RemoveRaftVoter %d: %v", id, err)
		}
		return err == nil
	})
}

// singleNodeClient sends requests to nd itself, not to the controller.
func singleNodeClient(t *testing.T, nd *clusterNode) kmsg.Requestor {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(nd.addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl.SeedBrokers()[0]
}

func voterIDs(nd *clusterNode) []int32 {
	var ids []int32
	for _, v := range nd.srv.raft.Voters() {
		ids = append(ids, v.NodeID)
	}
	return ids
}

// liveFollower is a running voter that does not lead the quorum.
func (c *testCluster) liveFollower(voters []int32) *clusterNode {
	for _, id := range voters {
		nd := c.nodes[id]
		if nd.srv != nil && !nd.srv.raft.IsLeader() && nd.srv.raft.LeaderID() >= 0 {
			return nd
		}
	}
	c.t.Fatalf("no follower among %v", voters)
	return nil
}

// ackedProducer produces acks=all records "v-N" to topic until stopped,
// and remembers the ones acknowledged.
type ackedProducer struct {
	mu     sync.Mutex
	acked  []string
	cancel context.CancelFunc
	done   chan struct{}
}

func startProducer(t *testing.T, cl *kgo.Client) *ackedProducer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &ackedProducer{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { p.stop() }) // before the cluster and client stop
	go func() {
		defer close(p.done)
		for i := 0; ctx.Err() == nil; i++ {
			v := fmt.Sprintf("v-%d", i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i % 3)), Value: []byte(v)}).FirstErr(); err != nil {
				if ctx.Err() == nil {
					t.Logf("produce %s: %v", v, err)
					time.Sleep(50 * time.Millisecond)
				}
				continue
			}
			p.mu.Lock()
			p.acked = append(p.acked, v)
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *ackedProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// waitMore waits until n more records are acknowledged.
func (p *ackedProducer) waitMore(t *testing.T, what string, n int) {
	t.Helper()
	want := p.count() + n
	waitCluster(t, what, 60*time.Second, func() bool { return p.count() >= want })
}

func (p *ackedProducer) stop() []string {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acked)
}

// TestClusterVoters replaces a dead controller the way an operator
// would, under an acks=all load: three voters; a fourth node, a
// controller not in controller.quorum.voters, joins as a learner and
// AddRaftVoter (sent to a follower, forwarded to the leader) makes it a
// voter; the refusals (a voter again, a node that is no learner, another
// cluster id, a voter to remove that is none) come with Kafka's codes.
// Voter 2 dies; the three others stop and start again from their data
// directories with the old voter list, which does not name node 3, and
// form the quorum of four with it: its address comes from the log.
// RemoveRaftVoter removes dead voter 2; the three restart again, now
// with the list 0,1,3, and keep their cluster id. A fresh broker-only
// node given that list and the cluster id joins and takes a replica.
// Every acknowledged record is read back.
func TestClusterVoters(t *testing.T) {
	c := startCluster(t, 3, map[string]string{"offsets.topic.replication.factor": "3"})
	ctx := testCtx(t)
	c.waitRegistered()
	if err := c.request(ctx, kmsgCreateWithAssignment("voters", [][]int32{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}})); err != nil {
		t.Fatal(err)
	}
	clusterID := c.nodes[0].srv.meta.ClusterID()
	oldVoters := c.voters

	// Node 3: a controller (and broker) the voters do not name.
	c.nodes = append(c.nodes, &clusterNode{id: 3, dir: t.TempDir(), addr: freeAddr(t), ctrlAddr: freeAddr(t)})
	c.start(3)
	prod := startProducer(t, c.client(kgo.DefaultProduceTopic("voters"), kgo.RecordRetries(1<<30)))
	prod.waitMore(t, "records acknowledged before the change", 20)
	waitCluster(t, "node 3 a learner everywhere", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if !slices.Equal(nd.srv.raft.Learners(), []int32{3}) {
				return false
			}
		}
		return true
	})
	follower := c.liveFollower([]int32{0, 1, 2})
	if err := addRaftVoter(ctx, t, follower, 3, c.nodes[3].ctrlAddr, "another"); err != kerr.InconsistentClusterID {
		t.Fatalf("AddRaftVoter with another cluster id: %v", err)
	}
	if err := addRaftVoter(ctx, t, follower, 9, "127.0.0.1:1", ""); err != kerr.RequestTimedOut {
		t.Fatalf("AddRaftVoter of a node that is no learner: %v", err)
	}
	if err := addRaftVoter(ctx, t, follower, 1, c.nodes[1].ctrlAddr, ""); err != kerr.DuplicateVoter {
		t.Fatalf("AddRaftVoter of a voter: %v", err)
	}
	waitCluster(t, "node 3 added as a voter", 30*time.Second, func() bool {
		err := addRaftVoter(ctx, t, c.liveFollower([]int32{0, 1, 2}), 3, c.nodes[3].ctrlAddr, clusterID)
		if err != nil && err != kerr.RequestTimedOut {
			t.Fatalf("AddRaftVoter 3: %v", err)
		}
		return err == nil
	})
	for _, nd := range c.nodes {
		waitCluster(t, "four voters on every node", 10*time.Second, func() bool {
			return slices.Equal(voterIDs(nd), []int32{0, 1, 2, 3}) && len(nd.srv.raft.Learners()) == 0
		})
	}
	resp := describeQuorum(ctx, t, c.nodes[0], 2)
	if p := resp.Topics[0].Partitions[0]; !slices.Equal(replicaIDs(p.CurrentVoters), []int32{0, 1, 2, 3}) || len(resp.Nodes) != 4 {
		t.Fatalf("DescribeQuorum after the addition: %+v", resp)
	}
	if n := resp.Nodes[3]; n.NodeID != 3 || net.JoinHostPort(n.Listeners[0].Host, strconv.Itoa(int(n.Listeners[0].Port))) != c.nodes[3].ctrlAddr {
		t.Fatalf("node 3's controller endpoint %+v, want %s", n, c.nodes[3].ctrlAddr)
	}
	prod.waitMore(t, "records acknowledged after the addition", 20)

	// Voter 2 dies; the quorum of four needs 0, 1 and 3. They stop and
	// start again with the old voter list: 0 and 1 find node 3 in their
	// logs, and node 3 knows it is a voter.
	c.stop(2)
	for _, i := range []int{0, 1, 3} {
		c.stop(i)
	}
	for _, i := range []int{0, 1, 3} {
		c.start(i)
	}
	waitCluster(t, "a leader among 0, 1 and 3", 30*time.Second, func() bool {
		l := c.nodes[0].srv.raft.LeaderID()
		return l >= 0 && l != 2 && c.nodes[0].srv.raft.CaughtUp() && c.nodes[3].srv.raft.CaughtUp()
	})
	for _, i := range []int{0, 1, 3} {
		if got := voterIDs(c.nodes[i]); !slices.Equal(got, []int32{0, 1, 2, 3}) {
			t.Fatalf("node %d restarted: voters %v", i, got)
		}
	}
	waitCluster(t, "brokers 0, 1 and 3 registered again", 30*time.Second, func() bool {
		return slices.Equal(brokerIDs(c.nodes[0]), []int32{0, 1, 3})
	})
	if err := c.request(ctx, kmsgCreateWithAssignment("after-restart", [][]int32{{0, 1, 3}})); err != nil {
		t.Fatalf("creating a topic with the quorum 0, 1, 3: %v", err)
	}
	prod.waitMore(t, "records acknowledged after the restart", 20)

	// Remove dead voter 2, through a follower; refusals first.
	live := []int32{0, 1, 3}
	if err := removeRaftVoter(ctx, t, c.liveFollower(live), 7); err != kerr.VoterNotFound {
		t.Fatalf("RemoveRaftVoter of a node that is no voter: %v", err)
	}
	removeVoterEventually(ctx, t, func() *clusterNode { return c.liveFollower(live) }, 2)
	for _, i := range live {
		waitCluster(t, "three voters", 10*time.Second, func() bool { return slices.Equal(voterIDs(c.nodes[i]), live) })
	}
	if err := removeRaftVoter(ctx, t, c.liveFollower(live), 2); err != kerr.VoterNotFound {
		t.Fatalf("RemoveRaftVoter of voter 2 twice: %v", err)
	}

	// The others restart with the new list; they keep the cluster id.
	var vs []string
	for _, i := range live {
		vs = append(vs, fmt.Sprintf("%d@%s", i, c.nodes[i].ctrlAddr))
	}
	c.voters = strings.Join(vs, ",")
	if c.voters == oldVoters {
		t.Fatal("the voter list did not change")
	}
	for _, i := range live {
		c.stop(int(i))
		c.start(int(i))
	}
	for _, i := range live {
		nd := c.nodes[i]
		waitCluster(t, "the restarted node caught up", 30*time.Second, func() bool { return nd.srv.raft.CaughtUp() })
		if nd.srv.meta.ClusterID() != clusterID || !slices.Equal(voterIDs(nd), live) {
			t.Fatalf("node %d: cluster %s voters %v, want %s %v", i, nd.srv.meta.ClusterID(), voterIDs(nd), clusterID, live)
		}
	}

	// A fresh broker-only node joins the changed quorum.
	c.nodes = append(c.nodes, &clusterNode{id: 4, dir: t.TempDir(), addr: freeAddr(t), roles: "broker", props: map[string]string{"cluster.id": clusterID}})
	c.start(4)
	waitCluster(t, "broker 4 registered", 30*time.Second, func() bool {
		return slices.Contains(brokerIDs(c.nodes[0]), 4) && slices.Equal(c.nodes[0].srv.raft.Learners(), []int32{4})
	})
	if got := c.nodes[4].srv.meta.ClusterID(); got != clusterID {
		t.Fatalf("broker 4 in cluster %s, want %s", got, clusterID)
	}
	if err := c.request(ctx, kmsgCreateWithAssignment("joined", [][]int32{{4, 0, 3}})); err != nil {
		t.Fatal(err)
	}
	jcl := c.client(kgo.DefaultProduceTopic("joined"))
	for i := range 20 {
		if err := jcl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("produce to broker 4: %v", err)
		}
	}
	prod.waitMore(t, "records acknowledged at the end", 20)
	acked := prod.stop()

	// Every acknowledged record is there.
	got := map[string]bool{}
	ccl := c.client(kgo.ConsumeTopics("voters"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	missing := func() int {
		n := 0
		for _, v := range acked {
			if !got[v] {
				n++
			}
		}
		return n
	}
	for missing() > 0 {
		fs := ccl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("%d of %d acknowledged records not read back", missing(), len(acked))
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	t.Logf("%d acknowledged records, all read back", len(acked))
}

// TestClusterVotersRemoveLeader: the leader removed hands its leadership
// over first, the others go on with two voters, and the removed node no
// longer campaigns; the last voters cannot all go.
func TestClusterVotersRemoveLeader(t *testing.T) {
	c := startRolesCluster(t, []string{"controller", "controller", "controller", "broker"}, nil)
	ctx := testCtx(t)
	waitCluster(t, "a leader", 20*time.Second, func() bool { return c.nodes[0].srv.raft.LeaderID() >= 0 })
	leader := c.nodes[0].srv.raft.LeaderID()
	removeVoterEventually(ctx, t, func() *clusterNode { return c.nodes[leader] }, leader)
	var rest []int32
	for i := range int32(3) {
		if i != leader {
			rest = append(rest, i)
		}
	}
	// The removed node may never learn of its removal (the leader stops
	// sending to it once it applied it); the others drop its messages.
	for _, nd := range c.nodes {
		if nd.id != leader {
			waitCluster(t, "two voters everywhere", 10*time.Second, func() bool { return slices.Equal(voterIDs(nd), rest) })
		}
	}
	now := c.nodes[rest[0]].srv.raft.LeaderID()
	if now == leader || now < 0 {
		t.Fatalf("leader %d after removing leader %d", now, leader)
	}
	// The quorum works without it; the removed node never leads again.
	if err := c.request(ctx, kmsgCreateWithAssignment("after-removal", [][]int32{{3}})); err != nil {
		t.Fatal(err)
	}
	// With one of the two voters stopped there is no quorum; the removed
	// node, running, does not campaign: it never leads.
	c.stop(int(now))
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c.nodes[leader].srv.raft.IsLeader() {
			t.Fatalf("removed node %d leads", leader)
		}
	}
	c.start(int(now))
	waitCluster(t, "a leader among the two voters", 20*time.Second, func() bool {
		l := c.nodes[rest[0]].srv.raft.LeaderID()
		return l == rest[0] || l == rest[1]
	})
	// Through the broker-only node, forwarded.
	removeVoterEventually(ctx, t, func() *clusterNode { return c.nodes[3] }, rest[0])
	if err := removeRaftVoter(ctx, t, c.nodes[3], rest[1]); err != kerr.InvalidRequest {
		t.Fatalf("RemoveRaftVoter of the last voter: %v", err)
	}
}
