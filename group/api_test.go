package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var testTopics = map[string]TopicInfo{
	"t1": {ID: topicID("t1"), Partitions: 4},
	"t2": {ID: topicID("t2"), Partitions: 2},
}

// newTestCoordinator returns a coordinator over a fresh memStore with
// testTopics and no initial rebalance delay; mod may change the config. It
// is closed when the test ends.
func newTestCoordinator(t testing.TB, mod func(*Config)) (*Coordinator, *memStore) {
	t.Helper()
	store := newMemStore()
	cfg := Config{
		Store:                  store,
		Topics:                 func() map[string]TopicInfo { return testTopics },
		OffsetsTopicPartitions: 4,
		InitialRebalanceDelay:  -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, store
}

func consumerProtocols(names ...string) []kmsg.JoinGroupRequestProtocol {
	md := kmsg.ConsumerMemberMetadata{Topics: []string{"t1"}}
	var ps []kmsg.JoinGroupRequestProtocol
	for _, n := range names {
		ps = append(ps, kmsg.JoinGroupRequestProtocol{Name: n, Metadata: md.AppendTo(nil)})
	}
	return ps
}

func joinReq(v int16, group, member string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = v
	req.Group = group
	req.MemberID = member
	req.SessionTimeoutMillis = 10000
	req.RebalanceTimeoutMillis = 10000
	req.ProtocolType = "consumer"
	req.Protocols = consumerProtocols("range")
	return req
}

// joinStable makes a one-member group Stable and returns its member ID and
// generation.
func joinStable(t *testing.T, c *Coordinator, group string) (string, int32) {
	t.Helper()
	ctx := context.Background()
	resp := c.JoinGroup(ctx, joinReq(9, group, ""))
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	resp = c.JoinGroup(ctx, joinReq(9, group, resp.MemberID))
	if resp.ErrorCode != 0 {
		t.Fatalf("second join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	sreq := kmsg.NewPtrSyncGroupRequest()
	sreq.Version = 5
	sreq.Group = group
	sreq.MemberID = resp.MemberID
	sreq.Generation = resp.Generation
	if s := c.SyncGroup(ctx, sreq); s.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	return resp.MemberID, resp.Generation
}

func TestConfigValidation(t *testing.T) {
	topics := func() map[string]TopicInfo { return nil }
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Topics: topics}},
		{"no topics", Config{Store: newMemStore()}},
		{"negative partitions", Config{Store: newMemStore(), Topics: topics, OffsetsTopicPartitions: -1}},
		{"min above max", Config{Store: newMemStore(), Topics: topics, MinSessionTimeout: time.Hour, MaxSessionTimeout: time.Minute}},
		{"unknown assignor", Config{Store: newMemStore(), Topics: topics, ConsumerAssignors: []string{"sticky"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if !errors.Is(err, ErrConfig) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("New: %v, want ErrConfig", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Store: newMemStore(), Topics: func() map[string]TopicInfo { return nil }}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"offsets.topic.num.partitions", cfg.OffsetsTopicPartitions, int32(50)},
		{"group.min.session.timeout.ms", cfg.MinSessionTimeout, 6 * time.Second},
		{"group.max.session.timeout.ms", cfg.MaxSessionTimeout, 30 * time.Minute},
		{"group.initial.rebalance.delay.ms", cfg.InitialRebalanceDelay, 3 * time.Second},
		{"offsets.retention.minutes", cfg.OffsetsRetention, 7 * 24 * time.Hour},
		{"offsets.retention.check.interval.ms", cfg.OffsetsRetentionCheckInterval, 10 * time.Minute},
		{"group.consumer.session.timeout.ms", cfg.ConsumerSessionTimeout, 45 * time.Second},
		{"group.consumer.heartbeat.interval.ms", cfg.ConsumerHeartbeatInterval, 5 * time.Second},
		{"group.consumer.assignors", fmt.Sprint(cfg.ConsumerAssignors), "[uniform range]"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	neg, _ := Config{Store: newMemStore(), Topics: func() map[string]TopicInfo { return nil }, InitialRebalanceDelay: -time.Second}.withDefaults()
	if neg.InitialRebalanceDelay != 0 {
		t.Errorf("negative InitialRebalanceDelay became %v, want 0", neg.InitialRebalanceDelay)
	}
}

func TestPartition(t *testing.T) {
	// Values from Java: abs(group.hashCode()) % 50.
	for _, tt := range []struct {
		group string
		want  int32
	}{
		{"", 0},
		{"a", 47},
		{"test", 48},
		{"my-group", 12},              // negative hash code
		{"polygenelubricants", 0},     // hash code is math.MinInt32
		{"console-consumer-12345", 6}, //
		{"grüße", 23},                 // non-ASCII
		{"🎉group", 38},                // a surrogate pair in UTF-16
	} {
		if got := partitionFor(tt.group, 50); got != tt.want {
			t.Errorf("partitionFor(%q) = %d, want %d", tt.group, got, tt.want)
		}
	}
}

// TestResponseVersions calls every API at every version kmsg knows and
// checks that the response carries the request's version and encodes.
func TestResponseVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		member, gen := joinStable(t, c, "g")
		check := func(name string, v int16, resp kmsg.Response) {
			t.Helper()
			if resp.GetVersion() != v {
				t.Errorf("%s v%d: response version %d", name, v, resp.GetVersion())
			}
			b := resp.AppendTo(nil)
			out := kmsg.ResponseForKey(resp.Key())
			out.SetVersion(v)
			if err := out.ReadFrom(b); err != nil {
				t.Errorf("%s v%d: response does not decode: %v", name, v, err)
			}
		}
		for v := range (&kmsg.JoinGroupRequest{}).MaxVersion() + 1 {
			// A known member of a Stable group gets the current
			// generation back at once.
			req := joinReq(v, "g", member)
			check("JoinGroup", v, c.JoinGroup(ctx, req))
		}
		for v := range (&kmsg.SyncGroupRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrSyncGroupRequest()
			req.Version, req.Group, req.MemberID, req.Generation = v, "g", member, gen
			resp := c.SyncGroup(ctx, req)
			check("SyncGroup", v, resp)
		}
		for v := range (&kmsg.HeartbeatRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrHeartbeatRequest()
			req.Version, req.Group, req.MemberID, req.Generation = v, "g", member, gen
			check("Heartbeat", v, c.Heartbeat(ctx, req))
		}
		for v := range (&kmsg.OffsetCommitRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Version, req.Group, req.MemberID, req.Generation = v, "g", member, gen
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = "t1", topicID("t1")
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Offset = int64(v)
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			check("OffsetCommit", v, c.OffsetCommit(ctx, req))
		}
		for v := range (&kmsg.OffsetFetchRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrOffsetFetchRequest()
			req.Version, req.Group = v, "g"
			req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{0}}}
			req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", MemberEpoch: -1, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t1", TopicID: topicID("t1"), Partitions: []int32{0}}}}}
			check("OffsetFetch", v, c.OffsetFetch(ctx, req))
		}
		for v := range (&kmsg.DescribeGroupsRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrDescribeGroupsRequest()
			req.Version, req.Groups = v, []string{"g", "nope"}
			check("DescribeGroups", v, c.DescribeGroups(ctx, req))
		}
		for v := range (&kmsg.ListGroupsRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrListGroupsRequest()
			req.Version = v
			check("ListGroups", v, c.ListGroups(ctx, req))
		}
		for v := range (&kmsg.OffsetDeleteRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrOffsetDeleteRequest()
			req.Version, req.Group = v, "g"
			check("OffsetDelete", v, c.OffsetDelete(ctx, req))
		}
		for v := range (&kmsg.ConsumerGroupDescribeRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrConsumerGroupDescribeRequest()
			req.Version, req.Groups = v, []string{"g"}
			check("ConsumerGroupDescribe", v, c.ConsumerGroupDescribe(ctx, req))
		}
		for v := range (&kmsg.ConsumerGroupHeartbeatRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
			req.Version, req.Group, req.MemberID = v, fmt.Sprintf("cg%d", v), "m"
			req.RebalanceTimeoutMillis = 1000
			req.SubscribedTopicNames = []string{"t1"}
			req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
			resp := c.ConsumerGroupHeartbeat(ctx, req)
			if resp.ErrorCode != 0 {
				t.Errorf("ConsumerGroupHeartbeat v%d: %v", v, kerr.ErrorForCode(resp.ErrorCode))
			}
			check("ConsumerGroupHeartbeat", v, resp)
		}
		for v := range (&kmsg.LeaveGroupRequest{}).MaxVersion() + 1 {
			m, _ := joinStable(t, c, fmt.Sprintf("leave%d", v))
			req := kmsg.NewPtrLeaveGroupRequest()
			req.Version, req.Group, req.MemberID = v, fmt.Sprintf("leave%d", v), m
			req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: m}}
			resp := c.LeaveGroup(ctx, req)
			check("LeaveGroup", v, resp)
			if v < 3 && resp.Members != nil {
				t.Errorf("LeaveGroup v%d: members in response", v)
			}
		}
		for v := range (&kmsg.DeleteGroupsRequest{}).MaxVersion() + 1 {
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Version, req.Groups = v, []string{fmt.Sprintf("leave%d", v)}
			resp := c.DeleteGroups(ctx, req)
			check("DeleteGroups", v, resp)
			if resp.Groups[0].ErrorCode != 0 {
				t.Errorf("DeleteGroups v%d: %v", v, kerr.ErrorForCode(resp.Groups[0].ErrorCode))
			}
		}
	})
}

