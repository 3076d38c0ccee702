package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClusterGroupKindsExclusive checks, over three nodes, that a group
// ID is either a share group's or a consumer group's though the two
// coordinators of a name are different brokers (the leaders of its
// partitions of __share_group_state and __consumer_offsets): as Kafka,
// a ConsumerGroupHeartbeat, JoinGroup or OffsetCommit for a share
// group's name and a ShareGroupHeartbeat for a consumer group's name
// answer GROUP_ID_NOT_FOUND instead of creating the group.
func TestClusterGroupKindsExclusive(t *testing.T) {
	o := startShareOps(t, shareOpsProps())
	o.pickGroup() // creates q
	srv := o.c.nodes[0].srv
	var names []string
	waitCluster(t, "two groups coordinated by two brokers each", 20*time.Second, func() bool {
		names = names[:0]
		for i := range 200 {
			g := fmt.Sprintf("kind%d", i)
			if o.c.leaderOf(shareStateTopic, srv.shares.Partition(g), -1) != o.c.leaderOf(offsetsTopic, srv.groups.Partition(g), -1) {
				names = append(names, g)
			}
			if len(names) == 2 {
				return true
			}
		}
		return false
	})
	shared, consumed := names[0], names[1]
	cl := o.c.client()
	ctx := o.ctx
	qid := srv.meta.Topic("q").ID()

	// A share group, then consumer group requests for its name.
	m := newRawShare(t, o.c.nodes[0].addr, shared)
	joinRaw(t, m, "q")
	hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	hb.Group, hb.MemberID, hb.RebalanceTimeoutMillis = shared, "m1", 1000
	hb.SubscribedTopicNames, hb.Topics = []string{"q"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if resp, err := hb.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("ConsumerGroupHeartbeat for a share group's name: %v %+v", err, resp)
	}
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Group, jg.ProtocolType, jg.SessionTimeoutMillis, jg.RebalanceTimeoutMillis = shared, "consumer", 10000, 10000
	jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{}}}
	if resp, err := jg.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("JoinGroup for a share group's name: %v %+v", err, resp)
	}
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.Generation = shared, -1
	oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "q", TopicID: qid, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	if resp, err := oc.RequestWith(ctx, cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("OffsetCommit for a share group's name: %v %+v", err, resp)
	}

	// A consumer group, then a share member joining its name.
	cg := o.c.client(kgo.ConsumerGroup(consumed), kgo.ConsumeTopics("q"))
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	cg.PollRecords(pctx, 1) // joins
	cancel()
	waitCluster(t, "the consumer group exists", 20*time.Second, func() bool {
		d, err := o.adm.DescribeGroups(ctx, consumed)
		return err == nil && d[consumed].Err == nil && d[consumed].State != "Dead"
	})
	sm := newRawShare(t, o.c.nodes[0].addr, consumed)
	var code int16
	waitCluster(t, "an answer to the share member", 20*time.Second, func() bool {
		resp, err := sm.tryHeartbeat("q")
		if err != nil {
			return false
		}
		code = resp.ErrorCode
		return code != kerr.CoordinatorNotAvailable.Code && code != kerr.NotCoordinator.Code && code != kerr.CoordinatorLoadInProgress.Code
	})
	if code != kerr.GroupIDNotFound.Code {
		t.Errorf("ShareGroupHeartbeat for a consumer group's name: %v", kerr.ErrorForCode(code))
	}
	// The share group is still a share group, the consumer group still a
	// consumer group.
	if d, err := o.adm.DescribeShareGroups(ctx, shared); err != nil || d[shared].Err != nil || len(d[shared].Members) != 1 {
		t.Errorf("the share group: %v %+v", err, d[shared])
	}
	if d, err := o.adm.DescribeShareGroups(ctx, consumed); err == nil && d[consumed].Err == nil {
		t.Errorf("a share group was made of the consumer group's name: %+v", d[consumed])
	}
}
