package group

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzConsumerOffsetsRecords feeds one record of any key and value to the
// decoders replay uses (offset commits of key versions 0 and 1, classic
// groups of key version 2, Kafka's KIP-848 records of key versions 3 to 8,
// the older key-1000 group) and to a coordinator replaying it after a
// store holding a classic group, a KIP-848 group and offsets. Invariants:
// nothing panics and New never fails on record content; a decoded value
// encodes to bytes that decode to the same value; the replayed groups
// keep their indexes consistent (each partition owner holds it, each
// static member maps to a member with that instance ID); and the state
// survives a snapshot and a restart unchanged.
func FuzzConsumerOffsetsRecords(f *testing.F) {
	base := fuzzBaseRecords(f)
	for _, r := range base {
		f.Add(r.Key, r.Value, false)
		f.Add(r.Key, r.Value, true)
	}
	f.Add(consumerGroupKey(keyConsumerGroupLegacy, "g"), encodeLegacyConsumerGroup(legacyTestGroup()), false)
	f.Add(consumerMemberKey(keyConsumerGroupCurrent, "k", "new"), encodeCurrentValue(testMember()), false)
	pending := txnOffsetRecord("g", 7, 1, "t1", 2, &offsetEntry{offset: 9, leaderEpoch: -1, metadata: "m", commitTime: 1})
	f.Add(pending.Key, pending.Value, false)
	f.Add(pending.Key, pending.Value, true)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		r := Record{Key: key, Value: value}
		if tombstone {
			r.Value = nil
		}
		checkDecoders(t, r)

		store := newMemStore()
		store.Append(0, base)
		store.Append(0, []Record{r})
		cfg := Config{Store: store, Topics: func() map[string]TopicInfo { return testTopics }, OffsetsTopicPartitions: 1, Logger: slog.New(slog.DiscardHandler)}
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		checkIndexes(t, c)
		before := stateText(c)
		part := c.parts[0]
		part.liveMu.Lock()
		part.logBytes += 1 << 40 // force a snapshot
		part.liveMu.Unlock()
		c.snapshotPartition(part)
		c.Close()
		c, err = New(cfg)
		if err != nil {
			t.Fatalf("New after a snapshot: %v", err)
		}
		defer c.Close()
		if after := stateText(c); after != before {
			t.Fatalf("state changed across a snapshot and restart:\n%s\nwas\n%s", after, before)
		}
	})
}

var fuzzBase struct {
	once sync.Once
	recs []Record
}

// fuzzBaseRecords returns the records of a store holding a classic group
// "c" with one member, a KIP-848 group "k" of two members, and offsets.
func fuzzBaseRecords(tb testing.TB) []Record {
	fuzzBase.once.Do(func() {
		store := newMemStore()
		c, err := New(Config{Store: store, Topics: func() map[string]TopicInfo { return testTopics }, OffsetsTopicPartitions: 1,
			Logger: slog.New(slog.DiscardHandler), InitialRebalanceDelay: -1})
		if err != nil {
			panic(err)
		}
		ctx := context.Background()
		ms := []*benchMember{{id: "k1"}, {id: "k2"}}
		for range 3 {
			for _, m := range ms {
				req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
				req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, "k", m.id, m.epoch
				req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
				if m.epoch == 0 {
					req.RebalanceTimeoutMillis, req.SubscribedTopicNames, req.InstanceID = 30000, []string{"t1", "t2"}, strPtr("i-"+m.id)
				}
				for _, id := range m.owned.sortedIDs() {
					req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id, Partitions: m.owned[id]})
				}
				resp := c.ConsumerGroupHeartbeat(ctx, req)
				m.epoch = resp.MemberEpoch
				if resp.Assignment != nil {
					m.owned = assignment{}
					for _, at := range resp.Assignment.Topics {
						for _, p := range at.Partitions {
							m.owned.add(at.TopicID, p)
						}
					}
				}
			}
		}
		jr := joinReq(9, "c", "")
		jr.Version = 3 // no MEMBER_ID_REQUIRED round
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp := c.JoinGroup(ctx, jr)
			sreq := kmsg.NewPtrSyncGroupRequest()
			sreq.Group, sreq.MemberID, sreq.Generation = "c", resp.MemberID, resp.Generation
			sreq.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: resp.MemberID, MemberAssignment: []byte{0, 1}}}
			c.SyncGroup(ctx, sreq)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		creq := kmsg.NewPtrOffsetCommitRequest()
		creq.Version, creq.Group, creq.Generation = 8, "simple", -1
		creq.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5, LeaderEpoch: -1}}}}
		c.OffsetCommit(ctx, creq)
		c.Close()
		store.mu.Lock()
		for _, r := range store.parts[0].recs {
			fuzzBase.recs = append(fuzzBase.recs, r.r)
		}
		store.mu.Unlock()
	})
	if len(fuzzBase.recs) == 0 {
		tb.Fatal("no base records")
	}
	return fuzzBase.recs
}

