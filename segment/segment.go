package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edsrzf/mmap-go"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
)

// FormatVersion is the version of the index layout described in doc.go.
const FormatVersion = 1

// Entry sizes of the two indexes.
const (
	IndexEntrySize     = 8
	TimeIndexEntrySize = 12
)

// Defaults, as Kafka's.
const (
	DefaultMaxBytes           = 1 << 30  // segment.bytes
	DefaultMaxIndexBytes      = 10 << 20 // segment.index.bytes
	DefaultIndexIntervalBytes = 4096     // index.interval.bytes
)

var (
	// ErrCorrupt marks corruption found in a segment. It is the same value
	// as record.ErrCorrupt, so one errors.Is test finds corruption at any
	// layer of the storage stack.
	ErrCorrupt = record.ErrCorrupt
	// ErrClosed is returned by calls on a closed segment.
	ErrClosed = errors.New("segment: closed")
	// ErrFull means the batch does not fit: the segment must roll first.
	ErrFull = errors.New("segment: full")
	// ErrSealed is returned by Append on a sealed segment.
	ErrSealed = errors.New("segment: sealed")
	// ErrOffset is returned by Append for a batch whose base offset is
	// below the segment's next offset.
	ErrOffset = errors.New("segment: offset not increasing")
)

// File is what a segment writes its .log through: the *os.File itself
// unless Config.WrapFile supplies another (fault-injection tests only).
type File interface {
	io.WriterAt
	// Sync makes every byte written so far durable (fdatasync).
	Sync() error
	Truncate(size int64) error
}

// Config tunes a segment. The zero value means Kafka's defaults.
type Config struct {
	// MaxBytes bounds the size of an active segment's .log and is the size
	// of its read mapping. Corresponds to segment.bytes; default 1 GiB,
	// at most math.MaxInt32.
	MaxBytes int64
	// MaxIndexBytes is the preallocated size of each index file of the
	// active segment. Corresponds to segment.index.bytes; default 10 MiB.
	MaxIndexBytes int
	// IndexIntervalBytes is how many bytes of log are written between two
	// offset index entries. Corresponds to index.interval.bytes; default 4096.
	IndexIntervalBytes int
	// WrapFile, when set, wraps the .log file for writes. For
	// fault-injection tests only.
	WrapFile func(*os.File) File
}

func (c Config) withDefaults() Config {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBytes > math.MaxInt32 {
		c.MaxBytes = math.MaxInt32
	}
	if c.MaxIndexBytes <= 0 {
		c.MaxIndexBytes = DefaultMaxIndexBytes
	}
	if c.MaxIndexBytes < TimeIndexEntrySize*IndexEntrySize {
		c.MaxIndexBytes = TimeIndexEntrySize * IndexEntrySize
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	return c
}

// FileName returns the name of a segment file: base offset zero-padded to
// 20 digits followed by ext (".log", ".index", ".timeindex").
func FileName(base int64, ext string) string { return fmt.Sprintf("%020d%s", base, ext) }

// Segment is one segment of a partition log. See the package comment for
// the concurrency contract.
type Segment struct {
	dir  string
	base int64
	cfg  Config

	logFile *os.File
	w       File
	// logMap is a read-only view of .log. Its length is the mapping's
	// capacity, which may exceed the file size; only [0, size) is read.
	logMap mmap.MMap

	// size is the number of bytes of whole batches in .log.
	size atomic.Int64
	// next is the offset after the last batch.
	next atomic.Int64
	// maxTimestamp is the largest max timestamp of any batch, -1 if none.
	maxTimestamp atomic.Int64
	// indexEntries and timeEntries count the index entries in use.
	indexEntries atomic.Int64
	timeEntries  atomic.Int64

	// mu guards the index mappings (remapped by Seal) and closed. Readers
	// hold it shared while they search an index; they keep no index slice.
	mu        sync.RWMutex
	idxFile   *os.File
	timeFile  *os.File
	idx       mmap.MMap
	tidx      mmap.MMap
	closed    bool
	unmapOnce sync.Once

	// Appender-only state, guarded by the owning log's append lock.
	sealed          bool
	bytesSinceIndex int
	maxTSBase       int64 // base offset of the batch carrying maxTimestamp
	lastTimeEntryTS int64 // timestamp of the last time index entry
	firstTimestamp  int64 // max timestamp of the first batch, -1 if empty
	created         time.Time
	rollBase        int64 // see RollTimestamp
	maxIndexEntries int64
	maxTimeEntries  int64
	werr            atomic.Pointer[error] // sticky write or sync error
	refs            atomic.Int64
}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return durable.SyncData(f.File) }