// TestJoinGroupMemberIDRequired: only v4+ dynamic members are asked to
// join again with an assigned member ID.
func TestJoinGroupMemberIDRequired(t *testing.T) {
	for v := range (&kmsg.JoinGroupRequest{}).MaxVersion() + 1 {
		for _, static := range []bool{false, true} {
			if static && v < 5 {
				continue
			}
			t.Run(fmt.Sprintf("v%d/static=%v", v, static), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					c, _ := newTestCoordinator(t, nil)
					ctx := WithClientInfo(context.Background(), ClientInfo{ClientID: "cli", Host: "/10.0.0.1"})
					req := joinReq(v, "g", "")
					if static {
						req.InstanceID = strPtr("inst")
					}
					resp := c.JoinGroup(ctx, req)
					want := int16(0)
					if v >= 4 && !static {
						want = kerr.MemberIDRequired.Code
					}
					if resp.ErrorCode != want {
						t.Fatalf("error %v, want %v", kerr.ErrorForCode(resp.ErrorCode), kerr.ErrorForCode(want))
					}
					prefix := "cli-"
					if static {
						prefix = "inst-"
					}
					if len(resp.MemberID) != len(prefix)+36 || resp.MemberID[:len(prefix)] != prefix {
						t.Errorf("member ID %q, want %s<uuid>", resp.MemberID, prefix)
					}
					if want == 0 {
						if resp.Generation != 1 || resp.LeaderID != resp.MemberID || len(resp.Members) != 1 {
							t.Errorf("join response %+v", resp)
						}
						if v >= 7 && derefStr(resp.ProtocolType) != "consumer" {
							t.Errorf("protocol type %v", resp.ProtocolType)
						}
					}
				})
			})
		}
	}
}

