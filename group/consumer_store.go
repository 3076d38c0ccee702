package group

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
)

// This file stores KIP-848 groups as Kafka does, one record per concern
// (see consumer_records.go): the group epoch, the subscribed topics and the
// target assignment epoch per group, and per member its metadata, its
// target assignment and its current assignment. A change writes only the
// records whose value changed, tombstones those of members that left, and
// a heartbeat that changes nothing writes nothing.

// persistConsumerLocked appends extra and the records of g that changed
// since they were last stored. Once they are durable they become the
// stored state; on an error nothing is marked stored and the caller rolls
// back (consumerGroup.rollback) or leaves the change to be written with
// the next one.
func (c *Coordinator) persistConsumerLocked(g *group, extra []Record) error {
	recs, commit := g.cg.changes(g.name, extra)
	if len(recs) == 0 {
		return nil
	}
	if err := c.appendLocked(g, recs); err != nil {
		return err
	}
	commit()
	g.persisted = true
	return nil
}

// changes returns extra followed by the records that bring the store to
// cg's state, in the order Kafka writes them (member metadata, group epoch
// and subscribed topics, target assignments, target epoch, current
// assignments), and the function that marks them stored once durable.
func (cg *consumerGroup) changes(group string, extra []Record) ([]Record, func()) {
	type update struct {
		m   *cmember
		now memberRecords
	}
	var meta, target, current, gone []Record
	var updates []update
	for _, id := range slices.Sorted(maps.Keys(cg.dirty)) {
		m := cg.members[id]
		if m == nil {
			if old := cg.dirty[id]; old != nil {
				gone = append(gone, memberTombstones(group, id, old.stored)...)
			}
			continue
		}
		u := update{m: m, now: memberRecords{
			meta:    encodeMemberValue(&m.memberMeta),
			target:  encodeTargetValue(m.target),
			current: encodeCurrentValue(m),
		}}
		if !bytes.Equal(u.now.meta, m.stored.meta) {
			meta = append(meta, Record{Key: consumerMemberKey(keyConsumerGroupMember, group, id), Value: u.now.meta})
		}
		if !bytes.Equal(u.now.target, m.stored.target) {
			target = append(target, Record{Key: consumerMemberKey(keyConsumerGroupTarget, group, id), Value: u.now.target})
		}
		if !bytes.Equal(u.now.current, m.stored.current) {
			current = append(current, Record{Key: consumerMemberKey(keyConsumerGroupCurrent, group, id), Value: u.now.current})
		}
		updates = append(updates, u)
	}

	recs := append(extra, gone...)
	recs = append(recs, meta...)
	st := &cg.stored
	if !st.written || st.epoch != cg.epoch {
		recs = append(recs, Record{Key: consumerGroupKey(keyConsumerGroupMetadata, group), Value: encodeGroupEpochValue(cg.epoch)})
	}
	if !st.written || !slices.Equal(st.subTopics, cg.subTopics) {
		recs = append(recs, Record{Key: consumerGroupKey(keyConsumerGroupPartitions, group), Value: encodePartitionsValue(cg.subTopics)})
	}
	recs = append(recs, target...)
	if !st.written || st.assignmentEpoch != cg.assignmentEpoch {
		recs = append(recs, Record{Key: consumerGroupKey(keyConsumerGroupTargetEpoch, group), Value: encodeTargetEpochValue(cg.assignmentEpoch)})
	}
	recs = append(recs, current...)
	if cg.legacy {
		recs = append(recs, Record{Key: consumerGroupKey(keyConsumerGroupLegacy, group)})
	}
	commit := func() {
		cg.stored = groupRecords{written: true, epoch: cg.epoch, assignmentEpoch: cg.assignmentEpoch, subTopics: cg.subTopics}
		for _, u := range updates {
			u.m.stored = u.now
		}
		clear(cg.dirty)
		cg.legacy = false
	}
	return recs, commit
}

// memberTombstones deletes the records of a member that left.
func memberTombstones(group, id string, stored memberRecords) []Record {
	var recs []Record
	if stored.current != nil {
		recs = append(recs, Record{Key: consumerMemberKey(keyConsumerGroupCurrent, group, id)})
	}
	if stored.target != nil {
		recs = append(recs, Record{Key: consumerMemberKey(keyConsumerGroupTarget, group, id)})
	}
	if stored.meta != nil {
		recs = append(recs, Record{Key: consumerMemberKey(keyConsumerGroupMember, group, id)})
	}
	return recs
}

