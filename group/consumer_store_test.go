package group

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// checkStored fails if a KIP-848 group's in-memory state differs from what
// it has marked stored without having the member in its dirty set: a
// change that forgot to touch the member it modified would not be
// written.
func checkStored(t testing.TB, c *Coordinator) {
	t.Helper()
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if g.kind == kindConsumer && !g.dead {
			if err := g.cg.checkStored(); err != nil {
				t.Errorf("group %s: %v", g.name, err)
			}
		}
		g.mu.Unlock()
	}
}

func (cg *consumerGroup) checkStored() error {
	for id, m := range cg.members {
		if _, dirty := cg.dirty[id]; dirty {
			continue
		}
		if !bytes.Equal(encodeMemberValue(&m.memberMeta), m.stored.meta) {
			return fmt.Errorf("member %s: metadata changed but not marked dirty", id)
		}
		if !bytes.Equal(encodeTargetValue(m.target), m.stored.target) {
			return fmt.Errorf("member %s: target changed but not marked dirty", id)
		}
		if !bytes.Equal(encodeCurrentValue(m), m.stored.current) {
			return fmt.Errorf("member %s: current assignment changed but not marked dirty", id)
		}
	}
	if len(cg.dirty) == 0 && cg.stored.written &&
		(cg.stored.epoch != cg.epoch || cg.stored.assignmentEpoch != cg.assignmentEpoch || !slices.Equal(cg.stored.subTopics, cg.subTopics)) {
		return fmt.Errorf("group epochs or topics changed but not stored")
	}
	return nil
}

func testMember() *cmember {
	return &cmember{
		id: "a",
		memberMeta: memberMeta{
			instanceID: strPtr("ia"), rackID: strPtr("r1"), clientID: "c", clientHost: "/h",
			rebalanceTimeout: 3000, serverAssignor: "range", topicNames: []string{"t1", "t2"}, regex: strPtr("t.*"),
		},
		epoch: 6, prevEpoch: 5, state: memberUnrevokedPartitions,
		assigned:      assignment{topicID("t1"): {0, 1}},
		pendingRevoke: assignment{topicID("t1"): {2}},
		target:        assignment{topicID("t1"): {0, 1}, topicID("t2"): {0}},
		assignedAt:    map[tpKey]int32{{topicID("t1"), 0}: 3, {topicID("t1"), 1}: 6, {topicID("t1"), 2}: 2},
	}
}

