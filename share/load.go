package share

import (
	"fmt"
	"time"
)

// In a cluster a broker serves what the partitions of __share_group_state
// it leads hold (Config.LoadOnLead): when it becomes leader of one it
// replays the partition from its replica, which holds everything the
// previous leader acknowledged, and serves the share groups whose
// membership records live there and the share-partitions whose state
// does; when it stops leading it drops them without writing anything.
// Records that were acquired on the previous leader come back available
// with their delivery counts, as after a restart.

// Load replays partition p of __share_group_state and starts serving
// what it holds. Loading a loaded partition does nothing. Without
// Config.LoadOnLead every partition is loaded by New.
func (c *Coordinator) Load(p int32) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if p < 0 || int(p) >= len(c.parts) {
		return fmt.Errorf("%w: partition %d", ErrConfig, p)
	}
	c.mu.Lock()
	if c.mu.closed || c.mu.loaded == nil || c.mu.loaded[p] {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	start := time.Now()
	part := c.parts[p]
	r := &replayer{c: c, states: make(map[spKey]*sharePartition), groups: make(map[string]*group), epochs: make(map[spKey]int32)}
	// Nothing appends to an unloaded partition; the write lock keeps a
	// snapshot begun before the last Unload out of the replay.
	part.mu.Lock()
	part.liveMu.Lock()
	part.sps, part.live = make(map[spKey]*sharePartition), make(map[string]Record)
	part.view, part.viewEpochs, part.readAt = make(map[spKey]*sharePartition), make(map[spKey]int32), make(map[spKey]int32)
	part.bytes, part.base, part.retryAt = 0, 0, 0
	part.liveMu.Unlock()
	err := c.store.Replay(p, func(offset int64, rec Record) error {
		r.record(part, offset, rec)
		return nil
	})
	if err == nil && c.remote() {
		// The share-partitions stored here are served by the leaders of
		// their data partitions, which read them from the view.
		part.liveMu.Lock()
		part.view, part.viewEpochs = r.states, r.epochs
		part.liveMu.Unlock()
		r.states = nil
	}
	part.mu.Unlock()
	if err != nil {
		return fmt.Errorf("share: loading __share_group_state partition %d: %w", p, err)
	}
	if !c.remote() {
		for k, e := range r.epochs {
			c.noteEpoch(k, e)
		}
	}
	groups, states := c.attachLoaded(part, r)
	c.mu.Lock()
	if !c.mu.closed {
		c.mu.loaded[p] = true
	}
	c.mu.Unlock()
	c.log.Info("share coordinator partition loaded", "partition", p, "groups", groups, "share_partitions", states, "elapsed", time.Since(start))
	c.kickCompaction()
	return nil
}

// attachLoaded makes the groups and share-partitions r replayed from part
// live, arms their timers and queues the dead letters still to write. It
// returns how many groups and share-partitions it attached.
func (c *Coordinator) attachLoaded(part *statePart, r *replayer) (int, int) {
	topics := c.refreshTopics()
	var jobs []dlqJob
	for key, sp := range r.states {
		g := c.loadGroup(key.group)
		if g == nil {
			break // closed
		}
		if old := g.sps[key.tp]; old != nil {
			c.dropSPLocked(g, old)
		}
		sp.mu.Lock()
		jobs = sp.finishReplayLocked(jobs)
		c.scheduleLocked(sp)
		sp.mu.Unlock()
		c.addSPLocked(g, sp)
		part.register(sp)
		g.mu.Unlock()
	}
	groups := 0
	for name, staged := range r.groups {
		if len(staged.members) == 0 && !staged.persisted {
			continue // only share-partition records of it are here
		}
		g := c.loadGroup(name)
		if g == nil {
			break
		}
		groups++
		g.stopTimersLocked()
		g.members, g.epoch, g.persisted = staged.members, staged.epoch, staged.persisted
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
		g.mu.Unlock()
	}
	c.dlq.push(jobs...)
	return groups, len(r.states)
}

// loadGroup returns the named group with its lock held, creating it, or
// nil once the coordinator is closed.
func (c *Coordinator) loadGroup(name string) *group {
	for {
		c.mu.Lock()
		if c.mu.closed {
			c.mu.Unlock()
			return nil
		}
		g := c.mu.groups[name]
		if g == nil {
			g = c.newGroup(name)
			c.mu.groups[name] = g
		}
		c.mu.Unlock()
		g.mu.Lock()
		if !g.dead {
			return g
		}
		g.mu.Unlock()
	}
}