func TestGroupIDRequired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		codes := map[string]int16{
			"JoinGroup": c.JoinGroup(ctx, joinReq(9, "", "")).ErrorCode,
			"SyncGroup": c.SyncGroup(ctx, kmsg.NewPtrSyncGroupRequest()).ErrorCode,
			"Heartbeat": c.Heartbeat(ctx, kmsg.NewPtrHeartbeatRequest()).ErrorCode,
			"LeaveGroup": c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{
				Version: 3, Members: []kmsg.LeaveGroupRequestMember{{MemberID: "m"}},
			}).ErrorCode,
			"OffsetDelete":          c.OffsetDelete(ctx, kmsg.NewPtrOffsetDeleteRequest()).ErrorCode,
			"DeleteGroups":          c.DeleteGroups(ctx, &kmsg.DeleteGroupsRequest{Groups: []string{""}}).Groups[0].ErrorCode,
			"DescribeGroups":        c.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Groups: []string{""}}).Groups[0].ErrorCode,
			"ConsumerGroupDescribe": c.ConsumerGroupDescribe(ctx, &kmsg.ConsumerGroupDescribeRequest{Groups: []string{""}}).Groups[0].ErrorCode,
			"OffsetFetch":           c.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 8, Groups: []kmsg.OffsetFetchRequestGroup{{MemberEpoch: -1}}}).Groups[0].ErrorCode,
			"OffsetFetch v2":        c.OffsetFetch(ctx, &kmsg.OffsetFetchRequest{Version: 2}).ErrorCode,
			"OffsetCommit": c.OffsetCommit(ctx, &kmsg.OffsetCommitRequest{Version: 8, Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
				{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0}}},
			}}).Topics[0].Partitions[0].ErrorCode,
		}
		for api, code := range codes {
			if code != kerr.InvalidGroupID.Code {
				t.Errorf("%s with an empty group: %v, want INVALID_GROUP_ID", api, kerr.ErrorForCode(code))
			}
		}
	})
}

