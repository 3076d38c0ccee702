package group

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record key versions: the int16 every __consumer_offsets key starts with.
const (
	keyOffsetCommitV0 int16 = 0 // kmsg.OffsetCommitKey, read only
	keyOffsetCommit   int16 = 1 // kmsg.OffsetCommitKey
	keyGroupMetadata  int16 = 2 // kmsg.GroupMetadataKey
	// Key versions 3 to 8 are Kafka's KIP-848 records: see
	// consumer_records.go.
)

// Value versions written.
const (
	offsetValueVersion       int16 = 3 // with leader epoch
	offsetValueVersionExpire int16 = 1 // with an expire timestamp (OffsetCommit v2-v4 retention)
	groupValueVersion        int16 = 3 // with static members
)

func offsetKey(group, topic string, p int32) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetCommit, Group: group, Topic: topic, Partition: p}
	return k.AppendTo(nil)
}

func groupMetadataKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: keyGroupMetadata, Group: group}
	return k.AppendTo(nil)
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

// offsetsPartition is the coordinator's view of one __consumer_offsets
// partition: the live records (latest value per key) a snapshot would
// write, their size, and how many bytes of records the log holds.
type offsetsPartition struct {
	id int32

	// mu is held for reading around an Append and the update of live that
	// follows, and for writing around a Snapshot, so a snapshot never
	// misses a record that is in the log.
	mu sync.RWMutex

	liveMu    sync.Mutex
	live      map[string]Record // canonical key → latest record; guarded by liveMu
	liveBytes int64             // recordBytes of the live records; guarded by liveMu
	logBytes  int64             // recordBytes of every record in the log from its start; guarded by liveMu
	retryAt   int64             // after a failed snapshot, do not retry below this many log bytes
}

// recordBytes is what a record counts for compaction: its key and value.
func recordBytes(r Record) int64 { return int64(len(r.Key) + len(r.Value)) }

// canonicalKey maps a record key to the identity it updates: offset keys
// of version 0 and 1 name the same offset, and an offset or group key
// with bytes after its fields (which replay reads past, as Kafka's does)
// names what it would without them. Other keys are read strictly, so
// their bytes are their identity.
func canonicalKey(key []byte) (string, []byte) {
	if len(key) >= 2 && key[0] == 0 {
		switch v := int16(key[1]); {
		case v == keyOffsetCommit && fieldsEnd(key, 2, 4) == len(key),
			v == keyGroupMetadata && fieldsEnd(key, 1, 0) == len(key):
			// As this broker writes them: nothing to do (the common
			// case, an offset commit's key).
		case v == keyOffsetCommitV0 || v == keyOffsetCommit:
			var k kmsg.OffsetCommitKey
			if k.ReadFrom(key) == nil {
				key = offsetKey(k.Group, k.Topic, k.Partition)
			}
		case v == keyGroupMetadata:
			var k kmsg.GroupMetadataKey
			if k.ReadFrom(key) == nil {
				key = groupMetadataKey(k.Group)
			}
		}
	}
	return string(key), key
}

// fieldsEnd is where the fields of a key end: after its version, n
// strings and tail bytes; -1 when they do not fit in key.
func fieldsEnd(key []byte, n, tail int) int {
	pos := 2
	for range n {
		if len(key) < pos+2 {
			return -1
		}
		l := int(int16(binary.BigEndian.Uint16(key[pos:])))
		if l < 0 {
			return -1
		}
		pos += 2 + l
	}
	return pos + tail
}

// applyLive records recs (already in the log) in the live set.
func (p *offsetsPartition) applyLive(recs []Record) {
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	for _, r := range recs {
		k, key := canonicalKey(r.Key)
		if old, ok := p.live[k]; ok {
			p.liveBytes -= recordBytes(old)
		}
		if r.Value == nil {
			delete(p.live, k)
		} else {
			rec := Record{Key: key, Value: r.Value}
			p.live[k] = rec
			p.liveBytes += recordBytes(rec)
		}
		p.logBytes += recordBytes(r)
	}
}

// needsSnapshotLocked reports whether the log holds more than twice the
// live state's bytes plus slack: a snapshot then at least halves it.
func (p *offsetsPartition) needsSnapshotLocked(slack int64) bool {
	return p.logBytes > 2*p.liveBytes+slack && p.logBytes >= p.retryAt
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
	before, live := part.logBytes, part.liveBytes
	part.liveMu.Unlock()

	start := time.Now()
	err := c.store.Snapshot(part.id, recs)
	part.liveMu.Lock()
	defer part.liveMu.Unlock()
	if err != nil {
		part.retryAt = part.logBytes + c.cfg.compactSlack
		c.log.Warn("snapshotting __consumer_offsets", "partition", part.id, "err", err)
		return
	}
	part.logBytes = live
	part.retryAt = 0
	c.log.Info("snapshotted __consumer_offsets", "partition", part.id, "bytes_before", before, "live_bytes", live, "live_records", len(recs), "elapsed", time.Since(start))
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
			part.logBytes += recordBytes(rec)
			return nil
		}
		part.applyLive([]Record{rec})
		return nil
	})
}

// replayGroup returns the named group, creating an empty classic one.
func (c *Coordinator) replayGroup(name string, p int32) *group {
	groups := c.mu.groups
	if c.staging != nil {
		groups = c.staging // a Load (load.go)
	}
	g := groups[name]
	if g == nil {
		g = newGroup(name, c.Partition(name))
		groups[name] = g
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
		if g.kind == kindConsumer && (g.cg.stored.written || g.cg.legacy) {
			// A group changes protocol only once its records of the
			// other one are deleted; a log that says otherwise keeps
			// the KIP-848 group, which a snapshot (where KIP-848 keys
			// sort after this one) would load too.
			return fmt.Errorf("%w: classic group record for KIP-848 group %s", ErrCorrupt, k.Group)
		}
		g.loadClassic(&val)
	case keyConsumerGroupMetadata, keyConsumerGroupPartitions, keyConsumerGroupMember,
		keyConsumerGroupTargetEpoch, keyConsumerGroupTarget, keyConsumerGroupCurrent:
		return c.replayConsumerRecord(p, v, r)
	case keyConsumerGroupLegacy:
		return c.replayLegacy(p, r)
	case keyTxnOffset:
		return c.replayTxnOffset(p, r)
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
	c.finishLoad(c.groupsSnapshot())
}

// finishLoad is finishReplay for the groups gs just loaded, which no
// request can reach yet.
func (c *Coordinator) finishLoad(gs []*group) {
	// No timer is armed yet, so the groups are still ours alone here.
	for _, g := range gs {
		g.mu.Lock()
		if g.kind == kindConsumer {
			c.dropOrphansLocked(g)
		}
		g.mu.Unlock()
	}
	c.mu.Lock()
	var loaded []*group
	for _, g := range gs {
		if g.vacuous() {
			if c.mu.groups[g.name] == g {
				delete(c.mu.groups, g.name)
			}
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
			g.cg.finishLoad()
			if g.cg.legacy {
				if err := c.migrateLegacyLocked(g); err != nil {
					c.log.Warn("rewriting consumer group in Kafka's records; it is written with its next change", "group", g.name, "err", err)
				} else {
					c.log.Info("consumer group rewritten in Kafka's records", "group", g.name, "members", len(g.cg.members))
				}
			}
			c.syncConsumerTimersLocked(g)
		}
		g.mu.Unlock()
	}
}
