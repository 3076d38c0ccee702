package partition

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ferrymq/ferry/record"
)

// A partition of a cluster is a replica: its leader takes produce and
// tracks how far each follower has fetched; a follower appends what it
// fetches from its leader, keeping the leader's offsets, and truncates
// where its log diverges. The high watermark is Kafka's: on the leader,
// the smallest log end of the in-sync replicas (each follower's log end
// is the offset it fetches from, which it sends only once what it
// fetched before is fdatasynced; the leader's own counts up to its
// durable offset), so a record below it is durable on every in-sync
// replica; on a follower, the leader's high watermark, capped by its
// own durable end. A partition that never became leader or follower (a
// single broker) is the leader of itself, at epoch 0, and its high
// watermark is its durable offset.

var (
	// ErrNotLeader: this replica does not lead the partition (any more)
	// (NOT_LEADER_OR_FOLLOWER).
	ErrNotLeader = errors.New("partition: not the leader")
	// ErrFencedEpoch: a request named an older leader epoch
	// (FENCED_LEADER_EPOCH).
	ErrFencedEpoch = errors.New("partition: fenced leader epoch")
	// ErrUnknownEpoch: a request named a newer leader epoch than this
	// replica knows (UNKNOWN_LEADER_EPOCH).
	ErrUnknownEpoch = errors.New("partition: unknown leader epoch")
	// ErrNotFollower: the replica no longer follows at the leader epoch
	// a fetcher's answer was asked for (it leads now, or follows a newer
	// leader): the answer must not touch its log.
	ErrNotFollower = errors.New("partition: no longer a follower at this leader epoch")
	// ErrNotEnoughReplicas: fewer replicas are in sync than
	// min.insync.replicas (NOT_ENOUGH_REPLICAS).
	ErrNotEnoughReplicas = errors.New("partition: not enough in-sync replicas")
	// ErrNotEnoughReplicasAfterAppend: the batch was appended but the
	// ISR shrank below min.insync.replicas before it was replicated
	// (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
	ErrNotEnoughReplicasAfterAppend = errors.New("partition: not enough in-sync replicas after append")
	// ErrStopping: the broker is stopping and no longer waits for its
	// followers (StopWaiting). It wraps ErrNotLeader, a retriable
	// NOT_LEADER_OR_FOLLOWER: the write was not acknowledged and the
	// client retries it on the partition's next leader.
	ErrStopping = fmt.Errorf("%w: the broker is stopping", ErrNotLeader)
)

// replicationTimeout bounds Sync's wait for the in-sync replicas.
const replicationTimeout = 30 * time.Second

// CheckMinISR refuses an acks=all append on a leader whose ISR is
// smaller than min.insync.replicas (ErrNotEnoughReplicas), as Kafka does
// before appending.
func (p *Partition) CheckMinISR() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || !p.repl.leader {
		return nil
	}
	if n := len(p.repl.isr); n < p.mu.cfg.MinInsyncReplicas {
		return fmt.Errorf("%w: %d in sync, min.insync.replicas is %d", ErrNotEnoughReplicas, n, p.mu.cfg.MinInsyncReplicas)
	}
	return nil
}

// SyncReplicated returns once the records below end, appended by this
// replica as leader at epoch, are durable here and on every in-sync
// replica: the answer of an acks=all produce. On a single broker it is
// Sync. It fails with ErrNotLeader if the replica stopped leading at
// epoch, and with ctx's error when ctx ends first.
func (p *Partition) SyncReplicated(ctx context.Context, epoch int32, end int64) error {
	if err := p.log.Sync(); err != nil {
		return err
	}
	p.repl.Lock()
	on, leader, cur := p.repl.on, p.repl.leader, p.repl.epoch
	p.repl.Unlock()
	if !on {
		return nil
	}
	if !leader || cur != epoch {
		return fmt.Errorf("%w: leadership moved while the batch was replicated", ErrNotLeader)
	}
	if err := p.WaitReplicated(ctx, end); err != nil {
		return err
	}
	p.mu.Lock()
	minISR := p.mu.cfg.MinInsyncReplicas
	p.mu.Unlock()
	p.repl.Lock()
	n := len(p.repl.isr)
	p.repl.Unlock()
	if n < minISR {
		return fmt.Errorf("%w: %d in sync, min.insync.replicas is %d", ErrNotEnoughReplicasAfterAppend, n, minISR)
	}
	return nil
}

