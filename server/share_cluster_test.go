package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/share"
)

// TestClusterShareStateFollowsLeadership checks the share coordinator of
// a cluster: __share_group_state is created with its replication factor
// and min.isr, each of its partitions is served by its leader only
// (FindCoordinator for a share-partition key names it), a member's join
// and acceptances are on the in-sync replicas when answered, and when the
// leader's node stops, the new leader loads the group and the
// share-partition: the member goes on there, accepted records never come
// back and acquired ones do.
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
	// A group whose membership and whose share-partition q-0 hash to the
	// same partition of __share_group_state, so one node serves both.
	var qid [16]byte
	waitCluster(t, "topic q on every node", 10*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv.meta.Topic("q") == nil {
				return false
			}
		}
		qid = c.nodes[0].srv.meta.Topic("q").ID()
		return true
	})
	q0 := share.TopicPartition{TopicID: qid, Partition: 0}
	shares := c.nodes[0].srv.shares
	group := ""
	for i := 0; group == ""; i++ {
		g := fmt.Sprintf("g%d", i)
		if shares.Partition(g) == shares.Partition(g+":"+base64.RawURLEncoding.EncodeToString(qid[:])+":0") {
			group = g
		}
	}
	part := shares.Partition(group)
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
	fc.CoordinatorType, fc.CoordinatorKey = 2, group+":"+base64.RawURLEncoding.EncodeToString(qid[:])+":0"
	fresp, err := fc.RequestWith(ctx, c.client())
	if err != nil || fresp.ErrorCode != 0 || fresp.NodeID != leader {
		t.Fatalf("FindCoordinator for share key %q: %v %+v, want node %d", fc.CoordinatorKey, err, fresp, leader)
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

	// Ten records; the member acquires them all on the coordinator and
	// accepts five: the acceptance is on the in-sync replicas when it is
	// answered.
	pcl := c.client(kgo.DefaultProduceTopic("q"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 10 {
		if err := pcl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	acquire := func(nd *clusterNode, want int) string {
		var got []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
		waitCluster(t, "records to acquire", 10*time.Second, func() bool {
			more, e := nd.srv.shares.Acquire(share.AcquireOptions{Group: group, Member: "m1", Partition: q0, MaxRecords: 100}, nil)
			if e != nil {
				t.Fatalf("acquire on node %d: %v", nd.id, e)
			}
			got = append(got, more...)
			n := 0
			for _, r := range got {
				n += int(r.LastOffset - r.FirstOffset + 1)
			}
			return n >= want
		})
		// Ranges, adjacent ones joined (a follower's high watermark
		// may let the records in over several acquisitions).
		var out []string
		for i := 0; i < len(got); {
			j := i
			for j+1 < len(got) && got[j+1].FirstOffset == got[j].LastOffset+1 {
				j++
			}
			out = append(out, fmt.Sprintf("%d-%d", got[i].FirstOffset, got[j].LastOffset))
			i = j + 1
		}
		return strings.Join(out, " ")
	}
	if got := acquire(lead, 10); got != "0-9" {
		t.Fatalf("acquired %s on the coordinator, want 0-9", got)
	}
	if e := lead.srv.shares.Acknowledge(group, "m1", q0, []share.AckBatch{{FirstOffset: 0, LastOffset: 4, Types: []int8{1}}}, false); e != nil {
		t.Fatalf("accept: %v", e)
	}

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
	// The accepted records never come back; the acquired ones do.
	if got := acquire(next, 5); got != "5-9" {
		t.Fatalf("acquired %s on the new coordinator, want 5-9 (0-4 were accepted)", got)
	}

	// The old coordinator comes back as a follower and serves nothing of
	// what it does not lead.
	c.start(int(lead.id))
	waitCluster(t, "every partition loaded by its leader only, after the restart", 30*time.Second, loadedOnLeaders)
}
