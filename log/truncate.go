package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/segment"
)

// A replica's log is cut back when its leader's log diverges from it (a
// new leader never had the uncommitted tail of the old one): TruncateTo
// removes every batch at or past an offset, TruncateFullyAndStartAt
// empties the log and restarts it at an offset (a follower that fell
// below its leader's log start). Neither ever cuts a file that a reader
// may have mapped: the segment holding the cut is copied up to it into a
// new file that replaces the old one by rename, and the segments past it
// are unlinked, so a reader still holding one keeps reading its mapping
// until it releases it. The result is durable before they return.

// ActiveBase is the base offset of the active segment: after TruncateTo,
// the segment that was cut, reopened without its aborted-transaction
// index, which the owner rebuilds from there (AppendAbortedTxn).
func (l *Log) ActiveBase() int64 {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return l.active().Base()
}

// PauseCleaning waits for a cleaning pass in progress to end and keeps
// others from starting until ResumeCleaning: a replica truncates between
// the two, so that no pass swaps in segments built from what it cut (as
// Kafka pauses its cleaner to truncate). The caller takes it before any
// lock it holds while a pass may call Config.ProducerLastOffsets.
func (l *Log) PauseCleaning() { l.clean.Lock() }

// ResumeCleaning ends PauseCleaning.
func (l *Log) ResumeCleaning() { l.clean.Unlock() }

// TruncateTo removes every batch whose last offset is at or past off, so
// that the log ends at off (or, if off falls inside a batch, at that
// batch's base). It returns the new log end. Truncating below the log
// start empties the log at off, as TruncateFullyAndStartAt does.
func (l *Log) TruncateTo(off int64) (int64, error) {
	l.lockQuiesced()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return 0, ErrClosed
	}
	if err := l.appendMu.err; err != nil {
		return 0, err
	}
	if off >= l.nextOffset.Load() {
		return l.nextOffset.Load(), nil
	}
	if off <= l.logStart.Load() || off <= l.segments[0].Base() {
		return off, l.truncateFullyLocked(max(off, 0))
	}
	l.stopFlushTimerLocked()
	// The segment holding off and those after it.
	i := len(l.segments) - 1
	for i > 0 && l.segments[i].Base() > off {
		i--
	}
	s := l.segments[i]
	if !s.Acquire() {
		return 0, ErrClosed
	}
	pos, err := s.Position(off)
	s.Release()
	if err != nil {
		return 0, l.failLocked(err)
	}
	if err := l.markDirtyLocked(); err != nil {
		return 0, err
	}
	base := s.Base()
	if err := copyPrefix(l.dir, base, pos); err != nil {
		return 0, l.failLocked(err)
	}
	gone := l.segments[i:]
	l.segMu.Lock()
	l.segments = l.segments[:i:i]
	l.segMu.Unlock()
	var errs []error
	for _, g := range gone {
		if err := g.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Rename(filepath.Join(l.dir, segment.FileName(base, ".log.tmp")), filepath.Join(l.dir, segment.FileName(base, ".log"))); err != nil {
		errs = append(errs, err)
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, l.failLocked(err)
	}
	ns, err := segment.Open(l.dir, base, l.appendMu.cfg.segmentConfig(), segment.OpenOptions{Recover: true, Active: true})
	if err != nil {
		return 0, l.failLocked(err)
	}
	l.segMu.Lock()
	l.segments = append(l.segments, ns)
	l.segMu.Unlock()
	return l.afterTruncateLocked(ns.NextOffset())
}

// TruncateFullyAndStartAt removes every segment and starts the log, empty,
// at off: the log start and end become off.
func (l *Log) TruncateFullyAndStartAt(off int64) error {
	l.lockQuiesced()
	defer l.appendMu.Unlock()
	if l.appendMu.closed {
		return ErrClosed
	}
	if err := l.appendMu.err; err != nil {
		return err
	}
	return l.truncateFullyLocked(off)
}

func (l *Log) truncateFullyLocked(off int64) error {
	l.stopFlushTimerLocked()
	if err := l.markDirtyLocked(); err != nil {
		return err
	}
	l.segMu.Lock()
	gone := l.segments
	l.segments = nil
	l.segMu.Unlock()
	var errs []error
	for _, g := range gone {
		if err := g.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	s, err := segment.Create(l.dir, off, l.appendMu.cfg.segmentConfig())
	if err != nil {
		errs = append(errs, err)
	} else {
		l.segMu.Lock()
		l.segments = []*segment.Segment{s}
		l.segMu.Unlock()
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return l.failLocked(err)
	}
	l.logStart.Store(off)
	_, err = l.afterTruncateLocked(off)
	return err
}

// lockQuiesced takes appendMu once no background seal is running, so
// that none touches a segment being cut or removed (a seal takes appendMu
// when it ends, so it is waited for unlocked).
func (l *Log) lockQuiesced() {
	l.appendMu.Lock()
	for len(l.appendMu.sealing) > 0 {
		l.appendMu.Unlock()
		l.sealWG.Wait()
		l.appendMu.Lock()
	}
}

// markDirtyLocked makes sure the checkpoint on disk says the log is not
// clean before files change, so a crash in the middle is recovered.
func (l *Log) markDirtyLocked() error {
	if l.appendMu.dirty {
		return nil
	}
	if err := l.writeCheckpointLocked(false); err != nil {
		return l.failLocked(err)
	}
	l.appendMu.dirty = true
	return nil
}

// afterTruncateLocked sets the log end to end, moves the recovery point
// and the durable offset back to it if they were past it, and records the
// checkpoint.
func (l *Log) afterTruncateLocked(end int64) (int64, error) {
	l.nextOffset.Store(end)
	if l.logStart.Load() > end {
		l.logStart.Store(end)
	}
	l.appendMu.recoveryPoint = min(l.appendMu.recoveryPoint, l.active().Base())
	l.appendMu.unflushed = 0
	l.appendMu.cleanOnDisk = false
	l.rolls.Add(1) // state kept per segment (producer snapshots) is stale
	f := &l.flusher
	f.Lock()
	f.truncations++
	if f.durableOffset.Load() > end {
		f.durableOffset.Store(end)
	}
	f.Unlock()
	if err := l.writeCheckpointLocked(false); err != nil {
		return 0, l.failLocked(err)
	}
	return end, nil
}

// copyPrefix copies the first n bytes of segment base's .log into
// <base>.log.tmp and fsyncs it. (A .tmp file left by a crash is removed
// at the next open.)
func copyPrefix(dir string, base, n int64) error {
	src, err := os.Open(filepath.Join(dir, segment.FileName(base, ".log")))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, segment.FileName(base, ".log.tmp")), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(dst, src, n); err != nil {
		dst.Close()
		return fmt.Errorf("copy %d bytes of segment %d: %w", n, base, err)
	}
	err = durable.SyncData(dst)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}
