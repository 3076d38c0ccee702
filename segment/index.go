package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/edsrzf/mmap-go"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
)

// indexBatch adds index entries for a batch written at pos, following the
// index.interval.bytes rule, and updates the timestamp bookkeeping. Only
// the appender (or Open, before the segment is shared) calls it.
func (s *Segment) indexBatch(pos int64, h *record.Header) {
	if pos > 0 && s.bytesSinceIndex >= s.cfg.IndexIntervalBytes {
		if s.indexEntries.Load() < s.maxIndexEntries {
			s.idxMu.Lock()
			s.idx = binary.BigEndian.AppendUint32(s.idx, uint32(h.BaseOffset-s.base))
			s.idx = binary.BigEndian.AppendUint32(s.idx, uint32(pos))
			s.idxMu.Unlock()
			s.indexEntries.Add(1)
			s.indexChanged = true
		}
		s.bytesSinceIndex = 0
		if s.maxTimestamp.Load() > s.lastTimeEntryTS {
			s.appendTimeEntry()
		}
	}
	s.bytesSinceIndex += h.Size()
	if pos == 0 {
		s.firstTimestamp = h.MaxTimestamp
	}
	if h.MaxTimestamp > s.maxTimestamp.Load() {
		s.maxTimestamp.Store(h.MaxTimestamp)
		s.maxTSBase = h.BaseOffset
	}
}

// appendTimeEntry adds a time index entry for the largest timestamp so
// far. Appender only.
func (s *Segment) appendTimeEntry() {
	if s.timeEntries.Load() >= s.maxTimeEntries {
		return
	}
	ts := s.maxTimestamp.Load()
	s.idxMu.Lock()
	s.tidx = binary.BigEndian.AppendUint64(s.tidx, uint64(ts))
	s.tidx = binary.BigEndian.AppendUint32(s.tidx, uint32(s.maxTSBase-s.base))
	s.idxMu.Unlock()
	s.timeEntries.Add(1)
	s.lastTimeEntryTS = ts
	s.indexChanged = true
}

// writeIndexFiles writes the index entries in use to .index and
// .timeindex with plain writes (never through a mapping, so a full disk is
// an error and not a fault) and syncs both files, or leaves them to b.
func (s *Segment) writeIndexFiles(b *durable.Batch) error {
	s.idxMu.RLock()
	idx, tidx := s.idx, s.tidx
	s.idxMu.RUnlock()
	for _, f := range [...]struct {
		ext  string
		data []byte
	}{{".index", idx}, {".timeindex", tidx}} {
		path := s.path(f.ext)
		if err := writeIndexFile(path, f.data, b == nil); err != nil {
			return err
		}
		b.Written(path)
	}
	s.indexChanged = false
	return nil
}

func writeIndexFile(path string, data []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return fmt.Errorf("segment: write %s: %w", path, err)
	}
	if sync {
		if err := durable.SyncData(f); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// mapIndexFile maps an index file read-only; an empty file gives nil.
func mapIndexFile(path string) (mmap.MMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 {
		return nil, nil
	}
	if fi.Size() > math.MaxInt32 {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, path, fi.Size())
	}
	m, err := mmap.MapRegion(f, int(fi.Size()), mmap.RDONLY, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("segment: map %s: %w", path, err)
	}
	return m, nil
}

// mapIndexesLocked maps a sealed segment's index files read-only. The
// caller holds mu.
func (s *Segment) mapIndexesLocked() error {
	im, err := mapIndexFile(s.path(".index"))
	if err != nil {
		return err
	}
	tm, err := mapIndexFile(s.path(".timeindex"))
	if err != nil {
		unmap(&im)
		return err
	}
	if int64(len(im)) != s.indexEntries.Load()*IndexEntrySize || int64(len(tm)) != s.timeEntries.Load()*TimeIndexEntrySize {
		unmap(&im)
		unmap(&tm)
		return fmt.Errorf("%w: index files of %s changed size", ErrCorrupt, s.path(".log"))
	}
	s.installMappedLocked(im, tm)
	return nil
}

