package txn

import "time"

// abortLoop aborts, every AbortTimedOutTransactionsInterval, the
// transactions open longer than their timeout.
func (c *Coordinator) abortLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.AbortTimedOutTransactionsInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.abortTimedOut()
		}
	}
}

// abortTimedOut aborts every Ongoing transaction whose start plus timeout
// has passed, fencing its producer, as Kafka's abortTimedOutTransactions
// does. It does not wait for the markers.
func (c *Coordinator) abortTimedOut() {
	now := nowMs()
	for _, e := range c.entries() {
		e.mu.Lock()
		if !e.goneLocked() && e.m.state == stateOngoing && e.m.startMs+int64(e.m.timeoutMs) < now {
			c.log.Info("aborting a transaction open past its timeout", "transactional_id", e.id, "producer_id", e.m.producerID, "epoch", e.m.epoch,
				"timeout", time.Duration(e.m.timeoutMs)*time.Millisecond, "open", time.Duration(now-e.m.startMs)*time.Millisecond)
			if _, err := c.fenceLocked(e); err != nil {
				c.log.Warn("aborting a timed-out transaction", "transactional_id", e.id, "err", err)
			}
		}
		e.mu.Unlock()
	}
}

// expireLoop forgets, every RemoveExpiredTransactionalIDsInterval, the
// transactional ids idle for TransactionalIDExpiration.
func (c *Coordinator) expireLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.RemoveExpiredTransactionalIDsInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.removeExpired()
		}
	}
}

// removeExpired writes a tombstone for, and forgets, every transactional id
// without an open transaction whose last transition is older than
// TransactionalIDExpiration, as Kafka's removeExpiredTransactionalIds does.
func (c *Coordinator) removeExpired() {
	cutoff := nowMs() - c.cfg.TransactionalIDExpiration.Milliseconds()
	for _, e := range c.entries() {
		e.mu.Lock()
		if !e.goneLocked() && e.m.state.expirable() && e.completion == nil && e.m.updateMs <= cutoff {
			if err := c.persistLocked(e, nil); err == nil {
				c.removeLocked(e)
				c.log.Info("transactional id expired", "transactional_id", e.id, "producer_id", e.m.producerID)
			}
		}
		e.mu.Unlock()
	}
}
