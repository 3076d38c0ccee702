package txn

import (
	"context"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn handles an EndTxn request (v0-v5).
//
// Behavior:
//   - Commit or abort of an ongoing transaction: the PrepareCommit or
//     PrepareAbort record is stored, then the marker is written to every
//     partition of the transaction (data partitions and the
//     __consumer_offsets partitions of its offsets), then the
//     CompleteCommit or CompleteAbort record. The answer comes after the
//     first attempt at all of that: once the decision is durable the
//     transaction commits (or aborts) whatever happens, so a marker that
//     fails is retried in the background and the answer is still success;
//     until it is written the id's next requests answer
//     CONCURRENT_TRANSACTIONS.
//   - A retry of a completed commit (abort) succeeds; one of the other kind
//     answers INVALID_TXN_STATE; during the markers, CONCURRENT_TRANSACTIONS.
//
// Version notes:
//   - v5+ is transaction version 2 (KIP-890): every commit and abort bumps
//     the epoch, and the answer carries the producer id and epoch to use
//     next (a new producer id at epoch 0 once the epochs run out). A retry
//     with the epoch before the bump succeeds; an abort may end a
//     transaction that added no partition.
//   - v0-v1 answer INVALID_PRODUCER_EPOCH where v2+ answer PRODUCER_FENCED.
func (c *Coordinator) EndTxn(ctx context.Context, req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ProducerID, resp.ProducerEpoch = noProducerID, noProducerEpoch
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.wg.Done()
	tv := int16(0)
	if req.Version >= 5 {
		tv = 2
	}
	pid, epoch, comp, err := c.endTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit, tv)
	if comp != nil {
		select {
		case <-comp.firstRound:
		case <-ctx.Done():
		case <-c.quit:
		}
	}
	if err == kerr.ProducerFenced && req.Version < 2 {
		err = kerr.InvalidProducerEpoch
	}
	resp.ErrorCode = code(err)
	if err == nil && tv >= 2 {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

// endTxn decides an EndTxn as Kafka's endTransaction (transaction version
// 2) and endTransactionWithTV1 do. When it prepares the transaction it
// returns the completion that writes the markers.
func (c *Coordinator) endTxn(id string, pid int64, epoch int16, commit bool, tv int16) (int64, int16, *completion, *kerr.Error) {
	if id == "" {
		return 0, 0, nil, kerr.InvalidRequest
	}
	e, lerr := c.lockEntry(id)
	if lerr != nil {
		return 0, 0, nil, lerr
	}
	if e == nil {
		return 0, 0, nil, kerr.InvalidProducerIDMapping
	}
	defer e.mu.Unlock()
	m := &e.m
	prepare := func(s state, noPartitionAdded bool) (int64, int16, *completion, *kerr.Error) {
		next := noProducerID
		if tv >= 2 && epochExhausted(m.epoch) {
			var err *kerr.Error
			if next, err = c.newProducerID(); err != nil {
				return 0, 0, nil, err
			}
		}
		n := m.prepareEnd(s, tv, next, noPartitionAdded, nowMs())
		if err := c.transitionLocked(e, n); err != nil {
			return 0, 0, nil, kerr.CoordinatorNotAvailable
		}
		comp := c.startCompletionLocked(e)
		pid, epoch := n.identityAfter()
		return pid, epoch, comp, nil
	}
	want := statePrepareAbort
	if commit {
		want = statePrepareCommit
	}

	if tv < 2 {
		switch {
		case m.producerID != pid:
			return 0, 0, nil, kerr.InvalidProducerIDMapping
		case m.epoch != epoch:
			return 0, 0, nil, kerr.ProducerFenced
		}
		switch m.state {
		case stateOngoing:
			return prepare(want, false)
		case stateCompleteCommit, stateCompleteAbort:
			if (m.state == stateCompleteCommit) == commit {
				return 0, 0, nil, nil
			}
		case statePrepareCommit, statePrepareAbort:
			if m.state == want {
				return 0, 0, nil, kerr.ConcurrentTransactions
			}
		}
		return 0, 0, nil, kerr.InvalidTxnState
	}

	// Transaction version 2. The epoch was bumped by the commit or abort
	// being retried (retryOnBump), or the producer id rotated with it
	// (retryOnOverflow).
	retryOnOverflow := m.prevProducerID == pid && epoch == math.MaxInt16-1 && m.epoch == 0
	retryOnBump := int32(m.epoch) == int32(epoch)+1
	var valid bool
	switch m.state {
	case stateOngoing, stateEmpty:
		valid = epoch == m.epoch
	case statePrepareCommit, statePrepareAbort:
		valid = retryOnBump
	case stateCompleteCommit, stateCompleteAbort:
		valid = retryOnBump || retryOnOverflow || epoch == m.epoch
	}
	switch {
	case m.producerID != pid && !retryOnOverflow:
		return 0, 0, nil, kerr.InvalidProducerIDMapping
	case !valid:
		return 0, 0, nil, kerr.ProducerFenced
	}
	retry := retryOnBump || retryOnOverflow
	switch m.state {
	case stateOngoing:
		return prepare(want, false)
	case stateEmpty:
		if !commit {
			return prepare(statePrepareAbort, true)
		}
	case stateCompleteCommit, stateCompleteAbort:
		doneCommit := m.state == stateCompleteCommit
		switch {
		case retry && commit == doneCommit:
			return m.producerID, m.epoch, nil, nil
		case !retry && !commit:
			return prepare(statePrepareAbort, true)
		}
	case statePrepareCommit, statePrepareAbort:
		if m.state == want {
			return 0, 0, nil, kerr.ConcurrentTransactions
		}
	}
	return 0, 0, nil, kerr.InvalidTxnState
}
