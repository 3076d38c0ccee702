package share

import (
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AcquireOptions says what one partition of a ShareFetch asks for.
type AcquireOptions struct {
	Group     string
	Member    string
	Partition TopicPartition
	// MaxRecords is how many records to acquire: ShareFetch's MaxRecords
	// (v1+), or its default of 500 when the request leaves it out. Whole
	// batches are acquired, so more may come, unless Strict.
	MaxRecords int
	// Strict never acquires more than MaxRecords, splitting a batch if it
	// must (ShareAcquireMode 1, record_limit, v2+).
	Strict bool
	// BatchSize splits the acquired ranges into ranges of at most this
	// many offsets (ShareFetch's BatchSize in batch-optimized mode, v1+);
	// 0 means no splitting.
	BatchSize int
}

// defaultMaxRecords is the acquisition limit when a ShareFetch gives none.
const defaultMaxRecords = 500

// Acquire acquires records of one partition for a member, as ShareFetch
// does, and appends the acquired ranges with their delivery counts to dst
// (ShareFetchResponse's AcquiredRecords). The server then sends the batches
// from the first acquired offset to the last: records outside the ranges
// are not the member's. Acquisition locks expire after the group's
// share.record.lock.duration.ms (LockDuration). A partition the group has
// no state for yet is initialized from share.auto.offset.reset. It returns
// UNKNOWN_TOPIC_OR_PARTITION, GROUP_ID_NOT_FOUND (the ID belongs to a
// consumer group), KAFKA_STORAGE_ERROR (the log or the store failed) or
// COORDINATOR_NOT_AVAILABLE (closed). It does not wait for data: with
// nothing acquired the server parks the request on the partition and on
// Config.Available. It allocates nothing per record.
func (c *Coordinator) Acquire(opts AcquireOptions, dst []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord) ([]kmsg.ShareFetchResponseTopicPartitionAcquiredRecord, *kerr.Error) {
	g, sp, e := c.sharePartition(opts.Group, opts.Partition, true)
	if e != nil {
		return dst, e
	}
	gc := c.groupConfig(g)
	_, info, ok := c.topic(opts.Partition.TopicID)
	if !ok {
		return dst, kerr.UnknownTopicOrPartition
	}
	offs, err := c.cfg.Reader.Offsets(opts.Partition)
	if err != nil {
		return dst, readerError(err)
	}
	if c.staleLeader(sp, offs.LeaderEpoch) {
		if g, sp, e = c.sharePartition(opts.Group, opts.Partition, true); e != nil {
			return dst, e
		}
		gc = c.groupConfig(g)
	}
	mono, ms := c.now()
	env := acquireEnv{
		reader:     c.cfg.Reader,
		tp:         opts.Partition,
		member:     opts.Member,
		maxRecords: int64(opts.MaxRecords),
		strict:     opts.Strict,
		nowMono:    mono,
		nowMs:      ms,
		lockExp:    mono + int64(gc.lockDuration),
		limit:      offs.HighWatermark,
		logStart:   offs.LogStart,
		deliveries: gc.deliveryLimit,
		dlq:        c.dlqEnabled(gc),
		readCommit: gc.readCommitted,
		topicDelay: info.DeliveryDelay.Milliseconds(),
		maxLocks:   int64(c.cfg.PartitionMaxRecordLocks),
		maxDelayed: int64(c.cfg.PartitionMaxDelayedRecords),
		dst:        dst,
	}
	if gc.readCommitted {
		env.limit = offs.LastStable
	}
	if env.maxRecords <= 0 {
		env.maxRecords = defaultMaxRecords
	}
	first := len(dst)
	sp.mu.Lock()
	if sp.dead {
		sp.mu.Unlock()
		return dst, kerr.UnknownTopicOrPartition
	}
	sp.acquireLocked(&env)
	c.scheduleLocked(sp)
	sp.mu.Unlock()
	if len(env.dst) > first && c.cfg.LoadOnLead {
		c.acquiredBehind(sp)
	}
	c.dlq.push(env.jobs...)
	dst = env.dst
	if opts.BatchSize > 0 {
		dst = splitRanges(dst, first, int64(opts.BatchSize))
	}
	if env.err != nil && len(dst) == first {
		return dst, readerError(env.err)
	}
	return dst, nil
}

func readerError(err error) *kerr.Error {
	if errors.Is(err, ErrUnknownPartition) {
		return kerr.UnknownTopicOrPartition
	}
	if errors.Is(err, ErrNotLeader) {
		return kerr.NotLeaderForPartition
	}
	return kerr.KafkaStorageError
}

// splitRanges splits the ranges of dst from index first on into ranges of
// at most size offsets.
func splitRanges(dst []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord, first int, size int64) []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord {
	for i := first; i < len(dst); i++ {
		r := dst[i]
		if r.LastOffset-r.FirstOffset+1 <= size {
			continue
		}
		tail := r
		tail.FirstOffset = r.FirstOffset + size
		dst[i].LastOffset = tail.FirstOffset - 1
		dst = append(dst, kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{})
		copy(dst[i+2:], dst[i+1:])
		dst[i+1] = tail
	}
	return dst
}

// sharePartition returns the group and the state of tp for it,
// initializing the state (and creating the group) if create is set.
func (c *Coordinator) sharePartition(group string, tp TopicPartition, create bool) (*group, *sharePartition, *kerr.Error) {
	if g, sp := c.lookup(spKey{group, tp}); g != nil && sp != nil {
		return g, sp, nil
	}
	if c.remote() {
		return c.sharePartitionRemote(group, tp, create)
	}
	if !c.spServed(spKey{group, tp}) {
		return nil, nil, kerr.NotLeaderForPartition
	}
	if !create {
		return nil, nil, kerr.InvalidRecordState
	}
	g, res := c.lockGroup(group, true)
	switch res {
	case lookupClosed:
		return nil, nil, kerr.CoordinatorNotAvailable
	case lookupOther:
		return nil, nil, kerr.GroupIDNotFound
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	if sp := g.sps[tp]; sp != nil {
		return g, sp, nil
	}
	if _, info, ok := c.topic(tp.TopicID); !ok || tp.Partition < 0 || tp.Partition >= info.Partitions {
		return nil, nil, kerr.UnknownTopicOrPartition
	}
	if e := c.initializeLocked(g, []TopicPartition{tp}); e != nil {
		return nil, nil, e
	}
	return g, g.sps[tp], nil
}

// initializePartitionsLocked creates the state of every partition a
// member of g is assigned that has none yet, so that
// share.auto.offset.reset is applied when the partition is assigned, as
// Kafka does, not when it is first fetched (with Config.State through the
// state partitions' leaders: initializeRemoteLocked). Failures are
// logged; the partition is then initialized at its first fetch.
func (c *Coordinator) initializePartitionsLocked(g *group) {
	var tps []TopicPartition
	seen := make(map[TopicPartition]bool)
	for _, m := range g.sortedMembers() {
		for _, id := range m.target.sortedIDs() {
			for _, p := range m.target[id] {
				tp := TopicPartition{id, p}
				if g.sps[tp] == nil && !seen[tp] {
					seen[tp] = true
					tps = append(tps, tp)
				}
			}
		}
	}
	if len(tps) > 0 && c.remote() {
		c.initializeRemoteLocked(g, tps)
		return
	}
	if len(tps) > 0 {
		if e := c.initializeLocked(g, tps); e != nil {
			c.log.Warn("initializing share-partitions", "group", g.name, "err", e)
		}
	}
}

// initializeLocked creates the state of tps for g (whose lock is held):
// the start offset from share.auto.offset.reset, written as a
// ShareSnapshot record, one append per state partition, before the state
// is used. Partitions the reader does not know are skipped.
func (c *Coordinator) initializeLocked(g *group, tps []TopicPartition) *kerr.Error {
	gc := c.groupConfig(g)
	_, nowMs := c.now()
	byPart := make(map[int32][]*sharePartition)
	var order []int32
	var firstErr *kerr.Error
	for _, tp := range tps {
		if !c.remote() && !c.spServed(spKey{g.name, tp}) {
			continue // another broker's (LoadOnLead)
		}
		offs, err := c.cfg.Reader.Offsets(tp)
		if err != nil {
			if firstErr == nil {
				firstErr = readerError(err)
			}
			continue
		}
		start := offs.HighWatermark
		switch gc.reset {
		case resetEarliest:
			start = offs.LogStart
		case resetByDuration:
			o, err := c.cfg.Reader.OffsetForTime(tp, nowMs-gc.resetDuration.Milliseconds())
			if err != nil {
				if firstErr == nil {
					firstErr = readerError(err)
				}
				continue
			}
			start = o
		}
		key := spKey{group: g.name, tp: tp}
		sp := newSharePartition(key, c.cfg.StatePartitions)
		sp.resetLocked(start, c.nextEpoch(key))
		sp.leaderEpoch = max(offs.LeaderEpoch, 0)
		sp.createTime = nowMs
		if byPart[sp.part] == nil {
			order = append(order, sp.part)
		}
		byPart[sp.part] = append(byPart[sp.part], sp)
	}
	for _, id := range order {
		p := c.parts[id]
		sps := byPart[id]
		recs := make([]Record, len(sps))
		for i, sp := range sps {
			recs[i] = Record{Key: sp.snapKey, Value: sp.snapshotValueLocked(nowMs)}
		}
		c.lockPart(p)
		if err := c.appendState(p, recs); err != nil {
			c.unlockPart(p)
			c.log.Warn("initializing share-partition state", "group", g.name, "err", err)
			if firstErr == nil {
				firstErr = kerr.KafkaStorageError
			}
			continue
		}
		for _, sp := range sps {
			c.addSPLocked(g, sp)
			p.register(sp)
			c.log.Info("share-partition initialized", "group", g.name, "topic_id", kafkaUUID(sp.key.tp.TopicID), "partition", sp.key.tp.Partition, "start_offset", sp.start)
		}
		c.appended(p, recs, false)
		c.unlockPart(p)
	}
	return firstErr
}

// Acknowledge applies acknowledgement batches of one partition from a
// member (ShareAcknowledge, or the acknowledgements of a ShareFetch),
// atomically: every batch is checked first and nothing changes if one is
// wrong. It returns once the outcome is durable in the store. Errors:
// INVALID_REQUEST (malformed batches, renew without renew), and
// INVALID_RECORD_STATE (a record not acquired by this member, or its lock
// expired), KAFKA_STORAGE_ERROR (the store failed; nothing changed),
// COORDINATOR_NOT_AVAILABLE (closed). Offsets below the start offset are
// already complete and skipped. renew allows acknowledge type 4 (the
// request's IsRenewAck, v2+). Rejected records, and released ones out of
// deliveries, are dead-lettered when the group has a dead-letter topic.
// For several partitions of one request use AcknowledgeAll.
func (c *Coordinator) Acknowledge(group, memberID string, tp TopicPartition, batches []AckBatch, renew bool) *kerr.Error {
	a := c.prepareAck(group, memberID, tp, batches, renew)
	if a.err != nil || a.sp == nil {
		return a.err
	}
	p := c.parts[a.sp.part]
	c.lockPart(p)
	err := c.appendState(p, a.recs)
	c.settleAck(p, &a, err)
	c.unlockPart(p)
	c.afterAck(&a)
	return a.err
}

// PartitionAcks are the acknowledgement batches of one partition.
type PartitionAcks struct {
	Partition TopicPartition
	Batches   []AckBatch
	// Err is set by AcknowledgeAll: the partition's outcome, nil if
	// every batch applied.
	Err *kerr.Error
}

// AcknowledgeAll acknowledges the batches of several partitions of one
// request, each partition as Acknowledge does (atomically per partition,
// outcomes in acks[i].Err), with one append per __share_group_state
// partition, all of them concurrently, so a request touching many
// partitions waits for about one fsync rather than one per partition.
func (c *Coordinator) AcknowledgeAll(group, memberID string, acks []PartitionAcks, renew bool) {
	prepared := make([]preparedAck, len(acks))
	byPart := make(map[int32][]int)
	for i := range acks {
		prepared[i] = c.prepareAck(group, memberID, acks[i].Partition, acks[i].Batches, renew)
		if a := &prepared[i]; a.err == nil && a.sp != nil {
			byPart[a.sp.part] = append(byPart[a.sp.part], i)
		}
	}
	var wg sync.WaitGroup
	for id, idx := range byPart {
		wg.Go(func() {
			p := c.parts[id]
			var recs []Record
			for _, i := range idx {
				recs = append(recs, prepared[i].recs...)
			}
			c.lockPart(p)
			err := c.appendState(p, recs)
			for _, i := range idx {
				c.settleAck(p, &prepared[i], err)
			}
			c.unlockPart(p)
		})
	}
	wg.Wait()
	for i := range acks {
		c.afterAck(&prepared[i])
		acks[i].Err = prepared[i].err
	}
}

// preparedAck is an acknowledgement whose runs are frozen, waiting for its
// record to be durable.
type preparedAck struct {
	err       *kerr.Error
	sp        *sharePartition // nil: nothing to store (or err)
	items     []ackItem
	recs      []Record
	epoch     int32
	nowMs     int64
	jobs      []dlqJob
	available bool
	fenced    bool // a newer leader of the partition read its state
}

// prepareAck validates batches and freezes the runs they change.
func (c *Coordinator) prepareAck(group, memberID string, tp TopicPartition, batches []AckBatch, renew bool) preparedAck {
	if e := validateAckBatches(batches, renew); e != nil {
		return preparedAck{err: e}
	}
	if len(batches) == 0 {
		return preparedAck{}
	}
	if c.isClosed() {
		return preparedAck{err: kerr.CoordinatorNotAvailable}
	}
	g, sp, e := c.sharePartition(group, tp, false)
	if e != nil {
		return preparedAck{err: e}
	}
	gc := c.groupConfig(g)
	mono, ms := c.now()
	env := ackEnv{
		nowMs:      ms,
		lockExp:    mono + int64(gc.lockDuration),
		deliveries: gc.deliveryLimit,
		dlq:        c.dlqEnabled(gc),
		cfg:        gc,
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.dead {
		return preparedAck{err: kerr.InvalidRecordState}
	}
	if e := sp.validateAckLocked(memberID, batches); e != nil {
		return preparedAck{err: e}
	}
	sp.applyAckLocked(batches, &env)
	if len(env.items) == 0 {
		return preparedAck{} // renewals only: nothing to store
	}
	sbs := make([]stateBatch, 0, len(env.items)+1)
	for _, it := range env.items {
		sbs = append(sbs, stateBatch{first: it.first, last: it.last, state: it.state.persisted(), count: it.count, notBefore: it.notBefore, reason: it.reason})
	}
	sbs = sp.dirtyLocked(sbs)
	// The runs stay frozen (pending) while the record is made durable, so
	// acknowledgements of other records, of this partition too, proceed
	// and share the store's group commit.
	return preparedAck{
		sp:    sp,
		items: env.items,
		recs:  []Record{{Key: sp.updKey, Value: sp.updateValueLocked(sbs)}},
		epoch: sp.stateEpoch,
		nowMs: ms,
	}
}

// settleAck commits or rolls back a prepared acknowledgement once its
// append returned err. p.mu is held for reading, so a snapshot sees the
// commit with the record.
func (c *Coordinator) settleAck(p *statePart, a *preparedAck, err error) {
	sp := a.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	switch {
	case sp.dead || sp.stateEpoch != a.epoch:
		// Reset meanwhile: the outcome no longer matters.
		if err != nil {
			a.err = kerr.KafkaStorageError
		}
		return
	case err != nil:
		sp.rollbackAckLocked(a.items)
		c.scheduleLocked(sp)
		c.log.Warn("storing share acknowledgement", "group", sp.key.group, "partition", sp.key.tp.Partition, "err", err)
		a.err = kerr.KafkaStorageError
		if errors.Is(err, ErrFenced) {
			// Another broker leads the partition now (Config.State).
			a.err, a.fenced = kerr.NotLeaderForPartition, true
		}
		return
	}
	a.jobs, a.available = sp.commitAckLocked(a.items, a.nowMs, nil)
	c.scheduleLocked(sp)
	c.appended(p, a.recs, false)
}

// afterAck queues the dead letters and wakes fetchers, with no lock held.
func (c *Coordinator) afterAck(a *preparedAck) {
	if a.fenced {
		c.drop(a.sp)
	}
	c.dlq.push(a.jobs...)
	if a.available && c.cfg.Available != nil {
		c.cfg.Available(a.sp.key.group, a.sp.key.tp)
	}
}

// ReleaseSession releases at once the records memberID holds on tps: its
// share session on this broker closed (ShareFetch or ShareAcknowledge with
// epoch -1, after their acknowledgements) or its connection dropped.
// Records out of deliveries are given up on instead.
func (c *Coordinator) ReleaseSession(group, memberID string, tps []TopicPartition) {
	g := c.findGroup(group)
	if g == nil {
		return
	}
	gc := c.groupConfig(g)
	var n notes
	for _, tp := range tps {
		if _, sp := c.lookup(spKey{group, tp}); sp != nil {
			c.releaseWhere(sp, gc, func(r *run) bool { return r.member == memberID }, &n)
		}
	}
	c.fire(&n)
}

// releaseWhere releases the acquired runs of sp that match, and notes sp
// as available if records became deliverable and the change to write
// behind.
func (c *Coordinator) releaseWhere(sp *sharePartition, gc *groupConfig, match func(*run) bool, n *notes) {
	_, ms := c.now()
	sp.mu.Lock()
	if sp.dead {
		sp.mu.Unlock()
		return
	}
	sbs, jobs, available := sp.releaseLocked(match, ms, gc.deliveryLimit, c.dlqEnabled(gc), gc, nil, nil)
	c.scheduleLocked(sp)
	sp.mu.Unlock()
	if len(sbs) == 0 {
		return
	}
	c.dlq.push(jobs...)
	if available {
		n.available = append(n.available, sp.key)
	}
	n.writes = append(n.writes, behind{sp, sbs})
}

// LockDuration returns the acquisition lock duration of group, for
// ShareFetch's AcquisitionLockTimeoutMillis.
func (c *Coordinator) LockDuration(group string) int32 {
	if g := c.findGroup(group); g != nil {
		return millis(c.groupConfig(g).lockDuration)
	}
	return millis(c.defaultGroupConfig().lockDuration)
}

// AckBatchesFromFetch converts the acknowledgement batches of a ShareFetch
// partition, appending to dst.
func AckBatchesFromFetch(dst []AckBatch, bs []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch) []AckBatch {
	for _, b := range bs {
		dst = append(dst, AckBatch{FirstOffset: b.FirstOffset, LastOffset: b.LastOffset, Types: b.AcknowledgeTypes})
	}
	return dst
}

// AckBatchesFromAcknowledge converts the acknowledgement batches of a
// ShareAcknowledge partition, appending to dst.
func AckBatchesFromAcknowledge(dst []AckBatch, bs []kmsg.ShareAcknowledgeRequestTopicPartitionAcknowledgementBatch) []AckBatch {
	for _, b := range bs {
		dst = append(dst, AckBatch{FirstOffset: b.FirstOffset, LastOffset: b.LastOffset, Types: b.AcknowledgeTypes})
	}
	return dst
}

// acquiredRange is one range of ShareFetch's AcquiredRecords.
type acquiredRange = kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
