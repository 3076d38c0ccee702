package group

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds the offsets committed inside transactions
// (TxnOffsetCommit): they are stored at once, pending, and become the
// group's committed offsets when the transaction's commit marker reaches
// the group's __consumer_offsets partition (WriteTxnMarker), or are
// dropped by its abort marker.
//
// Kafka writes a pending offset as an ordinary offset commit record in a
// transactional batch of the producer and resolves it with the control
// batch of the marker. Ferry's Store appends plain batches, so a pending
// offset is a record of its own, keyed by producer id, and a marker is
// one batch that writes the committed offsets (on commit) and deletes the
// pending records: all or nothing, and a snapshot carries the pending
// records like any live record.
//
//	key   [int16 1001][string group][int64 producer id][string topic][int32 partition]
//	value [int16 0][int16 producer epoch][int64 offset][int32 leader epoch]
//	      [string metadata][int64 commit timestamp]
//	nil   the pending offset was resolved

// keyTxnOffset is the key version of a pending transactional offset,
// Ferry's own (Kafka's key versions stop well below it).
const keyTxnOffset int16 = 1001

// txnOffsetValueVersion is the only value version of a pending offset.
//
// FORMAT MIGRATION: add fields at the end under a new version, keep
// reading the older ones; a value of a newer version is skipped at replay
// like an undecodable one (the key keeps its earlier value).
const txnOffsetValueVersion int16 = 0

// pendingTxn is the offsets one producer's open transaction committed in
// a group.
type pendingTxn struct {
	epoch   int16 // of the last TxnOffsetCommit
	offsets map[string]map[int32]offsetEntry
}

func (p *pendingTxn) set(topic string, part int32, e offsetEntry) {
	ps := p.offsets[topic]
	if ps == nil {
		ps = make(map[int32]offsetEntry)
		p.offsets[topic] = ps
	}
	ps[part] = e
}

// has reports whether the transaction committed an offset of topic-part.
func (p *pendingTxn) has(topic string, part int32) bool {
	_, ok := p.offsets[topic][part]
	return ok
}

