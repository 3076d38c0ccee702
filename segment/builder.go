package segment

import (
	"errors"
	"math"
	"os"

	"github.com/ferrymq/ferry/record"
)

// Builder writes a new segment for the log cleaner: batches appended in
// offset order, with gaps between their offsets allowed, and indexed as
// appends to an active segment are. Its files carry CleanedSuffix until
// its owner renames them into place (FileName(base, ext)+CleanedSuffix to
// FileName(base, ext), for each of Extensions) and opens the segment with
// the Meta that Finish returns. One goroutine uses a Builder.
type Builder struct {
	s *Segment
	// finished: Finish released the segment; its files remain.
	finished bool
}

// NewBuilder creates the .log file of a segment of base offset base in
// dir, under its temporary name (replacing one left by an earlier
// attempt). The caller syncs dir before it relies on the files.
func NewBuilder(dir string, base int64, cfg Config) (*Builder, error) {
	s := newSegment(dir, base, cfg)
	s.suffix = CleanedSuffix
	for _, ext := range Extensions[1:] {
		if err := os.Remove(s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Batches rewritten with fewer records may come out a little larger
	// than the originals (recompressed): the segment may pass MaxBytes.
	s.capacity = math.MaxInt32
	s.inMemory, s.loaded = true, true
	if err := s.openFileLocked(os.O_CREATE | os.O_TRUNC); err != nil {
		return nil, err
	}
	return &Builder{s: s}, nil
}

// Append writes one batch after the last, as Segment.Append does: h is
// its header (record.ValidateStored), its base offset above the last
// batch's last offset.
func (b *Builder) Append(batch []byte, h *record.Header) error { return b.s.Append(batch, h) }

// AppendAbortedTxn adds e to the new segment's aborted-transaction index
// (its .txnindex, under the temporary name), as Segment.AppendAbortedTxn:
// the cleaner carries the entries of the segments it replaces whose
// abort markers it keeps.
func (b *Builder) AppendAbortedTxn(e AbortedTxn) error { return b.s.AppendAbortedTxn(e) }

// HasAbortedTxns reports whether the new segment has a .txnindex.
func (b *Builder) HasAbortedTxns() bool { return b.s.HasAbortedTxns() }

// Size is the number of bytes appended.
func (b *Builder) Size() int64 { return b.s.Size() }

// Finish syncs the .log, writes and syncs the index files, closes them
// and returns the segment's Meta, with which Open opens it once renamed.
// The Builder is unusable after.
func (b *Builder) Finish() (Meta, error) {
	if err := b.s.Seal(); err != nil {
		return Meta{}, err
	}
	m := b.s.Meta()
	b.finished = true
	b.s.Release()
	return m, nil
}

// Abort closes the Builder, if Finish has not, and removes its files
// (those that still carry CleanedSuffix). The caller syncs the directory
// if it needs the removal durable.
func (b *Builder) Abort() error {
	if !b.finished {
		b.finished = true
		return b.s.Remove()
	}
	var errs []error
	for _, ext := range Extensions {
		if err := os.Remove(b.s.path(ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
