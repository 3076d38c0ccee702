package log

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

var (
	// ErrOffsetOutOfRange is returned for a read below the log start offset
	// or past the end of the log.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrClosed is returned by calls on a closed log.
	ErrClosed = errors.New("log: closed")
	// ErrBatchTooLarge is returned for a batch larger than segment.bytes.
	ErrBatchTooLarge = errors.New("log: batch larger than segment.bytes")
	// ErrCorrupt marks corruption; it is record.ErrCorrupt.
	ErrCorrupt = record.ErrCorrupt
)

// Config holds a log's settings. Zero values mean Kafka's defaults; use -1
// where Kafka uses -1 for "unlimited".
type Config struct {
	// SegmentBytes rolls the active segment when a batch would take it past
	// this size. Corresponds to segment.bytes; default 1 GiB.
	SegmentBytes int64
	// SegmentMs rolls the active segment this long after its first batch's
	// timestamp. Corresponds to segment.ms; default 7 days.
	SegmentMs int64
	// SegmentIndexBytes is the preallocated size of each index. Corresponds
	// to segment.index.bytes; default 10 MiB. Applies to new segments.
	SegmentIndexBytes int
	// IndexIntervalBytes corresponds to index.interval.bytes; default 4096.
	IndexIntervalBytes int
	// RetentionMs deletes sealed segments whose newest timestamp is older.
	// Corresponds to retention.ms; default 7 days; -1 keeps forever.
	RetentionMs int64
	// RetentionBytes deletes the oldest segments while the log is larger.
	// Corresponds to retention.bytes; default -1 (no limit).
	RetentionBytes int64
	// Compact marks a log whose cleanup.policy lacks "delete": retention
	// never deletes its segments.
	Compact bool
	// FlushMessages syncs after this many records since the last sync.
	// Corresponds to flush.messages; default MaxInt64 (never).
	FlushMessages int64
	// FlushMs syncs this long after the first unsynced append.
	// Corresponds to flush.ms; default MaxInt64 (never).
	FlushMs int64
	// FlushMaxDelayMs bounds how long an appended batch waits for a
	// sync when nothing else syncs it (acks 0 and 1): a background sync
	// runs at most this long after the first unsynced append, as
	// FlushMs does, whichever is sooner. Readers see a batch only once
	// it is durable, so this is also the longest it stays invisible.
	// Corresponds to flush.max.delay.ms; default
	// DefaultFlushMaxDelayMs.
	FlushMaxDelayMs int64
	// OnDurable, when set, is called each time the durable offset
	// advances, by the goroutine whose sync advanced it, with no lock of
	// the log held. It must not block. Read at Open only.
	OnDurable func()
	// Logger receives recovery and error reports. nil discards them.
	Logger *slog.Logger
	// WrapFile is passed to every segment. Fault-injection tests only.
	WrapFile func(*os.File) segment.File
}

// DefaultFlushMaxDelayMs is the default of Config.FlushMaxDelayMs.
const DefaultFlushMaxDelayMs = 10

func (c Config) withDefaults() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = segment.DefaultMaxBytes
	}
	if c.SegmentBytes > math.MaxInt32 {
		c.SegmentBytes = math.MaxInt32
	}
	if c.SegmentMs <= 0 {
		c.SegmentMs = 7 * 24 * 3600 * 1000
	}
	if c.SegmentIndexBytes <= 0 {
		c.SegmentIndexBytes = segment.DefaultMaxIndexBytes
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = segment.DefaultIndexIntervalBytes
	}
	if c.RetentionMs == 0 {
		c.RetentionMs = 7 * 24 * 3600 * 1000
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = -1
	}
	if c.FlushMessages <= 0 {
		c.FlushMessages = math.MaxInt64
	}
	if c.FlushMs <= 0 {
		c.FlushMs = math.MaxInt64
	}
	if c.FlushMaxDelayMs <= 0 {
		c.FlushMaxDelayMs = DefaultFlushMaxDelayMs
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c *Config) segmentConfig() segment.Config {
	return segment.Config{
		MaxBytes:           c.SegmentBytes,
		MaxIndexBytes:      c.SegmentIndexBytes,
		IndexIntervalBytes: c.IndexIntervalBytes,
		WrapFile:           c.WrapFile,
	}
}