func (s *Segment) installMappedLocked(im, tm mmap.MMap) {
	s.idxMu.Lock()
	s.idxMap, s.tidxMap = im, tm
	s.idx, s.tidx = []byte(im), []byte(tm)
	s.idxMu.Unlock()
	s.indexMapped = true
	n := 0
	if im != nil {
		n++
	}
	if tm != nil {
		n++
	}
	if n > 0 {
		s.files.add(s, 0, n)
	}
}

// indexTail is what checkIndexes learns about a segment.
type indexTail struct {
	next           int64 // offset after the last batch
	maxTimestamp   int64 // largest max timestamp, -1 if none
	maxTSBase      int64 // base offset of the batch carrying it
	firstTimestamp int64 // max timestamp of the first batch, -1 if empty
}

// checkIndexes is the sanity check of a segment's indexes against its log,
// done instead of a scan when the segment was closed cleanly: both indexes
// hold whole entries; offset entries increase and point inside the log;
// the last one points at the batch it names; from there to the end the log
// holds whole batch headers with increasing offsets; time entries increase
// and name offsets inside the segment, and the last one holds the largest
// timestamp seen in that walk. It reads the log from the last offset entry
// on, and the first header.
func checkIndexes(base int64, log, idx, tidx []byte) (indexTail, error) {
	t := indexTail{next: base, maxTimestamp: -1, maxTSBase: base, firstTimestamp: -1}
	size := int64(len(log))
	n, lastRel, lastPos, err := checkOffsetEntries(idx, size)
	if err != nil {
		return t, err
	}
	start, want := int64(0), int64(-1)
	if n > 0 {
		start, want = int64(lastPos), base+int64(lastRel)
	}
	var h record.Header
	tailMaxTS := int64(-1)
	for pos := start; pos < size; pos += int64(h.Size()) {
		if err := record.ParseInto(log[pos:], &h); err != nil {
			return t, fmt.Errorf("batch at %d: %w", pos, err)
		}
		if h.BaseOffset < t.next || h.LastOffset() < h.BaseOffset || h.BaseOffset-base > math.MaxUint32 ||
			(pos == start && want >= 0 && h.BaseOffset != want) {
			return t, fmt.Errorf("batch at %d has offsets %d..%d", pos, h.BaseOffset, h.LastOffset())
		}
		t.next = h.NextOffset()
		tailMaxTS = max(tailMaxTS, h.MaxTimestamp)
	}
	if size > 0 {
		if err := record.ParseInto(log, &h); err != nil {
			return t, fmt.Errorf("first batch: %w", err)
		}
		t.firstTimestamp = h.MaxTimestamp
	}
	if t.maxTimestamp, t.maxTSBase, err = checkTimeEntries(tidx, base, t.next); err != nil {
		return t, err
	}
	if tailMaxTS > t.maxTimestamp {
		// A segment whose batches carry timestamps ends with a time index
		// entry holding the largest.
		return t, fmt.Errorf("time index ends at %d below a batch timestamp %d", t.maxTimestamp, tailMaxTS)
	}
	return t, nil
}

// checkOffsetEntries checks that the offset index holds whole entries
// whose relative offsets and positions increase, below size, and returns
// the count and the last entry.
func checkOffsetEntries(idx []byte, size int64) (n int64, lastRel, lastPos uint32, err error) {
	if len(idx)%IndexEntrySize != 0 {
		return 0, 0, 0, errors.New("partial offset index entry")
	}
	n = int64(len(idx) / IndexEntrySize)
	for i := int64(0); i < n; i++ {
		e := idx[i*IndexEntrySize:]
		rel, pos := binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
		if (i > 0 && (rel <= lastRel || pos <= lastPos)) || int64(pos) >= size {
			return 0, 0, 0, fmt.Errorf("offset index entry %d (%d at %d) out of order or past the log", i, rel, pos)
		}
		lastRel, lastPos = rel, pos
	}
	return n, lastRel, lastPos, nil
}

