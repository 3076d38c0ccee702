package group

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConcurrentGroups runs classic and KIP-848 members of several groups
// at once (under -race), with snapshots kicking in often, and checks that a
// coordinator replayed from the store sees exactly the offsets the live one
// has, and that no partition ever had two KIP-848 owners.
func TestConcurrentGroups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		cfg := Config{
			Store:                  store,
			Topics:                 func() map[string]TopicInfo { return testTopics },
			OffsetsTopicPartitions: 3,
			InitialRebalanceDelay:  100 * time.Millisecond,
			compactSlack:           400,
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			for m := range 3 {
				wg.Go(func() { classicMember(t, c, fmt.Sprintf("classic-%d", g), fmt.Sprintf("c%d", m), 4) })
			}
		}
		for g := range 2 {
			for m := range 3 {
				wg.Go(func() { consumerMember(t, c, fmt.Sprintf("kip848-%d", g), fmt.Sprintf("k%d", m), 12) })
			}
		}
		wg.Go(func() {
			for range 20 {
				c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest())
				c.DescribeGroups(context.Background(), &kmsg.DescribeGroupsRequest{Groups: []string{"classic-0", "kip848-0"}})
				c.TopicsChanged()
				time.Sleep(time.Second)
			}
		})
		wg.Wait()
		synctest.Wait()
		checkStored(t, c)

		live := allOffsets(c)
		c.Close()
		c2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		replayed := allOffsets(c2)
		if !maps.Equal(live, replayed) {
			t.Errorf("offsets after replay differ:\nlive     %v\nreplayed %v", live, replayed)
		}
		if len(live) == 0 {
			t.Errorf("no offsets committed")
		}
		store.mu.Lock()
		snaps := store.snapshots
		store.mu.Unlock()
		if snaps == 0 {
			t.Errorf("no snapshot taken")
		}
	})
}

func allOffsets(c *Coordinator) map[string]int64 {
	out := make(map[string]int64)
	list := c.ListGroups(context.Background(), kmsg.NewPtrListGroupsRequest())
	for _, g := range list.Groups {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = 7, g.Group
		for _, t := range c.OffsetFetch(context.Background(), req).Topics {
			for _, p := range t.Partitions {
				out[fmt.Sprintf("%s/%s/%d", g.Group, t.Topic, p.Partition)] = p.Offset
			}
		}
	}
	return out
}

// classicMember plays a classic consumer: join, sync (assigning t1 round
// robin when leader), heartbeat and commit its partitions, rounds times,
// then leave.
func classicMember(t *testing.T, c *Coordinator, group, client string, rounds int) {
	ctx := WithClientInfo(context.Background(), ClientInfo{ClientID: client})
	memberID := ""
	for done := 0; done < rounds; {
		jr := joinReq(9, group, memberID)
		resp := c.JoinGroup(ctx, jr)
		switch resp.ErrorCode {
		case 0:
		case kerr.MemberIDRequired.Code:
			memberID = resp.MemberID
			continue
		case kerr.UnknownMemberID.Code:
			memberID = ""
			continue
		case kerr.RebalanceInProgress.Code:
			continue
		default:
			t.Errorf("%s/%s join: %v", group, client, kerr.ErrorForCode(resp.ErrorCode))
			return
		}
		sreq := kmsg.NewPtrSyncGroupRequest()
		sreq.Group, sreq.MemberID, sreq.Generation = group, memberID, resp.Generation
		if resp.LeaderID == memberID {
			ids := make([]string, 0, len(resp.Members))
			for _, m := range resp.Members {
				ids = append(ids, m.MemberID)
			}
			slices.Sort(ids)
			plan := make(map[string][]int32)
			for p := range int32(4) {
				id := ids[int(p)%len(ids)]
				plan[id] = append(plan[id], p)
			}
			for _, id := range ids {
				a := kmsg.ConsumerMemberAssignment{Topics: []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t1", Partitions: plan[id]}}}
				sreq.GroupAssignment = append(sreq.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: a.AppendTo(nil)})
			}
		}
		sresp := c.SyncGroup(ctx, sreq)
		if sresp.ErrorCode != 0 {
			continue
		}
		var assigned kmsg.ConsumerMemberAssignment
		if err := assigned.ReadFrom(sresp.MemberAssignment); err != nil {
			t.Errorf("%s/%s: undecodable assignment: %v", group, client, err)
			return
		}
		for range 3 {
			hb := c.Heartbeat(ctx, &kmsg.HeartbeatRequest{Version: 4, Group: group, MemberID: memberID, Generation: resp.Generation})
			if hb.ErrorCode != 0 {
				break
			}
			creq := kmsg.NewPtrOffsetCommitRequest()
			creq.Version, creq.Group, creq.MemberID, creq.Generation = 8, group, memberID, resp.Generation
			for _, at := range assigned.Topics {
				rt := kmsg.NewOffsetCommitRequestTopic()
				rt.Topic = at.Topic
				for _, p := range at.Partitions {
					rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p, Offset: int64(done), LeaderEpoch: -1})
				}
				creq.Topics = append(creq.Topics, rt)
			}
			c.OffsetCommit(ctx, creq)
			time.Sleep(time.Second)
		}
		done++
	}
	c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 5, Group: group, Members: []kmsg.LeaveGroupRequestMember{{MemberID: memberID}}})
}

