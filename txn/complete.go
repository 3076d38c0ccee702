package txn

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// startCompletionLocked starts writing the markers of e's prepared
// transaction and then its Complete record, in a goroutine owned by the
// coordinator. e.mu is held and e.m is prepared. The returned completion's
// firstRound closes after the first attempt, at once if the coordinator is
// closed (the next New completes the transaction).
func (c *Coordinator) startCompletionLocked(e *entry) *completion {
	comp := &completion{firstRound: make(chan struct{}), done: make(chan struct{})}
	e.completion = comp
	m := Marker{
		TransactionalID:  e.id,
		ProducerID:       e.m.producerID,
		ProducerEpoch:    e.m.epoch,
		Commit:           e.m.state == statePrepareCommit,
		CoordinatorEpoch: e.load.epoch,
	}
	parts := slices.Clone(e.m.partitions)
	if !c.enter() {
		close(comp.firstRound)
		return comp
	}
	go c.complete(e, comp, m, parts)
	return comp
}

// The markers of a transaction are written until they all are, or the
// load of its partition ends (Unload, Close): the coordinator that loads
// the partition next finds the transaction prepared and writes them. A
// partition that refuses a marker as fenced (a coordinator of a newer
// epoch wrote one for the producer there) ends the writing too, as in
// Kafka: that coordinator owns the transaction, and this one, whose
// partition it lost, writes neither the other markers nor the Complete
// record; its unload follows.

// complete writes the markers of parts, retrying the failed ones with
// backoff, then the Complete record of e. It gives up when the load ends
// or a partition answers that a newer coordinator owns the transaction.
func (c *Coordinator) complete(e *entry, comp *completion, m Marker, parts []TopicPartition) {
	defer c.wg.Done()
	first := true
	endFirstRound := func() {
		if first {
			first = false
			close(comp.firstRound)
		}
	}
	defer endFirstRound()
	backoff := c.cfg.retryBackoff
	ctx := e.load.ctx
	for {
		var fenced bool
		parts, fenced = c.writeMarkers(ctx, parts, m)
		if ctx.Err() != nil {
			return
		}
		if fenced {
			c.log.Info("a newer transaction coordinator owns the transaction; no more of its markers from this one", "transactional_id", m.TransactionalID, "coordinator_epoch", m.CoordinatorEpoch, "commit", m.Commit)
			return
		}
		if len(parts) == 0 && c.writeComplete(e, comp) {
			return
		}
		endFirstRound()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// writeMarkers writes m to every partition of parts, several at once, and
// returns those that failed, and whether a partition refused m as fenced.
func (c *Coordinator) writeMarkers(ctx context.Context, parts []TopicPartition, m Marker) (rest []TopicPartition, fenced bool) {
	failed := make([]bool, len(parts))
	var fencedAt atomic.Bool
	write := func(i int) {
		err := c.markers.WriteMarker(ctx, parts[i], m)
		switch {
		case err == nil:
		case errors.Is(err, ErrUnknownPartition):
			c.log.Info("no marker needed for a partition that no longer exists", "transactional_id", m.TransactionalID, "partition", parts[i].String())
		case errors.Is(err, ErrCoordinatorFenced):
			c.log.Info("a transaction marker was refused: a newer coordinator wrote one for the producer", "transactional_id", m.TransactionalID, "partition", parts[i].String(), "coordinator_epoch", m.CoordinatorEpoch, "err", err)
			fencedAt.Store(true)
		default:
			failed[i] = true
			if ctx.Err() == nil {
				c.log.Warn("writing a transaction marker; retrying", "transactional_id", m.TransactionalID, "partition", parts[i].String(), "commit", m.Commit, "err", err)
			}
		}
	}
	if len(parts) == 1 {
		write(0)
	} else {
		sem := make(chan struct{}, markerParallelism)
		var wg sync.WaitGroup
		for i := range parts {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				write(i)
			})
		}
		wg.Wait()
	}
	for i, f := range failed {
		if f {
			rest = append(rest, parts[i])
		}
	}
	return rest, fencedAt.Load()
}

// writeComplete stores the Complete record of e's prepared transaction. It
// reports false when the store failed (the caller retries), true when it
// is stored or e is gone (unloaded: the next coordinator completes it).
func (c *Coordinator) writeComplete(e *entry, comp *completion) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.load.ctx.Err() != nil {
		return true
	}
	if e.completion != comp || !e.m.state.prepared() {
		panic("txn: completing a transaction that is not prepared")
	}
	n := e.m.complete(nowMs())
	// No answer depends on the Complete record being durable: after a
	// crash that loses it the transaction is prepared again and New
	// completes it. The next record of the partition syncs it.
	if err := c.transitionSyncLocked(e, n, false); err != nil {
		return false
	}
	e.completion = nil
	close(comp.done)
	c.log.Debug("transaction complete", "transactional_id", e.id, "state", n.state, "producer_id", n.producerID, "epoch", n.epoch)
	return true
}

// fenceLocked aborts e's ongoing transaction on the coordinator's own
// initiative (a timeout, an InitProducerID): it bumps the epoch so the
// producer that opened the transaction is fenced, stores the PrepareAbort,
// and starts writing the markers. e.mu is held and e.m is Ongoing.
func (c *Coordinator) fenceLocked(e *entry) (*completion, error) {
	fenced := e.m.epoch
	if fenced < math.MaxInt16 {
		fenced++
	}
	n := e.m.fencedAbort(fenced, c.cfg.TransactionVersion, nowMs())
	if err := c.transitionLocked(e, n); err != nil {
		return nil, err
	}
	return c.startCompletionLocked(e), nil
}
