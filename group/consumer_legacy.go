package group

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kbin"
)

// This file reads the record older Ferry versions stored a KIP-848 group
// in: one self-contained value under key version 1000 ([int16 1000][string
// group]). Replay turns it into the in-memory group; the coordinator then
// writes the group as Kafka's records and deletes the old one
// (migrateLegacyLocked), so a snapshot never carries it forward.
//
// The value, version 0, all big endian with int16-length strings and
// int32-count arrays:
//
//	int16  version (0)
//	int32  group epoch
//	int32  target assignment epoch
//	string subscription metadata: "topic/<topic ID in hex>/<partitions>;" per topic, by name
//	int32  member count, then per member:
//	  string member ID; nullable string instance ID; nullable string rack ID
//	  string client ID; string client host
//	  int32 rebalance timeout ms; string server assignor ("" for none)
//	  int32 count + strings: subscribed topic names; nullable string regex
//	  int32 member epoch; int32 previous epoch; int8 state
//	  assignment assigned; assignment pending revocation; assignment target
//	assignment: int32 topic count, then per topic: uuid (16 bytes), int32 count + int32 partitions

// legacyValueVersion is the only version of the old value.
const legacyValueVersion int16 = 0

func readLegacyAssignment(r *kbin.Reader) assignment {
	a := assignment{}
	n := r.ArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		np := r.ArrayLen()
		var ps []int32
		for j := int32(0); j < np && r.Ok(); j++ {
			ps = append(ps, r.Int32())
		}
		ps = append(a[id], ps...)
		slices.Sort(ps)
		if ps = slices.Compact(ps); len(ps) > 0 {
			a[id] = ps
		}
	}
	return a
}

// parseLegacySubscription reads the subscription metadata string. Topic
// names hold neither '/' nor ';'.
func parseLegacySubscription(s string) ([]subTopic, error) {
	var ts []subTopic
	for part := range strings.SplitSeq(s, ";") {
		if part == "" {
			continue
		}
		f := strings.Split(part, "/")
		if len(f) != 3 || len(f[1]) != 32 {
			return nil, fmt.Errorf("%w: consumer group subscription %q", ErrCorrupt, part)
		}
		var t subTopic
		t.name = f[0]
		for i := range 16 {
			b, err := strconv.ParseUint(f[1][2*i:2*i+2], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("%w: consumer group subscription %q", ErrCorrupt, part)
			}
			t.id[i] = byte(b)
		}
		n, err := strconv.ParseInt(f[2], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: consumer group subscription %q", ErrCorrupt, part)
		}
		t.partitions = int32(n)
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b subTopic) int { return cmpString(a.name, b.name) })
	return slices.CompactFunc(ts, func(a, b subTopic) bool { return a.name == b.name }), nil
}

// decodeLegacyConsumerGroup decodes the old value. The group comes back
// as loaded but not yet stored in Kafka's records: legacy is set, every
// member is dirty.
func decodeLegacyConsumerGroup(val []byte) (*consumerGroup, error) {
	r := kbin.Reader{Src: val}
	if v := r.Int16(); v != legacyValueVersion {
		if v > legacyValueVersion {
			return nil, fmt.Errorf("%w: version %d", errNewerVersion, v)
		}
		return nil, fmt.Errorf("%w: consumer group value version %d", ErrCorrupt, v)
	}
	cg := newConsumerGroup()
	cg.epoch = r.Int32()
	cg.assignmentEpoch = r.Int32()
	sub := r.String()
	n := r.ArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		m := &cmember{}
		m.id = r.String()
		m.instanceID = r.NullableString()
		m.rackID = r.NullableString()
		m.clientID = r.String()
		m.clientHost = r.String()
		m.rebalanceTimeout = r.Int32()
		m.serverAssignor = r.String()
		nt := r.ArrayLen()
		for j := int32(0); j < nt && r.Ok(); j++ {
			m.topicNames = append(m.topicNames, r.String())
		}
		m.topicNames = slices.Compact(slices.Sorted(slices.Values(m.topicNames)))
		m.regex = r.NullableString()
		m.epoch = r.Int32()
		m.prevEpoch = r.Int32()
		m.state = memberState(r.Int8())
		m.assigned = readLegacyAssignment(&r)
		m.pendingRevoke = readLegacyAssignment(&r)
		m.target = readLegacyAssignment(&r)
		m.assignedAt = make(map[tpKey]int32)
		for _, a := range []assignment{m.assigned, m.pendingRevoke} {
			for id, ps := range a {
				for _, p := range ps {
					m.assignedAt[tpKey{id, p}] = 0
				}
			}
		}
		cg.members[m.id] = m
	}
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("%w: consumer group value: %v", ErrCorrupt, err)
	}
	if len(r.Src) != 0 {
		return nil, fmt.Errorf("%w: consumer group value: %d bytes past its end", ErrCorrupt, len(r.Src))
	}
	subTopics, err := parseLegacySubscription(sub)
	if err != nil {
		return nil, err
	}
	cg.subTopics = subTopics
	cg.finishLoad()
	// What is durable is the old record: roll back to it, and write all
	// of it as Kafka's records.
	cg.stored = groupRecords{epoch: cg.epoch, assignmentEpoch: cg.assignmentEpoch, subTopics: cg.subTopics}
	for id, m := range cg.members {
		cg.dirty[id] = m.clone()
	}
	cg.legacy = true
	return cg, nil
}

// replayLegacy applies a key-1000 record.
func (c *Coordinator) replayLegacy(p int32, r Record) error {
	name, _, err := parseConsumerKey(keyConsumerGroupLegacy, r.Key)
	if err != nil {
		return err
	}
	g := c.replayGroup(name, p)
	if r.Value == nil {
		switch {
		case g.kind != kindConsumer:
		case g.cg.stored.written:
			// Written after the group's records in Kafka's form: the old
			// record is superseded, and everything is stored.
			g.cg.legacy = false
			clear(g.cg.dirty)
		default:
			// An older version deleted the group.
			g.resetClassic()
			g.persisted = false
		}
		return nil
	}
	cg, err := decodeLegacyConsumerGroup(r.Value)
	if err != nil {
		return err
	}
	g.resetClassic()
	g.toConsumer()
	g.cg = cg
	g.persisted = true
	return nil
}
