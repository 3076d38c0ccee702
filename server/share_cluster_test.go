package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterShareStateFollowsLeadership checks the share coordinator of
// a cluster: __share_group_state is created with its replication factor
// and min.isr, each of its partitions is served by its leader only
// (FindCoordinator for a share-partition key names it), a member's join
// is on the in-sync replicas when answered, and when the leader's node
// stops, the new leader loads the group and the member goes on there.
func TestClusterShareStateFollowsLeadership(t *testing.T) {
	c := startCluster(t, 3, map[string]string{"share.coordinator.state.topic.num.partitions": "3"})
	ctx := context.Background()
	c.waitRegistered()
	for _, nd := range c.nodes {
		waitCluster(t, shareStateTopic+" on every node", 20*time.Second, func() bool { return nd.srv.meta.Topic(shareStateTopic) != nil })
	}
	st := c.nodes[0].srv.meta.Topic(shareStateTopic)
	if got := st.Configs()["min.insync.replicas"]; got != "2" {
		t.Fatalf("%s min.insync.replicas %q, want share.coordinator.state.topic.min.isr (2)", shareStateTopic, got)
	}
	if n := st.NumPartitions(); n != 3 {
		t.Fatalf("%s has %d partitions, want 3", shareStateTopic, n)
	}
	for p, ps := range st.States() {
		if len(ps.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v, want share.coordinator.state.topic.replication.factor (3)", p, ps.Replicas)
		}
	}
	// Each partition is loaded by its leader and by no other node.
	loadedOnLeaders := func() bool {
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			t := nd.srv.meta.Topic(shareStateTopic)
			for p := range t.NumPartitions() {
				if nd.srv.shares.Loaded(p) != (t.State(p).Leader == nd.id) {
					return false
				}
			}
		}
		return true
	}
	waitCluster(t, "every partition loaded by its leader only", 20*time.Second, loadedOnLeaders)

	adm := kadm.NewClient(c.client())
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "q"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	const group = "g"
	part := c.nodes[0].srv.shares.Partition(group)
	leader := st.State(part).Leader
	var lead *clusterNode
	for _, nd := range c.nodes {
		if nd.id == leader {
			lead = nd
		}
	}

	// FindCoordinator for a share-partition key: the leader of its
	// partition of __share_group_state.
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType, fc.CoordinatorKey = 2, group
	fresp, err := fc.RequestWith(ctx, c.client())
	if err != nil || fresp.ErrorCode != 0 || fresp.NodeID != leader {
		t.Fatalf("FindCoordinator for share key %q: %v %+v, want node %d", group, err, fresp, leader)
	}

	// The share APIs are not served in a cluster yet (docs/cluster.md),
	// so the member joins through the engine of each node.
	heartbeat := func(nd *clusterNode, epoch int32) *kmsg.ShareGroupHeartbeatResponse {
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.GroupID, req.MemberID, req.MemberEpoch = group, "m1", epoch
		if epoch == 0 {
			req.SubscribedTopicNames = []string{"q"}
		}
		return nd.srv.shares.ShareGroupHeartbeat(ctx, req)
	}
	for _, nd := range c.nodes {
		if nd != lead {
			if resp := heartbeat(nd, 0); resp.ErrorCode != kerr.NotCoordinator.Code {
				t.Fatalf("join on node %d, which does not lead partition %d: error %d, want NOT_COORDINATOR", nd.id, part, resp.ErrorCode)
			}
		}
	}
	var joined *kmsg.ShareGroupHeartbeatResponse
	waitCluster(t, "the member joins on the coordinator", 10*time.Second, func() bool {
		joined = heartbeat(lead, 0)
		return joined.ErrorCode == 0
	})

	// The coordinator's node stops; another in-sync replica leads the
	// partition, loads it, and knows the member at its epoch.
	c.stop(int(lead.id))
	var next *clusterNode
	waitCluster(t, "another node loads the group's partition", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv != nil && nd.srv.shares.Loaded(part) {
				next = nd
				return true
			}
		}
		return false
	})
	d := next.srv.shares.ShareGroupDescribe(ctx, &kmsg.ShareGroupDescribeRequest{GroupIDs: []string{group}})
	if g := d.Groups[0]; g.ErrorCode != 0 || len(g.Members) != 1 || g.Members[0].MemberID != "m1" || g.Members[0].MemberEpoch != joined.MemberEpoch {
		t.Fatalf("group on node %d after failover: %+v", next.id, g)
	}
	if resp := heartbeat(next, joined.MemberEpoch); resp.ErrorCode != 0 {
		t.Fatalf("heartbeat on the new coordinator: error %d", resp.ErrorCode)
	}

	// The old coordinator comes back as a follower and serves nothing of
	// what it does not lead.
	c.start(int(lead.id))
	waitCluster(t, "every partition loaded by its leader only, after the restart", 30*time.Second, loadedOnLeaders)
}
