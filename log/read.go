package log

import (
	"fmt"
	"math"
	"sort"

	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// View is a zero-copy read result. Data aliases a memory-mapped segment
// and stays valid until Release; call Release exactly once.
type View struct {
	// Data holds whole record batches.
	Data []byte
	seg  *segment.Segment
}

// Release lets the segment behind the view be unmapped. It is a no-op on
// an empty View.
func (v *View) Release() {
	if v.seg != nil {
		v.seg.Release()
		v.seg = nil
	}
}

// Read returns whole batches starting with the one that holds off, from a
// single segment, stopping before any batch at or past maxOffset (the high
// watermark), holding at most maxBytes except that with minOne the first
// batch is returned even when larger (KIP-74). Reading at the end of the
// log returns an empty View; below the log start or past the end returns
// ErrOffsetOutOfRange.
func (l *Log) Read(off, maxOffset int64, maxBytes int, minOne bool) (View, error) {
	if off < l.logStart.Load() || off > l.nextOffset.Load() {
		return View{}, fmt.Errorf("%w: %d not in [%d, %d]", ErrOffsetOutOfRange, off, l.logStart.Load(), l.nextOffset.Load())
	}
	for {
		s := l.acquireSegment(off)
		if s == nil {
			// Retention removed the segment holding off after the check
			// above.
			if off < l.logStart.Load() {
				return View{}, fmt.Errorf("%w: %d is below the log start %d", ErrOffsetOutOfRange, off, l.logStart.Load())
			}
			return View{}, nil
		}
		data, err := s.Read(off, maxOffset, maxBytes, minOne)
		if err != nil || len(data) > 0 {
			if err != nil {
				s.Release()
				return View{}, err
			}
			return View{Data: data, seg: s}, nil
		}
		next := s.NextOffset()
		s.Release()
		if next <= off || next >= maxOffset || next >= l.nextOffset.Load() {
			return View{}, nil
		}
		off = next // a gap at the end of a segment: go on to the next
	}
}

// acquireSegment references the segment that holds off: the last one with
// base at or below off.
func (l *Log) acquireSegment(off int64) *segment.Segment {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	segs := l.segments
	if len(segs) == 0 {
		return nil
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Base() > off })
	if i == 0 {
		return nil // below the first segment
	}
	s := segs[i-1]
	if !s.Acquire() {
		return nil
	}
	return s
}

// FindTimestamp returns the first batch whose max timestamp is at or
// above ts, as a View of that one batch. ok is false when there is none.
func (l *Log) FindTimestamp(ts int64) (v View, ok bool, err error) {
	l.segMu.RLock()
	var s *segment.Segment
	for _, c := range l.segments {
		if c.MaxTimestamp() >= ts && c.Acquire() {
			s = c
			break
		}
	}
	l.segMu.RUnlock()
	if s == nil {
		return View{}, false, nil
	}
	_, base, found, err := s.FindTimestamp(ts)
	if err != nil || !found {
		s.Release()
		return View{}, false, err
	}
	return l.oneBatch(s, base)
}

// MaxTimestamp returns the batch holding the largest timestamp in the log
// (the first such batch), as a View of that batch.
func (l *Log) MaxTimestamp() (v View, ok bool, err error) {
	l.segMu.RLock()
	var s *segment.Segment
	best := int64(-1)
	for _, c := range l.segments {
		if ts := c.MaxTimestamp(); ts > best {
			best, s = ts, c
		}
	}
	if s != nil && !s.Acquire() {
		s = nil
	}
	l.segMu.RUnlock()
	if s == nil {
		return View{}, false, nil
	}
	_, base, found, err := s.FindTimestamp(best)
	if err != nil || !found {
		s.Release()
		return View{}, false, err
	}
	return l.oneBatch(s, base)
}

func (l *Log) oneBatch(s *segment.Segment, base int64) (View, bool, error) {
	data, err := s.Read(base, math.MaxInt64, 1, true)
	if err != nil || len(data) == 0 {
		s.Release()
		return View{}, false, err
	}
	if n, err := record.BatchSize(data); err == nil && n <= len(data) {
		data = data[:n:n]
	}
	return View{Data: data, seg: s}, true, nil
}

// Walk calls fn for every batch from the segment holding offset from to
// the end of the log, until fn returns false. batch aliases the mapping
// and is valid only during the call.
func (l *Log) Walk(from int64, fn func(batch []byte, h *record.Header) bool) error {
	l.segMu.RLock()
	var segs []*segment.Segment
	for i, s := range l.segments {
		if (i+1 < len(l.segments) && l.segments[i+1].Base() <= from) || !s.Acquire() {
			continue
		}
		segs = append(segs, s)
	}
	l.segMu.RUnlock()
	defer func() {
		for _, s := range segs {
			s.Release()
		}
	}()
	for _, s := range segs {
		stop := false
		err := s.Walk(0, func(_ int64, b []byte, h *record.Header) bool {
			if h.LastOffset() < from {
				return true
			}
			if !fn(b, h) {
				stop = true
				return false
			}
			return true
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}
