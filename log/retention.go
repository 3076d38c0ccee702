package log

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferrymq/ferry/segment"
)

// DeleteRecords advances the log start offset to off (a no-op when it is
// already there or past) and deletes segments wholly below it. The new
// start is durable before DeleteRecords returns.
func (l *Log) DeleteRecords(off int64) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return ErrClosed
	}
	if off > l.nextOffset.Load() || off < 0 {
		return fmt.Errorf("%w: %d past the end %d", ErrOffsetOutOfRange, off, l.nextOffset.Load())
	}
	if off <= l.logStart.Load() {
		return nil
	}
	l.logStart.Store(off)
	if err := l.writeCheckpointLocked(false); err != nil {
		return l.failLocked(err)
	}
	_, err := l.deleteSegmentsLocked(func(s, next *segment.Segment) bool { return next != nil && next.Base() <= off })
	return err
}

// EnforceRetention deletes segments by retention.ms (their newest
// timestamp, or file time when they have none, older than now minus
// retention.ms) and retention.bytes, never
// the active segment unless it is rolled first because it has expired too.
// It returns the number of segments deleted.
func (l *Log) EnforceRetention(now time.Time) (int, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return 0, ErrClosed
	}
	cfg := l.appendMu.cfg
	if cfg.NoDelete {
		return 0, nil
	}
	deleted := 0
	if cfg.RetentionMs >= 0 {
		limit := now.UnixMilli() - cfg.RetentionMs
		expired := func(s *segment.Segment) bool { return s.Size() > 0 && s.RetentionTimestamp() < limit }
		if a := l.active(); expired(a) && l.allExpiredLocked(expired) {
			if err := l.rollLocked(); err != nil {
				return 0, err
			}
		}
		n, err := l.deleteSegmentsLocked(func(s, next *segment.Segment) bool { return next != nil && expired(s) })
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	if cfg.RetentionBytes >= 0 {
		total := l.Size()
		n, err := l.deleteSegmentsLocked(func(s, next *segment.Segment) bool {
			if next == nil || total-s.Size() < cfg.RetentionBytes {
				return false
			}
			total -= s.Size()
			return true
		})
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

func (l *Log) allExpiredLocked(expired func(*segment.Segment) bool) bool {
	for _, s := range l.segments {
		if s.Size() > 0 && !expired(s) {
			return false
		}
	}
	return true
}

// deleteSegmentsLocked deletes segments from the oldest while del returns
// true (next is the following segment, nil for the active one), advances
// the log start offset past them, and makes that durable.
func (l *Log) deleteSegmentsLocked(del func(s, next *segment.Segment) bool) (int, error) {
	var gone []*segment.Segment
	for i, s := range l.segments {
		var next *segment.Segment
		if i+1 < len(l.segments) {
			next = l.segments[i+1]
		}
		if next == nil || !del(s, next) {
			break
		}
		gone = append(gone, s)
	}
	if len(gone) == 0 {
		return 0, nil
	}
	newStart := max(l.logStart.Load(), l.segments[len(gone)].Base())
	l.logStart.Store(newStart)
	// The new start must be durable before files go, so a crash cannot
	// leave a log start pointing into deleted data.
	if err := l.writeCheckpointLocked(false); err != nil {
		return 0, l.failLocked(err)
	}
	l.segMu.Lock()
	l.segments = append([]*segment.Segment(nil), l.segments[len(gone):]...)
	l.segMu.Unlock()
	var errs []error
	for _, s := range gone {
		if err := s.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	l.logger.Debug("deleted segments", "count", len(gone), "log_start", newStart)
	return len(gone), errors.Join(errs...)
}
