package log

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

// Compaction of one log: what a cleaning pass reads, keeps and swaps. The
// Cleaner (cleaner.go) decides when and runs passes on its threads.

// cleanStep names the steps of a pass at which a test may stop it as if
// the process died there (Log.clean.hook).
type cleanStep int

const (
	// stepCleaned: a group's new segment is written and synced under its
	// .cleaned names; nothing is committed.
	stepCleaned cleanStep = iota + 1
	// stepCommitted: its swap manifest is durable, no file has changed.
	stepCommitted
	// stepOldRemoved: the old segments after the group's first are gone.
	stepOldRemoved
	// stepLogRenamed: the new .log has its name, its indexes not yet.
	stepLogRenamed
	// stepSwapped: every file is in place and the new segment is served;
	// the manifest is still there.
	stepSwapped
	// stepManifestsRemoved: the pass's manifests are gone, the cleaner
	// checkpoint is not yet written.
	stepManifestsRemoved
)

var (
	// errCrashed stops a pass at a test hook, leaving every file as it is.
	errCrashed = errors.New("log: cleaning stopped by a test hook")
	// errCleanAborted: the log closed, or the cleaner stopped, during a
	// pass. Nothing is lost: what was not swapped in is cleaned again.
	errCleanAborted = errors.New("log: cleaning aborted")
	// errSwapRaced: retention or DeleteRecords removed a segment the pass
	// was cleaning; the pass is given up and run again later.
	errSwapRaced = errors.New("log: segments changed during cleaning")
)

// cleanPlan is what the next pass over a log would clean.
type cleanPlan struct {
	// firstDirty: below it every key appears once (cleaned); from it to
	// firstUncleanable the log is dirty and cleanable.
	firstDirty, firstUncleanable int64
	// cleanBytes and dirtyBytes size the two parts, by segment.
	cleanBytes, dirtyBytes int64
	// lagged: a dirty segment's first timestamp is older than
	// max.compaction.lag.ms.
	lagged bool
	// horizonDue: a tombstone or transaction marker kept by an earlier
	// pass may go now.
	horizonDue bool
}

// ratio is the dirty share of the log, as min.cleanable.dirty.ratio
// measures it.
func (p *cleanPlan) ratio() float64 {
	if p.cleanBytes+p.dirtyBytes == 0 {
		return 0
	}
	return float64(p.dirtyBytes) / float64(p.cleanBytes+p.dirtyBytes)
}

// due reports whether the log should be cleaned now: dirty beyond its
// ratio, or dirty for longer than its max.compaction.lag.ms, or holding a
// tombstone or transaction marker whose horizon passed.
func (p *cleanPlan) due(cfg *Config) bool {
	return p.dirtyBytes > 0 && (p.ratio() > cfg.MinCleanableDirtyRatio || p.lagged) || p.horizonDue
}