// Create makes a new, empty, active segment with base offset base in dir.
// The caller syncs dir so the new files survive a power cut.
func Create(dir string, base int64, cfg Config) (*Segment, error) {
	s := newSegment(dir, base, cfg)
	var err error
	flags := os.O_RDWR | os.O_CREATE | os.O_TRUNC
	if s.logFile, err = os.OpenFile(s.path(".log"), flags, 0o644); err != nil {
		return nil, err
	}
	s.setWriter()
	if err := s.openIndexes(flags); err != nil {
		s.closeFiles()
		return nil, err
	}
	if err := s.activate(); err != nil {
		s.closeFiles()
		return nil, err
	}
	s.rollBase = s.created.UnixMilli()
	return s, nil
}

// OpenOptions says how Open treats an existing segment.
type OpenOptions struct {
	// Recover scans the log batch by batch (length, CRC, increasing
	// offsets), rebuilds the indexes and truncates the file after the last
	// valid batch. Without it the indexes are trusted if they pass a
	// sanity check, and rebuilt otherwise.
	Recover bool
	// Active opens the segment for appends; otherwise it is sealed.
	Active bool
}

// Open opens an existing segment as opts says.
func Open(dir string, base int64, cfg Config, opts OpenOptions) (*Segment, error) {
	s := newSegment(dir, base, cfg)
	var err error
	if s.logFile, err = os.OpenFile(s.path(".log"), os.O_RDWR, 0o644); err != nil {
		return nil, err
	}
	fi, err := s.logFile.Stat()
	if err != nil {
		s.closeFiles()
		return nil, err
	}
	fileSize := fi.Size()
	if fileSize > math.MaxInt32 {
		s.closeFiles()
		return nil, fmt.Errorf("%w: %s is %d bytes, above 2 GiB", ErrCorrupt, s.path(".log"), fileSize)
	}
	if err := s.mapLog(fileSize, opts.Active); err != nil {
		s.closeFiles()
		return nil, err
	}
	s.size.Store(fileSize)
	if opts.Recover || !s.loadIndexes(fileSize) {
		if err := s.rebuild(fileSize); err != nil {
			s.closeFiles()
			return nil, err
		}
	}
	if opts.Active {
		err = s.activate()
	} else {
		s.sealed = true
		err = s.trimIndexes()
	}
	if err != nil {
		s.closeFiles()
		return nil, err
	}
	s.rollBase = s.created.UnixMilli()
	if s.firstTimestamp >= 0 && s.firstTimestamp < s.rollBase {
		s.rollBase = s.firstTimestamp
	}
	return s, nil
}

func newSegment(dir string, base int64, cfg Config) *Segment {
	s := &Segment{dir: dir, base: base, cfg: cfg.withDefaults(), created: time.Now(), firstTimestamp: -1, lastTimeEntryTS: -1, maxTSBase: base}
	s.next.Store(base)
	s.maxTimestamp.Store(-1)
	s.refs.Store(1)
	s.maxIndexEntries = int64(s.cfg.MaxIndexBytes / IndexEntrySize)
	s.maxTimeEntries = int64(s.cfg.MaxIndexBytes / TimeIndexEntrySize)
	return s
}

func (s *Segment) path(ext string) string { return filepath.Join(s.dir, FileName(s.base, ext)) }

func (s *Segment) openIndexes(flags int) error {
	var err error
	if s.idxFile, err = os.OpenFile(s.path(".index"), flags, 0o644); err != nil {
		return err
	}
	if s.timeFile, err = os.OpenFile(s.path(".timeindex"), flags, 0o644); err != nil {
		return err
	}
	return nil
}

// mapLog maps .log for reading: at its capacity for an active segment, at
// its size otherwise.
func (s *Segment) mapLog(fileSize int64, active bool) error {
	s.setWriter()
	length := fileSize
	if active && s.cfg.MaxBytes > length {
		length = s.cfg.MaxBytes
	}
	if length == 0 {
		return nil
	}
	m, err := mmap.MapRegion(s.logFile, int(length), mmap.RDONLY, 0, 0)
	if err != nil {
		return fmt.Errorf("segment: map %s: %w", s.path(".log"), err)
	}
	s.logMap = m
	return nil
}