// consumerMember plays a KIP-848 consumer that adopts every assignment at
// once, commits what it owns, and checks no one else owns it.
func consumerMember(t *testing.T, c *Coordinator, group, client string, beats int) {
	ctx := WithClientInfo(context.Background(), ClientInfo{ClientID: client})
	id := client + "-id"
	epoch := int32(0)
	owned := assignment{}
	for i := range beats {
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, group, id, epoch
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if epoch == 0 {
			req.RebalanceTimeoutMillis = 10000
			req.SubscribedTopicNames = []string{"t1", "t2"}
		} else {
			for _, tid := range owned.sortedIDs() {
				req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: tid, Partitions: owned[tid]})
			}
		}
		resp := c.ConsumerGroupHeartbeat(ctx, req)
		if resp.ErrorCode != 0 {
			epoch, owned = 0, assignment{}
			continue
		}
		epoch = resp.MemberEpoch
		if resp.Assignment != nil {
			owned = assignment{}
			for _, at := range resp.Assignment.Topics {
				for _, p := range at.Partitions {
					owned.add(at.TopicID, p)
				}
			}
		}
		checkSingleOwner(t, c, group)
		creq := kmsg.NewPtrOffsetCommitRequest()
		creq.Version, creq.Group, creq.MemberID, creq.Generation = 9, group, id, epoch
		for _, tid := range owned.sortedIDs() {
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = string(tid[:2])
			for _, p := range owned[tid] {
				rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p, Offset: int64(i), LeaderEpoch: -1})
			}
			creq.Topics = append(creq.Topics, rt)
		}
		c.OffsetCommit(ctx, creq)
		time.Sleep(time.Second)
	}
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, group, id, -1
	c.ConsumerGroupHeartbeat(ctx, req)
}

// checkSingleOwner fails if two members of a KIP-848 group are told they
// own (or still hold) one partition.
func checkSingleOwner(t *testing.T, c *Coordinator, group string) {
	resp := c.ConsumerGroupDescribe(context.Background(), &kmsg.ConsumerGroupDescribeRequest{Groups: []string{group}})
	owner := make(map[string]string)
	for _, m := range resp.Groups[0].Members {
		for _, tp := range m.Assignment.TopicPartitions {
			for _, p := range tp.Partitions {
				k := fmt.Sprintf("%s/%d", tp.Topic, p)
				if o, ok := owner[k]; ok {
					t.Errorf("%s: %s assigned to %s and %s", group, k, o, m.MemberID)
				}
				owner[k] = m.MemberID
			}
		}
	}
}

// BenchmarkOffsetCommit measures a one-partition commit by a group member,
// store cost excluded (memStore).
func BenchmarkOffsetCommit(b *testing.B) {
	c, _ := newTestCoordinator(b, nil)
	ctx := context.Background()
	req := &kmsg.OffsetCommitRequest{Version: 8, Group: "bench", Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
		{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, LeaderEpoch: -1}}},
	}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req.Topics[0].Partitions[0].Offset = int64(i)
		if code := c.OffsetCommit(ctx, req).Topics[0].Partitions[0].ErrorCode; code != 0 {
			b.Fatal(kerr.ErrorForCode(code))
		}
	}
}