// Log is one partition directory. See the package comment.
type Log struct {
	dir    string
	logger *slog.Logger

	// nextOffset is the log end offset; logStart the log start offset.
	nextOffset atomic.Int64
	logStart   atomic.Int64

	// appendMu serializes appends, rolls, retention, DeleteRecords,
	// config changes and Close.
	appendMu struct {
		sync.Mutex
		cfg           Config
		closed        bool
		dirty         bool  // the checkpoint on disk says clean=0
		recoveryPoint int64 // segments below it are sealed and synced
		unflushed     int64 // records appended since the last sync
		flushTimer    *time.Timer
		err           error // sticky write/sync error
		// sealing holds rolled segments whose seal (fsync, index trim)
		// runs in the background; the recovery point stays at the first.
		sealing []*segment.Segment
	}
	// sealWG counts background seals; Close and Delete wait for them.
	sealWG sync.WaitGroup
	// rolls counts segments started since Open.
	rolls atomic.Int64
	// timerWG counts an armed or running flush.ms timer; Close and
	// Delete stop it and wait for a callback already running.
	timerWG sync.WaitGroup

	// failed mirrors appendMu.err for lock-free checks.
	failed atomic.Pointer[error]

	// segMu guards segments for readers; writers hold appendMu too.
	segMu    sync.RWMutex
	segments []*segment.Segment // by base offset; the last is active

	// onDurable is Config.OnDurable.
	onDurable func()

	// syncMu guards the group-commit state.
	syncMu   sync.Mutex
	syncCond *sync.Cond
	syncing  bool
	// durable is the durable offset: every offset below it is on
	// disk. Written under syncMu, read without it.
	durable atomic.Int64
	syncErr error
}

// Open opens (creating if needed) the log in dir and recovers it if it was
// not closed cleanly.
func Open(dir string, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l := &Log{dir: dir, logger: cfg.Logger.With("log", filepath.Base(dir)), onDurable: cfg.OnDurable}
	l.syncCond = sync.NewCond(&l.syncMu)
	l.appendMu.cfg = cfg
	cp, cpErr := readCheckpoint(dir)
	if cpErr != nil && !errors.Is(cpErr, os.ErrNotExist) {
		l.logger.Warn("checkpoint unreadable, recovering every segment", "err", cpErr)
	}
	bases, err := l.listSegments()
	if err != nil {
		return nil, err
	}
	clean := cpErr == nil && cp.clean
	recoveryPoint := cp.recoveryPoint
	if cpErr != nil {
		recoveryPoint = 0
	}
	start := time.Now()
	var scanned int64
	for i, base := range bases {
		active := i == len(bases)-1
		recover := !clean && base >= recoveryPointSegment(bases, recoveryPoint)
		sizeBefore := fileSize(dir, base)
		s, err := segment.Open(dir, base, cfg.segmentConfig(), recover, active)
		if err != nil {
			l.closeSegments()
			return nil, fmt.Errorf("log: open segment %d of %s: %w", base, dir, err)
		}
		if recover {
			scanned += s.Size()
		}
		if len(l.segments) > 0 {
			prev := l.segments[len(l.segments)-1]
			if s.Base() < prev.NextOffset() {
				s.Close()
				l.closeSegments()
				return nil, fmt.Errorf("%w: %s: segment %d overlaps the previous one ending at %d", ErrCorrupt, dir, base, prev.NextOffset())
			}
		}
		l.segments = append(l.segments, s)
		if recover && !active {
			// A segment that is not the last must end where the next
			// begins; if recovery cut it short, later segments sit past a
			// hole and are dropped, as Kafka does.
			if s.Size() < sizeBefore {
				l.logger.Error("corrupt segment in the middle of the log; dropping the segments after it", "segment", base, "valid_until", s.NextOffset())
				for _, b := range bases[i+1:] {
					removeSegmentFiles(dir, b)
				}
				if err := s.Close(); err != nil {
					l.closeSegments()
					return nil, err
				}
				l.segments = l.segments[:len(l.segments)-1]
				s, err = segment.Open(dir, base, cfg.segmentConfig(), false, true)
				if err != nil {
					l.closeSegments()
					return nil, err
				}
				l.segments = append(l.segments, s)
				break
			}
		}
	}
	if len(l.segments) == 0 {
		base := max(cp.logStart, cp.recoveryPoint)
		s, err := segment.Create(dir, base, cfg.segmentConfig())
		if err != nil {
			return nil, err
		}
		l.segments = append(l.segments, s)
		if err := syncDir(dir); err != nil {
			l.closeSegments()
			return nil, err
		}
	}
	if !clean && len(bases) > 0 {
		l.logger.Info("recovered log", "segments", len(bases), "scanned_bytes", scanned, "took", time.Since(start))
	}
	active := l.active()
	l.nextOffset.Store(active.NextOffset())
	l.logStart.Store(max(cp.logStart, l.segments[0].Base()))
	if l.logStart.Load() > l.nextOffset.Load() {
		l.logStart.Store(l.nextOffset.Load())
	}
	l.appendMu.recoveryPoint = active.Base()
	l.appendMu.dirty = !clean || cpErr != nil
	l.durable.Store(l.nextOffset.Load())
	if !clean {
		// What recovery scanned came from the page cache, which a crash
		// of the process (not the machine) keeps: make it durable before
		// the recovery point moves past it.
		for _, s := range l.segments {
			if s.Base() >= recoveryPointSegment(bases, recoveryPoint) {
				if err := s.Sync(); err != nil {
					l.closeSegments()
					return nil, err
				}
			}
		}
		if err := l.writeCheckpointLocked(false); err != nil {
			l.closeSegments()
			return nil, err
		}
	}
	return l, nil
}

