package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestShareACLs: a SASL user is refused each share-group step until an
// ACL allows it, as Kafka refuses it: a share consumer without READ on
// its group gets GROUP_AUTHORIZATION_FAILED, without DESCRIBE on the
// topic TOPIC_AUTHORIZATION_FAILED; with DESCRIBE but not READ on the
// topic it joins but ShareFetch and ShareAcknowledge answer its
// partitions TOPIC_AUTHORIZATION_FAILED and acquire nothing; with READ it
// consumes every record. Listings, offsets and group configs follow the
// group's ACLs; FindCoordinator of share-partitions is for brokers.
func TestShareACLs(t *testing.T) {
	b := securedBroker(t, newTestCA(t, "shareacl"), shareProps())
	ctx := testCtx(t)
	admin := b.as("admin")
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "jobs"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := admin.ProduceSync(ctx, &kgo.Record{Topic: "jobs", Partition: int32(i % 2), Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	topicID := b.srv.meta.Topic("jobs").ID()
	groupConfig := func(cl *kgo.Client) int16 {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "workers"
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "share.auto.offset.reset", kmsg.StringPtr("earliest")
		res.Configs = append(res.Configs, c)
		req.Resources = append(req.Resources, res)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	describeConfig := func(cl *kgo.Client) int16 {
		req := kmsg.NewPtrDescribeConfigsRequest()
		res := kmsg.NewDescribeConfigsRequestResource()
		res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "workers"
		req.Resources = append(req.Resources, res)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode
	}
	if code := groupConfig(admin); code != 0 {
		t.Fatalf("admin sets the group's configs: %v", kerr.ErrorForCode(code))
	}
	allow := func(b *kadm.ACLBuilder) {
		t.Helper()
		if res, err := adm.CreateACLs(ctx, b); err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	// shareConsume runs a share consumer as bob until it has n records or
	// fails; it accepts what it gets.
	shareConsume := func(group string, want int) (int, error) {
		cl := b.as("bob", kgo.ShareGroup(group), kgo.ConsumeTopics("jobs"), kgo.FetchMaxWait(200*time.Millisecond))
		defer cl.Close()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		got := 0
		for got < want {
			fs := cl.PollFetches(cctx)
			if cctx.Err() != nil {
				return got, cctx.Err()
			}
			for _, fe := range fs.Errors() {
				return got, fe.Err
			}
			fs.EachRecord(func(r *kgo.Record) { r.Ack(kgo.AckAccept); got++ })
		}
		return got, cl.FlushAcks(cctx)
	}
	bob := b.as("bob")
	shareCoordinator := func(cl *kgo.Client) int16 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType, req.CoordinatorKeys = 2, []string{fmt.Sprintf("workers:%s:0", kgoUUID(topicID))}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Coordinators[0].ErrorCode
	}

	// No ACLs: the group is refused.
	hb := kmsg.NewPtrShareGroupHeartbeatRequest()
	hb.GroupID, hb.MemberID, hb.SubscribedTopicNames = "workers", "bob-raw-member-0000000", []string{"jobs"}
	heartbeat := func() int16 {
		resp, err := hb.RequestWith(ctx, bob)
		if errors.Is(err, kerr.GroupAuthorizationFailed) {
			return kerr.GroupAuthorizationFailed.Code // finding the group's coordinator
		}
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	if code := heartbeat(); code != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob's heartbeat without ACLs: %v", kerr.ErrorForCode(code))
	}
	if code := describeConfig(bob); code != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob describes the group's configs: %v", kerr.ErrorForCode(code))
	}
	if code := groupConfig(bob); code != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob alters the group's configs: %v", kerr.ErrorForCode(code))
	}
	if code := shareCoordinator(bob); code != kerr.ClusterAuthorizationFailed.Code {
		t.Errorf("bob finds a share coordinator: %v", kerr.ErrorForCode(code))
	}
	if code := shareCoordinator(admin); code != 0 {
		t.Errorf("admin (a broker's principal) finds a share coordinator: %v", kerr.ErrorForCode(code))
	}

	// READ on the group, nothing on the topic: the subscription is
	// refused.
	allow(kadm.NewACLs().Allow("User:bob").Groups("workers").Operations(kadm.OpRead))
	if code := heartbeat(); code != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("bob's heartbeat with READ on the group only: %v", kerr.ErrorForCode(code))
	}

	// DESCRIBE on the topic: bob joins, but may not read it; a share
	// consumer in another group is refused that group.
	allow(kadm.NewACLs().Allow("User:bob").Topics("jobs").Operations(kadm.OpDescribe))
	if code := heartbeat(); code != 0 {
		t.Fatalf("bob's heartbeat with DESCRIBE on the topic: %v", kerr.ErrorForCode(code))
	}
	if _, err := shareConsume("others", 1); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("bob consumes in a group without ACLs: %v", err)
	}
	fetch := kmsg.NewPtrShareFetchRequest()
	fetch.GroupID, fetch.MemberID = kmsg.StringPtr("workers"), kmsg.StringPtr(hb.MemberID)
	fetch.MaxWaitMillis, fetch.MaxBytes, fetch.MaxRecords = 100, 1<<20, 100
	ft := kmsg.NewShareFetchRequestTopic()
	ft.TopicID = topicID
	for p := range int32(2) {
		fp := kmsg.NewShareFetchRequestTopicPartition()
		fp.Partition = p
		ft.Partitions = append(ft.Partitions, fp)
	}
	fetch.Topics = append(fetch.Topics, ft)
	fResp, err := fetch.RequestWith(ctx, bob)
	if err != nil || fResp.ErrorCode != 0 {
		t.Fatalf("bob's ShareFetch: %v %v", err, kerr.ErrorForCode(fResp.ErrorCode))
	}
	parts := 0
	for _, rt := range fResp.Topics {
		for _, rp := range rt.Partitions {
			parts++
			if rp.ErrorCode != kerr.TopicAuthorizationFailed.Code || len(rp.AcquiredRecords) > 0 {
				t.Errorf("ShareFetch partition %d without READ: %v, %d ranges acquired", rp.Partition, kerr.ErrorForCode(rp.ErrorCode), len(rp.AcquiredRecords))
			}
		}
	}
	if parts != 2 {
		t.Errorf("ShareFetch answered %d partitions, want 2", parts)
	}
	ack := kmsg.NewPtrShareAcknowledgeRequest()
	ack.GroupID, ack.MemberID, ack.ShareSessionEpoch = fetch.GroupID, fetch.MemberID, 1
	at := kmsg.NewShareAcknowledgeRequestTopic()
	at.TopicID = topicID
	ap := kmsg.NewShareAcknowledgeRequestTopicPartition()
	ab := kmsg.NewShareAcknowledgeRequestTopicPartitionAcknowledgementBatch()
	ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes = 0, 0, []int8{1}
	ap.AcknowledgementBatches = append(ap.AcknowledgementBatches, ab)
	at.Partitions = append(at.Partitions, ap)
	ack.Topics = append(ack.Topics, at)
	aResp, err := ack.RequestWith(ctx, bob)
	if err != nil || aResp.ErrorCode != 0 || len(aResp.Topics) != 1 || len(aResp.Topics[0].Partitions) != 1 {
		t.Fatalf("bob's ShareAcknowledge: %v %+v", err, aResp)
	}
	if code := aResp.Topics[0].Partitions[0].ErrorCode; code != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("ShareAcknowledge without READ on the topic: %v", kerr.ErrorForCode(code))
	}
	hb.MemberEpoch = -1
	if _, err := hb.RequestWith(ctx, bob); err != nil {
		t.Fatal(err)
	}

	// Listings and offsets: alice sees nothing of the group; bob (READ
	// implies DESCRIBE) does.
	alice := b.as("alice")
	listed := func(cl *kgo.Client) []string {
		groups, err := kadm.NewClient(cl).ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return groups.Groups()
	}
	if got := listed(alice); slices.Contains(got, "workers") {
		t.Errorf("alice lists %v", got)
	}
	if got := listed(bob); !slices.Contains(got, "workers") {
		t.Errorf("bob lists %v", got)
	}
	describeOffsets := func(cl *kgo.Client) *kmsg.DescribeShareGroupOffsetsResponseGroup {
		req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
		g := kmsg.NewDescribeShareGroupOffsetsRequestGroup()
		g.GroupID = "workers"
		req.Groups = append(req.Groups, g)
		resp, err := req.RequestWith(ctx, cl)
		if errors.Is(err, kerr.GroupAuthorizationFailed) { // finding the coordinator
			return &kmsg.DescribeShareGroupOffsetsResponseGroup{GroupID: "workers", ErrorCode: kerr.GroupAuthorizationFailed.Code}
		}
		if err != nil {
			t.Fatal(err)
		}
		return &resp.Groups[0]
	}
	if g := describeOffsets(alice); g.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("alice describes the group's offsets: %v", kerr.ErrorForCode(g.ErrorCode))
	}
	if g := describeOffsets(bob); g.ErrorCode != 0 {
		t.Errorf("bob describes the group's offsets: %v", kerr.ErrorForCode(g.ErrorCode))
	}
	desc := kmsg.NewPtrShareGroupDescribeRequest()
	desc.GroupIDs = []string{"workers"}
	if resp, err := desc.RequestWith(ctx, alice); !errors.Is(err, kerr.GroupAuthorizationFailed) && (err != nil || resp.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code) {
		t.Errorf("alice describes the share group: %v %+v", err, resp)
	}
	if code := describeConfig(bob); code != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob (READ only) describes the group's configs: %v", kerr.ErrorForCode(code))
	}

	// READ on the topic: bob consumes every record.
	allow(kadm.NewACLs().Allow("User:bob").Topics("jobs").Operations(kadm.OpRead))
	if got, err := shareConsume("workers", n); err != nil || got != n {
		t.Fatalf("bob consumes with READ on the group and topic: %d records, %v", got, err)
	}
	waitUntil(t, 10*time.Second, "no lag left", func() bool {
		g := describeOffsets(bob)
		for _, tp := range g.Topics {
			for _, p := range tp.Partitions {
				if p.Lag != 0 {
					return false
				}
			}
		}
		return len(g.Topics) == 1
	})

	// Offsets: deleting needs DELETE on the group.
	del := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
	del.GroupID = "workers"
	dt := kmsg.NewDeleteShareGroupOffsetsRequestTopic()
	dt.Topic = "jobs"
	del.Topics = append(del.Topics, dt)
	if resp, err := del.RequestWith(ctx, bob); err != nil || resp.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Errorf("bob deletes the group's offsets without DELETE: %v %+v", err, resp)
	}
	allow(kadm.NewACLs().Allow("User:bob").Groups("workers").Operations(kadm.OpDelete))
	waitUntil(t, 10*time.Second, "bob deletes the group's offsets", func() bool {
		resp, err := del.RequestWith(ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode == kerr.NonEmptyGroup.Code { // the consumer's leave is on its way
			return false
		}
		if resp.ErrorCode != 0 || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
			t.Fatalf("bob deletes the group's offsets with DELETE: %+v", resp)
		}
		return true
	})
	// Deleting the share group: alice may not, bob (DELETE) may.
	if res, err := kadm.NewClient(alice).DeleteGroup(ctx, "workers"); err == nil && res.Err == nil {
		t.Error("alice deleted the share group")
	}
	if res, err := kadm.NewClient(bob).DeleteGroup(ctx, "workers"); err != nil || res.Err != nil {
		t.Errorf("bob deletes the share group: %v %v", err, res.Err)
	}
	if got := listed(admin); slices.Contains(got, "workers") {
		t.Errorf("after its deletion the groups are %v", got)
	}
}

// kgoUUID is a topic id as Kafka prints it (URL-safe base64, no padding).
func kgoUUID(id [16]byte) string {
	return base64.RawURLEncoding.EncodeToString(id[:])
}
