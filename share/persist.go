package share

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// statePart is the coordinator's view of one __share_group_state
// partition: the share-partitions whose records it holds, the live
// membership records, and how large its log has grown.
type statePart struct {
	id int32

	// mu is held for reading around an Append and the in-memory commit
	// that follows it, and for writing around a Snapshot, so that a
	// snapshot never misses a change whose record is in the log.
	mu sync.RWMutex

	liveMu sync.Mutex
	// Guarded by liveMu:
	sps     map[spKey]*sharePartition // share-partitions whose records live here
	live    map[string]Record         // membership (and unknown) records by key
	bytes   int64                     // bytes of records in the log since its start
	base    int64                     // bytes written by the last snapshot
	retryAt int64                     // after a failed snapshot, do not retry below this many bytes
	// With Config.State, the state of every share-partition stored here,
	// as written to the partition (remote.go), and the last state epoch
	// of each, deleted ones included. Snapshots and reads come from it.
	view       map[spKey]*sharePartition
	viewEpochs map[spKey]int32
	// readAt holds the leader epochs share-partitions without state were
	// read at, so that an older leader cannot create a state after a newer
	// one found none (kept in memory only: the window it closes is a
	// stale leader's first fetch racing a new leader's).
	readAt map[spKey]int32
}

func newStatePart(id int32) *statePart {
	return &statePart{id: id, sps: make(map[spKey]*sharePartition), live: make(map[string]Record), view: make(map[spKey]*sharePartition), viewEpochs: make(map[spKey]int32), readAt: make(map[spKey]int32)}
}

func recordsSize(recs []Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Key) + len(r.Value) + 16)
	}
	return n
}

func (p *statePart) needsSnapshotLocked(slack int64) bool {
	return p.bytes > 2*p.base+slack && p.bytes >= p.retryAt
}

// appended accounts for recs written to p and kicks a snapshot if due.
func (c *Coordinator) appended(p *statePart, recs []Record, membership bool) {
	if !membership && c.remote() {
		return // the state leader accounts for them (WriteShareGroupState)
	}
	p.liveMu.Lock()
	p.bytes += recordsSize(recs)
	if membership {
		for _, r := range recs {
			if r.Value == nil {
				delete(p.live, string(r.Key))
			} else {
				p.live[string(r.Key)] = r
			}
		}
	}
	kick := p.needsSnapshotLocked(c.cfg.SnapshotSlack)
	p.liveMu.Unlock()
	if kick {
		c.kickCompaction()
	}
}

// appendMembership durably appends membership records of g (whose lock is
// held) and keeps them as live.
func (c *Coordinator) appendMembership(g *group, recs []Record) error {
	p := c.parts[g.part]
	p.mu.RLock()
	defer p.mu.RUnlock()
	if _, err := c.store.Append(p.id, recs); err != nil {
		return err
	}
	c.appended(p, recs, true)
	return nil
}

// writeBehind durably appends an update record with sbs for sp, for
// changes already applied in memory (releases, lock expiries, dead-letter
// intents): losing it to a crash costs only delivery-count accuracy.
func (c *Coordinator) writeBehind(sp *sharePartition, sbs []stateBatch) {
	if c.remote() {
		// Through another broker maybe: not from the timer goroutine
		// nor from a request's.
		c.queueBehind(sp, sbs)
		return
	}
	c.writeBehindNow(sp, sbs)
}

// writeBehindNow is writeBehind, at once.
func (c *Coordinator) writeBehindNow(sp *sharePartition, sbs []stateBatch) {
	p := c.parts[sp.part]
	fenced := false
	defer func() {
		if fenced {
			c.drop(sp) // a newer leader, or a reset of the state: read it again
		}
	}()
	c.lockPart(p)
	defer c.unlockPart(p)
	sp.mu.Lock()
	if sp.dead {
		sp.mu.Unlock()
		return
	}
	sbs = sp.dirtyLocked(sbs)
	if len(sbs) == 0 {
		sp.mu.Unlock()
		return // acquisitions written by another change already
	}
	val := sp.updateValueLocked(sbs)
	sp.mu.Unlock()
	recs := []Record{{Key: sp.updKey, Value: val}}
	if err := c.appendState(p, recs); err != nil {
		c.log.Warn("storing share-partition state", "group", sp.key.group, "partition", sp.key.tp.Partition, "err", err)
		fenced = errors.Is(err, ErrFenced)
		return
	}
	c.appended(p, recs, false)
}

// register records that sp's records live in its state partition, so
// snapshots carry its state. p.mu is held for reading.
func (p *statePart) register(sp *sharePartition) {
	p.liveMu.Lock()
	p.sps[sp.key] = sp
	p.liveMu.Unlock()
}