// Unload stops serving what partition p of __share_group_state holds:
// the groups whose membership records live there lose their members (their
// requests get NOT_COORDINATOR until a Load) and the share-partitions whose
// state lives there are dropped (NOT_LEADER_OR_FOLLOWER), their acquired
// records with them. Nothing is written: the partition is another
// broker's now.
func (c *Coordinator) Unload(p int32) {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.mu.Lock()
	if c.mu.loaded == nil || p < 0 || int(p) >= len(c.mu.loaded) || !c.mu.loaded[p] {
		c.mu.Unlock()
		return
	}
	c.mu.loaded[p] = false
	var members []*group
	for _, g := range c.mu.groups {
		if g.part == p {
			members = append(members, g)
		}
	}
	var sps []*sharePartition
	for _, sp := range c.mu.sps {
		if sp.part == p && !c.remote() {
			sps = append(sps, sp) // with Config.State, served as the data partitions' leader
		}
	}
	c.mu.Unlock()
	c.dropSPs(sps)
	for _, g := range members {
		g.mu.Lock()
		g.stopTimersLocked()
		g.members = make(map[string]*member)
		g.checked = make(map[TopicPartition]bool)
		g.epoch, g.persisted, g.subMeta = 0, false, ""
		c.maybeDropLocked(g)
		g.mu.Unlock()
	}
	part := c.parts[p]
	part.mu.Lock()
	part.liveMu.Lock()
	part.sps, part.live = make(map[spKey]*sharePartition), make(map[string]Record)
	part.view, part.viewEpochs, part.readAt = make(map[spKey]*sharePartition), make(map[spKey]int32), make(map[spKey]int32)
	part.bytes, part.base, part.retryAt = 0, 0, 0
	part.liveMu.Unlock()
	part.mu.Unlock()
	c.log.Info("share coordinator partition unloaded", "partition", p, "groups", len(members), "share_partitions", len(sps))
}

// dropSPs drops the share-partitions sps from their groups (if they are
// still theirs) without writing, and the groups left with nothing.
func (c *Coordinator) dropSPs(sps []*sharePartition) {
	for _, sp := range sps {
		g := c.findGroup(sp.key.group)
		if g == nil {
			continue
		}
		g.mu.Lock()
		if g.sps[sp.key.tp] == sp {
			c.dropSPLocked(g, sp)
		}
		c.maybeDropLocked(g)
		g.mu.Unlock()
	}
}

// dropSPLocked forgets sp without writing anything: timers and dead
// letters that find it dead leave it alone. g.mu is held.
func (c *Coordinator) dropSPLocked(g *group, sp *sharePartition) {
	sp.mu.Lock()
	sp.dead = true
	sp.mu.Unlock()
	c.parts[sp.part].unregister(sp)
	c.removeSPLocked(g, sp)
}

// Loaded reports whether partition p of __share_group_state is served
// here: always without Config.LoadOnLead, else between Load and Unload.
func (c *Coordinator) Loaded(p int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.loaded == nil || (p >= 0 && int(p) < len(c.mu.loaded) && c.mu.loaded[p])
}

// groupServed reports whether the membership of group is served here.
func (c *Coordinator) groupServed(group string) bool { return c.Loaded(c.Partition(group)) }

// spServed reports whether the state of k is served here.
func (c *Coordinator) spServed(k spKey) bool {
	return c.Loaded(statePartitionFor(k, c.cfg.StatePartitions))
}

// loadedGroups returns the groups whose membership is served here.
func (c *Coordinator) loadedGroups(gs []*group) []*group {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.loaded == nil {
		return gs
	}
	out := gs[:0]
	for _, g := range gs {
		if c.mu.loaded[g.part] {
			out = append(out, g)
		}
	}
	return out
}

// acquiredBehind queues sp to have the delivery counts of its new
// acquisitions written behind. In a cluster the share-partition can move
// to another broker at any time, and records acquired here come back
// there available: with their counts written, a record that keeps failing
// its consumers still reaches share.delivery.count.limit. On one broker
// the counts are written with the next change instead (a crash may lose
// one delivery of a record's count).
func (c *Coordinator) acquiredBehind(sp *sharePartition) { c.queueBehind(sp, nil) }

// queueBehind queues sbs (and the acquisitions of sp) to be written
// behind by acquiredLoop.
func (c *Coordinator) queueBehind(sp *sharePartition, sbs []stateBatch) {
	c.acquired.Lock()
	c.acquired.sps[sp] = append(c.acquired.sps[sp], sbs...)
	c.acquired.Unlock()
	select {
	case c.acquired.kick <- struct{}{}:
	default:
	}
}

// acquiredLoop writes the queued acquisitions behind, coalescing those
// made while a write is under way.
func (c *Coordinator) acquiredLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case <-c.acquired.kick:
		}
		c.acquired.Lock()
		sps := c.acquired.sps
		c.acquired.sps = make(map[*sharePartition][]stateBatch)
		c.acquired.Unlock()
		for sp, sbs := range sps {
			select {
			case <-c.quit:
				return
			default:
			}
			c.writeBehindNow(sp, sbs)
		}
	}
}
