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

// Extensions are the extensions of a segment's files, .log first. A
// segment's files are FileName(base, ext) for each of them; .txnindex
// exists only for a segment holding abort markers.
var Extensions = [...]string{".log", ".index", ".timeindex", ".txnindex"}

// CleanedSuffix ends the names of a segment's files while the log cleaner
// writes them (Builder), until its owner renames them into place.
const CleanedSuffix = ".cleaned"

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
	// errReplaced: a retired segment's files cannot be opened again
	// (they may be another segment's now). It wraps ErrClosed.
	errReplaced = fmt.Errorf("%w: replaced", ErrClosed)
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
	// MaxIndexBytes bounds each index of the active segment; a full index
	// makes Fits say no. Corresponds to segment.index.bytes; default 10 MiB.
	MaxIndexBytes int
	// IndexIntervalBytes is how many bytes of log are written between two
	// offset index entries. Corresponds to index.interval.bytes; default 4096.
	IndexIntervalBytes int
	// Files bounds the files and mappings the segment holds open, shared
	// with every other segment of the broker. Default DefaultFileCache().
	Files *FileCache
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
	if c.Files == nil {
		c.Files = DefaultFileCache()
	}
	return c
}

// FileName returns the name of a segment file: base offset zero-padded to
// 20 digits followed by ext (".log", ".index", ".timeindex").
func FileName(base int64, ext string) string { return fmt.Sprintf("%020d%s", base, ext) }

// Meta is what a log records of each segment when it closes cleanly, so
// that the segment opens again without reading its files
// (OpenOptions.Meta).
type Meta struct {
	Base           int64 // first offset
	Size           int64 // bytes of batches in .log
	NextOffset     int64 // offset after the last batch
	MaxTimestamp   int64 // largest batch max timestamp, -1 if none
	FirstTimestamp int64 // max timestamp of the first batch, -1 if empty
}

