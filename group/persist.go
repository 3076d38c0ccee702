package group

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record key versions: the int16 every __consumer_offsets key starts with.
const (
	keyOffsetCommitV0 int16 = 0 // kmsg.OffsetCommitKey, read only
	keyOffsetCommit   int16 = 1 // kmsg.OffsetCommitKey
	keyGroupMetadata  int16 = 2 // kmsg.GroupMetadataKey
	// keyConsumerGroup keys Ferry's KIP-848 group record. Kafka uses key
	// versions 3 to 8 for its own KIP-848 records (not in kmsg) and higher
	// ones for share and streams groups; 1000 stays clear of them.
	keyConsumerGroup int16 = 1000
)

// Value versions written.
const (
	offsetValueVersion       int16 = 3 // with leader epoch
	offsetValueVersionExpire int16 = 1 // with an expire timestamp (OffsetCommit v2-v4 retention)
	groupValueVersion        int16 = 3 // with static members

	// consumerGroupValueVersion is the version of Ferry's KIP-848 group
	// value, laid out as:
	//
	//	int16  version (0)
	//	int32  group epoch
	//	int32  target assignment epoch
	//	string subscription metadata (the partitions subscribed at the last epoch bump)
	//	int32  member count, then per member:
	//	  string member ID; nullable string instance ID; nullable string rack ID
	//	  string client ID; string client host
	//	  int32 rebalance timeout ms; string server assignor ("" for none)
	//	  int32 count + strings: subscribed topic names; nullable string regex
	//	  int32 member epoch; int32 previous epoch; int8 state
	//	  assignment assigned; assignment pending revocation; assignment target
	//	assignment: int32 topic count, then per topic: uuid (16 bytes), int32 count + int32 partitions
	//
	// FORMAT MIGRATION: never change version 0's layout. To add a field,
	// write version 1 with the field appended, keep decoding version 0
	// (giving the field its default), and only then start writing 1. A
	// broker that meets a version it does not know keeps the record (it is
	// carried through snapshots untouched) but does not load the group.
	consumerGroupValueVersion int16 = 0
)

func offsetKey(group, topic string, p int32) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetCommit, Group: group, Topic: topic, Partition: p}
	return k.AppendTo(nil)
}

func groupMetadataKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: keyGroupMetadata, Group: group}
	return k.AppendTo(nil)
}

func consumerGroupKey(group string) []byte {
	b := kbin.AppendInt16(nil, keyConsumerGroup)
	return kbin.AppendString(b, group)
}

// offsetRecord is the record of a commit, or its tombstone when e is nil.
func offsetRecord(group, topic string, p int32, e *offsetEntry) Record {
	r := Record{Key: offsetKey(group, topic, p)}
	if e != nil {
		v := kmsg.NewOffsetCommitValue()
		v.Version = offsetValueVersion
		v.Offset = e.offset
		v.LeaderEpoch = e.leaderEpoch
		v.Metadata = e.metadata
		v.CommitTimestamp = e.commitTime
		if e.expireTime >= 0 {
			v.Version = offsetValueVersionExpire
			v.ExpireTimestamp = e.expireTime
		}
		r.Value = v.AppendTo(nil)
	}
	return r
}

// persistClassicLocked stores g's classic metadata, with assign as the
// members' assignments (nil: their current ones).
func (c *Coordinator) persistClassicLocked(g *group, assign map[string][]byte) error {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupValueVersion
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	if g.protocol != "" {
		v.Protocol = strPtr(g.protocol)
	}
	if g.leader != "" && len(g.members) > 0 {
		v.Leader = strPtr(g.leader)
	}
	v.CurrentStateTimestamp = g.stateTime.UnixMilli()
	for _, m := range g.sortedMembers() {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		vm.InstanceID = cloneStrPtr(m.instanceID)
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = millis(m.rebalanceTimeout)
		vm.SessionTimeoutMillis = millis(m.sessionTimeout)
		vm.Subscription = m.metadataFor(g.protocol)
		if assign != nil {
			vm.Assignment = assign[m.id]
		} else {
			vm.Assignment = m.assignment
		}
		v.Members = append(v.Members, vm)
	}
	rec := Record{Key: groupMetadataKey(g.name), Value: v.AppendTo(nil)}
	if err := c.appendLocked(g, []Record{rec}); err != nil {
		return err
	}
	g.persisted = true
	return nil
}

