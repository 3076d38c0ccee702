package segment

import (
	"encoding/binary"
	"fmt"

	"github.com/ferrymq/ferry/record"
)

// Read returns a view of whole batches from the segment's mapping: it
// starts with the batch holding offset off (or the first batch after off),
// stops before the first batch whose base offset is at or above maxOffset,
// and holds at most maxBytes, except that with minOne the first batch is
// returned even when it alone is larger (KIP-74). It returns nil when no
// such batch exists.
//
// The slice aliases the memory-mapped file. The caller must hold a
// reference (Acquire) from before the call until it no longer uses the
// slice; the bytes never change while the reference is held.
func (s *Segment) Read(off, maxOffset int64, maxBytes int, minOne bool) ([]byte, error) {
	size := s.size.Load()
	if off >= s.next.Load() || off >= maxOffset {
		return nil, nil
	}
	start, err := s.position(off, size)
	if err != nil || start >= size {
		return nil, err
	}
	pos := start
	for pos < size {
		base, n, err := s.batchAt(pos, size)
		if err != nil {
			return nil, err
		}
		if base >= maxOffset {
			break
		}
		if pos+n-start > int64(maxBytes) && !(minOne && pos == start) {
			break
		}
		pos += n
	}
	return s.logMap[start:pos:pos], nil
}

// batchAt reads the base offset and size of the batch at pos, checking that
// it lies within size.
func (s *Segment) batchAt(pos, size int64) (base, n int64, err error) {
	if size-pos < record.HeaderSize {
		return 0, 0, fmt.Errorf("%w: %s: torn header at %d", ErrCorrupt, s.path(".log"), pos)
	}
	b := s.logMap[pos:size]
	sz, err := record.BatchSize(b)
	if err != nil || int64(sz) > size-pos {
		return 0, 0, fmt.Errorf("%w: %s: bad batch length at %d", ErrCorrupt, s.path(".log"), pos)
	}
	return int64(binary.BigEndian.Uint64(b)), int64(sz), nil
}

// position returns the byte position of the batch holding offset off, or
// of the first batch after it, or size if there is none.
func (s *Segment) position(off int64, size int64) (int64, error) {
	pos := s.indexLookup(off)
	for pos < size {
		base, n, err := s.batchAt(pos, size)
		if err != nil {
			return 0, err
		}
		last := base + int64(int32(binary.BigEndian.Uint32(s.logMap[pos+record.PosLastOffsetDelta:])))
		if last >= off {
			return pos, nil
		}
		pos += n
	}
	return size, nil
}

// indexLookup returns the position of the greatest index entry at or below
// off, or 0.
func (s *Segment) indexLookup(off int64) int64 {
	if off <= s.base {
		return 0
	}
	rel := off - s.base
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0
	}
	n := min(s.indexEntries.Load(), int64(len(s.idx)/IndexEntrySize))
	// Find the first entry above rel; the one before it is the answer.
	lo, hi := int64(0), n
	for lo < hi {
		m := int64(uint64(lo+hi) >> 1)
		if int64(binary.BigEndian.Uint32(s.idx[m*IndexEntrySize:])) <= rel {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0
	}
	return int64(binary.BigEndian.Uint32(s.idx[(lo-1)*IndexEntrySize+4:]))
}

// FindTimestamp returns the position and base offset of the first batch
// whose max timestamp is at or above ts. ok is false when no batch in the
// segment qualifies.
func (s *Segment) FindTimestamp(ts int64) (pos, base int64, ok bool, err error) {
	size := s.size.Load()
	if s.maxTimestamp.Load() < ts {
		return 0, 0, false, nil
	}
	start := s.base
	s.mu.RLock()
	if !s.closed {
		n := min(s.timeEntries.Load(), int64(len(s.tidx)/TimeIndexEntrySize))
		// Greatest entry with a timestamp below ts: every batch up to the
		// one it names has a smaller max timestamp.
		lo, hi := int64(0), n
		for lo < hi {
			m := int64(uint64(lo+hi) >> 1)
			if int64(binary.BigEndian.Uint64(s.tidx[m*TimeIndexEntrySize:])) < ts {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo > 0 {
			start = s.base + int64(binary.BigEndian.Uint32(s.tidx[(lo-1)*TimeIndexEntrySize+8:]))
		}
	}
	s.mu.RUnlock()
	pos, err = s.position(start, size)
	if err != nil {
		return 0, 0, false, err
	}
	for pos < size {
		b, n, err := s.batchAt(pos, size)
		if err != nil {
			return 0, 0, false, err
		}
		if int64(binary.BigEndian.Uint64(s.logMap[pos+record.PosMaxTimestamp:])) >= ts {
			return pos, b, true, nil
		}
		pos += n
	}
	return 0, 0, false, nil
}

// Walk calls fn with the position and header of every batch from position
// from to the end, until fn returns false. It trusts the data (it was
// validated when written or recovered) and checks only that each header
// lies within the segment.
func (s *Segment) Walk(from int64, fn func(pos int64, batch []byte, h *record.Header) bool) error {
	size := s.size.Load()
	var h record.Header
	for pos := from; pos < size; {
		if err := record.ParseInto(s.logMap[pos:size], &h); err != nil {
			return fmt.Errorf("%w: %s at %d: %v", ErrCorrupt, s.path(".log"), pos, err)
		}
		n := int64(h.Size())
		if !fn(pos, s.logMap[pos:pos+n:pos+n], &h) {
			return nil
		}
		pos += n
	}
	return nil
}