// tombstones deletes every record of the group: its members' (those still
// present and those that left without being written), then the
// group-level ones, the way Kafka deletes a group.
func (cg *consumerGroup) tombstones(group string) []Record {
	var recs []Record
	for _, id := range slices.Sorted(maps.Keys(cg.dirty)) {
		if old := cg.dirty[id]; old != nil && cg.members[id] == nil {
			recs = append(recs, memberTombstones(group, id, old.stored)...)
		}
	}
	for _, m := range cg.sortedMembers() {
		recs = append(recs, memberTombstones(group, m.id, m.stored)...)
	}
	if cg.stored.written {
		recs = append(recs,
			Record{Key: consumerGroupKey(keyConsumerGroupTargetEpoch, group)},
			Record{Key: consumerGroupKey(keyConsumerGroupPartitions, group)},
			Record{Key: consumerGroupKey(keyConsumerGroupMetadata, group)})
	}
	if cg.legacy {
		recs = append(recs, Record{Key: consumerGroupKey(keyConsumerGroupLegacy, group)})
	}
	return recs
}

// convertToClassicLocked turns an empty consumer group into a classic one,
// deleting its consumer group records first.
func (c *Coordinator) convertToClassicLocked(g *group) error {
	if g.persisted {
		if err := c.appendLocked(g, g.cg.tombstones(g.name)); err != nil {
			return err
		}
	}
	g.resetClassic()
	g.persisted = false
	return nil
}

// ensureConsumer makes g a KIP-848 group for a replayed record.
func (g *group) ensureConsumer() {
	if g.kind != kindConsumer {
		g.resetClassic()
		g.toConsumer()
	}
}

// replayMember returns the member a replayed member record names,
// adding it if needed.
func (cg *consumerGroup) replayMember(id string) *cmember {
	m := cg.members[id]
	if m == nil {
		m = &cmember{id: id, assigned: assignment{}, pendingRevoke: assignment{}, target: assignment{}, assignedAt: map[tpKey]int32{}}
		cg.members[id] = m
	}
	return m
}

// replayConsumerRecord applies a KIP-848 record (types 3 to 8) to the
// in-memory state. A value this broker cannot read leaves the state as it
// is and returns the error.
func (c *Coordinator) replayConsumerRecord(p int32, typ int16, r Record) error {
	name, id, err := parseConsumerKey(typ, r.Key)
	if err != nil {
		return err
	}
	g := c.replayGroup(name, p)
	if r.Value == nil {
		if g.kind == kindConsumer {
			g.cg.replayTombstone(g, typ, id)
		}
		return nil
	}
	// Decode before changing anything.
	var (
		epoch  int32
		topics []subTopic
		meta   memberMeta
		target assignment
		cur    currentAssignment
	)
	switch typ {
	case keyConsumerGroupMetadata:
		epoch, err = decodeGroupEpochValue(r.Value)
	case keyConsumerGroupPartitions:
		topics, err = decodePartitionsValue(r.Value)
	case keyConsumerGroupMember:
		meta, err = decodeMemberValue(r.Value)
	case keyConsumerGroupTargetEpoch:
		epoch, err = decodeTargetEpochValue(r.Value)
	case keyConsumerGroupTarget:
		target, err = decodeTargetValue(r.Value)
	case keyConsumerGroupCurrent:
		cur, err = decodeCurrentValue(r.Value)
	}
	if err != nil {
		return err
	}
	if g.kind == kindClassic && g.persisted {
		// As for a classic record of a KIP-848 group (replayRecord): a
		// group changes protocol only once its classic record is
		// deleted (a conversion writes the tombstone first), and a
		// snapshot, which writes the live records, would bring the
		// classic group back.
		return fmt.Errorf("%w: KIP-848 group record for classic group %s", ErrCorrupt, name)
	}
	g.ensureConsumer()
	g.persisted = true
	cg := g.cg
	switch typ {
	case keyConsumerGroupMetadata:
		cg.epoch = epoch
		cg.stored.epoch = epoch
		cg.stored.written = true
	case keyConsumerGroupPartitions:
		cg.subTopics = topics
		cg.stored.subTopics = topics
	case keyConsumerGroupTargetEpoch:
		cg.assignmentEpoch = epoch
		cg.stored.assignmentEpoch = epoch
	case keyConsumerGroupMember:
		m := cg.replayMember(id)
		m.memberMeta = meta
		m.stored.meta = r.Value
	case keyConsumerGroupTarget:
		m := cg.replayMember(id)
		m.target = target
		m.stored.target = r.Value
	case keyConsumerGroupCurrent:
		m := cg.replayMember(id)
		m.epoch, m.prevEpoch, m.state = cur.epoch, cur.prevEpoch, cur.state
		m.assigned, m.pendingRevoke, m.assignedAt = cur.assigned, cur.pendingRevoke, cur.assignedAt
		m.stored.current = r.Value
	}
	return nil
}