// sorted calls fn for each offset, by topic then partition.
func (p *pendingTxn) sorted(fn func(topic string, part int32, e offsetEntry)) {
	topics := make([]string, 0, len(p.offsets))
	for t := range p.offsets {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	for _, t := range topics {
		parts := make([]int32, 0, len(p.offsets[t]))
		for part := range p.offsets[t] {
			parts = append(parts, part)
		}
		slices.Sort(parts)
		for _, part := range parts {
			fn(t, part, p.offsets[t][part])
		}
	}
}

func txnOffsetKey(group string, producerID int64, topic string, part int32) []byte {
	b := make([]byte, 0, 2+2+len(group)+8+2+len(topic)+4)
	b = kbin.AppendInt16(b, keyTxnOffset)
	b = kbin.AppendString(b, group)
	b = kbin.AppendInt64(b, producerID)
	b = kbin.AppendString(b, topic)
	return kbin.AppendInt32(b, part)
}

func txnOffsetRecord(group string, producerID int64, epoch int16, topic string, part int32, e *offsetEntry) Record {
	r := Record{Key: txnOffsetKey(group, producerID, topic, part)}
	if e != nil {
		b := make([]byte, 0, 2+2+8+4+2+len(e.metadata)+8)
		b = kbin.AppendInt16(b, txnOffsetValueVersion)
		b = kbin.AppendInt16(b, epoch)
		b = kbin.AppendInt64(b, e.offset)
		b = kbin.AppendInt32(b, e.leaderEpoch)
		b = kbin.AppendString(b, e.metadata)
		r.Value = kbin.AppendInt64(b, e.commitTime)
	}
	return r
}

// replayTxnOffset applies a pending-offset record at replay.
func (c *Coordinator) replayTxnOffset(p int32, r Record) error {
	kr := kbin.Reader{Src: r.Key[2:]}
	name, pid, topic, part := kr.String(), kr.Int64(), kr.String(), kr.Int32()
	if err := kr.Complete(); err != nil || len(kr.Src) != 0 {
		return fmt.Errorf("%w: pending transactional offset key", ErrCorrupt)
	}
	g := c.replayGroup(name, p)
	if r.Value == nil {
		g.dropPendingOffset(pid, topic, part)
		return nil
	}
	vr := kbin.Reader{Src: r.Value}
	if v := vr.Int16(); v != txnOffsetValueVersion {
		return fmt.Errorf("%w: pending transactional offset value version %d", errNewerVersion, v)
	}
	epoch := vr.Int16()
	e := offsetEntry{offset: vr.Int64(), leaderEpoch: vr.Int32(), metadata: vr.String(), commitTime: vr.Int64(), expireTime: -1}
	if err := vr.Complete(); err != nil || len(vr.Src) != 0 {
		return fmt.Errorf("%w: pending transactional offset value", ErrCorrupt)
	}
	g.addPendingOffset(pid, epoch, topic, part, e)
	return nil
}

func (g *group) addPendingOffset(pid int64, epoch int16, topic string, part int32, e offsetEntry) {
	if g.txnOffsets == nil {
		g.txnOffsets = make(map[int64]*pendingTxn)
	}
	pt := g.txnOffsets[pid]
	if pt == nil {
		pt = &pendingTxn{offsets: make(map[string]map[int32]offsetEntry)}
		g.txnOffsets[pid] = pt
	}
	pt.epoch = epoch
	pt.set(topic, part, e)
}

func (g *group) dropPendingOffset(pid int64, topic string, part int32) {
	pt := g.txnOffsets[pid]
	if pt == nil {
		return
	}
	if ps := pt.offsets[topic]; ps != nil {
		delete(ps, part)
		if len(ps) == 0 {
			delete(pt.offsets, topic)
		}
	}
	if len(pt.offsets) == 0 {
		delete(g.txnOffsets, pid)
	}
}

// hasPendingOffset reports whether an open transaction committed an
// offset of topic-part in g: OffsetFetch with require_stable answers
// UNSTABLE_OFFSET_COMMIT for it.
func (g *group) hasPendingOffset(topic string, part int32) bool {
	for _, pt := range g.txnOffsets {
		if pt.has(topic, part) {
			return true
		}
	}
	return false
}

// pendingTombstones deletes every pending offset of g.
func (g *group) pendingTombstones() []Record {
	pids := make([]int64, 0, len(g.txnOffsets))
	for pid := range g.txnOffsets {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	var recs []Record
	for _, pid := range pids {
		g.txnOffsets[pid].sorted(func(topic string, part int32, _ offsetEntry) {
			recs = append(recs, txnOffsetRecord(g.name, pid, 0, topic, part, nil))
		})
	}
	return recs
}

// txnKey names the producers with pending offsets in one
// __consumer_offsets partition: markers are written per partition.
type txnKey struct {
	partition  int32
	producerID int64
}

// txnIndex finds the groups a marker resolves and the TxnOffsetCommits it
// must fence. Its lock is a leaf, taken under group locks.
type txnIndex struct {
	mu sync.Mutex
	// groups holds the groups with pending offsets of each producer;
	// changed only under the lock of the group added or removed.
	groups map[txnKey]map[string]struct{}
	// guards holds the TxnOffsetCommits in progress of each producer,
	// and the marker generation they started in.
	guards map[txnKey]*txnGuards
}

type txnGuards struct {
	refs int    // guards handed out and not yet used
	gen  uint64 // markers seen while refs > 0
}

// TxnGuard ties a TxnOffsetCommit to the transaction coordinator's word
// that the group's __consumer_offsets partition is in the producer's
// transaction, as partition.VerificationGuard does for produced batches:
// the server takes one (BeginTxnOffsetCommit) before it asks the
// coordinator and hands it to TxnOffsetCommit, which refuses the commit
// (INVALID_TXN_STATE) if a marker of the producer reached the partition
// in between: the transaction ended, and its offsets would otherwise stay
// pending into the next one.
type TxnGuard struct {
	key  txnKey
	gen  uint64
	done bool
}

// BeginTxnOffsetCommit returns the guard of a TxnOffsetCommit of
// producerID to group, taken before the transaction coordinator verifies
// it. Pass it to TxnOffsetCommit, or to AbandonTxnOffsetCommit when the
// commit is not made.
func (c *Coordinator) BeginTxnOffsetCommit(group string, producerID int64) *TxnGuard {
	key := txnKey{c.Partition(group), producerID}
	c.txn.mu.Lock()
	defer c.txn.mu.Unlock()
	gs := c.txn.guards[key]
	if gs == nil {
		gs = &txnGuards{}
		c.txn.guards[key] = gs
	}
	gs.refs++
	return &TxnGuard{key: key, gen: gs.gen}
}

// AbandonTxnOffsetCommit releases a guard whose commit is not made (the
// coordinator refused it). It is a no-op on a guard already used.
func (c *Coordinator) AbandonTxnOffsetCommit(g *TxnGuard) {
	c.txn.mu.Lock()
	defer c.txn.mu.Unlock()
	c.releaseGuardLocked(g)
}

func (c *Coordinator) releaseGuardLocked(g *TxnGuard) {
	if g == nil || g.done {
		return
	}
	g.done = true
	if gs := c.txn.guards[g.key]; gs != nil {
		if gs.refs--; gs.refs == 0 {
			delete(c.txn.guards, g.key)
		}
	}
}

// TxnOffsetCommit handles a TxnOffsetCommit request (v0-v6) whose
// transaction the server verified with the transaction coordinator under
// guard (from BeginTxnOffsetCommit, which this call releases). The
// accepted offsets are stored as pending offsets of the producer before
// the answer; they become the group's committed offsets when the
// transaction commits (WriteTxnMarker).
//
// Behavior:
//   - The group checks are Kafka's for a transactional commit: a commit
//     without generation and member (-1, "") is accepted whatever the
//     group's state, and creates a simple group if there is none; one
//     with a member must name a member of the group at its generation
//     (classic) or at an epoch no newer than its own (KIP-848), else
//     UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION.
//   - A marker of the producer between the guard and the commit answers
//     INVALID_TXN_STATE: the transaction ended meanwhile.
//   - Per partition: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_METADATA_TOO_LARGE;
//     a store failure answers COORDINATOR_NOT_AVAILABLE.
//
// Version notes:
//   - v3+ carry the generation, member and instance ids (KIP-447).
//   - v6 names topics by id (UNKNOWN_TOPIC_ID for one that is not known).
func (c *Coordinator) TxnOffsetCommit(ctx context.Context, req *kmsg.TxnOffsetCommitRequest, guard *TxnGuard) *kmsg.TxnOffsetCommitResponse {
	defer c.AbandonTxnOffsetCommit(guard)
	topics := c.cfg.Topics()
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	type slot struct {
		topic string
		part  *kmsg.TxnOffsetCommitRequestTopicPartition
		resp  *kmsg.TxnOffsetCommitResponseTopicPartition
	}
	var byID map[[16]byte]string
	if req.Version >= 6 {
		byID = topicsByID(topics)
	}
	var slots []slot
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, st)
		name, idKnown := rt.Topic, true
		if req.Version >= 6 {
			name, idKnown = byID[rt.TopicID]
		}
		info, known := topics[name]
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[len(resp.Topics)-1].Partitions[j]
			*sp = kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case req.Group == "":
				sp.ErrorCode = kerr.InvalidGroupID.Code
			case !idKnown:
				sp.ErrorCode = kerr.UnknownTopicID.Code
			case !known || rp.Partition < 0 || rp.Partition >= info.Partitions:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.Metadata != nil && len(*rp.Metadata) > c.cfg.OffsetMetadataMaxBytes:
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			default:
				slots = append(slots, slot{topic: name, part: rp, resp: sp})
			}
		}
	}
	if len(slots) == 0 {
		return resp
	}
	failAll := func(code int16) *kmsg.TxnOffsetCommitResponse {
		for _, s := range slots {
			s.resp.ErrorCode = code
		}
		return resp
	}
	generation, memberID := int32(-1), ""
	if req.Version >= 3 {
		generation, memberID = req.Generation, req.MemberID
	}
	anonymous := generation < 0 && memberID == "" && (req.Version < 3 || req.InstanceID == nil)
	g, res := c.lockGroup(req.Group, anonymous)
	switch res {
	case lookupClosed:
		return failAll(kerr.CoordinatorNotAvailable.Code)
	case lookupOther:
		return failAll(kerr.GroupIDNotFound.Code)
	case lookupMissing:
		return failAll(kerr.IllegalGeneration.Code)
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	if code := g.validateTxnCommitLocked(generation, memberID, req.InstanceID, anonymous); code != 0 {
		return failAll(code)
	}

	c.txn.mu.Lock()
	fenced := true
	if guard != nil && !guard.done && guard.key == (txnKey{g.partition, req.ProducerID}) {
		gs := c.txn.guards[guard.key]
		fenced = gs == nil || gs.gen != guard.gen
	}
	if !fenced {
		c.registerPendingLocked(g, req.ProducerID)
	}
	c.releaseGuardLocked(guard)
	c.txn.mu.Unlock()
	if fenced {
		return failAll(kerr.InvalidTxnState.Code)
	}

	now := time.Now().UnixMilli()
	recs := make([]Record, len(slots))
	entries := make([]offsetEntry, len(slots))
	for i, s := range slots {
		entries[i] = offsetEntry{offset: s.part.Offset, leaderEpoch: -1, metadata: derefStr(s.part.Metadata), commitTime: now, expireTime: -1}
		if req.Version >= 2 {
			entries[i].leaderEpoch = s.part.LeaderEpoch
		}
		recs[i] = txnOffsetRecord(g.name, req.ProducerID, req.ProducerEpoch, s.topic, s.part.Partition, &entries[i])
	}
	if err := c.appendLocked(g, recs); err != nil {
		return failAll(kerr.CoordinatorNotAvailable.Code)
	}
	for i, s := range slots {
		g.addPendingOffset(req.ProducerID, req.ProducerEpoch, s.topic, s.part.Partition, entries[i])
		s.resp.ErrorCode = 0
	}
	return resp
}