// planClean works out what a pass would clean at time now (Unix ms) and
// returns it with the log's config and its segments below the first one
// a pass may not touch: the active one, or the first whose background
// seal has not finished; and none reaching past Config.CleanLimit. ok is
// false when the log is not compacted, closed or failed.
func (l *Log) planClean(now int64) (p cleanPlan, cfg Config, segs []*segment.Segment, ok bool) {
	cleanLimit := int64(math.MaxInt64)
	if f := l.cleanLimit; f != nil {
		cleanLimit = f()
	}
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	cfg = l.appendMu.cfg
	if !cfg.Compact || l.appendMu.closed || l.appendMu.err != nil {
		return p, cfg, nil, false
	}
	limit := l.active().Base()
	if len(l.appendMu.sealing) > 0 {
		limit = l.appendMu.sealing[0].Base()
	}
	l.segMu.RLock()
	for _, s := range l.segments {
		if s.Base() >= limit {
			break
		}
		segs = append(segs, s)
	}
	l.segMu.RUnlock()
	start := l.logStart.Load()
	p.firstDirty = max(l.clean.firstDirty.Load(), start)
	if p.firstDirty > l.nextOffset.Load() {
		p.firstDirty = start // the log was cut below it: clean it all again
	}
	// A segment covers the offsets from its base to the next one's.
	coverEnd := func(i int) int64 {
		if i+1 < len(segs) {
			return segs[i+1].Base()
		}
		return limit
	}
	p.firstUncleanable = limit
	if cfg.MinCompactionLagMs > 0 {
		for i, s := range segs {
			if coverEnd(i) > p.firstDirty && s.MaxTimestamp() > now-cfg.MinCompactionLagMs {
				p.firstUncleanable = s.Base()
				break
			}
		}
	}
	for i, s := range segs {
		if coverEnd(i) > cleanLimit {
			// Past a replica's high watermark: not committed yet.
			p.firstUncleanable = min(p.firstUncleanable, s.Base())
			break
		}
	}
	if f := cfg.LastStableOffset; f != nil {
		p.firstUncleanable = min(p.firstUncleanable, f())
	}
	p.firstUncleanable = max(p.firstUncleanable, p.firstDirty)
	earliest := int64(math.MaxInt64)
	for i, s := range segs {
		if s.Base() < p.firstDirty {
			p.cleanBytes += s.Size()
		}
		if coverEnd(i) > p.firstDirty {
			if s.Base() < p.firstUncleanable {
				p.dirtyBytes += s.Size()
			}
			if ts := s.FirstTimestamp(); ts > 0 {
				earliest = min(earliest, ts)
			}
		}
	}
	p.lagged = earliest < now-cfg.MaxCompactionLagMs
	p.horizonDue = l.clean.horizon.Load() <= now
	return p, cfg, segs, true
}

// cleanStats describes one pass.
type cleanStats struct {
	// firstDirty and end bound the part deduplicated: every key below
	// end now appears once.
	firstDirty, end int64
	// mapBytes were read to build the offset map; bytesRead and
	// bytesWritten by the rewrite.
	mapBytes, bytesRead, bytesWritten int64
	recordsRead, recordsKept          int64
	// swapped counts the new segments swapped in, replacing replaced.
	swapped, replaced int
	took              time.Duration
}

// cleaning is the state of one pass.
type cleaning struct {
	l   *Log
	ctx context.Context
	cfg Config
	now int64 // Unix ms
	m   *offsetMap
	io  *throttle
	// end: records at or past it were not put in the map and are kept.
	end int64
	// producers maps a producer id to the last offset of its newest
	// batch (Config.ProducerLastOffsets): that batch is kept.
	producers map[int64]int64
	// horizon is the earliest delete horizon of a tombstone or
	// transaction marker kept.
	horizon int64
	// aborted holds, by producer id, the aborted transactions overlapping
	// what the pass reads: their batches are neither mapped nor kept.
	aborted map[int64][]AbortedTxn
	// inTxn holds the producers whose current transaction (the one the
	// next marker of the producer ends) has a batch that stays. A pass
	// reads the log from its start, so every batch of a transaction still
	// in the log is seen before its marker.
	inTxn map[int64]struct{}
	// goneMarkers holds the offsets of the markers the group being
	// cleaned removes: the .txnindex entries of abort markers go with
	// them.
	goneMarkers map[int64]struct{}
	// manifests are the swap manifests this pass committed.
	manifests []string
	stats     cleanStats
	// Scratch buffers, reused from batch to batch.
	kept, out []byte
}

// hook calls the test hook, if any.
func (c *cleaning) hook(step cleanStep) bool {
	return c.l.clean.hook != nil && c.l.clean.hook(step)
}

// check reports whether the pass must stop: the log is closing or the
// cleaner stopping.
func (c *cleaning) check() error {
	if c.l.closing.Load() || c.ctx.Err() != nil {
		return errCleanAborted
	}
	return nil
}

