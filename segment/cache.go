package segment

import (
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/internal/limits"
)

// FileCache bounds the open files and memory mappings that segments hold,
// so that a broker with many partitions stays within RLIMIT_NOFILE and
// vm.max_map_count. One cache is shared by every log of a broker
// (log.Config.Files); segments given none use DefaultFileCache.
//
// A segment holds at most one open file (its .log, while it takes appends
// or syncs) and three mappings (its .log, and once sealed its .index and
// .timeindex, while it is read), each opened when first needed. When the
// cache holds more than its limits it closes and unmaps what segments
// nobody is using hold, least recently used first: a clock, where each use
// sets a bit and the sweep evicts the segments whose bit it finds clear.
// A segment in use (a reader holding a view or a reference, an append or
// an fsync in progress) is never evicted, so the limits can be passed
// while more segments than they allow are in use at once. An evicted
// segment opens its files again on demand.
//
// Lock order: a segment's lock, then the cache's. The sweep only tries the
// locks of the segments it evicts.
type FileCache struct {
	maxFiles, maxMaps int

	// over is set while more is held than the limits allow: segments in
	// use could not be evicted. A reader's last Release then sweeps.
	over atomic.Bool
	// evictions counts the segments whose files and mappings the cache
	// closed.
	evictions atomic.Int64

	mu struct {
		sync.Mutex
		// files and maps count what segments in ring hold.
		files, maps int
		// ring holds the segments that hold anything; hand is the clock's.
		ring []*Segment
		hand int
	}
}

// NewFileCache returns a cache that keeps at most maxFiles open files and
// maxMaps mappings held by idle segments.
func NewFileCache(maxFiles, maxMaps int) *FileCache {
	return &FileCache{maxFiles: max(maxFiles, 1), maxMaps: max(maxMaps, 1)}
}

var defaultFileCache = sync.OnceValue(func() *FileCache {
	files := limits.OpenFiles()
	return NewFileCache(max(64, (files-256)/2), max(64, (limits.MapCount()-1024)/2))
})

// DefaultFileCache is the process-wide cache used by segments configured
// with none. Its limits are set when it is first used: half of what
// RLIMIT_NOFILE leaves after 256 descriptors (the rest is for connections;
// raise the limit before, as `ferry serve` does), and half of
// vm.max_map_count (the Go runtime and shared libraries map memory too).
func DefaultFileCache() *FileCache { return defaultFileCache() }

// Limits returns the cache's limits.
func (c *FileCache) Limits() (files, maps int) { return c.maxFiles, c.maxMaps }

// Held returns the open files and mappings that segments hold now.
func (c *FileCache) Held() (files, maps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.files, c.mu.maps
}

// CacheStats describes a FileCache at one moment, for metrics.
type CacheStats struct {
	// Files and Maps are the open files and mappings segments hold.
	Files, Maps int
	// MaxFiles and MaxMaps are the limits beyond which idle segments'
	// are closed.
	MaxFiles, MaxMaps int
	// Evictions counts the segments whose files and mappings the cache
	// has closed since it was made.
	Evictions int64
}

// Stats returns what the cache holds and has evicted.
func (c *FileCache) Stats() CacheStats {
	files, maps := c.Held()
	return CacheStats{Files: files, Maps: maps, MaxFiles: c.maxFiles, MaxMaps: c.maxMaps, Evictions: c.evictions.Load()}
}

// add records that s opened files and mapped maps more, then evicts idle
// segments while the cache is over its limits. The caller holds s.mu.
func (c *FileCache) add(s *Segment, files, maps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.files += files
	c.mu.maps += maps
	s.heldFiles += files
	s.heldMaps += maps
	if s.slot < 0 {
		s.slot = len(c.mu.ring)
		c.mu.ring = append(c.mu.ring, s)
	}
	s.recent.Store(true)
	c.evictLocked()
}

// remove records that s released everything it held. The caller holds
// s.mu.
func (c *FileCache) remove(s *Segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(s)
}

func (c *FileCache) dropLocked(s *Segment) {
	c.mu.files -= s.heldFiles
	c.mu.maps -= s.heldMaps
	s.heldFiles, s.heldMaps = 0, 0
	if i := s.slot; i >= 0 {
		last := len(c.mu.ring) - 1
		c.mu.ring[i] = c.mu.ring[last]
		c.mu.ring[i].slot = i
		c.mu.ring[last] = nil
		c.mu.ring = c.mu.ring[:last]
		s.slot = -1
	}
}

// evictLocked sweeps the clock while the cache is over a limit, at most
// twice around: the first pass clears the bits of recently used segments.
func (c *FileCache) evictLocked() {
	for tries := 2 * len(c.mu.ring); tries > 0 && (c.mu.files > c.maxFiles || c.mu.maps > c.maxMaps); tries-- {
		if c.mu.hand >= len(c.mu.ring) {
			c.mu.hand = 0
		}
		s := c.mu.ring[c.mu.hand]
		if s.recent.Swap(false) || !s.tryRelease() {
			c.mu.hand++
			continue
		}
		// The segment now in this slot is swept next.
		c.dropLocked(s)
		c.evictions.Add(1)
	}
	c.over.Store(c.mu.files > c.maxFiles || c.mu.maps > c.maxMaps)
}

// sweep evicts idle segments if the cache is over its limits.
func (c *FileCache) sweep() {
	if c.over.Load() {
		c.mu.Lock()
		c.evictLocked()
		c.mu.Unlock()
	}
}
