package log

import (
	"runtime"
	"time"

	"github.com/ferrymq/ferry/segment"
)

// Sync returns once every batch appended before the call is durable. One
// fdatasync serves every caller whose data it covers (group commit).
func (l *Log) Sync() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	target := l.nextOffset.Load()
	f := &l.flusher
	f.Lock()
	defer f.Unlock()
	// (A truncation may bring the log end below target.)
	for f.durableOffset.Load() < min(target, l.nextOffset.Load()) {
		if f.err != nil {
			return f.err
		}
		if f.syncing {
			f.cond.Wait()
			continue
		}
		f.syncing = true
		gen := f.truncations
		f.Unlock()
		// Let the appenders the last fsync just released append before
		// this one captures the log end, so it covers their batches too.
		runtime.Gosched()
		covered, err := l.syncActive()
		f.Lock()
		f.syncing = false
		advanced := false
		if err != nil {
			f.err = err
		} else if covered > f.durableOffset.Load() && gen == f.truncations {
			f.durableOffset.Store(covered)
			advanced = true
		}
		if advanced && f.onDurable != nil {
			// Before the waiters wake: a caller whose Sync returns finds
			// the readers told already.
			f.Unlock()
			f.onDurable()
			f.Lock()
		}
		f.cond.Broadcast()
	}
	return nil
}

// DurableOffset is the offset below which every batch is durable (has
// been fdatasynced, or was recovered and synced at Open). Readers that
// must not see what a power cut could take back read up to it.
func (l *Log) DurableOffset() int64 { return l.flusher.durableOffset.Load() }

// stopFlusher ends group commit: callers waiting for an fsync, and every
// later Sync, get ErrClosed (unless an fsync failed first).
func (l *Log) stopFlusher() {
	f := &l.flusher
	f.Lock()
	if f.err == nil {
		f.err = ErrClosed
	}
	f.cond.Broadcast()
	f.Unlock()
}

// syncActive fsyncs the active segment, and any rolled segment whose
// background seal has not finished, and returns the offset below which
// everything is then durable.
func (l *Log) syncActive() (int64, error) {
	l.appendMu.Lock()
	if err := l.appendMu.err; err != nil {
		l.appendMu.Unlock()
		return 0, err
	}
	if l.appendMu.closed {
		l.appendMu.Unlock()
		return 0, ErrClosed
	}
	covered := l.nextOffset.Load()
	var segs [4]*segment.Segment
	todo := append(segs[:0], l.appendMu.sealing...)
	todo = append(todo, l.active())
	for _, s := range todo {
		s.Acquire()
	}
	l.appendMu.unflushed = 0
	batches, bytes := l.appendMu.unsyncedBatches, l.appendMu.unsyncedBytes
	l.appendMu.unsyncedBatches, l.appendMu.unsyncedBytes = 0, 0
	l.appendMu.Unlock()
	defer func() {
		for _, s := range todo {
			s.Release()
		}
	}()
	start := time.Now()
	for _, s := range todo {
		if err := s.Sync(); err != nil {
			l.appendMu.Lock()
			err = l.failLocked(err)
			l.appendMu.Unlock()
			return 0, err
		}
	}
	d := time.Since(start)
	if d > time.Second {
		l.logger.Warn("slow fdatasync", "took", d, "bytes", bytes)
	}
	if st := l.stats; st != nil {
		st.FsyncLatency.Observe(int64(d))
		st.FsyncBytes.Observe(bytes)
		st.GroupCommit.Observe(batches)
	}
	return covered, nil
}
