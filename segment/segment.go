package segment

import (
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
	// logMap is a read-only view of .log, capacity bytes long; only
	// [0, size) is read. Nothing is ever written through a mapping.
	logMap mmap.MMap
	// capacity is the most bytes .log may hold: MaxBytes for an active
	// segment (or its size, if larger, when opened), its size once sealed.
	capacity int64

	// size is the number of bytes of whole batches in .log.
	size atomic.Int64
	// next is the offset after the last batch.
	next atomic.Int64
	// maxTimestamp is the largest max timestamp of any batch, -1 if none.
	maxTimestamp atomic.Int64
	// indexEntries and timeEntries count the index entries in use.
	indexEntries atomic.Int64
	timeEntries  atomic.Int64

	// mu guards the indexes and closed. Readers hold it shared while they
	// search an index; they keep no index slice. The appender holds it to
	// add an entry.
	mu sync.RWMutex
	// idx and tidx hold the index entries in use: in memory while the
	// segment is active (the appender appends to them), the read-only
	// mappings idxMap and tidxMap of the index files once sealed.
	idx, tidx       []byte
	idxMap, tidxMap mmap.MMap
	closed          bool
	unmapOnce       sync.Once

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

// Create makes a new, empty, active segment with base offset base in dir:
// its .log only; the index files are written when it is sealed or closed.
// The caller syncs dir so the new file survives a power cut.
func Create(dir string, base int64, cfg Config) (*Segment, error) {
	s := newSegment(dir, base, cfg)
	// Index files left by an older segment of the same name describe
	// other data.
	for _, ext := range []string{".index", ".timeindex"} {
		if err := os.Remove(s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	var err error
	if s.logFile, err = os.OpenFile(s.path(".log"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return nil, err
	}
	s.setWriter()
	s.capacity = s.cfg.MaxBytes
	if err := s.mapLog(); err != nil {
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
	s.setWriter()
	if err := s.open(opts); err != nil {
		s.destroy()
		return nil, err
	}
	return s, nil
}

func (s *Segment) open(opts OpenOptions) error {
	fi, err := s.logFile.Stat()
	if err != nil {
		return err
	}
	fileSize := fi.Size()
	if fileSize > math.MaxInt32 {
		return fmt.Errorf("%w: %s is %d bytes, above 2 GiB", ErrCorrupt, s.path(".log"), fileSize)
	}
	s.capacity = fileSize
	if opts.Active {
		s.capacity = max(s.cfg.MaxBytes, fileSize)
	}
	if err := s.mapLog(); err != nil {
		return err
	}
	s.size.Store(fileSize)
	loaded := !opts.Recover && s.loadIndexes(fileSize, opts.Active)
	if !loaded {
		if err := s.rebuild(fileSize); err != nil {
			return err
		}
	}
	if !opts.Active {
		s.sealed = true
		if !loaded {
			if err := s.writeIndexFiles(); err != nil {
				return err
			}
			s.mu.Lock()
			err := s.mapIndexesLocked()
			s.mu.Unlock()
			if err != nil {
				return err
			}
		}
	}
	s.rollBase = s.created.UnixMilli()
	if s.firstTimestamp >= 0 && s.firstTimestamp < s.rollBase {
		s.rollBase = s.firstTimestamp
	}
	return nil
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

// mapLog maps .log read-only at its capacity. A mapping past the end of
// the file costs address space only; reads stop at size.
func (s *Segment) mapLog() error {
	if s.capacity == 0 {
		return nil
	}
	m, err := mmap.MapRegion(s.logFile, int(s.capacity), mmap.RDONLY, 0, 0)
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

func unmap(m *mmap.MMap) error {
	if *m == nil {
		return nil
	}
	err := m.Unmap()
	*m = nil
	return err
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
	fi, err := os.Stat(s.path(".log"))
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

// Fits reports whether a batch of n bytes whose last offset is last can be
// appended without rolling: it fits in the segment's capacity and under
// maxBytes (the current segment.bytes), so that positions fit the index's
// uint32; its offsets are at most math.MaxUint32 past the segment's base,
// so that relative offsets fit too; and both indexes have room.
func (s *Segment) Fits(n int, last, maxBytes int64) bool {
	if last-s.base > math.MaxUint32 {
		return false
	}
	size := s.size.Load()
	if size == 0 {
		return int64(n) <= s.capacity
	}
	return size+int64(n) <= min(maxBytes, s.capacity, math.MaxUint32) &&
		s.indexEntries.Load() < s.maxIndexEntries &&
		s.timeEntries.Load() < s.maxTimeEntries-1
}

// Append writes one batch, whose header h the caller has validated and
// whose base offset is already set, at the end of the log. It does not
// sync. A batch that does not fit (ErrFull: call Fits first) or whose
// offsets do not follow (ErrOffset) is refused before anything is written.
// A failed write is undone (the file is cut back) and the error is sticky:
// every later Append returns it.
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
	if pos+int64(len(batch)) > s.capacity || h.BaseOffset-s.base > math.MaxUint32-int64(h.LastOffsetDelta) {
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

// Sync makes every appended byte durable (durable.SyncData). Index files
// are not synced here: recovery rebuilds them, and Seal and Close write
// and sync them.
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

// Seal stops appends: it writes the final time index entry, syncs the log,
// writes both index files, syncs them and maps them read-only. A failure
// is sticky.
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
	if err := s.writeIndexFiles(); err != nil {
		return s.fail(err)
	}
	s.sealed = true
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.mapIndexesLocked(); err != nil {
		return s.fail(err)
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
	s.unmapIndexesLocked()
	s.mu.Unlock()
	unmap(&s.logMap)
	s.closeFiles()
}

func (s *Segment) closeFiles() {
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
	}
}

// Close writes the index files of an active segment (unless it has a
// write error) and drops the owner's reference; the files are closed when
// no reader holds the segment. It does not sync the log; callers Sync
// first.
func (s *Segment) Close() error {
	var err error
	if !s.sealed && s.err() == nil {
		if s.maxTimestamp.Load() > s.lastTimeEntryTS {
			s.appendTimeEntry()
		}
		err = s.writeIndexFiles()
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