func TestOffsetFetchVersions(t *testing.T) {
	for _, tt := range []struct {
		name      string
		v         int16
		topics    []kmsg.OffsetFetchRequestTopic
		wantParts int
	}{
		{"v1 partitions", 1, []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{0, 1, 3}}}, 3},
		{"v1 nothing requested", 1, []kmsg.OffsetFetchRequestTopic{}, 0},
		{"v2 all", 2, nil, 2},
		{"v7 all", 7, nil, 2},
		{"v5 partitions", 5, []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{0}}, {Topic: "nope", Partitions: []int32{0}}}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, _ := newTestCoordinator(t, nil)
				ctx := context.Background()
				commit := &kmsg.OffsetCommitRequest{Version: 8, Group: "g", Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
					{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5, LeaderEpoch: 2}, {Partition: 1, Offset: 6, LeaderEpoch: -1}}},
				}}
				if code := c.OffsetCommit(ctx, commit).Topics[0].Partitions[0].ErrorCode; code != 0 {
					t.Fatalf("commit: %v", kerr.ErrorForCode(code))
				}
				req := kmsg.NewPtrOffsetFetchRequest()
				req.Version, req.Group, req.Topics = tt.v, "g", tt.topics
				resp := c.OffsetFetch(ctx, req)
				n := 0
				for _, rt := range resp.Topics {
					for _, p := range rt.Partitions {
						n++
						want := int64(-1)
						if rt.Topic == "t1" && p.Partition < 2 {
							want = int64(5 + p.Partition)
						}
						if p.Offset != want || p.ErrorCode != 0 || p.Metadata == nil {
							t.Errorf("%s/%d: offset %d error %d metadata %v, want %d", rt.Topic, p.Partition, p.Offset, p.ErrorCode, p.Metadata, want)
						}
						if rt.Topic == "t1" && p.Partition == 0 && p.LeaderEpoch != 2 {
							t.Errorf("leader epoch %d, want 2", p.LeaderEpoch)
						}
					}
				}
				if n != tt.wantParts {
					t.Errorf("%d partitions, want %d", n, tt.wantParts)
				}
			})
		})
	}
}

func TestOffsetFetchConsumerGroupMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID = 1, "g", "m1"
		hb.RebalanceTimeoutMillis = 1000
		hb.SubscribedTopicNames = []string{"t1"}
		hb.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		resp := c.ConsumerGroupHeartbeat(ctx, hb)
		if resp.ErrorCode != 0 || resp.MemberEpoch != 1 {
			t.Fatalf("join: %v epoch %d", kerr.ErrorForCode(resp.ErrorCode), resp.MemberEpoch)
		}
		for _, tt := range []struct {
			name   string
			member *string
			epoch  int32
			want   *kerr.Error
		}{
			{"admin", nil, -1, nil},
			{"member", strPtr("m1"), 1, nil},
			{"stale epoch", strPtr("m1"), 0, kerr.StaleMemberEpoch},
			{"unknown member", strPtr("m2"), 1, kerr.UnknownMemberID},
			{"empty member", strPtr(""), 1, kerr.UnknownMemberID},
		} {
			req := kmsg.NewPtrOffsetFetchRequest()
			req.Version = 9
			req.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", MemberID: tt.member, MemberEpoch: tt.epoch}}
			got := c.OffsetFetch(ctx, req).Groups[0].ErrorCode
			want := int16(0)
			if tt.want != nil {
				want = tt.want.Code
			}
			if got != want {
				t.Errorf("%s: %v, want %v", tt.name, kerr.ErrorForCode(got), tt.want)
			}
		}
	})
}

func TestOffsetCommitErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, store := newTestCoordinator(t, nil)
		ctx := context.Background()
		member, gen := joinStable(t, c, "g")
		part := func(p int32, md *string) kmsg.OffsetCommitRequestTopicPartition {
			return kmsg.OffsetCommitRequestTopicPartition{Partition: p, Offset: 1, LeaderEpoch: -1, Metadata: md}
		}
		big := string(make([]byte, 4097))
		for _, tt := range []struct {
			name   string
			v      int16
			member string
			gen    int32
			topics []kmsg.OffsetCommitRequestTopic
			want   []int16
			fail   bool
		}{
			{"ok", 8, member, gen, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(0, nil)}}}, []int16{0}, false},
			{"unknown member", 8, "who", gen, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(0, nil)}}}, []int16{kerr.UnknownMemberID.Code}, false},
			{"illegal generation", 8, member, gen + 1, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(0, nil)}}}, []int16{kerr.IllegalGeneration.Code}, false},
			{"metadata too large", 8, member, gen, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(0, &big), part(1, nil)}}}, []int16{kerr.OffsetMetadataTooLarge.Code, 0}, false},
			{"unknown partition", 8, member, gen, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(4, nil), part(-1, nil)}}}, []int16{kerr.UnknownTopicOrPartition.Code, kerr.UnknownTopicOrPartition.Code}, false},
			{"store failure", 8, member, gen, []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(2, nil)}}, {Topic: "t9", Partitions: []kmsg.OffsetCommitRequestTopicPartition{part(0, nil)}}}, []int16{kerr.CoordinatorNotAvailable.Code, kerr.UnknownTopicOrPartition.Code}, true},
		} {
			func() {
				store.mu.Lock()
				store.failAppend = nil
				if tt.fail {
					store.failAppend = errInjected
				}
				store.mu.Unlock()
				req := kmsg.NewPtrOffsetCommitRequest()
				req.Version, req.Group, req.MemberID, req.Generation, req.Topics = tt.v, "g", tt.member, tt.gen, tt.topics
				resp := c.OffsetCommit(ctx, req)
				var got []int16
				for _, rt := range resp.Topics {
					for _, p := range rt.Partitions {
						got = append(got, p.ErrorCode)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s: codes %v, want %v", tt.name, got, tt.want)
				}
			}()
		}
		store.mu.Lock()
		store.failAppend = nil
		store.mu.Unlock()
		// Partition 2's commit failed: nothing was applied.
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = 5, "g"
		req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{2}}}
		if off := c.OffsetFetch(ctx, req).Topics[0].Partitions[0].Offset; off != -1 {
			t.Errorf("offset after failed commit: %d, want -1", off)
		}
	})
}

func TestOffsetDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		commit := func(group string) {
			req := &kmsg.OffsetCommitRequest{Version: 8, Group: group, Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
				{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}},
				{Topic: "t2", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}},
			}}
			c.OffsetCommit(ctx, req)
		}
		commit("g")
		member, gen := joinStable(t, c, "g") // subscribes to t1
		_ = gen
		del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
			req := kmsg.NewPtrOffsetDeleteRequest()
			req.Group = group
			for _, topic := range topics {
				req.Topics = append(req.Topics, kmsg.OffsetDeleteRequestTopic{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}})
			}
			return c.OffsetDelete(ctx, req)
		}
		resp := del("g", "t1", "t2", "t9")
		got := fmt.Sprint(resp.ErrorCode, resp.Topics[0].Partitions[0].ErrorCode, resp.Topics[1].Partitions[0].ErrorCode, resp.Topics[2].Partitions[0].ErrorCode)
		want := fmt.Sprint(0, kerr.GroupSubscribedToTopic.Code, 0, kerr.UnknownTopicOrPartition.Code)
		if got != want {
			t.Errorf("consumer group with members: codes %s, want %s", got, want)
		}
		if code := del("nope", "t1").ErrorCode; code != kerr.GroupIDNotFound.Code {
			t.Errorf("unknown group: %v", kerr.ErrorForCode(code))
		}

		// A non-consumer protocol group with members refuses.
		req := joinReq(3, "connect", "")
		req.ProtocolType = "connect"
		if r := c.JoinGroup(ctx, req); r.ErrorCode != 0 {
			t.Fatalf("join: %v", kerr.ErrorForCode(r.ErrorCode))
		}
		if code := del("connect", "t1").ErrorCode; code != kerr.NonEmptyGroup.Code {
			t.Errorf("connect group: %v, want NON_EMPTY_GROUP", kerr.ErrorForCode(code))
		}

		// t2's offset is gone, t1's is not.
		freq := kmsg.NewPtrOffsetFetchRequest()
		freq.Version, freq.Group = 7, "g"
		fresp := c.OffsetFetch(ctx, freq)
		if len(fresp.Topics) != 1 || fresp.Topics[0].Topic != "t1" {
			t.Errorf("offsets left: %+v", fresp.Topics)
		}
		_ = member
	})
}