// TestConsumerRecordsKafkaLayout pins the bytes of the records against
// Kafka's schemas, worked out by hand: a key is the record type and
// int16-length strings; a value is version 0, then compact (uvarint
// length+1) strings and arrays and a tagged-field section per struct.
func TestConsumerRecordsKafkaLayout(t *testing.T) {
	id := [16]byte{15: 9}
	m := &cmember{
		id:         "m",
		memberMeta: memberMeta{clientID: "c", clientHost: "/h", rebalanceTimeout: 300, topicNames: []string{"t"}},
		epoch:      5, prevEpoch: 4, state: memberStable,
		assigned:      assignment{id: {1}},
		pendingRevoke: assignment{},
		assignedAt:    map[tpKey]int32{{id, 1}: 3},
	}
	uuid := "00000000000000000000000000000009"
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"member key", consumerMemberKey(keyConsumerGroupMember, "g", "m"), "0005" + "000167" + "00016d"},
		{"group key", consumerGroupKey(keyConsumerGroupMetadata, "g"), "0003" + "000167"},
		{"group metadata", encodeGroupEpochValue(7), "0000" + "00000007" + "00"},
		{"partition metadata", encodePartitionsValue([]subTopic{{name: "t", id: id, partitions: 3}}),
			"0000" + "02" + uuid + "0274" + "00000003" + "01" + "00" + "00"},
		{"member metadata", encodeMemberValue(&m.memberMeta),
			"0000" + "00" + "00" + "0263" + "032f68" + "02" + "0274" + "00" + "0000012c" + "00" + "00"},
		{"target epoch", encodeTargetEpochValue(7), "0000" + "00000007" + "00"},
		{"target member", encodeTargetValue(assignment{id: {1, 2}}),
			"0000" + "02" + uuid + "03" + "00000001" + "00000002" + "00" + "00"},
		// AssignmentEpochs is tag 0 of each topic: 1 field, tag 0, 5
		// bytes: compact length 2 and one int32.
		{"current assignment", encodeCurrentValue(m),
			"0000" + "00000005" + "00000004" + "00" +
				"02" + uuid + "02" + "00000001" + "01" + "00" + "05" + "02" + "00000003" +
				"01" + "00"},
	} {
		if got := hex.EncodeToString(tc.got); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestConsumerRecordsRoundTrip(t *testing.T) {
	m := testMember()
	meta, err := decodeMemberValue(encodeMemberValue(&m.memberMeta))
	if err != nil || !meta.equal(&m.memberMeta) {
		t.Errorf("member metadata: %+v, %v", meta, err)
	}
	target, err := decodeTargetValue(encodeTargetValue(m.target))
	if err != nil || !target.equal(m.target) {
		t.Errorf("target: %v, %v", target, err)
	}
	cur, err := decodeCurrentValue(encodeCurrentValue(m))
	if err != nil || cur.epoch != m.epoch || cur.prevEpoch != m.prevEpoch || cur.state != m.state ||
		!cur.assigned.equal(m.assigned) || !cur.pendingRevoke.equal(m.pendingRevoke) || !maps.Equal(cur.assignedAt, m.assignedAt) {
		t.Errorf("current assignment: %+v, %v", cur, err)
	}
	topics := []subTopic{{name: "a", id: topicID("a"), partitions: 3}, {name: "b", id: topicID("b"), partitions: 1}}
	gotTopics, err := decodePartitionsValue(encodePartitionsValue(topics))
	if err != nil || !slices.Equal(gotTopics, topics) {
		t.Errorf("partition metadata: %v, %v", gotTopics, err)
	}
	if e, err := decodeGroupEpochValue(encodeGroupEpochValue(-3)); err != nil || e != -3 {
		t.Errorf("group epoch: %d, %v", e, err)
	}

	// Every strict prefix is corrupt; a newer version is recognised.
	for name, v := range map[string][]byte{
		"member":     encodeMemberValue(&m.memberMeta),
		"target":     encodeTargetValue(m.target),
		"current":    encodeCurrentValue(m),
		"partitions": encodePartitionsValue(topics),
		"epoch":      encodeGroupEpochValue(1),
	} {
		for n := range len(v) {
			if err := decodeAnyConsumerValue(name, v[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: decoding %d of %d bytes: %v, want ErrCorrupt", name, n, len(v), err)
			}
		}
		newer := append([]byte{0, 1}, v[2:]...)
		if err := decodeAnyConsumerValue(name, newer); !errors.Is(err, errNewerVersion) {
			t.Errorf("%s: version 1: %v", name, err)
		}
	}

	// Unknown tagged fields are skipped.
	v := encodeGroupEpochValue(9)
	v = append(v[:len(v)-1], 1, 7, 2, 0xab, 0xcd) // one field, tag 7, 2 bytes
	if e, err := decodeGroupEpochValue(v); err != nil || e != 9 {
		t.Errorf("with an unknown tag: %d, %v", e, err)
	}
}

func decodeAnyConsumerValue(name string, v []byte) error {
	var err error
	switch name {
	case "member":
		_, err = decodeMemberValue(v)
	case "target":
		_, err = decodeTargetValue(v)
	case "current":
		_, err = decodeCurrentValue(v)
	case "partitions":
		_, err = decodePartitionsValue(v)
	case "epoch":
		_, err = decodeGroupEpochValue(v)
	}
	return err
}

// encodeLegacyConsumerGroup is the encoder of the single record older
// versions stored a KIP-848 group in (key version 1000), kept to build
// stores in that form.
func encodeLegacyConsumerGroup(cg *consumerGroup) []byte {
	appendAssignment := func(b []byte, a assignment) []byte {
		ids := a.sortedIDs()
		b = kbin.AppendArrayLen(b, len(ids))
		for _, id := range ids {
			b = kbin.AppendUuid(b, id)
			b = kbin.AppendArrayLen(b, len(a[id]))
			for _, p := range a[id] {
				b = kbin.AppendInt32(b, p)
			}
		}
		return b
	}
	var sub bytes.Buffer
	for _, t := range cg.subTopics {
		fmt.Fprintf(&sub, "%s/%x/%d;", t.name, t.id, t.partitions)
	}
	b := kbin.AppendInt16(nil, 0)
	b = kbin.AppendInt32(b, cg.epoch)
	b = kbin.AppendInt32(b, cg.assignmentEpoch)
	b = kbin.AppendString(b, sub.String())
	ms := cg.sortedMembers()
	b = kbin.AppendArrayLen(b, len(ms))
	for _, m := range ms {
		b = kbin.AppendString(b, m.id)
		b = kbin.AppendNullableString(b, m.instanceID)
		b = kbin.AppendNullableString(b, m.rackID)
		b = kbin.AppendString(b, m.clientID)
		b = kbin.AppendString(b, m.clientHost)
		b = kbin.AppendInt32(b, m.rebalanceTimeout)
		b = kbin.AppendString(b, m.serverAssignor)
		b = kbin.AppendArrayLen(b, len(m.topicNames))
		for _, t := range m.topicNames {
			b = kbin.AppendString(b, t)
		}
		b = kbin.AppendNullableString(b, m.regex)
		b = kbin.AppendInt32(b, m.epoch)
		b = kbin.AppendInt32(b, m.prevEpoch)
		b = kbin.AppendInt8(b, int8(m.state))
		b = appendAssignment(b, m.assigned)
		b = appendAssignment(b, m.pendingRevoke)
		b = appendAssignment(b, m.target)
	}
	return b
}

func legacyTestGroup() *consumerGroup {
	cg := newConsumerGroup()
	cg.epoch, cg.assignmentEpoch = 7, 6
	cg.subTopics = []subTopic{{name: "t1", id: topicID("t1"), partitions: 4}, {name: "t2", id: topicID("t2"), partitions: 2}}
	a := testMember()
	a.state = memberStable
	a.pendingRevoke = assignment{}
	a.target = assignment{topicID("t1"): {0, 1}}
	a.epoch, a.prevEpoch = 6, 5
	cg.members["a"] = a
	cg.members["b"] = &cmember{id: "b", memberMeta: memberMeta{clientID: "cb", topicNames: []string{"t1"}, rebalanceTimeout: 1000},
		epoch: 6, prevEpoch: 4, assigned: assignment{topicID("t1"): {2, 3}}, pendingRevoke: assignment{}, target: assignment{topicID("t1"): {2, 3}}}
	return cg
}

func TestLegacyConsumerGroupDecode(t *testing.T) {
	cg := legacyTestGroup()
	enc := encodeLegacyConsumerGroup(cg)
	dec, err := decodeLegacyConsumerGroup(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeLegacyConsumerGroup(dec); !bytes.Equal(got, enc) {
		t.Errorf("re-encoding differs")
	}
	cg.finishLoad()
	if !maps.Equal(dec.owners, cg.owners) || !maps.Equal(dec.static, cg.static) {
		t.Errorf("owners %v static %v, want %v %v", dec.owners, dec.static, cg.owners, cg.static)
	}
	if dec.members["a"].re == nil || !dec.legacy || len(dec.dirty) != 2 {
		t.Errorf("regex %v legacy %v dirty %d", dec.members["a"].re, dec.legacy, len(dec.dirty))
	}
	for n := range enc {
		if _, err := decodeLegacyConsumerGroup(enc[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decoding %d of %d bytes: %v, want ErrCorrupt", n, len(enc), err)
		}
	}
}

// TestLegacyConsumerGroupMigrates: a store holding a KIP-848 group in the
// older single-record form loads it, rewrites it at once as Kafka's
// records with the old record's tombstone, and the next snapshot carries
// only the new form.
func TestLegacyConsumerGroupMigrates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		p := partitionFor("g", 4)
		e := offsetEntry{offset: 7, leaderEpoch: -1, commitTime: 1, expireTime: -1}
		store.Append(p, []Record{
			offsetRecord("g", "t1", 0, &e),
			{Key: consumerGroupKey(keyConsumerGroupLegacy, "g"), Value: encodeLegacyConsumerGroup(legacyTestGroup())},
		})
		cfg := Config{Store: store, Topics: func() map[string]TopicInfo { return testTopics }, OffsetsTopicPartitions: 4, Logger: slog.New(slog.DiscardHandler)}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := describeText(c, "g")
		for _, s := range []string{"epoch=7 assignment-epoch=6", "a epoch=6 assigned=t1/0,1 target=t1/0,1", "b epoch=6 assigned=t1/2,3 target=t1/2,3"} {
			if !bytes.Contains([]byte(want), []byte(s)) {
				t.Errorf("loaded group lacks %q:\n%s", s, want)
			}
		}
		checkStored(t, c)
		c.Close()

		types := map[int16]int{}
		tombstoned := false
		store.mu.Lock()
		for _, r := range store.parts[p].recs[2:] {
			typ := int16(r.r.Key[0])<<8 | int16(r.r.Key[1])
			types[typ]++
			if typ == keyConsumerGroupLegacy && r.r.Value == nil {
				tombstoned = true
			}
		}
		store.mu.Unlock()
		wantTypes := map[int16]int{3: 1, 4: 1, 5: 2, 6: 1, 7: 2, 8: 2, 1000: 1}
		if !maps.Equal(types, wantTypes) || !tombstoned {
			t.Errorf("records written at load: %v (old record deleted: %v), want %v", types, tombstoned, wantTypes)
		}

		// A restart reads the new form, with the KIP-1251 epochs kept.
		c, err = New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := describeText(c, "g"); got != want {
			t.Errorf("after restart:\n%s\nwant\n%s", got, want)
		}
		// The snapshot holds no record of the older form.
		part := c.parts[p]
		part.liveMu.Lock()
		part.logBytes += 1 << 40 // force it
		part.liveMu.Unlock()
		c.snapshotPartition(part)
		store.mu.Lock()
		if store.snapshots != 1 {
			t.Errorf("%d snapshots", store.snapshots)
		}
		for _, r := range store.parts[p].recs {
			if int16(r.r.Key[0])<<8|int16(r.r.Key[1]) == keyConsumerGroupLegacy {
				t.Errorf("old record survives at offset %d", r.off)
			}
		}
		store.mu.Unlock()
		c.Close()
	})
}

// describeText prints a KIP-848 group the way the tests compare it.
func describeText(c *Coordinator, group string) string {
	resp := c.ConsumerGroupDescribe(context.Background(), &kmsg.ConsumerGroupDescribeRequest{Groups: []string{group}})
	g := resp.Groups[0]
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s state=%s epoch=%d assignment-epoch=%d err=%d\n", g.Group, g.State, g.Epoch, g.AssignmentEpoch, g.ErrorCode)
	tps := func(a kmsg.Assignment) string {
		var s []string
		for _, tp := range a.TopicPartitions {
			var ps []string
			for _, p := range tp.Partitions {
				ps = append(ps, fmt.Sprint(p))
			}
			s = append(s, tp.Topic+"/"+joinComma(ps))
		}
		return joinComma(s)
	}
	for _, m := range g.Members {
		fmt.Fprintf(&b, "  %s epoch=%d assigned=%s target=%s instance=%s client=%s topics=%v\n",
			m.MemberID, m.MemberEpoch, tps(m.Assignment), tps(m.TargetAssignment), derefStr(m.InstanceID), m.ClientID, m.SubscribedTopics)
	}
	return b.String()
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
