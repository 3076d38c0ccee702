package log

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymq/ferry/segment"
)

// Open opens (creating if needed) the log in dir and recovers it if it was
// not closed cleanly.
//
// After a clean close Open reads the checkpoint and lists the directory,
// and nothing else: segments are read (and checked) when first used.
//
// A new log (a directory with no segment) costs no fsync: Open makes the
// directory and an empty segment, and the first append makes them durable
// (with the checkpoint it writes) before it can be acknowledged. A caller
// that needs the creation itself durable, for many logs at once, calls
// durable.SyncFS once after creating them (or fsyncs each directory and its
// parent where SyncFS is not supported).
func Open(dir string, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	l := &Log{dir: dir, logger: cfg.Logger.With("log", filepath.Base(dir))}
	l.flusher.cond.L = &l.flusher
	l.flusher.onDurable = cfg.OnDurable
	l.stats = cfg.Stats
	l.appendMu.cfg = cfg
	// A swap of cleaned segments that a crash interrupted is finished
	// first: after it the directory holds whole segments only.
	// The directory is listed once for both, unless the swaps change it:
	// with thousands of partitions the listings are much of a start.
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	swapped, removed, err := recoverSwaps(dir, ents)
	if err != nil {
		return nil, fmt.Errorf("log: %s: %w", dir, err)
	}
	if swapped > 0 || removed > 0 {
		l.logger.Info("finished what a cleaning pass stopped by a crash left", "swaps_finished", swapped, "cleaned_files_removed", removed)
		ents = nil
	}
	cp, cpErr := readCheckpoint(dir)
	if errors.Is(cpErr, os.ErrNotExist) {
		// Perhaps a new log: make its directory.
		if err := os.Mkdir(dir, 0o755); err == nil {
			l.appendMu.syncParent = true
		} else if !errors.Is(err, os.ErrExist) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			l.appendMu.syncParent = true
		}
	}
	if cpErr != nil && !errors.Is(cpErr, os.ErrNotExist) {
		l.logger.Warn("checkpoint unreadable, recovering every segment", "err", cpErr)
	}
	if ents == nil {
		ents, err = os.ReadDir(dir)
	}
	if err != nil {
		return nil, err
	}
	bases, txnIndexes, err := l.segmentsIn(ents)
	if err != nil {
		return nil, err
	}
	clean := cpErr == nil && cp.clean && swapped == 0
	recoveryPoint := cp.recoveryPoint
	if cpErr != nil {
		recoveryPoint = 0
	}
	metas := map[int64]*segment.Meta{}
	if clean {
		for i := range cp.segments {
			metas[cp.segments[i].Base] = &cp.segments[i]
		}
	}
	start := time.Now()
	var scanned int64
	for i, base := range bases {
		active := i == len(bases)-1
		scan := !clean && base >= recoveryPointSegment(bases, recoveryPoint)
		var sizeBefore int64
		if scan {
			sizeBefore = fileSize(dir, base)
		}
		s, err := segment.Open(dir, base, cfg.segmentConfig(), segment.OpenOptions{Recover: scan, Active: active, Meta: metas[base], TxnIndex: txnIndexes[base]})
		if err != nil {
			l.closeSegments()
			return nil, fmt.Errorf("log: open segment %d of %s: %w", base, dir, err)
		}
		if scan {
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
		if scan && !active {
			// A segment that is not the last must end where the next
			// begins; if recovery cut it short, later segments sit past a
			// hole and are dropped, as Kafka does.
			if s.Size() < sizeBefore {
				l.logger.Error("corrupt segment in the middle of the log; dropping the segments after it", "segment", base, "file", filepath.Join(dir, segment.FileName(base, ".log")), "valid_until", s.NextOffset())
				for _, b := range bases[i+1:] {
					removeSegmentFiles(dir, b)
				}
				if err := s.Close(); err != nil {
					l.closeSegments()
					return nil, err
				}
				l.segments = l.segments[:len(l.segments)-1]
				s, err = segment.Open(dir, base, cfg.segmentConfig(), segment.OpenOptions{Active: true})
				if err != nil {
					l.closeSegments()
					return nil, err
				}
				l.segments = append(l.segments, s)
				break
			}
		}
	}
	fresh := len(bases) == 0 && errors.Is(cpErr, os.ErrNotExist)
	if len(l.segments) == 0 {
		base := max(cp.logStart, cp.recoveryPoint)
		s, err := segment.Create(dir, base, cfg.segmentConfig())
		if err != nil {
			return nil, err
		}
		l.segments = append(l.segments, s)
		if !fresh {
			if err := syncDir(dir); err != nil {
				l.closeSegments()
				return nil, err
			}
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
	l.appendMu.cleanOnDisk = clean
	l.flusher.durableOffset.Store(l.nextOffset.Load())
	if fresh {
		// Nothing to recover; the first append writes the checkpoint,
		// which syncs the directory, before anything is acknowledged.
		l.appendMu.dirty = false
		l.startCleaning()
		return l, nil
	}
	if !clean {
		// What recovery scanned came from the page cache, which a crash
		// of the process (not the machine) keeps: make it durable before
		// the recovery point moves past it.
		from := recoveryPointSegment(bases, recoveryPoint)
		for _, s := range l.segments {
			if s.Base() >= from {
				if err := s.Sync(); err != nil {
					l.closeSegments()
					return nil, err
				}
			}
		}
		// The caller rebuilds what it keeps per segment (the aborted
		// transactions) for the scanned segments, durably, before the
		// recovery point moves past them: from the first one holding a
		// control batch (a transaction marker), the log end if none does.
		if cfg.Recovered != nil {
			rebuild := l.nextOffset.Load()
			for _, s := range l.segments {
				if s.Base() >= from && s.ScannedControl() {
					rebuild = s.Base()
					break
				}
			}
			if err := cfg.Recovered(l, rebuild); err != nil {
				l.closeSegments()
				return nil, err
			}
			for _, s := range l.segments {
				if s.Base() >= from {
					if err := s.SyncTxnIndex(); err != nil {
						l.closeSegments()
						return nil, err
					}
				}
			}
		}
		if err := l.writeCheckpointLocked(false); err != nil {
			l.closeSegments()
			return nil, err
		}
	}
	l.startCleaning()
	return l, nil
}

// startCleaning reads where the last cleaning pass left the log and
// registers it with its Cleaner, if it has one.
func (l *Log) startCleaning() {
	cs, err := readCleanerState(l.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		l.logger.Warn("cleaner checkpoint unreadable; the whole log counts as dirty", "err", err)
	}
	l.clean.firstDirty.Store(cs.firstDirty)
	l.clean.horizon.Store(cs.horizon)
	l.cleanLimit = l.appendMu.cfg.CleanLimit
	if l.cleaner = l.appendMu.cfg.Cleaner; l.cleaner != nil {
		l.cleaner.add(l)
	}
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
// directory and those that have a .txnindex, and deletes leftovers:
// temporary files and index files with no log.
func (l *Log) listSegments() ([]int64, map[int64]bool, error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, err
	}
	return l.segmentsIn(ents)
}

// segmentsIn is listSegments over the directory's entries ents.
func (l *Log) segmentsIn(ents []os.DirEntry) ([]int64, map[int64]bool, error) {
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
	txn := map[int64]bool{}
	for _, e := range ents {
		stem, ext, _ := strings.Cut(e.Name(), ".")
		base, err := strconv.ParseInt(stem, 10, 64)
		if err != nil || (ext != "index" && ext != "timeindex" && ext != "txnindex") {
			continue
		}
		switch {
		case !logs[base]:
			os.Remove(filepath.Join(l.dir, e.Name()))
		case ext == "txnindex":
			txn[base] = true
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, txn, nil
}

func removeSegmentFiles(dir string, base int64) {
	for _, ext := range segment.Extensions {
		os.Remove(filepath.Join(dir, segment.FileName(base, ext)))
	}
}

func (l *Log) closeSegments() {
	for _, s := range l.segments {
		s.Close()
	}
	l.segments = nil
}