func appendAssignment(b []byte, a assignment) []byte {
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

func readAssignment(r *kbin.Reader) assignment {
	a := assignment{}
	n := r.ArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		np := r.ArrayLen()
		var ps []int32
		for j := int32(0); j < np && r.Ok(); j++ {
			ps = append(ps, r.Int32())
		}
		slices.Sort(ps)
		a[id] = slices.Compact(ps)
	}
	return a
}

// encodeConsumerGroup encodes cg as a consumerGroupValueVersion value.
// Equal states give equal bytes.
func encodeConsumerGroup(cg *consumerGroup) []byte {
	b := kbin.AppendInt16(nil, consumerGroupValueVersion)
	b = kbin.AppendInt32(b, cg.epoch)
	b = kbin.AppendInt32(b, cg.assignmentEpoch)
	b = kbin.AppendString(b, cg.subMeta)
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

func decodeConsumerGroup(val []byte) (*consumerGroup, error) {
	r := kbin.Reader{Src: val}
	if v := r.Int16(); v != consumerGroupValueVersion {
		return nil, fmt.Errorf("%w: consumer group value version %d", ErrCorrupt, v)
	}
	cg := newConsumerGroup()
	cg.epoch = r.Int32()
	cg.assignmentEpoch = r.Int32()
	cg.subMeta = r.String()
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
		m.regex = r.NullableString()
		m.epoch = r.Int32()
		m.prevEpoch = r.Int32()
		m.state = memberState(r.Int8())
		m.assigned = readAssignment(&r)
		m.pendingRevoke = readAssignment(&r)
		m.target = readAssignment(&r)
		if m.regex != nil {
			m.re, _ = compileSubscriptionRegex(*m.regex)
		}
		if m.state > memberUnreleasedPartitions {
			m.state = memberUnreleasedPartitions // reconcile from scratch
		}
		m.assignedAt = make(map[tpKey]int32)
		for _, a := range []assignment{m.assigned, m.pendingRevoke} {
			for id, ps := range a {
				for _, p := range ps {
					m.assignedAt[tpKey{id, p}] = 0
				}
			}
		}
		cg.members[m.id] = m
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
	}
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("%w: consumer group value: %v", ErrCorrupt, err)
	}
	cg.rebuildOwners()
	return cg, nil
}

// offsetsPartition is the coordinator's view of one __consumer_offsets
// partition: the live records (latest value per key) a snapshot would
// write, and how many records the log holds.
type offsetsPartition struct {
	id int32

	// mu is held for reading around an Append and the update of live that
	// follows, and for writing around a Snapshot, so a snapshot never
	// misses a record that is in the log.
	mu sync.RWMutex

	liveMu  sync.Mutex
	live    map[string]Record // canonical key → latest record; guarded by liveMu
	records int               // records in the log from its start; guarded by liveMu
	retryAt int               // after a failed snapshot, do not retry below this many records
}

// canonicalKey maps a record key to the identity it updates: offset keys
// of version 0 and 1 name the same offset.
func canonicalKey(key []byte) (string, []byte) {
	if len(key) >= 2 && key[0] == 0 && key[1] == byte(keyOffsetCommitV0) {
		var k kmsg.OffsetCommitKey
		if k.ReadFrom(key) == nil {
			key = offsetKey(k.Group, k.Topic, k.Partition)
		}
	}
	return string(key), key
}

// applyLive records recs (already in the log) in the live set.
func (p *offsetsPartition) applyLive(recs []Record) {
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	for _, r := range recs {
		k, key := canonicalKey(r.Key)
		if r.Value == nil {
			delete(p.live, k)
		} else {
			p.live[k] = Record{Key: key, Value: r.Value}
		}
		p.records++
	}
}

func (p *offsetsPartition) needsSnapshotLocked(slack int) bool {
	return p.records > 2*len(p.live)+slack && p.records >= p.retryAt
}