func (p *statePart) unregister(sp *sharePartition) {
	p.liveMu.Lock()
	if p.sps[sp.key] == sp {
		delete(p.sps, sp.key)
	}
	p.liveMu.Unlock()
}

func (c *Coordinator) kickCompaction() {
	select {
	case c.compactKick <- struct{}{}:
	default:
	}
}

// compactLoop snapshots partitions whose log grew well past their live
// state.
func (c *Coordinator) compactLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case <-c.compactKick:
			for _, p := range c.parts {
				select {
				case <-c.quit:
					return
				default:
				}
				c.snapshotPartition(p, false)
			}
		}
	}
}

// snapshotPartition rewrites the live state of p (a ShareSnapshot record
// per share-partition and the live membership records) through
// Store.Snapshot, if p needs it or force is set.
func (c *Coordinator) snapshotPartition(p *statePart, force bool) error {
	if !c.Loaded(p.id) {
		return nil // another broker's (LoadOnLead)
	}
	if !force {
		// Look first, so appends are not held up for nothing.
		p.liveMu.Lock()
		due := p.needsSnapshotLocked(c.cfg.SnapshotSlack)
		p.liveMu.Unlock()
		if !due {
			return nil
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.liveMu.Lock()
	if !force && !p.needsSnapshotLocked(c.cfg.SnapshotSlack) {
		p.liveMu.Unlock()
		return nil
	}
	before := p.bytes
	if c.remote() {
		_, nowMs := c.now()
		recs := c.viewSnapshotLocked(p, nowMs)
		p.liveMu.Unlock()
		return c.storeSnapshot(p, recs, before)
	}
	live := make([]Record, 0, len(p.live))
	for _, k := range slices.Sorted(maps.Keys(p.live)) {
		live = append(live, p.live[k])
	}
	sps := slices.Collect(maps.Values(p.sps))
	p.liveMu.Unlock()
	slices.SortFunc(sps, func(a, b *sharePartition) int { return bytes.Compare(a.snapKey, b.snapKey) })

	_, nowMs := c.now()
	recs := live
	for _, sp := range sps {
		sp.mu.Lock()
		if !sp.dead {
			recs = append(recs, Record{Key: sp.snapKey, Value: sp.snapshotValueLocked(nowMs)})
		}
		sp.mu.Unlock()
	}
	return c.storeSnapshot(p, recs, before)
}

// storeSnapshot writes recs as the snapshot of p, which held before bytes.
// p.mu is held for writing.
func (c *Coordinator) storeSnapshot(p *statePart, recs []Record, before int64) error {
	start := time.Now()
	err := c.store.Snapshot(p.id, recs)
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	if err != nil {
		p.retryAt = p.bytes + c.cfg.SnapshotSlack
		c.log.Warn("snapshotting __share_group_state", "partition", p.id, "err", err)
		return err
	}
	p.bytes = recordsSize(recs)
	p.base = p.bytes
	p.retryAt = 0
	c.log.Info("snapshotted __share_group_state", "partition", p.id, "bytes_before", before, "records", len(recs), "elapsed", time.Since(start))
	return nil
}

// replayAll loads every state partition. It runs in New, before anything
// else can touch the coordinator.
func (c *Coordinator) replayAll() error {
	r := &replayer{c: c, states: make(map[spKey]*sharePartition), epochs: c.mu.epochs}
	for _, p := range c.parts {
		if err := c.store.Replay(p.id, func(offset int64, rec Record) error {
			r.record(p, offset, rec)
			return nil
		}); err != nil {
			return fmt.Errorf("share: replaying __share_group_state partition %d: %w", p.id, err)
		}
	}
	r.finish()
	return nil
}

// replayer rebuilds the coordinator's state from records.
type replayer struct {
	c      *Coordinator
	states map[spKey]*sharePartition
	// groups, if set, receives the groups of the records (a Load)
	// instead of the coordinator's map (New).
	groups map[string]*group
	// epochs is where the state epochs seen go: the coordinator's map
	// (New) or one merged into it after a Load.
	epochs  map[spKey]int32
	batches []stateBatch // scratch
	jobs    []dlqJob
}

func (r *replayer) group(name string) *group {
	c := r.c
	groups := c.mu.groups
	if r.groups != nil {
		groups = r.groups
	}
	g := groups[name]
	if g == nil {
		g = c.newGroup(name)
		groups[name] = g
	}
	return g
}

// record applies one record of partition p.
func (r *replayer) record(p *statePart, offset int64, rec Record) {
	c := r.c
	size := int64(len(rec.Key) + len(rec.Value) + 16)
	p.bytes += size
	k, err := decodeKey(rec.Key)
	if err == nil {
		err = r.apply(p, k, rec)
	}
	switch {
	case err == nil:
	case errors.Is(err, errUnknownVersion):
		// A record this version does not know: keep it live so a
		// snapshot carries it, but do not interpret it.
		c.log.Debug("unknown __share_group_state record kept", "partition", p.id, "offset", offset, "err", err)
		keep := Record{Key: bytes.Clone(rec.Key)}
		if rec.Value != nil {
			keep.Value = bytes.Clone(rec.Value)
			p.live[string(keep.Key)] = keep
		} else {
			delete(p.live, string(keep.Key))
		}
	default:
		c.log.Warn("skipping __share_group_state record", "partition", p.id, "offset", offset, "err", err)
	}
}

func (r *replayer) apply(p *statePart, k recordKey, rec Record) error {
	switch k.version {
	case keyShareSnapshot, keyShareUpdate:
		return r.applyState(p, k, rec)
	case keyGroupMetadata:
		g := r.group(k.group)
		if rec.Value == nil {
			g.persisted = false
			delete(p.live, string(rec.Key))
			return nil
		}
		v, err := decodeGroupValue(rec.Value)
		if err != nil {
			return err
		}
		g.epoch, g.persisted = v.epoch, true
	case keyMemberMetadata, keyMemberAssignment:
		g := r.group(k.group)
		if rec.Value == nil {
			delete(g.members, k.member)
			delete(p.live, string(rec.Key))
			return nil
		}
		m := g.members[k.member]
		if m == nil {
			m = &member{id: k.member, assigned: assignment{}, target: assignment{}}
		}
		if k.version == keyMemberMetadata {
			v, err := decodeMemberValue(rec.Value)
			if err != nil {
				return err
			}
			m.rack, m.clientID, m.clientHost, m.topics = v.rack, v.clientID, v.clientHost, v.topics
		} else {
			v, err := decodeAssignmentValue(rec.Value)
			if err != nil {
				return err
			}
			m.epoch, m.prevEpoch, m.assigned = v.epoch, v.prevEpoch, v.assigned
		}
		g.members[k.member] = m
	}
	keep := Record{Key: bytes.Clone(rec.Key), Value: bytes.Clone(rec.Value)}
	p.live[string(keep.Key)] = keep
	return nil
}

func (r *replayer) applyState(p *statePart, k recordKey, rec Record) error {
	c := r.c
	key := spKey{group: k.group, tp: k.tp}
	if part := statePartitionFor(key, c.cfg.StatePartitions); part != p.id {
		c.log.Warn("share-partition record in an unexpected partition", "group", k.group, "partition", p.id, "expected", part)
	}
	sp := r.states[key]
	if rec.Value == nil {
		if k.version == keyShareSnapshot && sp != nil {
			delete(r.states, key)
		}
		return nil
	}
	v, err := decodeStateValue(rec.Value, k.version == keyShareSnapshot, r.batches[:0])
	r.batches = v.batches[:0]
	if err != nil {
		return err
	}
	if k.version == keyShareSnapshot {
		if e, ok := r.epochs[key]; ok && v.stateEpoch < e {
			return nil // older than a reset already replayed
		}
		r.epochs[key] = v.stateEpoch
		if sp == nil {
			sp = newSharePartition(key, c.cfg.StatePartitions)
			sp.part = p.id
			r.states[key] = sp
		}
		sp.replaySnapshot(&v)
		return nil
	}
	if sp == nil || v.snapshotEpoch != sp.stateEpoch {
		return nil // no state to update (deleted), or built against an older one
	}
	sp.replayUpdate(&v)
	return nil
}

// finish attaches the replayed state to the groups, arms timers and
// queues the dead letters still to write.
func (r *replayer) finish() {
	c := r.c
	for key, sp := range r.states {
		g := r.group(key.group)
		g.sps[key.tp] = sp
		c.mu.sps[key] = sp
		c.parts[sp.part].sps[key] = sp
		r.jobs = sp.finishReplayLocked(r.jobs)
		c.scheduleLocked(sp)
	}
	topics := c.cfg.Topics()
	for name, g := range c.mu.groups {
		if len(g.members) == 0 && len(g.sps) == 0 && !g.persisted {
			delete(c.mu.groups, name)
			continue
		}
		for _, m := range g.members {
			if m.assigned == nil {
				m.assigned = assignment{}
			}
		}
		g.subMeta = g.subscriptionMetadata(topics)
		g.metaChecked = c.clock.Now()
		c.computeTargetsLocked(g, topics)
		for _, m := range g.sortedMembers() {
			c.scheduleSessionLocked(g, m)
		}
	}
	for _, p := range c.parts {
		p.base = 0
	}
	c.dlq.push(r.jobs...)
}