// replayTombstone applies the tombstone of a KIP-848 record.
func (cg *consumerGroup) replayTombstone(g *group, typ int16, id string) {
	switch typ {
	case keyConsumerGroupMetadata:
		g.resetClassic() // the group is deleted; its offsets stay
		g.persisted = false
	case keyConsumerGroupPartitions:
		cg.subTopics, cg.stored.subTopics = nil, nil
	case keyConsumerGroupTargetEpoch:
		cg.assignmentEpoch, cg.stored.assignmentEpoch = 0, 0
	case keyConsumerGroupMember:
		delete(cg.members, id)
	case keyConsumerGroupTarget:
		if m := cg.members[id]; m != nil {
			m.target, m.stored.target = assignment{}, nil
		}
	case keyConsumerGroupCurrent:
		if m := cg.members[id]; m != nil {
			m.epoch, m.prevEpoch, m.state = 0, 0, memberStable
			m.assigned, m.pendingRevoke, m.assignedAt = assignment{}, assignment{}, map[tpKey]int32{}
			m.stored.current = nil
		}
	}
}

// finishLoad rebuilds what the records do not hold (the owner and
// static-member indexes, compiled regexes) once a group is replayed.
func (cg *consumerGroup) finishLoad() {
	cg.static = make(map[string]string)
	for _, m := range cg.members {
		if m.regex != nil {
			m.re, _ = compileSubscriptionRegex(*m.regex)
		}
		if m.state > memberUnreleasedPartitions || m.state < memberStable {
			m.state = memberUnreleasedPartitions // reconcile from scratch
		}
		if m.assignedAt == nil {
			m.assignedAt = make(map[tpKey]int32)
		}
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
	}
	cg.rebuildOwners()
}

// dropOrphansLocked removes, once a group is replayed, what records left
// without the record that gives it meaning: a KIP-848 group whose group
// record (key version 3) is deleted or missing, and members without a
// member-metadata record (key version 5). Kafka deletes those records
// together; a log that holds only some of them (a torn or damaged one)
// would otherwise load differently after a snapshot reorders them. Their
// tombstones are written so the store agrees; if that fails they are
// dropped again at the next start.
func (c *Coordinator) dropOrphansLocked(g *group) {
	cg := g.cg
	if cg.legacy {
		return
	}
	var recs []Record
	if !cg.stored.written {
		recs = cg.tombstones(g.name)
		recs = append(recs,
			Record{Key: consumerGroupKey(keyConsumerGroupTargetEpoch, g.name)},
			Record{Key: consumerGroupKey(keyConsumerGroupPartitions, g.name)})
		g.resetClassic()
		g.persisted = false
	} else {
		for _, m := range cg.sortedMembers() {
			if m.stored.meta == nil {
				recs = append(recs, memberTombstones(g.name, m.id, m.stored)...)
				delete(cg.members, m.id)
			}
		}
	}
	if len(recs) == 0 {
		return
	}
	c.log.Warn("dropping KIP-848 records left without their group or member record", "group", g.name, "records", len(recs))
	if err := c.appendLocked(g, recs); err != nil {
		c.log.Warn("deleting orphaned KIP-848 records", "group", g.name, "err", err)
	}
}

// maxMigrationBatch bounds each batch of the records that replace a group
// stored in the older single-record form: the group was one record of up
// to the topic's batch limit, and its records are somewhat larger.
const maxMigrationBatch = 1 << 20

// migrateLegacyLocked writes a group loaded from the older single-record
// form as Kafka's records, then deletes the old record. Every batch holds
// records that agree with the old one, so a replay after any prefix of
// them gives the same group; the old record's tombstone comes last.
func (c *Coordinator) migrateLegacyLocked(g *group) error {
	recs, commit := g.cg.changes(g.name, nil)
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size+len(recs[n].Key)+len(recs[n].Value) <= maxMigrationBatch) {
			size += len(recs[n].Key) + len(recs[n].Value)
			n++
		}
		if err := c.appendLocked(g, recs[:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	commit()
	return nil
}