// Segment is one segment of a partition log. See the package comment for
// the concurrency contract.
type Segment struct {
	dir   string
	base  int64
	cfg   Config
	files *FileCache
	// suffix ends every file name: CleanedSuffix for a Builder's segment,
	// empty otherwise.
	suffix string

	// capacity is the most bytes .log may hold: MaxBytes for an active
	// segment (or its size, if larger, when opened), its size once sealed.
	// Written under mu held exclusively.
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

	// mu guards the handles (open file and mappings), inMemory, loaded and
	// closed. The appender holds it shared while it writes or syncs
	// through logFile; opening or closing a handle holds it exclusively.
	// Readers hold it shared only to find or open a mapping: the
	// reference they hold (Acquire) keeps the mapping from being unmapped
	// while they use it.
	mu sync.RWMutex
	// logFile is .log open for writes and syncs, nil while closed; w
	// writes through it.
	logFile *os.File
	w       File
	// logMap is a read-only mapping of .log, capacity bytes long, nil
	// while unmapped; only [0, size) is read. Nothing is ever written
	// through a mapping.
	logMap mmap.MMap
	// idxMap and tidxMap map a sealed segment's index files read-only;
	// indexMapped says they are mapped (a mapping of an empty file is nil).
	idxMap, tidxMap mmap.MMap
	indexMapped     bool
	// inMemory: the index entries are Go memory, appended to by the
	// appender (an active segment). Otherwise they are the mappings.
	inMemory bool
	// loaded: the indexes were checked against the log (or rebuilt from
	// it). A segment opened from Meta loads when first read or, if
	// active, appended to.
	loaded bool
	// fromMeta: opened from Meta, which loading must agree with.
	fromMeta bool
	closed   bool
	// retired: the owner renames or removes the files (Retire); the
	// segment never opens one by path again.
	retired bool

	// idxMu guards idx and tidx, the index entries in use: the appender
	// appends to them holding it; readers search them holding it shared.
	// Replacing them by mappings or dropping them also holds mu.
	idxMu     sync.RWMutex
	idx, tidx []byte

	// Clock bookkeeping of the FileCache; slot and held* are guarded by
	// the cache's lock.
	recent    atomic.Bool
	slot      int
	heldFiles int
	heldMaps  int

	// Appender-only state, guarded by the owning log's append lock.
	sealed          bool
	indexChanged    bool // entries added since the index files were written
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
	// orphan: the owner dropped its reference (Remove) or is about to
	// (Retire), so every reference left is a reader's and the FileCache
	// must not evict what they read.
	orphan atomic.Bool
	// syncing counts fdatasyncs in flight, which hold the file open
	// without holding mu: the FileCache does not close it meanwhile, and
	// Seal waits for them (syncWG) before it closes it. Both are added to
	// under mu held shared, so none starts while mu is held exclusively.
	syncing     atomic.Int64
	syncWG      sync.WaitGroup
	destroyOnce sync.Once

	// txn is the aborted-transaction index (txnindex.go).
	txn txnIndex
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
	for _, ext := range Extensions[1:] {
		if err := os.Remove(s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capacity = s.cfg.MaxBytes
	s.inMemory, s.loaded = true, true
	s.txn.loaded = true
	if err := s.openFileLocked(os.O_CREATE | os.O_TRUNC); err != nil {
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
	// Meta, when set (and Recover is not), is what Segment.Meta said when
	// the segment was last closed cleanly. The segment then opens without
	// touching its files. A sealed one maps its indexes and checks them
	// against the log when it is first read; an active one reads its index
	// files into memory and checks them against Meta when it is first read
	// or appended to.
	Meta *Meta
	// TxnIndex says the directory holds the segment's .txnindex (the
	// caller lists the directory anyway); it is read when first needed.
	// With Recover it is removed instead: the caller rebuilds the
	// segment's aborted transactions (AppendAbortedTxn).
	TxnIndex bool
}

// Open opens an existing segment as opts says.
func Open(dir string, base int64, cfg Config, opts OpenOptions) (*Segment, error) {
	s := newSegment(dir, base, cfg)
	s.txn.exists.Store(opts.TxnIndex)
	var err error
	if m := opts.Meta; m != nil && !opts.Recover && m.Base == base && m.Size >= 0 && m.Size <= math.MaxInt32 && m.NextOffset >= base {
		err = s.openMeta(*m, opts.Active)
	} else {
		err = s.openFiles(opts)
	}
	if err == nil && opts.Recover {
		err = s.resetTxnIndex()
	}
	if err != nil {
		s.destroy()
		return nil, err
	}
	s.rollBase = s.created.UnixMilli()
	if s.firstTimestamp >= 0 && s.firstTimestamp < s.rollBase {
		s.rollBase = s.firstTimestamp
	}
	return s, nil
}

// openMeta opens a segment from its Meta without touching its files: they
// are read when first needed (loadLocked).
func (s *Segment) openMeta(m Meta, active bool) error {
	s.size.Store(m.Size)
	s.next.Store(m.NextOffset)
	s.maxTimestamp.Store(m.MaxTimestamp)
	s.lastTimeEntryTS = m.MaxTimestamp
	s.firstTimestamp = m.FirstTimestamp
	s.fromMeta = true
	s.mu.Lock()
	defer s.mu.Unlock()
	if active {
		s.capacity = max(s.cfg.MaxBytes, m.Size)
		s.inMemory = true
		s.loaded = m.Size == 0
	} else {
		s.sealed = true
		s.capacity = m.Size
	}
	return nil
}

// openFiles opens a segment by reading its files: a recovery scan, or a
// check of its indexes against the log (and a scan if that fails).
func (s *Segment) openFiles(opts OpenOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openFileLocked(0); err != nil {
		return err
	}
	fi, err := s.logFile.Stat()
	if err != nil {
		return err
	}
	fileSize := fi.Size()
	if fileSize > math.MaxInt32 {
		return fmt.Errorf("%w: %s is %d bytes, above 2 GiB", ErrCorrupt, s.path(".log"), fileSize)
	}
	s.size.Store(fileSize)
	s.inMemory, s.sealed = opts.Active, !opts.Active
	s.capacity = fileSize
	if opts.Active {
		s.capacity = max(s.cfg.MaxBytes, fileSize)
	}
	if opts.Recover {
		err = s.rebuildLocked()
	} else {
		err = s.loadLocked()
	}
	if err != nil {
		return err
	}
	if s.sealed {
		s.closeFileLocked()
	}
	return nil
}

func newSegment(dir string, base int64, cfg Config) *Segment {
	s := &Segment{dir: dir, base: base, cfg: cfg.withDefaults(), created: time.Now(), firstTimestamp: -1, lastTimeEntryTS: -1, maxTSBase: base, slot: -1}
	s.files = s.cfg.Files
	s.next.Store(base)
	s.maxTimestamp.Store(-1)
	s.refs.Store(1)
	s.maxIndexEntries = int64(s.cfg.MaxIndexBytes / IndexEntrySize)
	s.maxTimeEntries = int64(s.cfg.MaxIndexBytes / TimeIndexEntrySize)
	return s
}

func (s *Segment) path(ext string) string {
	return filepath.Join(s.dir, FileName(s.base, ext)+s.suffix)
}

// What an operation needs open.
type need uint8

const (
	needFile  need = 1 << iota // .log open for writes and syncs
	needLog                    // .log mapped
	needIndex                  // index entries readable
)

// rlock returns with mu held shared and the handles in want open, opening
// them (with mu held exclusively) when they are not.
func (s *Segment) rlock(want need) error {
	if !s.recent.Load() {
		s.recent.Store(true)
	}
	for {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			return ErrClosed
		}
		if s.haveLocked(want) {
			return nil
		}
		s.mu.RUnlock()
		s.mu.Lock()
		err := s.openLocked(want)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (s *Segment) haveLocked(want need) bool {
	if want&needFile != 0 && s.logFile == nil {
		return false
	}
	if want&(needLog|needIndex) != 0 && !s.loaded {
		return false
	}
	if want&needLog != 0 && s.logMap == nil && s.capacity > 0 {
		return false
	}
	return want&needIndex == 0 || s.inMemory || s.indexMapped
}

func (s *Segment) openLocked(want need) error {
	if s.closed {
		return ErrClosed
	}
	if s.haveLocked(want) {
		return nil // another goroutine opened it meanwhile
	}
	if s.retired {
		// Its files may be another segment's now.
		return fmt.Errorf("%w: %s", errReplaced, s.path(".log"))
	}
	if want&(needLog|needIndex) != 0 && !s.loaded {
		if err := s.loadLocked(); err != nil {
			return err
		}
	}
	if want&needFile != 0 && s.logFile == nil {
		if err := s.openFileLocked(0); err != nil {
			return err
		}
	}
	if want&needLog != 0 && s.logMap == nil {
		if err := s.mapLogLocked(); err != nil {
			return err
		}
	}
	if want&needIndex != 0 && !s.inMemory && !s.indexMapped {
		return s.mapIndexesLocked()
	}
	return nil
}

// mapped returns the mapping of .log, opening what want names first. The
// caller holds a reference (Acquire), which keeps the mapping alive.
func (s *Segment) mapped(want need) (mmap.MMap, error) {
	if err := s.rlock(want | needLog); err != nil {
		return nil, err
	}
	m := s.logMap
	s.mu.RUnlock()
	return m, nil
}

// openFileLocked opens .log for writes with extra flags (O_CREATE...).
func (s *Segment) openFileLocked(flags int) error {
	f, err := os.OpenFile(s.path(".log"), os.O_RDWR|flags, 0o644)
	if err != nil {
		return err
	}
	s.logFile = f
	if s.cfg.WrapFile != nil {
		s.w = s.cfg.WrapFile(f)
	} else {
		s.w = osFile{f}
	}
	s.files.add(s, 1, 0)
	return nil
}

func (s *Segment) closeFileLocked() {
	if s.logFile != nil {
		// An fdatasync in flight (a background flush of a segment being
		// sealed) still uses the file.
		s.syncWG.Wait()
		s.logFile.Close()
		s.logFile, s.w = nil, nil
		s.files.add(s, -1, 0)
	}
}

// mapLogLocked maps .log read-only at its capacity. A mapping past the
// end of the file costs address space only; reads stop at size. A file
// shorter than size (damaged since it was closed) is corrupt: reading a
// mapping past the end of its file would fault.
func (s *Segment) mapLogLocked() error {
	if s.capacity == 0 {
		return nil
	}
	f := s.logFile
	if f == nil {
		var err error
		if f, err = os.Open(s.path(".log")); err != nil {
			return err
		}
		defer f.Close()
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < s.size.Load() {
		return fmt.Errorf("%w: %s is %d bytes, shorter than the %d it held", ErrCorrupt, s.path(".log"), fi.Size(), s.size.Load())
	}
	m, err := mmap.MapRegion(f, int(s.capacity), mmap.RDONLY, 0, 0)
	if err != nil {
		return fmt.Errorf("segment: map %s: %w", s.path(".log"), err)
	}
	s.logMap = m
	s.files.add(s, 0, 1)
	return nil
}

func unmap(m *mmap.MMap) int {
	if *m == nil {
		return 0
	}
	m.Unmap()
	*m = nil
	return 1
}

// releaseLocked closes the file and unmaps the mappings, keeping in-memory
// indexes, and returns how many mappings it dropped.
func (s *Segment) releaseLocked() (files, maps int) {
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile, s.w = nil, nil
		files = 1
	}
	maps = unmap(&s.logMap)
	if s.indexMapped {
		s.idxMu.Lock()
		maps += unmap(&s.idxMap) + unmap(&s.tidxMap)
		s.idx, s.tidx = nil, nil
		s.indexMapped = false
		s.idxMu.Unlock()
	}
	return files, maps
}

// tryRelease releases what an idle segment holds, for the FileCache: not
// when it is busy (mu held) or referenced by anyone but its owner.
func (s *Segment) tryRelease() bool {
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	if s.closed || s.orphan.Load() || s.refs.Load() > 1 || s.syncing.Load() > 0 {
		return false
	}
	s.releaseLocked()
	return true
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

// FirstTimestamp is the max timestamp of the segment's first batch, -1
// if it is empty: what max.compaction.lag.ms measures a sealed segment by.
func (s *Segment) FirstTimestamp() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.firstTimestamp
}

// Meta returns what a clean open of the segment needs to know (see
// OpenOptions.Meta). Call it once appends and seals are over.
func (s *Segment) Meta() Meta {
	return Meta{Base: s.base, Size: s.size.Load(), NextOffset: s.next.Load(), MaxTimestamp: s.maxTimestamp.Load(), FirstTimestamp: s.firstTimestamp}
}

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
	if err := s.rlock(needFile | needIndex); err != nil {
		return s.fail(fmt.Errorf("segment: open %s: %w", s.path(".log"), err))
	}
	_, err := s.w.WriteAt(batch, pos)
	if err != nil {
		if terr := s.w.Truncate(pos); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	s.mu.RUnlock()
	if err != nil {
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
	if err := s.rlock(needFile); err != nil {
		if errors.Is(err, errReplaced) {
			// Retired, so sealed, so synced: nothing to do. The log's
			// flusher may sync a segment it took while the segment was
			// sealing, after the cleaner replaced it.
			return nil
		}
		return s.fail(fmt.Errorf("segment: open %s: %w", s.path(".log"), err))
	}
	// The fdatasync runs without mu, so that a reader mapping the
	// segment meanwhile does not wait for it; syncing keeps the file
	// open (tryRelease skips the segment, and destroy needs the
	// reference the caller holds).
	w := s.w
	s.syncing.Add(1)
	s.syncWG.Add(1)
	s.mu.RUnlock()
	err := w.Sync()
	s.syncing.Add(-1)
	s.syncWG.Done()
	if err != nil {
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
// writes both index files and syncs them, drops the in-memory entries (the
// files are mapped when next read) and closes .log. A failure is sticky.
func (s *Segment) Seal() error {
	if s.sealed {
		return nil
	}
	if err := s.err(); err != nil {
		return err
	}
	// The index entries are written below: they must be in memory.
	if err := s.rlock(needIndex); err != nil {
		return s.fail(fmt.Errorf("segment: load %s: %w", s.path(".log"), err))
	}
	s.mu.RUnlock()
	if s.maxTimestamp.Load() > s.lastTimeEntryTS {
		s.appendTimeEntry()
	}
	if err := s.Sync(); err != nil {
		return err
	}
	if err := s.writeIndexFiles(nil); err != nil {
		return s.fail(err)
	}
	if err := s.SyncTxnIndex(); err != nil {
		return s.fail(err)
	}
	s.sealed = true
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idxMu.Lock()
	s.idx, s.tidx = nil, nil
	s.inMemory, s.indexMapped = false, false
	s.idxMu.Unlock()
	s.capacity = s.size.Load()
	s.closeFileLocked()
	return nil
}

// Acquire takes a reference that keeps the segment's mappings alive. It
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
	switch s.refs.Add(-1) {
	case 0:
		s.destroyOnce.Do(s.destroy)
	case 1:
		// Idle again: evictable if the cache went over its limits while
		// the segment was in use.
		s.files.sweep()
	}
}

func (s *Segment) destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.releaseLocked()
	s.idxMu.Lock()
	s.idx, s.tidx = nil, nil
	s.idxMu.Unlock()
	s.files.remove(s)
}

// Close writes the index files of an active segment if they changed
// (unless it has a write error; an empty segment needs none) and drops the
// owner's reference; the files are closed when no reader holds the
// segment. It does not sync the log; callers Sync first.
func (s *Segment) Close() error { return s.CloseInto(nil) }

// CloseInto is Close with the index files left for b to make durable
// (durable.Batch): the caller commits b once every segment, log and
// partition is closed. A nil b is Close.
func (s *Segment) CloseInto(b *durable.Batch) error {
	var err error
	if !s.sealed && s.err() == nil && s.size.Load() > 0 {
		if s.maxTimestamp.Load() > s.lastTimeEntryTS {
			s.appendTimeEntry()
		}
		if s.indexChanged {
			err = s.writeIndexFiles(b)
		}
		// Where b cannot sync the file system at once it syncs each
		// file it was told of; the active segment may hold unsynced data.
		b.Written(s.path(".log"))
	}
	if s.err() == nil {
		if b == nil {
			err = errors.Join(err, s.SyncTxnIndex())
		} else {
			s.txnIndexInto(b)
		}
	}
	s.Release()
	return err
}

// Remove deletes the segment's files and drops the owner's reference. A
// reader still holding the segment keeps reading its mapping until it
// releases it (the FileCache no longer evicts it). The caller syncs the
// directory.
func (s *Segment) Remove() error {
	s.orphan.Store(true)
	var errs []error
	for _, ext := range Extensions {
		if err := os.Remove(s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	s.Release()
	return errors.Join(errs...)
}

// Retire readies a sealed segment whose files its owner is about to
// rename over or remove while readers may still hold it (the log cleaner
// replacing segments by a cleaned one of the same base): it maps .log and
// the indexes now, never opens a file of the segment by path again, and
// keeps the FileCache from evicting it. So every reader holding a
// reference, or taking one before the owner's Release, reads from the
// mappings the bytes it was promised. The owner then drops its reference
// with Release, not Remove: the files are its to rename or remove.
func (s *Segment) Retire() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.sealed {
		return fmt.Errorf("segment: retire %s: not sealed", s.path(".log"))
	}
	if !s.haveLocked(needLog | needIndex) {
		if err := s.openLocked(needLog | needIndex); err != nil {
			return err
		}
	}
	// The aborted transactions too: .txnindex is read by path.
	s.txn.mu.Lock()
	err := s.loadTxnLocked()
	s.txn.mu.Unlock()
	if err != nil {
		return err
	}
	s.retired = true
	s.orphan.Store(true)
	return nil
}