func TestDescribeAuthorizedOperations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		joinStable(t, c, "g")
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Version, req.Groups, req.IncludeAuthorizedOperations = 5, []string{"g"}, true
		if ops := c.DescribeGroups(ctx, req).Groups[0].AuthorizedOperations; ops != groupAuthorizedOps {
			t.Errorf("authorized operations %b", ops)
		}
		req.IncludeAuthorizedOperations = false
		if ops := c.DescribeGroups(ctx, req).Groups[0].AuthorizedOperations; ops != -1<<31 {
			t.Errorf("authorized operations not requested: %d", ops)
		}
	})
}

// TestParkedCallsReturn: a parked JoinGroup or SyncGroup returns when its
// context is done, or when the coordinator closes, and calls after Close
// answer COORDINATOR_NOT_AVAILABLE.
func TestParkedCallsReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		member, _ := joinStable(t, c, "g")

		// A second member's join parks until the first rejoins.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan *kmsg.JoinGroupResponse, 1)
		go func() { done <- c.JoinGroup(ctx, joinReq(3, "g", "")) }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("join returned before the rebalance completed")
		default:
		}
		cancel()
		synctest.Wait()
		if r := <-done; r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
			t.Errorf("cancelled join: %v", kerr.ErrorForCode(r.ErrorCode))
		}

		// The parked member is still in the group (as in Kafka); the
		// leader rejoins and a new generation starts.
		go func() { done <- c.JoinGroup(context.Background(), joinReq(9, "g", member)) }()
		synctest.Wait()
		r := <-done
		if r.ErrorCode != 0 || len(r.Members) != 2 {
			t.Fatalf("leader rejoin: %v members %d", kerr.ErrorForCode(r.ErrorCode), len(r.Members))
		}

		// The follower's SyncGroup parks until the leader's arrives, or
		// the coordinator closes.
		syncDone := make(chan *kmsg.SyncGroupResponse, 1)
		go func() {
			req := kmsg.NewPtrSyncGroupRequest()
			req.Group, req.Generation = "g", r.Generation
			for _, m := range r.Members {
				if m.MemberID != member {
					req.MemberID = m.MemberID
				}
			}
			syncDone <- c.SyncGroup(context.Background(), req)
		}()
		synctest.Wait()
		select {
		case <-syncDone:
			t.Fatal("follower sync returned before the leader's")
		default:
		}
		c.Close()
		synctest.Wait()
		if s := <-syncDone; s.ErrorCode != kerr.CoordinatorNotAvailable.Code {
			t.Errorf("sync after close: %v", kerr.ErrorForCode(s.ErrorCode))
		}
		if code := c.Heartbeat(context.Background(), &kmsg.HeartbeatRequest{Group: "g", MemberID: member}).ErrorCode; code != kerr.CoordinatorNotAvailable.Code {
			t.Errorf("heartbeat after close: %v", kerr.ErrorForCode(code))
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		c.TopicsChanged() // no-op
	})
}