// replica is the replication state of a partition of a cluster; its
// zero value is a single broker's partition.
type replica struct {
	sync.Mutex
	on       bool  // BecomeLeader or BecomeFollower was called
	leader   bool  // this replica leads
	epoch    int32 // the current leader epoch
	self     int32
	hw       int64 // the replicated high watermark
	isr      []int32
	expanded []int32 // followers caught up, proposed for the ISR
	// followers: on the leader, each other replica's state.
	followers map[int32]*follower
	// waiters: acks=all produces waiting for the high watermark.
	waiters []hwWaiter
	epochs  *epochCache
	// roleGen counts role changes; a waiter of an older one fails.
	roleGen int64
	// stopping is set by StopWaiting: every wait for the in-sync
	// replicas fails at once with ErrStopping.
	stopping bool
}

type follower struct {
	logEnd       int64     // the offset it last fetched from, -1 unknown
	lastCaughtUp time.Time // when it last fetched up to the log end
	lastFetch    time.Time
	leoAtFetch   int64 // the leader's log end at its previous fetch
}

type hwWaiter struct {
	offset int64
	ch     chan error
}

// epochsLocked loads the epoch cache on first use.
func (p *Partition) epochsLocked() (*epochCache, error) {
	if p.repl.epochs == nil {
		c, err := loadEpochs(p.log.Dir())
		if err != nil {
			return nil, err
		}
		p.repl.epochs = c
	}
	return p.repl.epochs, nil
}

// Leader reports whether this replica leads the partition and at which
// epoch. A partition of a single broker always leads, at epoch 0.
func (p *Partition) Leader() (bool, int32) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on {
		return true, LeaderEpoch
	}
	return p.repl.leader, p.repl.epoch
}

// Replicated reports whether the partition is a replica of a cluster
// (BecomeLeader or BecomeFollower was called).
func (p *Partition) Replicated() bool {
	p.repl.Lock()
	defer p.repl.Unlock()
	return p.repl.on
}

// BecomeLeader makes this replica the leader at epoch, with isr the
// in-sync replicas and replicas all of them, self this broker. The
// epoch's first offset is the log end now. A leader keeps its high
// watermark and raises it as its followers fetch.
func (p *Partition) BecomeLeader(self, epoch int32, isr, replicas []int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.repl.Lock()
	defer p.repl.Unlock()
	if p.repl.on && p.repl.leader && p.repl.epoch == epoch {
		p.updateISRLocked(isr, replicas)
		return nil
	}
	ec, err := p.epochsLocked()
	if err != nil {
		return err
	}
	prev := slices.Clone(ec.entries)
	if err := ec.assignSaved(epoch, p.log.NextOffset()); err != nil {
		// The role is unchanged: nor is the cache, so that batches
		// of the epoch it follows are still recorded. A retry
		// assigns and saves again.
		ec.entries = prev
		return err
	}
	if !p.repl.on {
		p.repl.hw = p.log.LogStartOffset()
	}
	p.repl.on, p.repl.leader, p.repl.epoch, p.repl.self = true, true, epoch, self
	p.repl.roleGen++
	p.repl.followers = map[int32]*follower{}
	p.repl.expanded = nil
	now := time.Now()
	for _, r := range replicas {
		if r != self {
			p.repl.followers[r] = &follower{logEnd: -1, lastCaughtUp: now, lastFetch: now}
		}
	}
	p.repl.isr = slices.Clone(isr)
	p.failWaitersLocked(ErrNotLeader)
	p.recomputeHWLocked()
	return nil
}

// BecomeFollower makes this replica a follower at epoch: produce is
// refused and acks=all produces waiting here fail with ErrNotLeader.
func (p *Partition) BecomeFollower(self, epoch int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.repl.Lock()
	defer p.repl.Unlock()
	if _, err := p.epochsLocked(); err != nil {
		return err
	}
	if !p.repl.on {
		p.repl.hw = p.log.LogStartOffset()
	}
	if p.repl.on && !p.repl.leader && p.repl.epoch == epoch {
		return nil
	}
	p.repl.on, p.repl.leader, p.repl.epoch, p.repl.self = true, false, epoch, self
	p.repl.roleGen++
	p.repl.followers = nil
	p.repl.expanded = nil
	p.failWaitersLocked(ErrNotLeader)
	return nil
}