// checkTimeEntries checks that the time index holds whole entries whose
// timestamps increase and whose offsets do not decrease and stay below
// next, and returns the last entry (-1 and base when there is none).
func checkTimeEntries(tidx []byte, base, next int64) (maxTS, maxTSBase int64, err error) {
	if len(tidx)%TimeIndexEntrySize != 0 {
		return 0, 0, errors.New("partial time index entry")
	}
	maxTS, maxTSBase = -1, base
	var prevRel uint32
	for i := int64(0); i < int64(len(tidx)/TimeIndexEntrySize); i++ {
		e := tidx[i*TimeIndexEntrySize:]
		ts, rel := int64(binary.BigEndian.Uint64(e)), binary.BigEndian.Uint32(e[8:])
		if (i > 0 && (ts <= maxTS || rel < prevRel)) || base+int64(rel) >= next {
			return 0, 0, fmt.Errorf("time index entry %d (%d, %d) out of order or past the log", i, ts, rel)
		}
		prevRel = rel
		maxTS, maxTSBase = ts, base+int64(rel)
	}
	return maxTS, maxTSBase, nil
}

// checkAgainstMeta checks an active segment's index files against what it
// was at a clean close, without reading the log, and returns the base
// offset of the batch carrying the largest timestamp.
func checkAgainstMeta(m Meta, idx, tidx []byte) (int64, error) {
	n, lastRel, _, err := checkOffsetEntries(idx, m.Size)
	if err != nil {
		return 0, err
	}
	if n > 0 && m.Base+int64(lastRel) >= m.NextOffset {
		return 0, errors.New("offset index past the log")
	}
	maxTS, maxTSBase, err := checkTimeEntries(tidx, m.Base, m.NextOffset)
	if err != nil {
		return 0, err
	}
	if maxTS != m.MaxTimestamp {
		return 0, fmt.Errorf("time index ends at %d, the segment's largest timestamp is %d", maxTS, m.MaxTimestamp)
	}
	return maxTSBase, nil
}

// loadLocked checks the index files against the log: read into memory
// for an active segment, mapped read-only for a sealed one. When they are
// missing, fail the check or disagree with what the segment was opened
// with, it rebuilds them from a scan. The caller holds mu.
func (s *Segment) loadLocked() error {
	if s.fromMeta {
		fi, err := os.Stat(s.path(".log"))
		if err != nil {
			return err
		}
		if fi.Size() < s.size.Load() {
			// Cut short since the clean close: keep what is valid.
			s.size.Store(fi.Size())
			if !s.inMemory {
				s.capacity = fi.Size()
			}
			return s.rebuildLocked()
		}
		if s.inMemory && s.loadFromMetaLocked() {
			return nil
		}
	}
	if err := s.mapLogLocked(); err != nil {
		return err
	}
	size := s.size.Load()
	var idx, tidx []byte
	var im, tm mmap.MMap
	var err error
	if s.inMemory {
		if idx, err = os.ReadFile(s.path(".index")); err == nil {
			tidx, err = os.ReadFile(s.path(".timeindex"))
		}
	} else if im, err = mapIndexFile(s.path(".index")); err == nil {
		if tm, err = mapIndexFile(s.path(".timeindex")); err != nil {
			unmap(&im)
		}
		idx, tidx = im, tm
	}
	var t indexTail
	if err == nil {
		t, err = checkIndexes(s.base, s.logMap[:size], idx, tidx)
	}
	if err == nil && s.fromMeta && (t.next != s.next.Load() || t.maxTimestamp != s.maxTimestamp.Load()) {
		err = errors.New("indexes disagree with the checkpoint")
	}
	if err != nil {
		unmap(&im)
		unmap(&tm)
		return s.rebuildLocked()
	}
	s.indexEntries.Store(int64(len(idx) / IndexEntrySize))
	s.timeEntries.Store(int64(len(tidx) / TimeIndexEntrySize))
	if s.inMemory {
		s.idxMu.Lock()
		s.idx, s.tidx = idx, tidx
		s.idxMu.Unlock()
	} else {
		s.installMappedLocked(im, tm)
	}
	s.next.Store(t.next)
	s.maxTimestamp.Store(t.maxTimestamp)
	s.lastTimeEntryTS = t.maxTimestamp
	s.maxTSBase = t.maxTSBase
	s.firstTimestamp = t.firstTimestamp
	s.loaded = true
	return nil
}

