package log

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// CleanerConfig configures a Cleaner. Zero values mean Kafka's defaults.
type CleanerConfig struct {
	// Threads is how many logs are cleaned at once. Corresponds to
	// log.cleaner.threads; default 1.
	Threads int
	// DedupeBufferSize is the memory of the offset maps, shared evenly by
	// the threads: it bounds how many keys one pass deduplicates (24
	// bytes each, to a power of two of them). Corresponds to
	// log.cleaner.dedupe.buffer.size; default 128 MiB. A thread
	// allocates only what the logs it cleans need, up to its share.
	DedupeBufferSize int64
	// LoadFactor is how full an offset map may get. Corresponds to
	// log.cleaner.io.buffer.load.factor; default 0.9.
	LoadFactor float64
	// IOMaxBytesPerSecond bounds the bytes all threads read and write
	// together. Corresponds to log.cleaner.io.max.bytes.per.second;
	// default unlimited.
	IOMaxBytesPerSecond float64
	// Backoff is how long a thread sleeps when no log needs cleaning.
	// Corresponds to log.cleaner.backoff.ms; default 15 s. A log whose
	// pass failed waits ten times as long before the next.
	Backoff time.Duration
	// Logger receives a line per pass. nil discards them.
	Logger *slog.Logger
}

func (c CleanerConfig) withDefaults() CleanerConfig {
	if c.Threads <= 0 {
		c.Threads = 1
	}
	if c.DedupeBufferSize <= 0 {
		c.DedupeBufferSize = 128 << 20
	}
	if c.LoadFactor <= 0 || c.LoadFactor > 1 {
		c.LoadFactor = 0.9
	}
	if c.IOMaxBytesPerSecond <= 0 {
		c.IOMaxBytesPerSecond = math.Inf(1)
	}
	if c.Backoff <= 0 {
		c.Backoff = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Cleaner compacts the logs of a broker whose Config.Compact is set, in
// the background, as Kafka's LogCleaner does: each of its threads picks the
// log with the largest dirty ratio among those due (package comment,
// Compaction), runs a pass over it and picks again, sleeping for Backoff
// when none is due. Logs opened with Config.Cleaner set register
// themselves and leave at Close.
type Cleaner struct {
	cfg CleanerConfig
	io  *throttle

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// kick wakes sleeping threads (Wake).
	kick   chan struct{}
	closed atomic.Bool

	mu struct {
		sync.Mutex
		logs map[*Log]*cleanerLog
	}

	// Totals over every pass, for Stats.
	passes, dirtyBytes, bytesRead, bytesWritten atomic.Int64
	busyNanos                                   atomic.Int64
}

// cleanerLog is a registered log's state in the Cleaner.
type cleanerLog struct {
	busy    bool      // a thread is cleaning it
	retryAt time.Time // after a failed pass, not before
}

// NewCleaner starts a cleaner's threads. Close stops them.
func NewCleaner(cfg CleanerConfig) *Cleaner {
	cfg = cfg.withDefaults()
	c := &Cleaner{cfg: cfg, io: newThrottle(cfg.IOMaxBytesPerSecond), kick: make(chan struct{}, cfg.Threads)}
	c.mu.logs = map[*Log]*cleanerLog{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for range cfg.Threads {
		c.wg.Add(1)
		go c.thread()
	}
	return c
}

// Close stops the threads, aborting passes in progress (what they did not
// swap in is cleaned again later), and waits for them. It is idempotent.
func (c *Cleaner) Close() {
	if c.closed.Swap(true) {
		return
	}
	c.cancel()
	c.wg.Wait()
}

// Wake makes sleeping threads look for a log to clean now, instead of
// after their backoff.
func (c *Cleaner) Wake() {
	for range c.cfg.Threads {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// CleanerStats are a Cleaner's totals since it started.
type CleanerStats struct {
	// Passes counts the passes that cleaned something.
	Passes int64
	// DirtyBytes is what those passes read to build their offset maps;
	// BytesRead and BytesWritten what they read and wrote to rewrite.
	DirtyBytes, BytesRead, BytesWritten int64
	// Busy is the time spent in them.
	Busy time.Duration
}

// Stats returns the totals so far.
func (c *Cleaner) Stats() CleanerStats {
	return CleanerStats{
		Passes:       c.passes.Load(),
		DirtyBytes:   c.dirtyBytes.Load(),
		BytesRead:    c.bytesRead.Load(),
		BytesWritten: c.bytesWritten.Load(),
		Busy:         time.Duration(c.busyNanos.Load()),
	}
}

func (c *Cleaner) add(l *Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.logs[l] = &cleanerLog{}
}

func (c *Cleaner) remove(l *Log) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.logs, l)
}

// thread cleans logs until Close.
func (c *Cleaner) thread() {
	defer c.wg.Done()
	m := newOffsetMap(c.cfg.DedupeBufferSize/int64(c.cfg.Threads), c.cfg.LoadFactor)
	timer := time.NewTimer(c.cfg.Backoff)
	defer timer.Stop()
	for c.ctx.Err() == nil {
		if l := c.pick(time.Now()); l != nil {
			c.clean(l, m)
			continue
		}
		timer.Reset(c.cfg.Backoff)
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// pick marks busy and returns the due log with the largest dirty ratio
// that no other thread is cleaning, or nil.
func (c *Cleaner) pick(now time.Time) *Log {
	c.mu.Lock()
	var cands []*Log
	for l, st := range c.mu.logs {
		if !st.busy && !now.Before(st.retryAt) {
			cands = append(cands, l)
		}
	}
	c.mu.Unlock()
	var best *Log
	bestRatio := -1.0
	for _, l := range cands {
		p, cfg, _, ok := l.planClean(now.UnixMilli())
		if !ok || !p.due(&cfg) {
			continue
		}
		if r := p.ratio(); r > bestRatio {
			best, bestRatio = l, r
		}
	}
	if best == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.mu.logs[best]
	if st == nil || st.busy {
		return nil // closed meanwhile, or taken
	}
	st.busy = true
	return best
}

// clean runs a pass over l and reports it.
func (c *Cleaner) clean(l *Log, m *offsetMap) {
	st, err := l.cleanOnce(c.ctx, time.Now(), m, c.io, false)
	var retryAt time.Time
	switch {
	case err == nil:
		if st.swapped > 0 || st.mapBytes > 0 {
			c.passes.Add(1)
			c.dirtyBytes.Add(st.mapBytes)
			c.bytesRead.Add(st.bytesRead)
			c.bytesWritten.Add(st.bytesWritten)
			c.busyNanos.Add(int64(st.took))
			mbps := 0.0
			if st.took > 0 {
				mbps = float64(st.mapBytes+st.bytesRead) / st.took.Seconds() / 1e6
			}
			l.logger.Info("cleaned log", "first_dirty", st.firstDirty, "cleaned_to", st.end,
				"dirty_bytes", st.mapBytes, "read_bytes", st.bytesRead, "written_bytes", st.bytesWritten,
				"records_read", st.recordsRead, "records_kept", st.recordsKept,
				"segments_replaced", st.replaced, "segments_written", st.swapped, "took", st.took, "mb_per_s", math.Round(mbps))
		}
	case errors.Is(err, errCleanAborted), errors.Is(err, ErrClosed):
	case errors.Is(err, errSwapRaced):
		l.logger.Debug("cleaning raced retention; retrying later", "err", err)
	default:
		l.logger.Error("cleaning failed", "err", err)
		retryAt = time.Now().Add(10 * c.cfg.Backoff)
	}
	c.mu.Lock()
	if s := c.mu.logs[l]; s != nil {
		s.busy, s.retryAt = false, retryAt
	}
	c.mu.Unlock()
}
