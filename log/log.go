package log

import (
	"errors"
	"log/slog"
	"math"
	"os"
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
	// ErrOffsetOverflow is returned for a batch whose offsets would pass
	// the largest int64 offset. The log stays writable.
	ErrOffsetOverflow = errors.New("log: batch offsets overflow")
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
	// NoDelete marks a log whose cleanup.policy lacks "delete":
	// retention never deletes its segments.
	NoDelete bool
	// Compact marks a log whose cleanup.policy has "compact": the Cleaner
	// (if Cleaner is set) keeps only the newest record of each key in its
	// segments below the active one, and the active segment rolls at
	// MaxCompactionLagMs if that comes before SegmentMs.
	Compact bool
	// MinCleanableDirtyRatio: the log is cleaned once the bytes not yet
	// cleaned are more than this share of the log. Corresponds to
	// min.cleanable.dirty.ratio; default 0.5.
	MinCleanableDirtyRatio float64
	// MinCompactionLagMs keeps a segment from being cleaned while its
	// newest timestamp is younger. Corresponds to min.compaction.lag.ms;
	// default 0.
	MinCompactionLagMs int64
	// MaxCompactionLagMs cleans a segment, whatever the dirty ratio, once
	// its first timestamp is older. Corresponds to max.compaction.lag.ms;
	// default MaxInt64 (never).
	MaxCompactionLagMs int64
	// DeleteRetentionMs is how long the cleaner keeps a tombstone after it
	// first cleaned it (its delete horizon). Corresponds to
	// delete.retention.ms; default one day.
	DeleteRetentionMs int64
	// Cleaner compacts the log when Compact is set; one is shared by
	// every log of a broker. nil: never compacted. Read at Open only.
	Cleaner *Cleaner
	// ProducerLastOffsets, when set, returns the last offset of the newest
	// batch of each producer id whose idempotence state the owner keeps
	// (false while it cannot tell, as while it opens). The cleaner keeps
	// that batch, emptied of its records if they are all superseded, so
	// that the producer's sequence outlives compaction, as Kafka does.
	// It is called with no lock of the log held. Read at Open only.
	ProducerLastOffsets func() (map[int64]int64, bool)
	// CleanLimit, when set, bounds compaction: only segments wholly below
	// the offset it returns are cleaned (a replica's high watermark, so
	// that a record that truncation may still remove never makes an
	// older one of its key go). Called with no lock of the log held.
	// Read at Open only.
	CleanLimit func() int64
	// LastStableOffset, when set, returns the owner's last stable offset:
	// the cleaner leaves the records at and past it (transactions not yet
	// decided) as they are, as Kafka's cleaner stops at the first
	// unstable offset; a negative value cleans nothing. It is called with
	// the log's append lock held and must take no lock of the log. Read
	// at Open only.
	LastStableOffset func() int64
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
	// Stats, when set, counts this log's fsyncs with every other log's
	// (one Stats per broker). Read at Open only.
	Stats *Stats
	// OnDurable, when set, is called each time the durable offset
	// advances, by the goroutine whose sync advanced it, with no lock of
	// the log held. It must not block. Read at Open only.
	OnDurable func()
	// Recovered, when set, is called by Open after an unclean stop, once
	// the segments past the recovery point have been scanned, cut after
	// their last valid batch and synced, and before the recovery point
	// moves past them: the caller rebuilds the aborted-transaction entries
	// of those segments (AppendAbortedTxn), which recovery dropped, using
	// l, whose reads work. from is the base of the first scanned segment
	// holding a control batch, or the log end when none does (nothing to
	// rebuild). Open then syncs what was added. An error fails Open. Read
	// at Open only.
	Recovered func(l *Log, from int64) error
	// Logger receives recovery and error reports. nil discards them.
	Logger *slog.Logger
	// Files bounds the open files and mappings of the log's segments; one
	// is shared by every log of a broker. Default
	// segment.DefaultFileCache().
	Files *segment.FileCache
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
	if c.MinCleanableDirtyRatio <= 0 {
		c.MinCleanableDirtyRatio = 0.5
	}
	if c.MinCompactionLagMs < 0 {
		c.MinCompactionLagMs = 0
	}
	if c.MaxCompactionLagMs <= 0 {
		c.MaxCompactionLagMs = math.MaxInt64
	}
	if c.DeleteRetentionMs <= 0 {
		c.DeleteRetentionMs = 24 * 3600 * 1000
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
		Files:              c.Files,
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
		cfg    Config
		closed bool
		dirty  bool // the checkpoint on disk says clean=0
		// cleanOnDisk: the checkpoint on disk is a clean one that still
		// describes the log; Close need not write it again.
		cleanOnDisk bool
		// syncParent: Open made the log's directory, whose entry in the
		// parent the first checkpoint write syncs.
		syncParent    bool
		recoveryPoint int64 // segments below it are sealed and synced
		unflushed     int64 // records appended since the last sync
		flushTimer    *time.Timer
		err           error // sticky write/sync error
		// sealing holds rolled segments whose seal (fsync, index trim)
		// runs in the background; the recovery point stays at the first.
		sealing []*segment.Segment

		// unsyncedBatches and unsyncedBytes count what was appended
		// since the last sync started, for Stats.
		unsyncedBatches, unsyncedBytes int64
	}
	// sealWG counts background seals; Close and Delete wait for them.
	sealWG sync.WaitGroup
	// rolls counts segments started since Open.
	rolls atomic.Int64
	// timerWG counts an armed or running flush.ms timer; Close and
	// Delete stop it and wait for a callback already running.
	timerWG sync.WaitGroup

	// stats is Config.Stats; nil counts nothing.
	stats *Stats

	// failed mirrors appendMu.err for lock-free checks.
	failed atomic.Pointer[error]

	// segMu guards segments for readers; writers hold appendMu too.
	segMu    sync.RWMutex
	segments []*segment.Segment // by base offset; the last is active

	// clean is the state of compaction (clean.go). Its lock is held by a
	// cleaning pass; Close and Delete wait for it.
	clean struct {
		sync.Mutex
		// firstDirty: every key below it appears at most once (the
		// cleaned part of the log); horizon: the earliest delete
		// horizon of a tombstone kept, math.MaxInt64 for none. Both
		// are in cleaner.checkpoint; read without the lock.
		firstDirty atomic.Int64
		horizon    atomic.Int64
		// hook, when set, is called at each step of a pass; returning
		// true stops the pass there as if the process died. Tests only.
		hook func(cleanStep) bool
	}
	// closing is set by Close and Delete: a cleaning pass stops at its
	// next check.
	closing atomic.Bool
	// cleaner is Config.Cleaner, read at Open.
	cleaner *Cleaner
	// cleanLimit is Config.CleanLimit, read at Open.
	cleanLimit func() int64

	// flusher is the group-commit state (sync.go).
	flusher struct {
		sync.Mutex
		// cond wakes the callers waiting for the fsync in flight; its
		// Locker is the flusher.
		cond sync.Cond
		// syncing is set while one caller runs an fsync for everyone.
		syncing bool
		// durableOffset: every offset below it is on disk. Written
		// under the flusher's lock, read without it.
		durableOffset atomic.Int64
		// onDurable is Config.OnDurable.
		onDurable func()
		// err ends group commit: the first failed fsync, or ErrClosed.
		err error
		// truncations counts TruncateTo calls: a sync that started
		// before one must not advance the durable offset past the new
		// end.
		truncations int64
	}
}

func (l *Log) active() *segment.Segment { return l.segments[len(l.segments)-1] }

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
	cfg.Files = l.appendMu.cfg.Files
	cfg.Cleaner = l.appendMu.cfg.Cleaner
	cfg.ProducerLastOffsets = l.appendMu.cfg.ProducerLastOffsets
	cfg.CleanLimit = l.appendMu.cfg.CleanLimit
	cfg.LastStableOffset = l.appendMu.cfg.LastStableOffset
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

// Err returns the sticky write error, if any. It takes no lock.
func (l *Log) Err() error {
	if p := l.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed
// in it survive a power cut.
func syncDir(dir string) error { return durable.SyncDir(dir) }