// cleanOnce runs one pass over the log if it is due at now: it maps every
// key of the dirty part to its newest offset (as much of the dirty part
// as m holds), then rewrites the segments from the log start to the end
// of what it mapped, in groups of at most segment.bytes, keeping the
// newest record of each key, tombstones until their delete horizon and
// transaction markers as marker says, and swaps each group's new segment
// in for the old ones. Offsets never change. force runs the pass even
// when the log is not due (tests).
func (l *Log) cleanOnce(ctx context.Context, now time.Time, m *offsetMap, io *throttle, force bool) (cleanStats, error) {
	l.clean.Lock()
	defer l.clean.Unlock()
	if l.closing.Load() {
		return cleanStats{}, ErrClosed
	}
	began := time.Now()
	p, cfg, segs, ok := l.planClean(now.UnixMilli())
	if !ok || (!force && !p.due(&cfg)) {
		return cleanStats{}, nil
	}
	var producers map[int64]int64
	if f := cfg.ProducerLastOffsets; f != nil {
		if producers, ok = f(); !ok {
			return cleanStats{}, nil // the owner is not ready
		}
	}
	c := &cleaning{l: l, ctx: ctx, cfg: cfg, now: now.UnixMilli(), m: m, io: io, producers: producers, horizon: math.MaxInt64,
		inTxn: map[int64]struct{}{}, goneMarkers: map[int64]struct{}{}}
	c.stats.firstDirty = p.firstDirty
	err := c.run(segs, &p)
	c.stats.took = time.Since(began)
	if errors.Is(err, errCrashed) {
		return c.stats, err
	}
	if ferr := c.finish(err == nil); err == nil {
		err = ferr
	}
	return c.stats, err
}

func (c *cleaning) run(segs []*segment.Segment, p *cleanPlan) error {
	aborted, err := c.l.AbortedTxns(c.l.LogStartOffset(), p.firstUncleanable, nil)
	if err != nil {
		return err
	}
	for _, e := range aborted {
		if c.aborted == nil {
			c.aborted = map[int64][]AbortedTxn{}
		}
		c.aborted[e.ProducerID] = append(c.aborted[e.ProducerID], e)
	}
	if c.end, err = c.buildMap(segs, p); err != nil {
		return err
	}
	c.stats.end = c.end
	var below []*segment.Segment
	for _, s := range segs {
		if s.Base() < c.end {
			below = append(below, s)
		}
	}
	upper := p.firstUncleanable
	if len(below) < len(segs) {
		upper = segs[len(below)].Base()
	}
	for _, g := range groupSegments(below, c.cfg.SegmentBytes, upper) {
		if err := c.cleanGroup(g); err != nil {
			return err
		}
	}
	return nil
}

// buildMap puts the key of every record of the dirty part into the offset
// map, with its offset, until the map is full, and returns the offset up
// to which it mapped: firstUncleanable if everything fit, else the base
// of the first batch that did not.
func (c *cleaning) buildMap(segs []*segment.Segment, p *cleanPlan) (int64, error) {
	c.m.reset(p.firstUncleanable - p.firstDirty)
	var werr error
	full := false
	end := p.firstDirty
	for i, s := range segs {
		if s.Base() >= p.firstUncleanable || (i+1 < len(segs) && segs[i+1].Base() <= p.firstDirty) {
			continue
		}
		if !s.Acquire() {
			return 0, errSwapRaced
		}
		pos, err := s.Position(p.firstDirty)
		if err == nil {
			err = s.Walk(pos, func(_ int64, batch []byte, h *record.Header) bool {
				if h.BaseOffset >= p.firstUncleanable {
					return false
				}
				if h.LastOffset() < p.firstDirty {
					return true
				}
				if werr = c.check(); werr != nil {
					return false
				}
				if !h.IsControl() && !c.isAborted(h) {
					if !c.m.room(int(h.RecordCount)) {
						full = true
						return false
					}
					if werr = c.mapBatch(batch, h, p.firstDirty); werr != nil {
						return false
					}
				}
				end = h.NextOffset()
				c.stats.mapBytes += int64(h.Size())
				werr = c.io.wait(c.ctx, int64(h.Size()))
				return werr == nil
			})
		}
		s.Release()
		if err == nil {
			err = werr
		}
		if err != nil {
			if c.ctx.Err() != nil {
				err = errCleanAborted
			}
			return 0, err
		}
		if full {
			break
		}
	}
	if !full {
		return p.firstUncleanable, nil
	}
	if end == p.firstDirty {
		return 0, fmt.Errorf("log: cleaning %s: the offset map (%d keys; log.cleaner.dedupe.buffer.size) cannot hold one batch", c.l.dir, c.m.maxEntries())
	}
	return end, nil
}

