package log

import (
	"errors"
	"os"
	"path/filepath"
)

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
