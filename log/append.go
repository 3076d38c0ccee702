package log

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// Append writes one batch that the caller has validated (h from
// record.Validate). It assigns the batch its offsets by rewriting the base
// offset in batch and h, and returns the base offset. The batch is in the
// page cache when Append returns; call Sync for durability.
func (l *Log) Append(batch []byte, h *record.Header) (int64, error) {
	off, flush, err := l.append(batch, h)
	if flush {
		// flush.messages reached: sync now, as Kafka does in append.
		if err := l.Sync(); err != nil {
			return 0, err
		}
	}
	return off, err
}

func (l *Log) append(batch []byte, h *record.Header) (off int64, flush bool, err error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	off, err = l.appendLocked(batch, h)
	if err != nil {
		return 0, false, err
	}
	cfg := &l.appendMu.cfg
	l.appendMu.unflushed += int64(h.RecordCount)
	l.appendMu.unsyncedBatches++
	l.appendMu.unsyncedBytes += int64(len(batch))
	if l.appendMu.unflushed >= cfg.FlushMessages {
		return off, true, nil
	}
	if l.appendMu.flushTimer == nil {
		// A background sync (flush.ms, or flush.max.delay.ms if sooner)
		// covers batches no caller syncs.
		delay := min(cfg.FlushMs, cfg.FlushMaxDelayMs, int64(math.MaxInt64/time.Millisecond))
		l.timerWG.Add(1)
		l.appendMu.flushTimer = time.AfterFunc(time.Duration(delay)*time.Millisecond, l.flushTimerFired)
	}
	return off, false, nil
}

func (l *Log) appendLocked(batch []byte, h *record.Header) (int64, error) {
	if l.appendMu.closed {
		return 0, ErrClosed
	}
	if err := l.appendMu.err; err != nil {
		return 0, err
	}
	// Refusals of the batch itself come first and are never sticky: only
	// a failed write or fsync stops the log.
	cfg := &l.appendMu.cfg
	if int64(len(batch)) > cfg.SegmentBytes {
		return 0, fmt.Errorf("%w: %d bytes, segment.bytes is %d", ErrBatchTooLarge, len(batch), cfg.SegmentBytes)
	}
	off := l.nextOffset.Load()
	if h.LastOffsetDelta < 0 || off > math.MaxInt64-1-int64(h.LastOffsetDelta) {
		return 0, fmt.Errorf("%w: %d offsets from %d", ErrOffsetOverflow, int64(h.LastOffsetDelta)+1, off)
	}
	last := off + int64(h.LastOffsetDelta)
	if !l.appendMu.dirty {
		if err := l.writeCheckpointLocked(false); err != nil {
			return 0, l.failLocked(err)
		}
		l.appendMu.dirty = true
	}
	s := l.active()
	segmentMs := cfg.SegmentMs
	if cfg.Compact {
		// The active segment is never cleaned: roll it in time for
		// max.compaction.lag.ms, as Kafka does.
		segmentMs = min(segmentMs, cfg.MaxCompactionLagMs)
	}
	if s.Size() > 0 && (!s.Fits(len(batch), last, cfg.SegmentBytes) || time.Now().UnixMilli()-s.RollTimestamp() > segmentMs) {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
		s = l.active()
	}
	record.SetBaseOffset(batch, off)
	h.BaseOffset = off
	if err := s.Append(batch, h); err != nil {
		if errors.Is(err, segment.ErrFull) && s.Size() == 0 {
			// An empty segment created under a smaller segment.bytes has a
			// mapping too small for the batch: replace it.
			if err := l.replaceEmptyActiveLocked(); err != nil {
				return 0, err
			}
			err = l.active().Append(batch, h)
		}
		if errors.Is(err, segment.ErrFull) || errors.Is(err, segment.ErrOffset) || errors.Is(err, segment.ErrSealed) {
			// The segment refused the batch before writing a byte.
			return 0, err
		}
		if err != nil {
			return 0, l.failLocked(err)
		}
	}
	l.nextOffset.Store(h.NextOffset())
	return off, nil
}