// checkDecoders decodes r with the decoder of its key version and checks
// that what decodes re-encodes to bytes that decode to the same value.
func checkDecoders(t *testing.T, r Record) {
	if len(r.Key) < 2 {
		return
	}
	typ := int16(r.Key[0])<<8 | int16(r.Key[1])
	switch typ {
	case keyOffsetCommitV0, keyOffsetCommit:
		var k kmsg.OffsetCommitKey
		if k.ReadFrom(r.Key) == nil && r.Value != nil {
			var v kmsg.OffsetCommitValue
			_ = v.ReadFrom(r.Value)
		}
		return
	case keyGroupMetadata:
		var v kmsg.GroupMetadataValue
		if r.Value != nil {
			_ = v.ReadFrom(r.Value)
		}
		return
	case keyConsumerGroupLegacy:
		if r.Value != nil {
			if cg, err := decodeLegacyConsumerGroup(r.Value); err == nil {
				again, err := decodeLegacyConsumerGroup(encodeLegacyConsumerGroup(cg))
				if err != nil || !bytes.Equal(encodeLegacyConsumerGroup(again), encodeLegacyConsumerGroup(cg)) {
					t.Fatalf("older group record does not round trip: %v", err)
				}
			}
		}
		return
	case keyConsumerGroupMetadata, keyConsumerGroupPartitions, keyConsumerGroupMember,
		keyConsumerGroupTargetEpoch, keyConsumerGroupTarget, keyConsumerGroupCurrent:
	default:
		return
	}
	group, member, err := parseConsumerKey(typ, r.Key)
	if err != nil {
		return
	}
	var again []byte
	if member == "" && typ != keyConsumerGroupMember && typ != keyConsumerGroupTarget && typ != keyConsumerGroupCurrent {
		again = consumerGroupKey(typ, group)
	} else {
		again = consumerMemberKey(typ, group, member)
	}
	if !bytes.Equal(again, r.Key) {
		t.Fatalf("key %x re-encodes as %x", r.Key, again)
	}
	if r.Value == nil {
		return
	}
	switch typ {
	case keyConsumerGroupMetadata, keyConsumerGroupTargetEpoch:
		if e, err := decodeGroupEpochValue(r.Value); err == nil {
			if e2, err := decodeGroupEpochValue(encodeGroupEpochValue(e)); err != nil || e2 != e {
				t.Fatalf("epoch %d round trips as %d, %v", e, e2, err)
			}
		}
	case keyConsumerGroupPartitions:
		if ts, err := decodePartitionsValue(r.Value); err == nil {
			if ts2, err := decodePartitionsValue(encodePartitionsValue(ts)); err != nil || !slices.Equal(ts, ts2) {
				t.Fatalf("topics %v round trip as %v, %v", ts, ts2, err)
			}
		}
	case keyConsumerGroupMember:
		if m, err := decodeMemberValue(r.Value); err == nil {
			if m2, err := decodeMemberValue(encodeMemberValue(&m)); err != nil || !m2.equal(&m) {
				t.Fatalf("member metadata %+v round trips as %+v, %v", m, m2, err)
			}
		}
	case keyConsumerGroupTarget:
		if a, err := decodeTargetValue(r.Value); err == nil {
			if a2, err := decodeTargetValue(encodeTargetValue(a)); err != nil || !a2.equal(a) {
				t.Fatalf("target %v round trips as %v, %v", a, a2, err)
			}
		}
	case keyConsumerGroupCurrent:
		if ca, err := decodeCurrentValue(r.Value); err == nil {
			m := &cmember{epoch: ca.epoch, prevEpoch: ca.prevEpoch, state: ca.state, assigned: ca.assigned, pendingRevoke: ca.pendingRevoke, assignedAt: ca.assignedAt}
			ca2, err := decodeCurrentValue(encodeCurrentValue(m))
			if err != nil || ca2.epoch != ca.epoch || ca2.prevEpoch != ca.prevEpoch || ca2.state != ca.state ||
				!ca2.assigned.equal(ca.assigned) || !ca2.pendingRevoke.equal(ca.pendingRevoke) || !maps.Equal(ca2.assignedAt, ca.assignedAt) {
				t.Fatalf("current assignment %+v round trips as %+v, %v", ca, ca2, err)
			}
		}
	}
}