func (s *Segment) setWriter() {
	if s.cfg.WrapFile != nil {
		s.w = s.cfg.WrapFile(s.logFile)
	} else {
		s.w = osFile{s.logFile}
	}
}

// activate sizes the index files to their preallocated length and maps
// them read-write, and maps the log at capacity, ready for appends.
func (s *Segment) activate() error {
	if s.logMap == nil || int64(len(s.logMap)) < s.cfg.MaxBytes {
		if err := s.remapLogLocked(); err != nil {
			return err
		}
	}
	if s.idxFile == nil {
		if err := s.openIndexes(os.O_RDWR | os.O_CREATE); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := unmap(&s.idx); err != nil {
		return err
	}
	if err := unmap(&s.tidx); err != nil {
		return err
	}
	idxLen := s.maxIndexEntries * IndexEntrySize
	timeLen := s.maxTimeEntries * TimeIndexEntrySize
	if n := s.indexEntries.Load(); n > s.maxIndexEntries {
		idxLen = n * IndexEntrySize
	}
	if n := s.timeEntries.Load(); n > s.maxTimeEntries {
		timeLen = n * TimeIndexEntrySize
	}
	if err := s.idxFile.Truncate(idxLen); err != nil {
		return err
	}
	if err := s.timeFile.Truncate(timeLen); err != nil {
		return err
	}
	var err error
	if s.idx, err = mmap.Map(s.idxFile, mmap.RDWR, 0); err != nil {
		return fmt.Errorf("segment: map %s: %w", s.idxFile.Name(), err)
	}
	if s.tidx, err = mmap.Map(s.timeFile, mmap.RDWR, 0); err != nil {
		return fmt.Errorf("segment: map %s: %w", s.timeFile.Name(), err)
	}
	return nil
}

// remapLogLocked replaces the log mapping by one at capacity. Only called
// while no reader can hold the segment (during Open).
func (s *Segment) remapLogLocked() error {
	if err := unmap(&s.logMap); err != nil {
		return err
	}
	length := s.cfg.MaxBytes
	if sz := s.size.Load(); sz > length {
		length = sz
	}
	m, err := mmap.MapRegion(s.logFile, int(length), mmap.RDONLY, 0, 0)
	if err != nil {
		return fmt.Errorf("segment: map %s: %w", s.path(".log"), err)
	}
	s.logMap = m
	return nil
}

func unmap(m *mmap.MMap) error {
	if *m == nil {
		return nil
	}
	err := m.Unmap()
	*m = nil
	return err
}

// loadIndexes adopts the index files of a cleanly closed segment. It
// reports false when they are missing or fail the sanity check, in which
// case the caller rebuilds them.
func (s *Segment) loadIndexes(fileSize int64) bool {
	if err := s.openIndexes(os.O_RDWR); err != nil {
		s.closeIndexFiles()
		return false
	}
	ifi, err1 := s.idxFile.Stat()
	tfi, err2 := s.timeFile.Stat()
	if err1 != nil || err2 != nil || ifi.Size()%IndexEntrySize != 0 || tfi.Size()%TimeIndexEntrySize != 0 {
		s.closeIndexFiles()
		return false
	}
	s.mu.Lock()
	ok := s.mapIndexesLocked(ifi.Size(), tfi.Size(), mmap.RDONLY)
	s.mu.Unlock()
	if !ok {
		s.closeIndexFiles()
		return false
	}
	s.indexEntries.Store(ifi.Size() / IndexEntrySize)
	s.timeEntries.Store(tfi.Size() / TimeIndexEntrySize)
	// Sanity: entries increase and point inside the log; the walk from the
	// last entry to the end of the log finds whole, valid headers.
	var prevRel uint32
	var prevPos uint32
	for i := int64(0); i < s.indexEntries.Load(); i++ {
		rel, pos := s.indexEntry(i)
		if (i > 0 && (rel <= prevRel || pos <= prevPos)) || int64(pos) >= fileSize {
			return s.dropIndexes()
		}
		prevRel, prevPos = rel, pos
	}
	startPos := int64(0)
	if n := s.indexEntries.Load(); n > 0 {
		_, p := s.indexEntry(n - 1)
		startPos = int64(p)
	}
	var h record.Header
	next := s.base
	for pos := startPos; pos < fileSize; {
		if err := record.ParseInto(s.logMap[pos:fileSize], &h); err != nil || h.BaseOffset < next {
			return s.dropIndexes()
		}
		next = h.NextOffset()
		pos += int64(h.Size())
	}
	if fileSize > 0 {
		if err := record.ParseInto(s.logMap[:fileSize], &h); err != nil {
			return s.dropIndexes()
		}
		s.firstTimestamp = h.MaxTimestamp
	}
	s.next.Store(next)
	if n := s.timeEntries.Load(); n > 0 {
		ts, rel := s.timeEntry(n - 1)
		s.maxTimestamp.Store(ts)
		s.lastTimeEntryTS = ts
		s.maxTSBase = s.base + int64(rel)
	} else if fileSize > 0 {
		// A segment with data always ends with a time index entry.
		return s.dropIndexes()
	}
	return true
}

func (s *Segment) dropIndexes() bool {
	s.mu.Lock()
	unmap(&s.idx)
	unmap(&s.tidx)
	s.mu.Unlock()
	s.closeIndexFiles()
	s.indexEntries.Store(0)
	s.timeEntries.Store(0)
	s.firstTimestamp = -1
	return false
}

func (s *Segment) mapIndexesLocked(idxSize, timeSize int64, prot int) bool {
	var err error
	if idxSize > 0 {
		if s.idx, err = mmap.MapRegion(s.idxFile, int(idxSize), prot, 0, 0); err != nil {
			return false
		}
	}
	if timeSize > 0 {
		if s.tidx, err = mmap.MapRegion(s.timeFile, int(timeSize), prot, 0, 0); err != nil {
			unmap(&s.idx)
			return false
		}
	}
	return true
}

func (s *Segment) closeIndexFiles() {
	if s.idxFile != nil {
		s.idxFile.Close()
		s.idxFile = nil
	}
	if s.timeFile != nil {
		s.timeFile.Close()
		s.timeFile = nil
	}
}

// rebuild scans the log from the start, keeps the longest prefix of valid
// batches, truncates the file after it and rebuilds both indexes.
func (s *Segment) rebuild(fileSize int64) error {
	s.closeIndexFiles()
	if err := s.openIndexes(os.O_RDWR | os.O_CREATE | os.O_TRUNC); err != nil {
		return err
	}
	s.indexEntries.Store(0)
	s.timeEntries.Store(0)
	s.next.Store(s.base)
	s.maxTimestamp.Store(-1)
	s.lastTimeEntryTS = -1
	s.firstTimestamp = -1
	s.bytesSinceIndex = 0
	if err := s.activate(); err != nil {
		return err
	}
	valid := Scan(s.logMap[:min(int64(len(s.logMap)), fileSize)], s.base, func(pos int64, h *record.Header) bool {
		s.indexBatch(pos, h)
		s.next.Store(h.NextOffset())
		return true
	})
	s.size.Store(valid)
	if valid < fileSize {
		if err := s.logFile.Truncate(valid); err != nil {
			return err
		}
		if err := durable.SyncData(s.logFile); err != nil {
			return err
		}
	}
	return nil
}

// Scan walks the batches at the start of data, checking each one's length,
// CRC and record count and that base offsets start at or above base and
// increase. It calls fn with each valid batch's position and header until fn
// returns false, and returns the number of bytes of valid batches: the
// position of the first invalid or torn batch, or len(data).
func Scan(data []byte, base int64, fn func(pos int64, h *record.Header) bool) int64 {
	next := base
	pos := int64(0)
	var h record.Header
	for pos < int64(len(data)) {
		err := record.ValidateInto(data[pos:], &h)
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

// indexBatch adds index entries for a batch written at pos, following the
// index.interval.bytes rule, and updates the timestamp bookkeeping.
func (s *Segment) indexBatch(pos int64, h *record.Header) {
	if pos > 0 && s.bytesSinceIndex >= s.cfg.IndexIntervalBytes {
		n := s.indexEntries.Load()
		if n < int64(len(s.idx)/IndexEntrySize) {
			e := s.idx[n*IndexEntrySize:]
			binary.BigEndian.PutUint32(e, uint32(h.BaseOffset-s.base))
			binary.BigEndian.PutUint32(e[4:], uint32(pos))
			s.indexEntries.Store(n + 1)
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

func (s *Segment) appendTimeEntry() {
	n := s.timeEntries.Load()
	if n >= int64(len(s.tidx)/TimeIndexEntrySize) {
		return
	}
	ts := s.maxTimestamp.Load()
	e := s.tidx[n*TimeIndexEntrySize:]
	binary.BigEndian.PutUint64(e, uint64(ts))
	binary.BigEndian.PutUint32(e[8:], uint32(s.maxTSBase-s.base))
	s.timeEntries.Store(n + 1)
	s.lastTimeEntryTS = ts
}

func (s *Segment) indexEntry(i int64) (rel, pos uint32) {
	e := s.idx[i*IndexEntrySize:]
	return binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
}

func (s *Segment) timeEntry(i int64) (ts int64, rel uint32) {
	e := s.tidx[i*TimeIndexEntrySize:]
	return int64(binary.BigEndian.Uint64(e)), binary.BigEndian.Uint32(e[8:])
}

// Base is the segment's first offset.
func (s *Segment) Base() int64 { return s.base }

// NextOffset is the offset after the last batch in the segment.
func (s *Segment) NextOffset() int64 { return s.next.Load() }

// Size is the number of bytes of batches in the segment.
func (s *Segment) Size() int64 { return s.size.Load() }

// MaxTimestamp is the largest batch max timestamp in the segment, -1 if
// it is empty.
func (s *Segment) MaxTimestamp() int64 { return s.maxTimestamp.Load() }

// RetentionTimestamp is what retention.ms measures the segment by, in
// Unix milliseconds: its max timestamp or, when no batch carries one
// (records of message format v0 have none: -1), the time its .log was last
// written, as Kafka does. If that time cannot be read it is math.MaxInt64:
// never expired.
func (s *Segment) RetentionTimestamp() int64 {
	if ts := s.maxTimestamp.Load(); ts >= 0 {
		return ts
	}
	fi, err := s.logFile.Stat()
	if err != nil {
		return math.MaxInt64
	}
	return fi.ModTime().UnixMilli()
}

// RollTimestamp is the time, in Unix milliseconds, that segment.ms counts
// from. For a segment created by this process it is the creation time. For
// a segment opened from disk it is the max timestamp of its first batch
// (or the open time when empty or when that timestamp is in the future).
// Kafka counts from the first batch's timestamp always; a producer sending
// old timestamps would then roll a segment per batch, which Ferry avoids.
func (s *Segment) RollTimestamp() int64 {
	return s.rollBase
}

// indexCounts returns the number of offset and time index entries in use.
func (s *Segment) indexCounts() (offsets, times int64) {
	return s.indexEntries.Load(), s.timeEntries.Load()
}

// Fits reports whether a batch of n bytes can be appended without rolling:
// it fits in the mapping and under maxBytes (the current segment.bytes),
// and both indexes have room.
func (s *Segment) Fits(n int, maxBytes int64) bool {
	size := s.size.Load()
	if size == 0 {
		return int64(n) <= int64(len(s.logMap)) || len(s.logMap) == 0
	}
	return size+int64(n) <= min(maxBytes, int64(len(s.logMap))) &&
		s.indexEntries.Load() < int64(len(s.idx)/IndexEntrySize) &&
		s.timeEntries.Load() < int64(len(s.tidx)/TimeIndexEntrySize)-1
}

// Append writes one batch, whose header h the caller has validated and
// whose base offset is already set, at the end of the log. It does not
// sync. A failed write is undone (the file is cut back) and the error is
// sticky: every later Append returns it.
func (s *Segment) Append(batch []byte, h *record.Header) error {
	if err := s.err(); err != nil {
		return err
	}
	if s.sealed {
		return ErrSealed
	}
	if h.BaseOffset < s.next.Load() {
		return fmt.Errorf("%w: batch at %d, segment next is %d", ErrOffset, h.BaseOffset, s.next.Load())
	}
	pos := s.size.Load()
	if pos+int64(len(batch)) > int64(len(s.logMap)) || h.BaseOffset-s.base > math.MaxUint32-int64(h.LastOffsetDelta) {
		return ErrFull
	}
	if _, err := s.w.WriteAt(batch, pos); err != nil {
		if terr := s.w.Truncate(pos); terr != nil {
			err = errors.Join(err, terr)
		}
		return s.fail(fmt.Errorf("segment: write %s at %d: %w", s.path(".log"), pos, err))
	}
	s.indexBatch(pos, h)
	s.next.Store(h.NextOffset())
	s.size.Store(pos + int64(len(batch)))
	return nil
}

// Sync makes every appended byte durable with fdatasync. Index files are
// not synced here: they are rebuilt by recovery and synced when sealed.
//
// Sync may run concurrently with Append and Seal.
func (s *Segment) Sync() error {
	if err := s.err(); err != nil {
		return err
	}
	if err := s.w.Sync(); err != nil {
		return s.fail(fmt.Errorf("segment: sync %s: %w", s.path(".log"), err))
	}
	return nil
}

// err returns the sticky error, if any.
func (s *Segment) err() error {
	if p := s.werr.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err as the sticky error (the first one wins) and returns
// the sticky error.
func (s *Segment) fail(err error) error {
	s.werr.CompareAndSwap(nil, &err)
	return s.err()
}

// Seal stops appends: it writes the final time index entry, trims both
// indexes to the entries in use and syncs the log and the indexes.
func (s *Segment) Seal() error {
	if s.sealed {
		return nil
	}
	if err := s.err(); err != nil {
		return err
	}
	if s.maxTimestamp.Load() > s.lastTimeEntryTS {
		s.appendTimeEntry()
	}
	if err := s.Sync(); err != nil {
		return err
	}
	s.sealed = true
	return s.trimIndexes()
}

// trimIndexes cuts both index files to the entries in use, syncs them and
// maps them read-only.
func (s *Segment) trimIndexes() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idx != nil {
		if err := s.idx.Flush(); err != nil {
			return err
		}
	}
	if s.tidx != nil {
		if err := s.tidx.Flush(); err != nil {
			return err
		}
	}
	unmap(&s.idx)
	unmap(&s.tidx)
	if s.idxFile == nil {
		if err := s.openIndexes(os.O_RDWR | os.O_CREATE); err != nil {
			return err
		}
	}
	idxSize := s.indexEntries.Load() * IndexEntrySize
	timeSize := s.timeEntries.Load() * TimeIndexEntrySize
	if err := s.idxFile.Truncate(idxSize); err != nil {
		return err
	}
	if err := s.timeFile.Truncate(timeSize); err != nil {
		return err
	}
	if err := durable.SyncData(s.idxFile); err != nil {
		return err
	}
	if err := durable.SyncData(s.timeFile); err != nil {
		return err
	}
	if !s.mapIndexesLocked(idxSize, timeSize, mmap.RDONLY) {
		return fmt.Errorf("segment: map indexes of %s", s.path(".log"))
	}
	return nil
}

// Acquire takes a reference that keeps the segment's mapping alive. It
// returns false if the segment is already closed.
func (s *Segment) Acquire() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release drops a reference taken by Acquire (or the owner's reference
// dropped by Close and Remove). The last Release unmaps and closes the files.
func (s *Segment) Release() {
	if s.refs.Add(-1) == 0 {
		s.unmapOnce.Do(s.destroy)
	}
}

func (s *Segment) destroy() {
	s.mu.Lock()
	s.closed = true
	unmap(&s.idx)
	unmap(&s.tidx)
	s.mu.Unlock()
	unmap(&s.logMap)
	s.closeFiles()
}

func (s *Segment) closeFiles() {
	s.closeIndexFiles()
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
	}
}

// Close trims the indexes (unless the segment has a write error), and
// drops the owner's reference; the files are closed when no reader holds
// the segment. It does not sync the log; callers Sync first.
func (s *Segment) Close() error {
	var err error
	if !s.sealed && s.err() == nil {
		if s.maxTimestamp.Load() > s.lastTimeEntryTS {
			s.appendTimeEntry()
		}
		err = s.trimIndexes()
	}
	s.Release()
	return err
}

// Remove deletes the segment's files and drops the owner's reference. A
// reader still holding the segment keeps reading its mapping until it
// releases it. The caller syncs the directory.
func (s *Segment) Remove() error {
	var errs []error
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		if err := os.Remove(s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.Release()
	return errors.Join(errs...)
}
