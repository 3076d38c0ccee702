package raftlog

import (
	"context"
	"encoding/binary"
)

// barrierCtxTag starts the context of a Barrier's ReadIndex request, so
// that its answer is told apart from the one CaughtUp asks for (whose
// context is 8 bytes).
const barrierCtxTag = 'b'

// maxBarriers bounds the Barrier requests the node's goroutine keeps
// waiting for an answer: a request raft drops (no leader) is never
// answered, and they are forgotten when the leader changes.
const maxBarriers = 1024

// barrierAsk is one Barrier's request to the node's goroutine; reply gets
// the leader's commit index.
type barrierAsk struct {
	reply chan uint64
}

// Barrier waits until this node has applied everything the quorum's
// leader had committed when Barrier was called. It is raft's ReadIndex:
// the leader answers only once a majority of the voters confirms that it
// still leads. A node cut off from the quorum, or that knows no leader,
// waits until ctx ends. What this node's metadata says once Barrier
// returns is at least as new as what any node had committed before.
func (l *Log) Barrier(ctx context.Context) error {
	ask := barrierAsk{reply: make(chan uint64, 1)}
	select {
	case l.barrierc <- ask:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	var idx uint64
	select {
	case idx = <-ask.reply:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		ch := l.appliedChan()
		if l.appliedIdx.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// askBarrier sends a ReadIndex request for a; the node's goroutine calls
// it.
func (l *Log) askBarrier(a barrierAsk) {
	if len(l.barriers) >= maxBarriers {
		clear(l.barriers)
	}
	l.barrierSeq++
	l.barriers[l.barrierSeq] = a.reply
	ctx := binary.BigEndian.AppendUint64([]byte{barrierCtxTag}, l.barrierSeq)
	l.rn.ReadIndex(ctx)
}

// answerBarrier hands the index of a ReadIndex answer to the Barrier
// that asked for it, if ctx is one's; the node's goroutine calls it.
func (l *Log) answerBarrier(ctx []byte, index uint64) {
	if len(ctx) != 9 || ctx[0] != barrierCtxTag {
		return
	}
	seq := binary.BigEndian.Uint64(ctx[1:])
	if reply, ok := l.barriers[seq]; ok {
		delete(l.barriers, seq)
		reply <- index
	}
}

// appliedChan returns a channel closed once the applied index moves.
func (l *Log) appliedChan() chan struct{} {
	l.appliedMu.Lock()
	defer l.appliedMu.Unlock()
	return l.appliedCh
}

// setApplied publishes the applied index and wakes the Barriers waiting
// for it.
func (l *Log) setApplied(idx uint64) {
	l.appliedIdx.Store(idx)
	l.appliedMu.Lock()
	close(l.appliedCh)
	l.appliedCh = make(chan struct{})
	l.appliedMu.Unlock()
}