// stopFlushTimerLocked stops an armed flush.ms timer; a callback already
// running finishes on its own (timerWG).
func (l *Log) stopFlushTimerLocked() {
	if t := l.appendMu.flushTimer; t != nil && t.Stop() {
		l.timerWG.Done()
	}
	l.appendMu.flushTimer = nil
}

func (l *Log) flushTimerFired() {
	defer l.timerWG.Done()
	l.appendMu.Lock()
	l.appendMu.flushTimer = nil
	closed := l.appendMu.closed
	l.appendMu.Unlock()
	if !closed {
		if err := l.Sync(); err != nil && !errors.Is(err, ErrClosed) {
			l.logger.Error("background flush failed", "err", err)
		}
	}
}

// failLocked records err as the sticky error.
func (l *Log) failLocked(err error) error {
	if l.appendMu.err == nil {
		l.appendMu.err = err
		l.failed.Store(&err)
		l.logger.Error("log write failed; refusing appends until reopened", "err", err)
	}
	return l.appendMu.err
}

// Roll seals the active segment and starts a new one, if the active one
// has data.
func (l *Log) Roll() error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return ErrClosed
	}
	if l.active().Size() == 0 {
		return nil
	}
	return l.rollLocked()
}

// replaceEmptyActiveLocked swaps the empty active segment for a new one
// made with the current config.
func (l *Log) replaceEmptyActiveLocked() error {
	old := l.active()
	if err := old.Remove(); err != nil {
		return l.failLocked(err)
	}
	s, err := segment.Create(l.dir, old.Base(), l.appendMu.cfg.segmentConfig())
	if err != nil {
		return l.failLocked(err)
	}
	if err := syncDir(l.dir); err != nil {
		return l.failLocked(err)
	}
	l.segMu.Lock()
	l.segments[len(l.segments)-1] = s
	l.segMu.Unlock()
	return nil
}

// rollLocked starts a new active segment at the log end and seals the
// old one in the background: its fsync (possibly of a whole segment of
// acks=1 data) and index trim do not stall appends. The recovery point
// moves past the old segment once it is sealed.
func (l *Log) rollLocked() error {
	if err := l.appendMu.err; err != nil {
		return err
	}
	old := l.active()
	if old.Size() == 0 {
		return nil // nothing to seal; a new segment would reuse its name
	}
	s, err := segment.Create(l.dir, l.nextOffset.Load(), l.appendMu.cfg.segmentConfig())
	if err != nil {
		return l.failLocked(err)
	}
	if err := syncDir(l.dir); err != nil {
		s.Remove()
		return l.failLocked(err)
	}
	l.segMu.Lock()
	l.segments = append(l.segments, s)
	l.segMu.Unlock()
	l.rolls.Add(1)
	old.Acquire()
	l.appendMu.sealing = append(l.appendMu.sealing, old)
	l.sealWG.Add(1)
	go l.seal(old)
	return nil
}

// seal seals a rolled segment, then advances the recovery point to the
// first segment not yet sealed and records it.
func (l *Log) seal(s *segment.Segment) {
	defer l.sealWG.Done()
	defer s.Release()
	err := s.Seal()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	for i, p := range l.appendMu.sealing {
		if p == s {
			l.appendMu.sealing = append(l.appendMu.sealing[:i], l.appendMu.sealing[i+1:]...)
			break
		}
	}
	if err != nil {
		l.failLocked(err)
		return
	}
	rp := l.active().Base()
	if len(l.appendMu.sealing) > 0 {
		rp = l.appendMu.sealing[0].Base()
	}
	if rp > l.appendMu.recoveryPoint && l.appendMu.err == nil {
		l.appendMu.recoveryPoint = rp
		if err := l.writeCheckpointLocked(false); err != nil {
			l.failLocked(err)
		}
	}
}