// registerPendingLocked records that g may hold pending offsets of pid.
// g.mu and c.txn.mu are held.
func (c *Coordinator) registerPendingLocked(g *group, pid int64) {
	key := txnKey{g.partition, pid}
	m := c.txn.groups[key]
	if m == nil {
		m = make(map[string]struct{})
		c.txn.groups[key] = m
	}
	m[g.name] = struct{}{}
}

// unregisterPendingLocked forgets g for pid once it holds no pending
// offsets of it. g.mu is held.
func (c *Coordinator) unregisterPendingLocked(g *group, pid int64) {
	if g.txnOffsets[pid] != nil {
		return
	}
	key := txnKey{g.partition, pid}
	c.txn.mu.Lock()
	defer c.txn.mu.Unlock()
	if m := c.txn.groups[key]; m != nil {
		delete(m, g.name)
		if len(m) == 0 {
			delete(c.txn.groups, key)
		}
	}
}

// validateTxnCommitLocked is Kafka's validateOffsetCommit for a
// transactional commit.
func (g *group) validateTxnCommitLocked(generation int32, memberID string, instanceID *string, anonymous bool) int16 {
	if anonymous {
		return 0
	}
	if g.kind == kindConsumer {
		if generation < 0 && len(g.cg.members) == 0 {
			return 0
		}
		m := g.cg.members[memberID]
		if m == nil {
			return kerr.UnknownMemberID.Code
		}
		if generation < 0 || generation > m.epoch {
			return kerr.IllegalGeneration.Code
		}
		return 0
	}
	if generation < 0 && g.state == stateEmpty {
		return 0
	}
	if code := g.validateMember(memberID, instanceID); code != 0 {
		return code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	return 0
}

// WriteTxnMarker is the end of a transaction in the __consumer_offsets
// partition partition: the transaction coordinator's marker for it. A
// commit makes the pending offsets of producerID in the partition's groups
// their committed offsets; an abort drops them. Each group is updated
// with one append (its offsets and the deletion of its pending records),
// durable before WriteTxnMarker returns; a failed append returns the error
// and the coordinator retries the marker, which is safe: a group already
// resolved has nothing pending left. Pending offsets of a later epoch
// than the marker's (a newer transaction) are kept. TxnOffsetCommits of
// the producer verified before the marker and not yet stored are refused.
func (c *Coordinator) WriteTxnMarker(ctx context.Context, partition int32, producerID int64, epoch int16, commit bool) error {
	if c.isClosed() {
		return ErrClosed
	}
	if !c.loadedPartition(partition) {
		return ErrNotLoaded
	}
	key := txnKey{partition, producerID}
	c.txn.mu.Lock()
	if gs := c.txn.guards[key]; gs != nil {
		gs.gen++
	}
	var names []string
	for name := range c.txn.groups[key] {
		names = append(names, name)
	}
	c.txn.mu.Unlock()
	if !c.loadedPartition(partition) {
		// Unloaded meanwhile: the groups found (none, maybe) may not be
		// all the partition holds.
		return ErrNotLoaded
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.resolveTxn(name, producerID, epoch, commit); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by WriteTxnMarker after Close.
var ErrClosed = errors.New("group: coordinator closed")

// ErrNotLoaded is returned by WriteTxnMarker for a partition of
// __consumer_offsets that is not loaded here (Config.LoadOnLead): this
// broker does not lead it, and the marker goes to the one that does.
var ErrNotLoaded = errors.New("group: __consumer_offsets partition not loaded")

// loadedPartition reports whether partition p's groups are in memory.
func (c *Coordinator) loadedPartition(p int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p >= 0 && int(p) < len(c.mu.loaded) && c.mu.loaded[p]
}

func (c *Coordinator) resolveTxn(name string, pid int64, epoch int16, commit bool) error {
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		return ErrClosed
	case lookupMissing:
		return nil
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	defer c.unregisterPendingLocked(g, pid)
	pt := g.txnOffsets[pid]
	if pt == nil || pt.epoch > epoch {
		return nil
	}
	// Offsets of topics deleted since they were committed are dropped,
	// as TopicsChanged drops committed ones.
	var topics map[string]TopicInfo
	if commit {
		topics = c.cfg.Topics()
	}
	var recs []Record
	pt.sorted(func(topic string, part int32, e offsetEntry) {
		if info, ok := topics[topic]; ok && part < info.Partitions {
			recs = append(recs, offsetRecord(g.name, topic, part, &e))
		}
		recs = append(recs, txnOffsetRecord(g.name, pid, 0, topic, part, nil))
	})
	if err := c.appendLocked(g, recs); err != nil {
		return fmt.Errorf("group: marker (commit %v) of producer %d in group %s: %w", commit, pid, g.name, err)
	}
	pt.sorted(func(topic string, part int32, e offsetEntry) {
		if info, ok := topics[topic]; ok && part < info.Partitions {
			g.setOffset(topic, part, e)
		}
	})
	delete(g.txnOffsets, pid)
	c.log.Debug("transactional offsets resolved", "group", g.name, "producer_id", pid, "commit", commit, "offsets", len(recs))
	return nil
}

// indexPendingAfterReplay rebuilds the index of pending offsets from the
// replayed groups. It runs in New, before the coordinator is shared, so
// holding the group locks is not needed.
func (c *Coordinator) indexPendingAfterReplay() {
	groups := c.groupsSnapshot()
	c.txn.mu.Lock()
	defer c.txn.mu.Unlock()
	for _, g := range groups {
		for pid := range g.txnOffsets {
			c.registerPendingLocked(g, pid)
		}
	}
}

// dropPendingLocked forgets every pending offset of g, whose tombstones
// (pendingTombstones) are durable: the group is being deleted. g.mu is
// held.
func (c *Coordinator) dropPendingLocked(g *group) {
	pids := make([]int64, 0, len(g.txnOffsets))
	for pid := range g.txnOffsets {
		pids = append(pids, pid)
	}
	g.txnOffsets = nil
	for _, pid := range pids {
		c.unregisterPendingLocked(g, pid)
	}
}
