package group

import (
	"fmt"
	"time"
)

// In a cluster a broker coordinates the groups of the partitions of
// __consumer_offsets it leads (Config.LoadOnLead): when it becomes leader
// of one it loads the partition's groups from its replica, which holds
// everything the previous leader acknowledged, and when it stops leading
// it drops them, as Kafka's coordinator loads and unloads its partitions.

// Load replays partition p of __consumer_offsets and starts coordinating
// its groups. Loading a loaded partition does nothing.
func (c *Coordinator) Load(p int32) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if p < 0 || int(p) >= len(c.parts) {
		return fmt.Errorf("%w: partition %d", ErrConfig, p)
	}
	c.mu.Lock()
	if c.mu.closed || c.mu.loaded[p] {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	start := time.Now()
	part := c.parts[p]
	part.mu.Lock()
	part.liveMu.Lock()
	part.live, part.liveBytes, part.logBytes, part.retryAt = map[string]Record{}, 0, 0, 0
	part.liveMu.Unlock()
	c.staging = map[string]*group{}
	err := c.replay(part)
	staged := c.staging
	c.staging = nil
	part.mu.Unlock()
	if err != nil {
		return fmt.Errorf("group: loading __consumer_offsets partition %d: %w", p, err)
	}
	gs := make([]*group, 0, len(staged))
	// The groups' pending transactional offsets are indexed before the
	// partition is loaded, so the first marker for it finds them.
	c.txn.mu.Lock()
	for _, g := range staged {
		for pid := range g.txnOffsets {
			c.registerPendingLocked(g, pid)
		}
	}
	c.txn.mu.Unlock()
	c.mu.Lock()
	for name, g := range staged {
		c.mu.groups[name] = g
		gs = append(gs, g)
	}
	c.mu.loaded[p] = true
	c.mu.Unlock()
	c.finishLoad(gs)
	c.log.Info("coordinator partition loaded", "partition", p, "groups", len(gs), "elapsed", time.Since(start))
	c.kickCompaction()
	return nil
}

// Unload stops coordinating the groups of partition p: they are dropped
// from memory (their state stays in the partition) and their requests
// get COORDINATOR_NOT_AVAILABLE until a Load.
func (c *Coordinator) Unload(p int32) {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.mu.Lock()
	if p < 0 || int(p) >= len(c.mu.loaded) || !c.mu.loaded[p] {
		c.mu.Unlock()
		return
	}
	c.mu.loaded[p] = false
	var gs []*group
	for _, g := range c.mu.groups {
		if g.partition == p {
			gs = append(gs, g)
		}
	}
	c.mu.Unlock()
	// Its pending transactional offsets are indexed again by the next
	// Load.
	c.txn.mu.Lock()
	for key := range c.txn.groups {
		if key.partition == p {
			delete(c.txn.groups, key)
		}
	}
	c.txn.mu.Unlock()
	for _, g := range gs {
		g.mu.Lock()
		c.removeGroupLocked(g)
		g.mu.Unlock()
	}
	c.log.Info("coordinator partition unloaded", "partition", p, "groups", len(gs))
}