// appendLocked appends recs for g (whose lock is held) to g's partition and
// records them as live once they are durable.
func (c *Coordinator) appendLocked(g *group, recs []Record) error {
	part := c.parts[g.partition]
	part.mu.RLock()
	_, err := c.store.Append(g.partition, recs)
	if err == nil {
		part.applyLive(recs)
	}
	part.liveMu.Lock()
	snap := part.needsSnapshotLocked(c.cfg.compactSlack)
	part.liveMu.Unlock()
	part.mu.RUnlock()
	if err != nil {
		c.log.Warn("appending to __consumer_offsets", "partition", g.partition, "group", g.name, "records", len(recs), "err", err)
		return err
	}
	if snap {
		c.kickCompaction()
	}
	return nil
}

func (c *Coordinator) kickCompaction() {
	select {
	case c.compactKick <- struct{}{}:
	default:
	}
}

// compactLoop snapshots partitions that grew well past their live size.
func (c *Coordinator) compactLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case <-c.compactKick:
			for _, part := range c.parts {
				select {
				case <-c.quit:
					return
				default:
				}
				c.snapshotPartition(part)
			}
		}
	}
}

func (c *Coordinator) snapshotPartition(part *offsetsPartition) {
	part.mu.Lock()
	defer part.mu.Unlock()
	part.liveMu.Lock()
	if !part.needsSnapshotLocked(c.cfg.compactSlack) {
		part.liveMu.Unlock()
		return
	}
	keys := slices.Sorted(maps.Keys(part.live))
	recs := make([]Record, len(keys))
	for i, k := range keys {
		recs[i] = part.live[k]
	}
	before := part.records
	part.liveMu.Unlock()

	start := time.Now()
	err := c.store.Snapshot(part.id, recs)
	part.liveMu.Lock()
	defer part.liveMu.Unlock()
	if err != nil {
		part.retryAt = part.records + c.cfg.compactSlack
		c.log.Warn("snapshotting __consumer_offsets", "partition", part.id, "err", err)
		return
	}
	part.records = len(recs)
	part.retryAt = 0
	c.log.Info("snapshotted __consumer_offsets", "partition", part.id, "records_before", before, "live", len(recs), "elapsed", time.Since(start))
}

// replay loads one partition. It runs in New, before anything else can
// touch the coordinator.
func (c *Coordinator) replay(part *offsetsPartition) error {
	return c.store.Replay(part.id, func(offset int64, r Record) error {
		rec := Record{Key: bytes.Clone(r.Key)}
		if r.Value != nil {
			rec.Value = bytes.Clone(r.Value)
		}
		if err := c.replayRecord(part.id, rec); err != nil {
			c.log.Warn("skipping __consumer_offsets record", "partition", part.id, "offset", offset, "err", err)
			part.records++
			return nil
		}
		part.applyLive([]Record{rec})
		return nil
	})
}

// replayGroup returns the named group, creating an empty classic one.
func (c *Coordinator) replayGroup(name string, p int32) *group {
	g := c.mu.groups[name]
	if g == nil {
		g = newGroup(name, c.Partition(name))
		c.mu.groups[name] = g
	}
	if g.partition != p {
		c.log.Warn("group record in an unexpected partition", "group", name, "partition", p, "expected", g.partition)
	}
	return g
}

