package log

import (
	"fmt"
	"sort"

	"github.com/ferrymq/ferry/segment"
)

// AbortedTxn is an entry of the aborted-transaction index: see
// segment.AbortedTxn.
type AbortedTxn = segment.AbortedTxn

// AppendAbortedTxn adds e to the aborted-transaction index of the segment
// holding its marker (e.LastOffset), the active one when called right
// after the marker is appended. It is written to the segment's .txnindex
// at once and synced when the segment is sealed or the log closes; after
// an unclean stop the index of every segment recovery scans is rebuilt
// (Config.Recovered), so an entry never synced is never trusted. A failed
// write is sticky, as a failed append is.
func (l *Log) AppendAbortedTxn(e AbortedTxn) error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return ErrClosed
	}
	if err := l.appendMu.err; err != nil {
		return err
	}
	l.segMu.RLock()
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].Base() > e.LastOffset })
	var s *segment.Segment
	if i > 0 && e.LastOffset < l.segments[i-1].NextOffset() {
		s = l.segments[i-1]
	}
	l.segMu.RUnlock()
	if s == nil {
		return fmt.Errorf("%w: aborted transaction marker at %d is in no segment", ErrOffsetOutOfRange, e.LastOffset)
	}
	if err := s.AppendAbortedTxn(e); err != nil {
		return l.failLocked(err)
	}
	return nil
}

// AbortedTxns appends to dst the aborted transactions that overlap
// offsets [from, to): those whose abort marker is at or past from and
// whose first offset is below to, in marker order. A read_committed fetch
// of the records from from up to to sends them, so the consumer drops
// those transactions' records.
func (l *Log) AbortedTxns(from, to int64, dst []AbortedTxn) ([]AbortedTxn, error) {
	if from >= to {
		return dst, nil
	}
	l.segMu.RLock()
	segs := l.segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Base() > from })
	if i > 0 {
		i--
	}
	var todo []*segment.Segment
	for _, s := range segs[i:] {
		if s.HasAbortedTxns() && s.Acquire() {
			todo = append(todo, s)
		}
	}
	l.segMu.RUnlock()
	defer func() {
		for _, s := range todo {
			s.Release()
		}
	}()
	for _, s := range todo {
		var done bool
		var err error
		if dst, done, err = s.AbortedTxns(from, to, dst); err != nil || done {
			return dst, err
		}
	}
	return dst, nil
}