// UpdateISR tells the leader the in-sync replicas and replicas the
// metadata log now holds.
func (p *Partition) UpdateISR(isr, replicas []int32) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if p.repl.on && p.repl.leader {
		p.updateISRLocked(isr, replicas)
	}
}

func (p *Partition) updateISRLocked(isr, replicas []int32) {
	p.repl.isr = slices.Clone(isr)
	p.repl.expanded = slices.DeleteFunc(p.repl.expanded, func(r int32) bool { return slices.Contains(isr, r) })
	now := time.Now()
	for _, r := range replicas {
		if r != p.repl.self && p.repl.followers[r] == nil {
			p.repl.followers[r] = &follower{logEnd: -1, lastCaughtUp: now, lastFetch: now}
		}
	}
	for r := range p.repl.followers {
		if !slices.Contains(replicas, r) {
			delete(p.repl.followers, r)
		}
	}
	p.recomputeHWLocked()
}

// recomputeHWLocked raises the leader's high watermark to the smallest
// log end of the in-sync replicas (those of the metadata log and those
// proposed for it: Kafka's maximal ISR), and wakes what waits for it.
func (p *Partition) recomputeHWLocked() {
	if !p.repl.on || !p.repl.leader {
		return
	}
	hw := p.log.DurableOffset()
	for _, set := range [][]int32{p.repl.isr, p.repl.expanded} {
		for _, r := range set {
			if r == p.repl.self {
				continue
			}
			f := p.repl.followers[r]
			if f == nil || f.logEnd < 0 {
				return // not heard from yet: the watermark waits
			}
			hw = min(hw, f.logEnd)
		}
	}
	if hw > p.repl.hw {
		p.repl.hw = hw
		p.wakeWaitersLocked()
		p.notify()
	}
}

// replicatedHW returns the replicated high watermark and true for a
// replica of a cluster.
// cleanLimit bounds the log cleaner (log.Config.CleanLimit): a replica
// of a cluster cleans only below its high watermark, as Kafka; a single
// broker's log is bounded by its active segment only.
func (p *Partition) cleanLimit() int64 {
	if hw, ok := p.replicatedHW(); ok {
		return hw
	}
	return math.MaxInt64
}

func (p *Partition) replicatedHW() (int64, bool) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on {
		return 0, false
	}
	return p.repl.hw, true
}

// FollowerFetched records that follower id fetched from offset (so it
// holds, durably, everything below it) at now. It returns an error for a
// request this leader must refuse. With addToISR the follower, out of the
// ISR, has caught up: the caller proposes it for the ISR (and calls
// ExpandingISR).
func (p *Partition) FollowerFetched(id, epoch int32, offset int64, now time.Time) (addToISR bool, err error) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || !p.repl.leader {
		return false, ErrNotLeader
	}
	switch {
	case epoch >= 0 && epoch < p.repl.epoch:
		return false, ErrFencedEpoch
	case epoch > p.repl.epoch:
		return false, ErrUnknownEpoch
	}
	f := p.repl.followers[id]
	if f == nil {
		return false, fmt.Errorf("%w: broker %d is not a replica", ErrNotLeader, id)
	}
	leo := p.log.NextOffset()
	if offset >= leo {
		f.lastCaughtUp = now
	} else if offset >= f.leoAtFetch && f.leoAtFetch > 0 {
		f.lastCaughtUp = f.lastFetch
	}
	f.logEnd, f.lastFetch, f.leoAtFetch = offset, now, leo
	p.recomputeHWLocked()
	inISR := slices.Contains(p.repl.isr, id) || slices.Contains(p.repl.expanded, id)
	start := int64(0)
	if p.repl.epochs != nil && len(p.repl.epochs.entries) > 0 {
		start = p.repl.epochs.entries[len(p.repl.epochs.entries)-1].StartOffset
	}
	return !inISR && offset >= p.repl.hw && offset >= start, nil
}

// ExpandingISR counts follower id in the high watermark from now on, as
// Kafka's maximal ISR does while an expansion is being recorded.
func (p *Partition) ExpandingISR(id int32) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if p.repl.on && p.repl.leader && !slices.Contains(p.repl.expanded, id) {
		p.repl.expanded = append(p.repl.expanded, id)
	}
}