// mapBatch puts the keys of a batch's records at or past from in the map.
func (c *cleaning) mapBatch(batch []byte, h *record.Header, from int64) error {
	recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
	if err != nil {
		return fmt.Errorf("%w: %s: batch at %d: %v", ErrCorrupt, c.l.dir, h.BaseOffset, err)
	}
	it := record.NewRawRecords(recs, h.RecordCount)
	for it.Next() {
		r := &it.Record
		if off := h.BaseOffset + int64(r.OffsetDelta); r.Key != nil && off >= from {
			c.m.put(r.Key, off)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: batch at %d: %w", c.l.dir, h.BaseOffset, err)
	}
	return nil
}

// isAborted reports whether h is a batch of an aborted transaction, whose
// records read_committed consumers never see: they are left out of the
// offset map (so they supersede nothing) and out of the cleaned log, as
// in Kafka.
func (c *cleaning) isAborted(h *record.Header) bool {
	if !h.IsTransactional() || h.IsControl() {
		return false
	}
	for _, e := range c.aborted[h.ProducerID] {
		if e.FirstOffset <= h.BaseOffset && h.BaseOffset <= e.LastOffset {
			return true
		}
	}
	return false
}

// groupSegments splits segs into runs of consecutive segments whose sizes
// add up to at most maxBytes (one segment alone may be larger) and whose
// offsets span at most what a segment's uint32 relative offsets reach,
// as Kafka groups them: each run becomes one new segment, so segments
// that cleaning made small are merged. upper bounds the offsets of the
// last segment.
func groupSegments(segs []*segment.Segment, maxBytes, upper int64) [][]*segment.Segment {
	var groups [][]*segment.Segment
	for i := 0; i < len(segs); {
		g := []*segment.Segment{segs[i]}
		size := segs[i].Size()
		i++
		for i < len(segs) {
			last := upper - 1
			if i+1 < len(segs) {
				last = segs[i+1].Base() - 1
			}
			if size+segs[i].Size() > maxBytes || (segs[i].Size() > 0 && last-g[0].Base() > math.MaxUint32) {
				break
			}
			g = append(g, segs[i])
			size += segs[i].Size()
			i++
		}
		groups = append(groups, g)
	}
	return groups
}

// cleanGroup rewrites a group of segments into one and swaps it in. A
// group of one segment from which nothing goes is left as it is.
func (c *cleaning) cleanGroup(g []*segment.Segment) (err error) {
	for i, s := range g {
		if !s.Acquire() {
			for _, r := range g[:i] {
				r.Release()
			}
			return errSwapRaced
		}
	}
	defer func() {
		for _, s := range g {
			s.Release()
		}
	}()
	var b *segment.Builder
	defer func() {
		if b != nil && err != nil && !errors.Is(err, errCrashed) {
			b.Abort()
		}
	}()
	start := func() error {
		var err error
		b, err = segment.NewBuilder(c.l.dir, g[0].Base(), c.cfg.segmentConfig())
		return err
	}
	if len(g) > 1 {
		if err := start(); err != nil {
			return err
		}
	}
	var h record.Header
	for _, s := range g {
		var werr error
		err := s.Walk(0, func(pos int64, batch []byte, bh *record.Header) bool {
			if werr = c.check(); werr != nil {
				return false
			}
			var out []byte
			out, werr = c.filter(batch, bh)
			if werr != nil {
				return false
			}
			same := out != nil && &out[0] == &batch[0]
			if b == nil && !same {
				// The first change in a group of one: what came before
				// is copied as it is.
				if werr = start(); werr == nil {
					werr = c.copyBatches(b, s, pos)
				}
				if werr != nil {
					return false
				}
			}
			if b != nil && out != nil {
				if same {
					h = *bh
				} else if werr = record.ParseInto(out, &h); werr != nil {
					return false
				}
				if werr = b.Append(out, &h); werr != nil {
					return false
				}
				c.stats.bytesWritten += int64(len(out))
			}
			werr = c.io.wait(c.ctx, int64(bh.Size()+len(out)))
			return werr == nil
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			if c.ctx.Err() != nil {
				err = errCleanAborted
			}
			return err
		}
	}
	if b == nil {
		return nil // nothing to remove
	}
	// The new segment holds the aborted transactions of the segments it
	// replaces, but those whose abort marker went.
	for _, s := range g {
		aborted, _, err := s.AbortedTxns(0, math.MaxInt64, nil)
		if err != nil {
			return err
		}
		for _, e := range aborted {
			if _, gone := c.goneMarkers[e.LastOffset]; gone {
				continue
			}
			if err := b.AppendAbortedTxn(e); err != nil {
				return err
			}
		}
	}
	clear(c.goneMarkers)
	txnIndex := b.HasAbortedTxns()
	meta, err := b.Finish()
	if err != nil {
		return err
	}
	if err := syncDir(c.l.dir); err != nil {
		return err
	}
	if c.hook(stepCleaned) {
		return errCrashed
	}
	committed, err := c.l.swap(c, g, meta, txnIndex)
	if committed {
		b = nil // its files are the new segment's now
	}
	return err
}

// copyBatches appends the batches of s before position to, unchanged.
func (c *cleaning) copyBatches(b *segment.Builder, s *segment.Segment, to int64) error {
	var err error
	werr := s.Walk(0, func(pos int64, batch []byte, h *record.Header) bool {
		if pos >= to {
			return false
		}
		err = b.Append(batch, h)
		c.stats.bytesWritten += int64(len(batch))
		return err == nil
	})
	if werr != nil {
		return werr
	}
	return err
}

// filter decides what of a batch stays: batch itself when it stays as it
// is, nil when it goes, or a rewritten batch (in c.out) holding the
// records that stay. A record stays when it is the newest of its key
// (or past what the map covers) and, for a tombstone, its delete horizon
// has not passed; records without a key go, as in Kafka. A batch with
// tombstones that stay gets a delete horizon when it has none. The
// records of aborted transactions go. The last batch of an active
// producer stays, empty if need be. Transaction markers: see marker.
func (c *cleaning) filter(batch []byte, h *record.Header) ([]byte, error) {
	c.stats.bytesRead += int64(h.Size())
	c.stats.recordsRead += int64(h.RecordCount)
	if h.IsControl() {
		return c.marker(batch, h)
	}
	out, err := c.filterData(batch, h)
	if out != nil && h.IsTransactional() {
		c.inTxn[h.ProducerID] = struct{}{}
	}
	return out, err
}

// marker decides what of a control batch stays, as Kafka's cleaner does
// (KIP-534). A transaction marker (commit or abort) stays whole while a
// batch of its transaction stays, even emptied: a batch without its
// marker would read as a transaction still open. Once none does, the
// first pass to see it gives it a delete horizon of delete.retention.ms
// later, and the first pass after the horizon removes it, an abort
// marker with its .txnindex entry. Control batches past what the map
// covers, of another kind, or that do not decode stay whole.
func (c *cleaning) marker(batch []byte, h *record.Header) ([]byte, error) {
	_, kept := c.inTxn[h.ProducerID]
	delete(c.inTxn, h.ProducerID) // the marker ends the transaction
	keep := func() ([]byte, error) {
		c.stats.recordsKept += int64(h.RecordCount)
		return batch, nil
	}
	if h.BaseOffset >= c.end || kept {
		return keep()
	}
	if h.RecordCount > 0 {
		typ, err := record.ControlType(batch)
		if err != nil || typ != record.ControlAbort && typ != record.ControlCommit {
			return keep()
		}
	}
	hz, ok := h.DeleteHorizonMs()
	if h.RecordCount == 0 || ok && c.now >= hz {
		// Its horizon passed, or it is empty (Kafka's cleaner empties
		// markers; this one never does): it goes.
		c.goneMarkers[h.BaseOffset] = struct{}{}
		return nil, nil
	}
	if !ok {
		hz = c.now + min(c.cfg.DeleteRetentionMs, math.MaxInt64-c.now)
	}
	c.horizon = min(c.horizon, hz)
	if ok {
		return keep()
	}
	recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
	if err != nil {
		return keep()
	}
	c.stats.recordsKept += int64(h.RecordCount)
	c.out, err = record.Retain(c.out[:0], h, recs, h.RecordCount, hz)
	return c.out, err
}

// filterData is filter for a batch of data.
func (c *cleaning) filterData(batch []byte, h *record.Header) ([]byte, error) {
	if h.BaseOffset >= c.end {
		c.stats.recordsKept += int64(h.RecordCount)
		return batch, nil
	}
	if c.isAborted(h) {
		return c.emptied(batch, h)
	}
	recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: batch at %d: %v", ErrCorrupt, c.l.dir, h.BaseOffset, err)
	}
	hz, hasHorizon := h.DeleteHorizonMs()
	expired := hasHorizon && c.now >= hz
	kept := c.kept[:0]
	n, all, tombstones := int32(0), true, false
	it := record.NewRawRecords(recs, h.RecordCount)
	for it.Next() {
		r := &it.Record
		off := h.BaseOffset + int64(r.OffsetDelta)
		if r.Key == nil || off < c.m.get(r.Key) || (r.Value == nil && expired) {
			all = false
			continue
		}
		kept = append(kept, r.Raw...)
		n++
		tombstones = tombstones || r.Value == nil
	}
	c.kept = kept
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("%s: batch at %d: %w", c.l.dir, h.BaseOffset, err)
	}
	c.stats.recordsKept += int64(n)
	horizon := int64(-1)
	if tombstones {
		if !hasHorizon {
			hz = c.now + min(c.cfg.DeleteRetentionMs, math.MaxInt64-c.now)
			horizon = hz
		}
		c.horizon = min(c.horizon, hz)
	}
	if n == 0 {
		return c.emptied(batch, h)
	}
	if all && horizon < 0 {
		return batch, nil
	}
	c.out, err = record.Retain(c.out[:0], h, kept, n, horizon)
	return c.out, err
}