// TestReplaySkipsCorruptRecords: undecodable records are skipped, unknown
// record types are kept (and survive snapshots), and a store error fails
// New.
func TestReplaySkipsCorruptRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		p := partitionFor("g", 4)
		e := offsetEntry{offset: 7, leaderEpoch: -1, commitTime: time.Now().UnixMilli(), expireTime: -1}
		unknown := Record{Key: []byte{0x7f, 0x00, 'x'}, Value: []byte("future")}
		store.Append(p, []Record{
			{Key: []byte{0}, Value: make([]byte, 200)},                                        // too short
			{Key: offsetKey("g", "t1", 0), Value: []byte{0, 3}},                               // truncated value
			{Key: []byte{0, 2, 0, 9, 'x'}, Value: []byte{1}},                                  // truncated group key
			{Key: consumerGroupKey(keyConsumerGroupLegacy, "g"), Value: []byte{0, 0, 1}},      // truncated old consumer group
			{Key: consumerGroupKey(keyConsumerGroupMetadata, "g"), Value: []byte{0, 0, 0, 1}}, // truncated consumer group
			offsetRecord("g", "t1", 1, &e),
			unknown,
		})
		cfg := Config{Store: store, Topics: func() map[string]TopicInfo { return testTopics }, OffsetsTopicPartitions: 4, Logger: slog.New(slog.DiscardHandler), compactSlack: 1}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = 7, "g"
		resp := c.OffsetFetch(context.Background(), req)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Offset != 7 {
			t.Fatalf("offsets after replay: %+v", resp.Topics)
		}
		// The log (7 records, about 300 bytes) is above 2*live(2
		// records, about 50 bytes)+1: New kicked a snapshot, which keeps
		// the unknown record.
		synctest.Wait()
		store.mu.Lock()
		recs := store.parts[p].recs
		store.mu.Unlock()
		found := false
		for _, r := range recs {
			if string(r.r.Key) == string(unknown.Key) {
				found = true
			}
		}
		if len(recs) != 2 || !found {
			t.Errorf("after snapshot: %d records, unknown kept %v", len(recs), found)
		}
	})

	t.Run("store error", func(t *testing.T) {
		_, err := New(Config{Store: failingReplay{newMemStore()}, Topics: func() map[string]TopicInfo { return nil }})
		if !errors.Is(err, errInjected) {
			t.Fatalf("New: %v, want the replay error", err)
		}
	})
}

type failingReplay struct{ *memStore }

func (failingReplay) Replay(int32, func(int64, Record) error) error { return errInjected }

// TestClassicErrors covers the error answers of SyncGroup, Heartbeat and
// LeaveGroup against a Stable group "g" with one static member, a
// PreparingRebalance group "p" and a KIP-848 group "k".
func TestClassicErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		jr := joinReq(9, "g", "")
		jr.InstanceID = strPtr("i1")
		j := c.JoinGroup(ctx, jr)
		if j.ErrorCode != 0 {
			t.Fatalf("static join: %v", kerr.ErrorForCode(j.ErrorCode))
		}
		member, gen := j.MemberID, j.Generation
		c.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: "g", MemberID: member, Generation: gen, InstanceID: strPtr("i1")})

		pm, pgen := joinStable(t, c, "p")
		go c.JoinGroup(ctx, joinReq(3, "p", "")) // a second member starts a rebalance
		synctest.Wait()

		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID, hb.RebalanceTimeoutMillis = 1, "k", "km", 1000
		hb.SubscribedTopicNames, hb.Topics = []string{"t1"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if r := c.ConsumerGroupHeartbeat(ctx, hb); r.ErrorCode != 0 {
			t.Fatalf("kip-848 join: %v", kerr.ErrorForCode(r.ErrorCode))
		}

		for _, tt := range []struct {
			name     string
			group    string
			member   string
			gen      int32
			instance *string
			want     *kerr.Error
		}{
			{"ok", "g", member, gen, strPtr("i1"), nil},
			{"unknown group", "nope", member, gen, nil, kerr.UnknownMemberID},
			{"unknown member", "g", "who", gen, nil, kerr.UnknownMemberID},
			{"illegal generation", "g", member, gen + 1, nil, kerr.IllegalGeneration},
			{"fenced instance", "g", "other", gen, strPtr("i1"), kerr.FencedInstanceID},
			{"unknown instance", "g", member, gen, strPtr("i2"), kerr.UnknownMemberID},
			{"kip-848 group", "k", "km", 1, nil, kerr.UnknownMemberID},
			{"rebalance in progress", "p", pm, pgen, nil, kerr.RebalanceInProgress},
		} {
			want := int16(0)
			if tt.want != nil {
				want = tt.want.Code
			}
			s := c.SyncGroup(ctx, &kmsg.SyncGroupRequest{Version: 5, Group: tt.group, MemberID: tt.member, Generation: tt.gen, InstanceID: tt.instance})
			if s.ErrorCode != want {
				t.Errorf("%s: SyncGroup %v, want %v", tt.name, kerr.ErrorForCode(s.ErrorCode), tt.want)
			}
			h := c.Heartbeat(ctx, &kmsg.HeartbeatRequest{Version: 4, Group: tt.group, MemberID: tt.member, Generation: tt.gen, InstanceID: tt.instance})
			if h.ErrorCode != want {
				t.Errorf("%s: Heartbeat %v, want %v", tt.name, kerr.ErrorForCode(h.ErrorCode), tt.want)
			}
			if tt.want == kerr.IllegalGeneration || tt.want == kerr.RebalanceInProgress || tt.want == nil {
				continue // LeaveGroup has no generation
			}
			l := c.LeaveGroup(ctx, &kmsg.LeaveGroupRequest{Version: 5, Group: tt.group, Members: []kmsg.LeaveGroupRequestMember{{MemberID: tt.member, InstanceID: tt.instance}}})
			got := l.ErrorCode
			if got == 0 && len(l.Members) == 1 {
				got = l.Members[0].ErrorCode
			}
			if got != want {
				t.Errorf("%s: LeaveGroup %v, want %v", tt.name, kerr.ErrorForCode(got), tt.want)
			}
		}
	})
}