// LaggingReplicas returns the in-sync followers that have not caught up
// with the log end for longer than maxLag: the leader proposes to remove
// them from the ISR (replica.lag.time.max.ms).
func (p *Partition) LaggingReplicas(now time.Time, maxLag time.Duration) []int32 {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || !p.repl.leader {
		return nil
	}
	var out []int32
	leo := p.log.NextOffset()
	for _, r := range p.repl.isr {
		f := p.repl.followers[r]
		if r == p.repl.self || f == nil {
			continue
		}
		if f.logEnd < leo && now.Sub(f.lastCaughtUp) > maxLag {
			out = append(out, r)
		}
	}
	return out
}

// WaitReplicated returns once the high watermark reaches offset (every
// in-sync replica holds the records below it durably), or with
// ErrNotLeader if this replica stops leading first, ErrStopping once the
// broker stops (StopWaiting), or ctx's error.
func (p *Partition) WaitReplicated(ctx context.Context, offset int64) error {
	p.repl.Lock()
	if !p.repl.on {
		p.repl.Unlock()
		return nil
	}
	if !p.repl.leader {
		p.repl.Unlock()
		return ErrNotLeader
	}
	if p.repl.hw >= offset {
		p.repl.Unlock()
		return nil
	}
	if p.repl.stopping {
		p.repl.Unlock()
		return ErrStopping
	}
	w := hwWaiter{offset: offset, ch: make(chan error, 1)}
	p.repl.waiters = append(p.repl.waiters, w)
	p.repl.Unlock()
	select {
	case err := <-w.ch:
		return err
	case <-ctx.Done():
		p.repl.Lock()
		p.repl.waiters = slices.DeleteFunc(p.repl.waiters, func(x hwWaiter) bool { return x.ch == w.ch })
		p.repl.Unlock()
		return ctx.Err()
	}
}

// StopWaiting fails every wait for the in-sync replicas (an acks=all
// produce, a coordinator's Sync) with ErrStopping, now and from then on.
// A broker that is stopping calls it first: its followers may be gone
// already, and a wait that no follower will ever end would hold its
// Close for the whole replication timeout. Nothing acknowledged is
// lost: what waited was not acknowledged, and what is below the high
// watermark stays acknowledged. It cannot be undone; the partition is
// about to be closed.
func (p *Partition) StopWaiting() {
	p.repl.Lock()
	defer p.repl.Unlock()
	p.repl.stopping = true
	p.failWaitersLocked(ErrStopping)
}