// emptied is what stays of a batch none of whose records stay: nothing,
// or, for the last batch of an active producer, the batch without its
// records.
func (c *cleaning) emptied(batch []byte, h *record.Header) ([]byte, error) {
	if last, ok := c.producers[h.ProducerID]; !ok || h.ProducerID < 0 || last != h.LastOffset() {
		return nil, nil
	}
	if h.RecordCount == 0 {
		return batch, nil // emptied by an earlier pass
	}
	var err error
	c.out, err = record.Retain(c.out[:0], h, nil, 0, -1)
	return c.out, err
}

// swap replaces the group g of segments by the new segment b wrote
// (meta): it commits the swap with a durable manifest, retires the old
// segments (their readers keep their mappings), puts the files in place
// and serves the new segment. A failure before the commit leaves the old
// segments; after it the swap is finished at the next Open if it cannot
// be now.
func (l *Log) swap(c *cleaning, g []*segment.Segment, meta segment.Meta, txnIndex bool) (committed bool, err error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.appendMu.closed || l.closing.Load() {
		return false, errCleanAborted
	}
	if err := l.appendMu.err; err != nil {
		return false, err
	}
	l.segMu.RLock()
	i := slices.Index(l.segments, g[0])
	same := i >= 0 && i+len(g) < len(l.segments) && slices.Equal(l.segments[i:i+len(g)], g)
	l.segMu.RUnlock()
	if !same {
		return false, errSwapRaced
	}
	if !l.appendMu.dirty {
		// The clean checkpoint on disk describes the old segments.
		if err := l.writeCheckpointLocked(false); err != nil {
			return false, l.failLocked(err)
		}
		l.appendMu.dirty = true
	}
	m := swapManifest{base: g[0].Base(), size: meta.Size, next: meta.NextOffset}
	for _, ext := range segment.Extensions {
		if ext != ".txnindex" || txnIndex {
			m.exts = append(m.exts, ext)
		}
	}
	for _, s := range g {
		m.old = append(m.old, s.Base())
	}
	path := swapPath(l.dir, m.base)
	if err := durable.WriteFile(path, m.encode()); err != nil {
		// Not committed unless the manifest is there: take it away
		// before the cleaned files go.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return true, l.failLocked(errors.Join(err, rerr))
		}
		if serr := syncDir(l.dir); serr != nil {
			return true, l.failLocked(errors.Join(err, serr))
		}
		return false, err
	}
	if c.hook(stepCommitted) {
		return true, errCrashed
	}
	// From here the swap is decided: whatever fails, the next Open
	// finishes it from the manifest.
	for _, s := range g {
		if err := s.Retire(); err != nil {
			l.logger.Warn("segment replaced by cleaning could not be kept mapped; its readers get an error", "segment", s.Base(), "err", err)
		}
	}
	if err := applySwap(l.dir, &m, c.l.clean.hook); err != nil {
		if errors.Is(err, errCrashed) {
			return true, err
		}
		return true, l.failLocked(fmt.Errorf("log: swap in cleaned segment %d: %w", m.base, err))
	}
	ns, err := segment.Open(l.dir, m.base, l.appendMu.cfg.segmentConfig(), segment.OpenOptions{Meta: &meta, TxnIndex: txnIndex})
	if err != nil {
		return true, l.failLocked(fmt.Errorf("log: open cleaned segment %d: %w", m.base, err))
	}
	// Done: the manifest may go (at the end of the pass, once the
	// renames are durable).
	c.manifests = append(c.manifests, path)
	l.segMu.Lock()
	segs := make([]*segment.Segment, 0, len(l.segments)-len(g)+1)
	segs = append(segs, l.segments[:i]...)
	segs = append(segs, ns)
	segs = append(segs, l.segments[i+len(g):]...)
	l.segments = segs
	l.segMu.Unlock()
	for _, s := range g {
		s.Release() // the owner's reference; readers keep theirs
	}
	c.stats.swapped++
	c.stats.replaced += len(g)
	if c.hook(stepSwapped) {
		return true, errCrashed
	}
	return true, nil
}

// finish ends a pass: the renames of its swaps are made durable, its
// manifests removed and, when the pass completed (ok), the cleaner
// checkpoint records where the dirty part now starts and the earliest
// delete horizon kept.
func (c *cleaning) finish(ok bool) error {
	l := c.l
	if len(c.manifests) > 0 {
		if err := syncDir(l.dir); err != nil {
			return err
		}
		for _, p := range c.manifests {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := syncDir(l.dir); err != nil {
			return err
		}
		if c.hook(stepManifestsRemoved) {
			return errCrashed
		}
	}
	if !ok {
		return nil
	}
	cs := cleanerState{firstDirty: c.end, horizon: c.horizon}
	if err := writeCleanerState(l.dir, cs); err != nil {
		return err
	}
	l.clean.firstDirty.Store(cs.firstDirty)
	l.clean.horizon.Store(cs.horizon)
	return nil
}