// checkIndexes checks the derived indexes of every KIP-848 group.
func checkIndexes(t *testing.T, c *Coordinator) {
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if g.kind == kindConsumer {
			cg := g.cg
			for k, id := range cg.owners {
				m := cg.members[id]
				if m == nil || (!m.assigned.has(k.id, k.p) && !m.pendingRevoke.has(k.id, k.p)) {
					t.Errorf("group %s: partition %x/%d owned by %s, which does not hold it", g.name, k.id, k.p, id)
				}
			}
			for inst, id := range cg.static {
				if m := cg.members[id]; m == nil || m.instanceID == nil || *m.instanceID != inst {
					t.Errorf("group %s: instance %s maps to %s", g.name, inst, id)
				}
			}
		}
		g.mu.Unlock()
	}
}

// stateText prints every group as the coordinator answers for it.
func stateText(c *Coordinator) string {
	var b strings.Builder
	ctx := context.Background()
	list := c.ListGroups(ctx, kmsg.NewPtrListGroupsRequest())
	var names []string
	for _, g := range list.Groups {
		names = append(names, g.Group)
	}
	slices.Sort(names)
	for _, name := range names {
		dg := c.DescribeGroups(ctx, &kmsg.DescribeGroupsRequest{Version: 5, Groups: []string{name}}).Groups[0]
		fmt.Fprintf(&b, "%s err=%d state=%s type=%s protocol=%s\n", name, dg.ErrorCode, dg.State, dg.ProtocolType, dg.Protocol)
		for _, m := range dg.Members {
			fmt.Fprintf(&b, "  %s instance=%s client=%s assignment=%x\n", m.MemberID, derefStr(m.InstanceID), m.ClientID, m.MemberAssignment)
		}
		b.WriteString(describeText(c, name))
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version, req.Group = 7, name
		for _, t := range c.OffsetFetch(ctx, req).Topics {
			for _, p := range t.Partitions {
				fmt.Fprintf(&b, "  offset %s/%d=%d\n", t.Topic, p.Partition, p.Offset)
			}
		}
		req.RequireStable = true
		for _, t := range c.OffsetFetch(ctx, req).Topics {
			for _, p := range t.Partitions {
				fmt.Fprintf(&b, "  stable %s/%d=%d\n", t.Topic, p.Partition, p.ErrorCode)
			}
		}
	}
	return b.String()
}