func (p *Partition) wakeWaitersLocked() {
	kept := p.repl.waiters[:0]
	for _, w := range p.repl.waiters {
		if w.offset <= p.repl.hw {
			w.ch <- nil
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.repl.waiters[len(kept):])
	p.repl.waiters = kept
}

func (p *Partition) failWaitersLocked(err error) {
	for _, w := range p.repl.waiters {
		w.ch <- err
	}
	p.repl.waiters = nil
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch for epoch: see
// epochCache.endOffsetFor. A partition of a single broker has one epoch,
// 0, ending at its high watermark.
func (p *Partition) EndOffsetForEpoch(epoch int32) (int32, int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on {
		if epoch <= LeaderEpoch {
			return LeaderEpoch, max(p.log.DurableOffset(), p.log.LogStartOffset()), nil
		}
		return -1, -1, nil
	}
	ec, err := p.epochsLocked()
	if err != nil {
		return -1, -1, err
	}
	e, off := ec.endOffsetFor(epoch, p.log.NextOffset())
	return e, off, nil
}

// LatestEpoch is the newest leader epoch in the log (-1 if none).
func (p *Partition) LatestEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	ec, err := p.epochsLocked()
	if err != nil {
		return -1
	}
	return ec.latest()
}

// AppendReplica appends batches a follower fetched from its leader at
// epoch, keeping their offsets and leader epochs. Batches the log already
// holds are skipped. It returns the new log end. The caller syncs
// (SyncLocal) before it fetches again, so that the offset it fetches
// from is durable. It fails with ErrNotFollower, appending nothing, if
// the replica no longer follows at epoch: an answer that arrives after a
// change of leader belongs to a log this replica no longer has.
func (p *Partition) AppendReplica(epoch int32, records []byte) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return 0, ErrClosed
	}
	if err := p.checkFollowerLocked(epoch); err != nil {
		return p.log.NextOffset(), err
	}
	ec, err := p.epochsLocked()
	if err != nil {
		return 0, err
	}
	for rest := records; len(rest) > 0; {
		var h record.Header
		if err := record.ParseInto(rest, &h); err != nil {
			break // a partial batch at the end of a fetch
		}
		if h.Size() > len(rest) {
			break
		}
		batch := rest[:h.Size()]
		rest = rest[h.Size():]
		if err := record.Check(&h, batch); err != nil {
			return p.log.NextOffset(), fmt.Errorf("%w: from the leader: %v", ErrCorruptMessage, err)
		}
		next := p.log.NextOffset()
		if h.LastOffset() < next {
			continue
		}
		if h.BaseOffset != next {
			return next, fmt.Errorf("%w: the leader's batch at %d does not follow the log end %d", ErrInvalidRecord, h.BaseOffset, next)
		}
		opens := p.opensTxnLocked(&h) // before the append, as Append does
		if opens {
			p.stable.begin(h.BaseOffset)
		}
		off, err := p.log.Append(batch, &h)
		if err != nil {
			if opens {
				p.stable.forget(p.mu.ongoing)
			}
			return p.log.NextOffset(), err
		}
		// The epoch is recorded once its first batch is in the log
		// (saved below, or, if this call ends early, by the next).
		ec.assign(h.PartitionLeaderEpoch, off)
		if err := p.replicaTxnLocked(batch, &h, off); err != nil {
			return p.log.NextOffset(), err
		}
	}
	if err := ec.saveIfChanged(); err != nil {
		return p.log.NextOffset(), err
	}
	p.maybeSnapshotLocked()
	return p.log.NextOffset(), nil
}

// replicaTxnLocked keeps a follower's producer and transaction state as
// its leader's: a batch of a producer records its sequence and may open a
// transaction; a commit or abort marker ends one (an abort goes into the
// aborted-transaction index), as WriteMarker does on the leader, so that
// the follower answers read_committed fetches and the last stable offset
// the same way once it leads.
func (p *Partition) replicaTxnLocked(batch []byte, h *record.Header, off int64) error {
	if h.ProducerID < 0 {
		return nil
	}
	if !h.IsControl() {
		if _, started := recordBatch(p.mu.producers, h); started {
			p.beginTxnLocked(h.ProducerID, h.BaseOffset)
		}
		return nil
	}
	typ, err := record.ControlType(batch)
	if err != nil {
		return fmt.Errorf("%w: control batch at %d from the leader: %v", ErrCorruptMessage, off, err)
	}
	if typ != record.ControlAbort && typ != record.ControlCommit {
		return nil
	}
	coordEpoch, err := record.MarkerCoordinatorEpoch(batch)
	if err != nil {
		return fmt.Errorf("%w: marker at %d from the leader: %v", ErrCorruptMessage, off, err)
	}
	first := endTxn(p.mu.producers, h.ProducerID, h.ProducerEpoch, coordEpoch)
	delete(p.mu.verify, h.ProducerID)
	if first < 0 {
		return nil
	}
	delete(p.mu.ongoing, h.ProducerID)
	if typ == record.ControlAbort {
		e := AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: off, LastStableOffset: p.mu.ongoing.lastStable(off + 1)}
		if err := p.log.AppendAbortedTxn(e); err != nil {
			return err
		}
	}
	p.stable.end(p.mu.ongoing, first, off)
	return nil
}

// checkFollowerLocked refuses (ErrNotFollower) a change by a fetcher of
// epoch unless the replica follows at that epoch. With p.mu held, the
// role cannot change until the caller is done: BecomeLeader takes p.mu.
func (p *Partition) checkFollowerLocked(epoch int32) error {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || p.repl.leader || p.repl.epoch != epoch {
		return fmt.Errorf("%w: the fetch was for epoch %d, the replica is at %d (leading: %v)", ErrNotFollower, epoch, p.repl.epoch, p.repl.leader)
	}
	return nil
}

