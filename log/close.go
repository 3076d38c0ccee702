package log

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
)

// Close syncs and writes nothing more than needed: it fsyncs the active
// segment if it holds unsynced data, writes its index files if they
// changed, and writes the clean-shutdown checkpoint (with every segment's
// Meta) unless the one on disk still describes the log.
// Readers holding views keep them until they release. Close is idempotent.
func (l *Log) Close() error { return l.CloseInto(nil) }

// CloseInto is Close with every sync left to b (durable.Batch): the
// active segment's data and index files are written but not synced, and
// the checkpoint takes its name only when the caller commits b, after
// everything it describes is durable. A nil b is Close.
func (l *Log) CloseInto(b *durable.Batch) error {
	l.appendMu.Lock()
	if l.appendMu.closed {
		l.appendMu.Unlock()
		return nil
	}
	l.appendMu.closed = true
	l.stopFlushTimerLocked()
	l.appendMu.Unlock()
	l.stopCleaning()
	l.sealWG.Wait()
	l.timerWG.Wait()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	var errs []error
	clean := l.appendMu.err == nil
	l.flusher.Lock()
	unsynced := l.flusher.durableOffset.Load() < l.nextOffset.Load()
	l.flusher.Unlock()
	if clean && unsynced && b == nil {
		if err := l.active().Sync(); err != nil {
			errs = append(errs, err)
			clean = false
		}
	}
	l.segMu.Lock()
	for _, s := range l.segments {
		if err := s.CloseInto(b); err != nil {
			errs = append(errs, err)
			clean = false
		}
	}
	l.segMu.Unlock()
	if clean && !l.appendMu.cleanOnDisk {
		l.appendMu.recoveryPoint = l.nextOffset.Load()
		if err := l.writeCheckpointInto(b, true); err != nil {
			errs = append(errs, err)
		}
	}
	l.stopFlusher()
	return errors.Join(errs...)
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	l.appendMu.Lock()
	wasClosed := l.appendMu.closed
	l.appendMu.closed = true
	l.stopFlushTimerLocked()
	l.appendMu.Unlock()
	l.stopCleaning()
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
	l.stopFlusher()
	if err := os.RemoveAll(l.dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(l.dir))
}

// stopCleaning stops a cleaning pass in progress, waits for it and leaves
// the Cleaner. Called once appends are closed.
func (l *Log) stopCleaning() {
	l.closing.Store(true)
	l.clean.Lock()
	l.clean.Unlock()
	if l.cleaner != nil {
		l.cleaner.remove(l)
	}
}
