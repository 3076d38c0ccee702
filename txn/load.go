package txn

import (
	"fmt"
	"time"
)

// In a cluster (Config.LoadOnLead) a broker coordinates the transactional
// ids of the __transaction_state partitions it leads: when it comes to
// lead one it loads the partition's ids from its replica, which holds
// everything the previous leader acknowledged, and completes the
// transactions found prepared; when it stops leading it drops them, and
// their markers still being written stop (the next coordinator writes
// them again), as Kafka's TransactionStateManager loads and unloads its
// partitions.

// Load replays partition p of __transaction_state and starts coordinating
// its transactional ids, with coordinator epoch epoch (the partition's
// leader epoch) in the markers it writes. While it replays, the ids of p
// answer COORDINATOR_LOAD_IN_PROGRESS. Transactions found prepared are
// completed in the background; those open longer than their timeout are
// aborted by the next check. Loading a loaded partition does nothing.
func (c *Coordinator) Load(p int32, epoch int32) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if p < 0 || int(p) >= len(c.parts) {
		return fmt.Errorf("%w: partition %d", ErrConfig, p)
	}
	c.mu.Lock()
	if c.mu.closed || c.mu.loads[p] != nil {
		c.mu.Unlock()
		return nil
	}
	c.mu.loading[p] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.mu.loading[p] = false
		c.mu.Unlock()
	}()
	start := time.Now()
	part := c.parts[p]
	loaded := make(map[string]meta)
	part.mu.Lock()
	part.liveMu.Lock()
	part.live, part.liveBytes, part.logBytes, part.retryAt = map[string]Record{}, 0, 0, 0
	part.liveMu.Unlock()
	err := c.replay(part, loaded)
	part.mu.Unlock()
	if err != nil {
		return fmt.Errorf("txn: loading __transaction_state partition %d: %w", p, err)
	}
	if !c.enter() {
		return nil // closed meanwhile
	}
	defer c.wg.Done()
	prepared := c.adopt(p, c.newLoad(epoch), loaded)
	c.log.Info("coordinator partition loaded", "partition", p, "coordinator_epoch", epoch, "transactional_ids", len(loaded), "prepared", len(prepared), "elapsed", time.Since(start))
	c.completePrepared(prepared)
	c.kickCompaction()
	return nil
}

// Unload stops coordinating the transactional ids of partition p: they
// are dropped from memory (their state stays in the partition), markers
// being written for them stop, and their requests answer NOT_COORDINATOR
// until a Load. Requests holding one of them finish what they started;
// an append that fails because this broker no longer leads answers
// COORDINATOR_NOT_AVAILABLE.
func (c *Coordinator) Unload(p int32) {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	c.mu.Lock()
	if p < 0 || int(p) >= len(c.mu.loads) || c.mu.loads[p] == nil {
		c.mu.Unlock()
		return
	}
	ld := c.mu.loads[p]
	c.mu.loads[p] = nil
	n := 0
	for id, e := range c.mu.txns {
		if e.partition == p {
			delete(c.mu.txns, id)
			n++
		}
	}
	c.mu.Unlock()
	ld.cancel()
	c.log.Info("coordinator partition unloaded", "partition", p, "transactional_ids", n)
}

// Loaded reports whether partition p of __transaction_state is loaded.
func (c *Coordinator) Loaded(p int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p >= 0 && int(p) < len(c.mu.loads) && c.mu.loads[p] != nil
}