// loadFromMetaLocked reads an active segment's index files into memory and
// checks them against the Meta it was opened with, without reading the
// log. It reports false when they are missing or fail the check.
func (s *Segment) loadFromMetaLocked() bool {
	idx, err := os.ReadFile(s.path(".index"))
	if err != nil {
		return false
	}
	tidx, err := os.ReadFile(s.path(".timeindex"))
	if err != nil {
		return false
	}
	m := Meta{Base: s.base, Size: s.size.Load(), NextOffset: s.next.Load(), MaxTimestamp: s.maxTimestamp.Load(), FirstTimestamp: s.firstTimestamp}
	maxTSBase, err := checkAgainstMeta(m, idx, tidx)
	if err != nil {
		return false
	}
	s.idxMu.Lock()
	s.idx, s.tidx = idx, tidx
	s.idxMu.Unlock()
	s.indexEntries.Store(int64(len(idx) / IndexEntrySize))
	s.timeEntries.Store(int64(len(tidx) / TimeIndexEntrySize))
	s.maxTSBase = maxTSBase
	s.loaded = true
	return true
}

// rebuildLocked scans the log from the start, keeps the longest prefix of
// valid batches, truncates the file after it and rebuilds both indexes:
// in memory for an active segment; a sealed one writes them to its index
// files, which are mapped when next read. The caller holds mu.
func (s *Segment) rebuildLocked() error {
	if err := s.mapLogLocked(); err != nil {
		return err
	}
	s.idxMu.Lock()
	s.idx, s.tidx = nil, nil
	s.idxMu.Unlock()
	if s.indexMapped {
		n := unmap(&s.idxMap) + unmap(&s.tidxMap)
		s.files.add(s, 0, -n)
		s.indexMapped = false
	}
	fileSize := s.size.Load()
	s.indexEntries.Store(0)
	s.timeEntries.Store(0)
	s.next.Store(s.base)
	s.maxTimestamp.Store(-1)
	s.maxTSBase = s.base
	s.lastTimeEntryTS = -1
	s.firstTimestamp = -1
	s.bytesSinceIndex = 0
	s.indexChanged = true
	var log []byte
	if s.logMap != nil {
		log = s.logMap[:fileSize]
	}
	valid := Scan(log, s.base, func(pos int64, h *record.Header) bool {
		s.indexBatch(pos, h)
		s.next.Store(h.NextOffset())
		if h.IsControl() {
			s.txn.scannedControl = true
		}
		return true
	})
	s.size.Store(valid)
	if valid < fileSize {
		if s.logFile == nil {
			if err := s.openFileLocked(0); err != nil {
				return err
			}
		}
		if err := s.logFile.Truncate(valid); err != nil {
			return err
		}
		if err := durable.SyncData(s.logFile); err != nil {
			return err
		}
	}
	if !s.inMemory {
		if s.maxTimestamp.Load() > s.lastTimeEntryTS {
			s.appendTimeEntry()
		}
		if err := s.writeIndexFiles(nil); err != nil {
			return err
		}
		s.idxMu.Lock()
		s.idx, s.tidx = nil, nil
		s.idxMu.Unlock()
		s.capacity = valid
	}
	s.loaded = true
	return nil
}

// Scan walks the batches at the start of data, checking each one's length,
// CRC and record count (record.ValidateStored: a batch the log cleaner
// rewrote may hold fewer records than its offsets span) and that base
// offsets start at or above base and
// increase. It calls fn with each valid batch's position and header until fn
// returns false, and returns the number of bytes of valid batches: the
// position of the first invalid or torn batch, or len(data).
func Scan(data []byte, base int64, fn func(pos int64, h *record.Header) bool) int64 {
	next := base
	pos := int64(0)
	var h record.Header
	for pos < int64(len(data)) {
		err := record.ValidateStored(data[pos:], &h)
		if err != nil || h.BaseOffset < next || h.LastOffset() < h.BaseOffset || h.BaseOffset-base > math.MaxUint32 || pos > math.MaxUint32 {
			break
		}
		if fn != nil && !fn(pos, &h) {
			return pos + int64(h.Size())
		}
		next = h.NextOffset()
		pos += int64(h.Size())
	}
	return pos
}