func recoveryPointSegment(bases []int64, rp int64) int64 {
	// The segment holding rp and every later one are scanned.
	i := sort.Search(len(bases), func(i int) bool { return bases[i] > rp })
	if i == 0 {
		return math.MinInt64
	}
	return bases[i-1]
}

func fileSize(dir string, base int64) int64 {
	fi, err := os.Stat(filepath.Join(dir, segment.FileName(base, ".log")))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// listSegments returns the base offsets of the .log files in the
// directory, and deletes leftovers: temporary files and index files with
// no log.
func (l *Log) listSegments() ([]int64, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, err
	}
	logs := map[int64]bool{}
	var bases []int64
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(l.dir, name))
			continue
		}
		stem, ext, ok := strings.Cut(name, ".")
		if !ok || len(stem) != 20 {
			continue
		}
		base, err := strconv.ParseInt(stem, 10, 64)
		if err != nil {
			continue
		}
		if ext == "log" {
			logs[base] = true
			bases = append(bases, base)
		}
	}
	for _, e := range ents {
		stem, ext, _ := strings.Cut(e.Name(), ".")
		if base, err := strconv.ParseInt(stem, 10, 64); err == nil && (ext == "index" || ext == "timeindex") && !logs[base] {
			os.Remove(filepath.Join(l.dir, e.Name()))
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

func removeSegmentFiles(dir string, base int64) {
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		os.Remove(filepath.Join(dir, segment.FileName(base, ext)))
	}
}

func (l *Log) active() *segment.Segment { return l.segments[len(l.segments)-1] }

func (l *Log) closeSegments() {
	for _, s := range l.segments {
		s.Close()
	}
	l.segments = nil
}

// Dir is the log's directory.
func (l *Log) Dir() string { return l.dir }

// NextOffset is the log end offset: the offset the next record will get.
func (l *Log) NextOffset() int64 { return l.nextOffset.Load() }

// LogStartOffset is the first offset a reader may fetch.
func (l *Log) LogStartOffset() int64 { return l.logStart.Load() }

// Config returns the log's current settings.
func (l *Log) Config() Config {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	return l.appendMu.cfg
}

// SetConfig changes the settings; they apply from the next append or
// retention pass. Index sizes apply to new segments.
func (l *Log) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	cfg.Logger = l.appendMu.cfg.Logger
	cfg.WrapFile = l.appendMu.cfg.WrapFile
	l.appendMu.cfg = cfg
}

// Size is the number of bytes in all segments.
func (l *Log) Size() int64 {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	var n int64
	for _, s := range l.segments {
		n += s.Size()
	}
	return n
}

// Rolls returns how many times the log has started a new segment since it
// was opened. Callers that checkpoint state of their own per segment (the
// partition's producer snapshots) watch it.
func (l *Log) Rolls() int64 { return l.rolls.Load() }

// Segments returns the number of segments.
func (l *Log) Segments() int {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return len(l.segments)
}