// replayRecord applies one record to the in-memory state.
func (c *Coordinator) replayRecord(p int32, r Record) error {
	if len(r.Key) < 2 {
		return fmt.Errorf("%w: key of %d bytes", ErrCorrupt, len(r.Key))
	}
	switch v := int16(r.Key[0])<<8 | int16(r.Key[1]); v {
	case keyOffsetCommitV0, keyOffsetCommit:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(r.Key); err != nil {
			return fmt.Errorf("%w: offset key: %v", ErrCorrupt, err)
		}
		g := c.replayGroup(k.Group, p)
		if r.Value == nil {
			g.deleteOffset(k.Topic, k.Partition)
			return nil
		}
		var val kmsg.OffsetCommitValue
		if err := val.ReadFrom(r.Value); err != nil {
			return fmt.Errorf("%w: offset value: %v", ErrCorrupt, err)
		}
		e := offsetEntry{offset: val.Offset, leaderEpoch: -1, metadata: val.Metadata, commitTime: val.CommitTimestamp, expireTime: -1}
		if val.Version >= 3 {
			e.leaderEpoch = val.LeaderEpoch
		}
		if val.Version == 1 {
			e.expireTime = val.ExpireTimestamp
		}
		g.setOffset(k.Topic, k.Partition, e)
	case keyGroupMetadata:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(r.Key); err != nil {
			return fmt.Errorf("%w: group key: %v", ErrCorrupt, err)
		}
		g := c.replayGroup(k.Group, p)
		if r.Value == nil {
			if g.kind == kindClassic {
				g.resetClassic()
				g.persisted = false
			}
			return nil
		}
		var val kmsg.GroupMetadataValue
		if err := val.ReadFrom(r.Value); err != nil {
			return fmt.Errorf("%w: group value: %v", ErrCorrupt, err)
		}
		g.loadClassic(&val)
	case keyConsumerGroup:
		rd := kbin.Reader{Src: r.Key[2:]}
		name := rd.String()
		if err := rd.Complete(); err != nil {
			return fmt.Errorf("%w: consumer group key: %v", ErrCorrupt, err)
		}
		g := c.replayGroup(name, p)
		if r.Value == nil {
			if g.kind == kindConsumer {
				g.resetClassic()
				g.persisted = false
			}
			return nil
		}
		if len(r.Value) >= 2 && int16(r.Value[0])<<8|int16(r.Value[1]) > consumerGroupValueVersion {
			c.log.Warn("consumer group record from a newer version; keeping it unloaded", "group", name)
			return nil
		}
		cg, err := decodeConsumerGroup(r.Value)
		if err != nil {
			return err
		}
		g.resetClassic()
		g.toConsumer()
		g.cg = cg
		g.cgPersisted = r.Value
		g.persisted = true
	default:
		// A record type this version does not know: keep it live so a
		// snapshot carries it, but do not interpret it.
		c.log.Debug("unknown __consumer_offsets record kept", "partition", p, "key_version", v)
	}
	return nil
}

// loadClassic replaces g's state with a stored classic group. Members come
// back Stable; they must heartbeat within their session timeout.
func (g *group) loadClassic(v *kmsg.GroupMetadataValue) {
	g.resetClassic()
	g.persisted = true
	g.protocolType = v.ProtocolType
	g.generation = v.Generation
	g.protocol = derefStr(v.Protocol)
	g.leader = derefStr(v.Leader)
	g.stateTime = time.Time{}
	if v.Version >= 2 && v.CurrentStateTimestamp >= 0 {
		g.stateTime = time.UnixMilli(v.CurrentStateTimestamp)
	}
	for _, vm := range v.Members {
		g.seq++
		m := &member{
			id:               vm.MemberID,
			instanceID:       vm.InstanceID,
			clientID:         vm.ClientID,
			clientHost:       vm.ClientHost,
			sessionTimeout:   msDuration(vm.SessionTimeoutMillis),
			rebalanceTimeout: msDuration(vm.RebalanceTimeoutMillis),
			protocolType:     v.ProtocolType,
			assignment:       vm.Assignment,
			seq:              g.seq,
		}
		if v.Version < 1 || vm.RebalanceTimeoutMillis < 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		g.members[m.id] = m
		g.setProtocols(m, []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}})
		if m.instanceID != nil {
			g.static[*m.instanceID] = m.id
		}
	}
	if len(g.members) > 0 {
		g.state = stateStable
		if g.members[g.leader] == nil {
			g.leader = g.sortedMembers()[0].id
		}
	} else {
		g.state = stateEmpty
		g.leader = ""
	}
	g.prevState = g.state
	g.computeSubscribed()
}

// finishReplay drops groups the log left with nothing and arms the timers of
// the loaded members.
func (c *Coordinator) finishReplay() {
	// No timer is armed yet, so the groups are still ours alone here.
	c.mu.Lock()
	var loaded []*group
	for name, g := range c.mu.groups {
		if g.vacuous() {
			delete(c.mu.groups, name)
			continue
		}
		loaded = append(loaded, g)
	}
	c.mu.Unlock()
	for _, g := range loaded {
		g.mu.Lock()
		switch g.kind {
		case kindClassic:
			for _, m := range g.sortedMembers() {
				c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
			}
		case kindConsumer:
			c.syncConsumerTimersLocked(g)
		}
		g.mu.Unlock()
	}
}
