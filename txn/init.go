package txn

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID handles an InitProducerId request (v0-v5).
//
// Behavior:
//   - Without a transactional id it answers a fresh producer id at epoch 0,
//     as Kafka does (ProducerID and ProducerEpoch of the request ignored).
//   - With one it bumps the epoch of the id's producer (a new id starts at
//     epoch 0), which fences any older instance: its requests now answer
//     PRODUCER_FENCED. The new state is stored before the answer.
//   - A transaction left open by the previous instance is aborted first,
//     with the epoch bumped once more so the old instance cannot write, and
//     once its markers are written the call goes on as a retry would;
//     while markers are being written (by this abort or an EndTxn) it
//     answers CONCURRENT_TRANSACTIONS and the client retries.
//   - KIP-360 (v3+): a request with its current producer id and epoch
//     bumps that epoch; one with the previous epoch is a retry answered
//     with the current one; others are PRODUCER_FENCED. When the epochs are
//     exhausted (32766), a new producer id is allocated.
//
// Version notes:
//   - v0-v3 answer INVALID_PRODUCER_EPOCH where v4+ answer PRODUCER_FENCED.
//   - v3+: ProducerID and ProducerEpoch in the request.
func (c *Coordinator) InitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = noProducerID, noProducerEpoch
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.wg.Done()
	pid, epoch, err := c.initProducerID(ctx, req)
	if err == kerr.ProducerFenced && req.Version < 4 {
		err = kerr.InvalidProducerEpoch
	}
	resp.ErrorCode = code(err)
	if err == nil {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

func (c *Coordinator) initProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) (int64, int16, *kerr.Error) {
	var expected *int16
	switch {
	case req.ProducerID == noProducerID && req.ProducerEpoch == noProducerEpoch:
	case req.ProducerID == noProducerID || req.ProducerEpoch == noProducerEpoch:
		return 0, 0, kerr.InvalidRequest
	default:
		expected = &req.ProducerEpoch
	}
	if req.TransactionalID == nil {
		pid, err := c.newProducerID()
		return pid, 0, err
	}
	id := *req.TransactionalID
	if id == "" {
		return 0, 0, kerr.InvalidRequest
	}
	timeoutMs := req.TransactionTimeoutMillis
	if timeoutMs <= 0 || time.Duration(timeoutMs)*time.Millisecond > c.cfg.TransactionMaxTimeout {
		return 0, 0, kerr.InvalidTransactionTimeout
	}
	e, err := c.lockOrCreate(id, timeoutMs)
	if err != nil {
		return 0, 0, err
	}
	for aborted := false; ; aborted = true {
		m := &e.m
		if m.state.prepared() {
			e.mu.Unlock()
			return 0, 0, kerr.ConcurrentTransactions
		}
		// Kafka's isValidProducerId: an id just created, the current one,
		// or the previous one whose epochs ran out (a retry of the rotation).
		if expected != nil && m.epoch != noProducerEpoch && req.ProducerID != m.producerID &&
			(req.ProducerID != m.prevProducerID || !epochExhausted(*expected)) {
			e.mu.Unlock()
			return 0, 0, kerr.ProducerFenced
		}
		if m.state == stateOngoing {
			if aborted {
				e.mu.Unlock()
				return 0, 0, kerr.ConcurrentTransactions
			}
			// A KIP-360 request with the producer's current id and epoch
			// comes from the instance whose transaction this ends (a
			// producer recovering after an EndTxn whose outcome it did
			// not learn, its coordinator gone): once aborted, its epoch is
			// bumped as for a request made after the abort.
			resumed := expected != nil && req.ProducerID == m.producerID && *expected == m.epoch
			comp, ferr := c.fenceLocked(e)
			e.mu.Unlock()
			if ferr != nil {
				return 0, 0, kerr.CoordinatorNotAvailable
			}
			c.log.Info("aborting the open transaction of a new producer instance", "transactional_id", id)
			select {
			case <-comp.firstRound:
			case <-ctx.Done():
			case <-c.quit:
			}
			var lerr *kerr.Error
			if e, lerr = c.lockEntry(id); lerr != nil {
				return 0, 0, lerr
			} else if e == nil {
				return 0, 0, kerr.ConcurrentTransactions
			}
			if resumed && e.m.producerID == req.ProducerID {
				cur := e.m.epoch
				expected = &cur
			}
			continue
		}
		var n meta
		if epochExhausted(m.epoch) && (expected == nil || *expected == m.epoch) {
			pid, err := c.newProducerID()
			if err != nil {
				e.mu.Unlock()
				return 0, 0, err
			}
			n = m.rotate(pid, timeoutMs, expected != nil, nowMs())
		} else {
			var ok bool
			if n, ok = m.initBump(timeoutMs, expected, nowMs()); !ok {
				e.mu.Unlock()
				return 0, 0, kerr.ProducerFenced
			}
		}
		if err := c.transitionLocked(e, n); err != nil {
			e.mu.Unlock()
			return 0, 0, kerr.CoordinatorNotAvailable
		}
		e.mu.Unlock()
		c.log.Info("initialized transactional id", "transactional_id", id, "producer_id", n.producerID, "epoch", n.epoch, "partition", e.partition)
		return n.producerID, n.epoch, nil
	}
}