// Err returns the sticky write error, if any.
func (l *Log) Err() error {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	return l.appendMu.err
}

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
	cfg := &l.appendMu.cfg
	if int64(len(batch)) > cfg.SegmentBytes {
		return 0, fmt.Errorf("%w: %d bytes, segment.bytes is %d", ErrBatchTooLarge, len(batch), cfg.SegmentBytes)
	}
	if !l.appendMu.dirty {
		if err := l.writeCheckpointLocked(false); err != nil {
			return 0, l.failLocked(err)
		}
		l.appendMu.dirty = true
	}
	s := l.active()
	if s.Size() > 0 && (!s.Fits(len(batch), cfg.SegmentBytes) || time.Now().UnixMilli()-s.RollTimestamp() > cfg.SegmentMs) {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
		s = l.active()
	}
	off := l.nextOffset.Load()
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

// Sync returns once every batch appended before the call is durable. One
// fdatasync serves every caller whose data it covers (group commit).
func (l *Log) Sync() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	target := l.nextOffset.Load()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	for l.durable.Load() < target {
		if l.syncErr != nil {
			return l.syncErr
		}
		if l.syncing {
			l.syncCond.Wait()
			continue
		}
		l.syncing = true
		l.syncMu.Unlock()
		// Let the appenders the last fsync just released append before
		// this one captures the log end, so it covers their batches too.
		runtime.Gosched()
		covered, err := l.syncActive()
		l.syncMu.Lock()
		l.syncing = false
		advanced := false
		if err != nil {
			l.syncErr = err
		} else if covered > l.durable.Load() {
			l.durable.Store(covered)
			advanced = true
		}
		l.syncCond.Broadcast()
		if advanced && l.onDurable != nil {
			l.syncMu.Unlock()
			l.onDurable()
			l.syncMu.Lock()
		}
	}
	return nil
}

// DurableOffset is the offset below which every batch is durable (has
// been fdatasynced, or was recovered and synced at Open). Readers that
// must not see what a power cut could take back read up to it.
func (l *Log) DurableOffset() int64 { return l.durable.Load() }

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
	if d := time.Since(start); d > time.Second {
		l.logger.Warn("slow fdatasync", "took", d)
	}
	return covered, nil
}

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
	if cfg.Compact {
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

// Close syncs and seals nothing more than needed: it fsyncs the active
// segment, trims every index, and writes the clean-shutdown checkpoint.
// Readers holding views keep them until they release. Close is idempotent.
func (l *Log) Close() error {
	l.appendMu.Lock()
	if l.appendMu.closed {
		l.appendMu.Unlock()
		return nil
	}
	l.appendMu.closed = true
	l.stopFlushTimerLocked()
	l.appendMu.Unlock()
	l.sealWG.Wait()
	l.timerWG.Wait()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	var errs []error
	clean := l.appendMu.err == nil
	if clean {
		if err := l.active().Sync(); err != nil {
			errs = append(errs, err)
			clean = false
		}
	}
	l.segMu.Lock()
	for _, s := range l.segments {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
			clean = false
		}
	}
	l.segMu.Unlock()
	if clean {
		l.appendMu.recoveryPoint = l.nextOffset.Load()
		if err := l.writeCheckpointLocked(true); err != nil {
			errs = append(errs, err)
		}
	}
	l.syncMu.Lock()
	if l.syncErr == nil {
		l.syncErr = ErrClosed
	}
	l.syncCond.Broadcast()
	l.syncMu.Unlock()
	return errors.Join(errs...)
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	l.appendMu.Lock()
	wasClosed := l.appendMu.closed
	l.appendMu.closed = true
	l.stopFlushTimerLocked()
	l.appendMu.Unlock()
	l.sealWG.Wait()
	l.timerWG.Wait()
	l.appendMu.Lock()
	if !wasClosed {
		l.segMu.Lock()
		for _, s := range l.segments {
			s.Remove()
		}
		l.segments = nil
		l.segMu.Unlock()
	}
	l.appendMu.Unlock()
	l.syncMu.Lock()
	l.syncErr = ErrClosed
	l.syncCond.Broadcast()
	l.syncMu.Unlock()
	if err := os.RemoveAll(l.dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(l.dir))
}

// syncDir fsyncs a directory so that entries created, renamed or removed
// in it survive a power cut.
func syncDir(dir string) error { return durable.SyncDir(dir) }