// SetFollowerHW records the high watermark of the leader at epoch on a
// follower, capped by what this replica holds; it does nothing unless
// the replica follows at epoch. A rise wakes the watchers: consumers
// long-polling a follower (KIP-392) read up to it.
func (p *Partition) SetFollowerHW(epoch int32, hw int64) {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || p.repl.leader || p.repl.epoch != epoch {
		return
	}
	hw = min(hw, p.log.NextOffset())
	if hw > p.repl.hw {
		p.repl.hw = hw
		p.notify()
	}
}

// ReadReplica is a replica a consumer may be sent to read from (KIP-392's
// replica view): its broker and how far its log reaches.
type ReadReplica struct {
	ID     int32
	LogEnd int64
}

// ReadReplicas returns, on a leader, the in-sync followers whose log
// reaches offset (the offset they last fetched from is past it), those a
// consumer at offset may be sent to; nil elsewhere.
func (p *Partition) ReadReplicas(offset int64) []ReadReplica {
	p.repl.Lock()
	defer p.repl.Unlock()
	if !p.repl.on || !p.repl.leader {
		return nil
	}
	var out []ReadReplica
	for _, id := range p.repl.isr {
		if f := p.repl.followers[id]; id != p.repl.self && f != nil && f.logEnd >= offset {
			out = append(out, ReadReplica{ID: id, LogEnd: f.logEnd})
		}
	}
	return out
}

// TruncateTo cuts the log of a follower at epoch back to end (see
// log.Log.TruncateTo) with the epoch cache and the idempotent-producer
// state. It returns the new log end. It fails with ErrNotFollower,
// cutting nothing, unless the replica follows at epoch: a leader's log
// holds what it acknowledged, and an answer of its old leader that
// arrives late must not cut it.
func (p *Partition) TruncateTo(epoch int32, end int64) (int64, error) {
	p.log.PauseCleaning() // before mu: a cleaning pass takes mu
	defer p.log.ResumeCleaning()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return 0, ErrClosed
	}
	if err := p.checkFollowerLocked(epoch); err != nil {
		return p.log.NextOffset(), err
	}
	got, err := p.log.TruncateTo(end)
	if err != nil {
		return 0, err
	}
	return got, p.afterTruncateLocked(got)
}

// TruncateFullyAndStartAt empties the log of a follower at epoch and
// restarts it at off (a follower below its leader's log start); like
// TruncateTo, only while the replica follows at epoch.
func (p *Partition) TruncateFullyAndStartAt(epoch int32, off int64) error {
	p.log.PauseCleaning()
	defer p.log.ResumeCleaning()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return ErrClosed
	}
	if err := p.checkFollowerLocked(epoch); err != nil {
		return err
	}
	if err := p.log.TruncateFullyAndStartAt(off); err != nil {
		return err
	}
	return p.afterTruncateLocked(off)
}

func (p *Partition) afterTruncateLocked(end int64) error {
	ec, err := p.epochsLocked()
	if err != nil {
		return err
	}
	ec.truncateFromEnd(end)
	if err := ec.saveIfChanged(); err != nil {
		return err
	}
	// The segment cut was reopened without its aborted-transaction
	// index: loading the producers from a snapshot at or below it
	// rebuilds its entries, and the transactions open at the new end.
	m, snapAt, err := loadProducers(p.log, p.log.ActiveBase())
	if err != nil {
		return err
	}
	p.mu.producers, p.mu.snapAt = m, snapAt
	p.mu.verify = map[int64]*VerificationGuard{}
	p.mu.ongoing = ongoingTxns{}
	for id, st := range m {
		if st.txnFirst >= 0 {
			p.mu.ongoing[id] = st.txnFirst
		}
	}
	p.stable.reset(p.mu.ongoing)
	p.repl.Lock()
	p.repl.hw = min(p.repl.hw, end)
	p.repl.Unlock()
	return nil
}

// Err returns the log's sticky write error (a full disk, an I/O error),
// if any: a leader with one hands its leadership over.
func (p *Partition) Err() error { return p.log.Err() }

// ReplicaState describes a replica for DescribeLogDirs and metrics.
type ReplicaState struct {
	Leader        bool
	Epoch         int32
	HighWatermark int64
}

// reset starts the last stable offset's state again from the
// transactions open after a replica's truncation: the markers it had
// recorded may have been cut.
func (s *stableState) reset(ongoing ongoingTxns) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.completed = nil
	s.ongoingMin = ongoing.lastStable(math.MaxInt64)
	s.updateLocked()
}