// TestOtherGroup: a name Config.OtherGroup claims (a share group's) is
// not made a consumer group by JoinGroup, ConsumerGroupHeartbeat,
// OffsetCommit or TxnOffsetCommit; an existing consumer group is unaffected, and Exists
// tells them apart.
func TestOtherGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, func(cfg *Config) {
			cfg.OtherGroup = func(g string) (bool, error) { return g == "shared" || g == "both", nil }
		})
		ctx := context.Background()
		if resp := c.JoinGroup(ctx, joinReq(9, "shared", "")); resp.ErrorCode != kerr.GroupIDNotFound.Code {
			t.Errorf("JoinGroup: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID = 1, "shared", "m1"
		hb.RebalanceTimeoutMillis = 1000
		hb.SubscribedTopicNames = []string{"t1"}
		hb.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if resp := c.ConsumerGroupHeartbeat(ctx, hb); resp.ErrorCode != kerr.GroupIDNotFound.Code {
			t.Errorf("ConsumerGroupHeartbeat: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		oc := kmsg.NewPtrOffsetCommitRequest()
		oc.Version, oc.Group, oc.Generation = 9, "shared", -1
		oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
		if resp := c.OffsetCommit(ctx, oc); resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupIDNotFound.Code {
			t.Errorf("OffsetCommit: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
		}
		tc := txnCommitReq(3, "shared", 7, 0, map[int32]int64{0: 1})
		tc.Generation = -1
		allCodes(t, txnCommit(t, c, tc), kerr.GroupIDNotFound.Code)
		if c.Exists("shared") {
			t.Error("a refused group exists")
		}
		joinStable(t, c, "mine")
		if !c.Exists("mine") || c.Exists("nope") {
			t.Error("Exists")
		}
	})
}

// TestRegexMatchesInternalTopics: a KIP-848 regex that names an internal
// topic resolves it, as Kafka's does.
func TestRegexMatchesInternalTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		topics := map[string]TopicInfo{
			"t1":                 {ID: topicID("t1"), Partitions: 1},
			"__consumer_offsets": {ID: topicID("__consumer_offsets"), Partitions: 2},
		}
		c, _ := newTestCoordinator(t, func(cfg *Config) { cfg.Topics = func() map[string]TopicInfo { return topics } })
		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Version, hb.Group, hb.MemberID = 1, "g", "m1"
		hb.RebalanceTimeoutMillis = 1000
		hb.SubscribedTopicRegex = strPtr(`__consumer_offsets|t1`)
		hb.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		resp := c.ConsumerGroupHeartbeat(context.Background(), hb)
		if resp.ErrorCode != 0 {
			t.Fatalf("join: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		for i := 0; i < 5 && (resp.Assignment == nil || len(resp.Assignment.Topics) < 2); i++ {
			time.Sleep(time.Second)
			hb.MemberEpoch = resp.MemberEpoch
			resp = c.ConsumerGroupHeartbeat(context.Background(), hb)
		}
		n := 0
		for _, at := range resp.Assignment.Topics {
			n += len(at.Partitions)
		}
		if n != 3 {
			t.Fatalf("assigned %d partitions (%+v), want both partitions of __consumer_offsets and t1's", n, resp.Assignment)
		}
	})
}
