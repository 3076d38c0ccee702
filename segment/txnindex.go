package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/internal/durable"
)

// AbortedTxn is one entry of a segment's aborted-transaction index
// (.txnindex): a transaction whose abort marker is in the segment. A
// read_committed consumer skips the records of ProducerID from
// FirstOffset up to the marker.
type AbortedTxn struct {
	ProducerID  int64
	FirstOffset int64 // the transaction's first offset in the partition
	LastOffset  int64 // the offset of its abort marker
	// LastStableOffset is the partition's last stable offset once the
	// transaction was aborted: the first offset of the oldest transaction
	// still open, or LastOffset+1. A search for the transactions
	// overlapping offsets below X stops at the first entry whose
	// LastStableOffset is at or past X, as Kafka's does.
	LastStableOffset int64
}

// TxnIndexEntrySize is the size of a .txnindex entry.
const TxnIndexEntrySize = 34

// txnIndexVersion is the version field of every entry Kafka (and Ferry)
// writes.
const txnIndexVersion = 0

// txnIndex is a segment's aborted transactions. The entries are read from
// .txnindex when first needed and kept in memory; new ones are written to
// the file with plain writes as they are added, and the file is synced
// when the segment is sealed or closed (recovery rebuilds a segment's
// entries after an unclean stop, so unsynced ones are never trusted).
type txnIndex struct {
	// exists says the segment has entries (or a file that may hold
	// some), known without reading it.
	exists atomic.Bool
	// scannedControl: a scan of the log (recovery) found a control
	// batch, so the caller may have aborted transactions to rebuild.
	// Written before the segment is shared.
	scannedControl bool

	mu       sync.Mutex
	loaded   bool         // entries holds the file's entries
	entries  []AbortedTxn // in marker offset order
	unsynced bool         // entries written since the file was last synced
}

func appendTxnEntry(b []byte, e *AbortedTxn) []byte {
	be := binary.BigEndian
	b = be.AppendUint16(b, txnIndexVersion)
	b = be.AppendUint64(b, uint64(e.ProducerID))
	b = be.AppendUint64(b, uint64(e.FirstOffset))
	b = be.AppendUint64(b, uint64(e.LastOffset))
	return be.AppendUint64(b, uint64(e.LastStableOffset))
}

// decodeTxnIndex decodes a .txnindex file's entries. A partial entry at
// the end (a write a crash cut short) is ignored; an entry of another
// version, or whose offsets do not hold together, is ErrCorrupt.
func decodeTxnIndex(b []byte) ([]AbortedTxn, error) {
	be := binary.BigEndian
	n := len(b) / TxnIndexEntrySize
	out := make([]AbortedTxn, 0, n)
	for i := 0; i < n; i++ {
		r := b[i*TxnIndexEntrySize:]
		if v := int16(be.Uint16(r)); v != txnIndexVersion {
			return nil, fmt.Errorf("%w: txnindex entry %d of version %d", ErrCorrupt, i, v)
		}
		e := AbortedTxn{
			ProducerID:       int64(be.Uint64(r[2:])),
			FirstOffset:      int64(be.Uint64(r[10:])),
			LastOffset:       int64(be.Uint64(r[18:])),
			LastStableOffset: int64(be.Uint64(r[26:])),
		}
		if e.FirstOffset < 0 || e.LastOffset < e.FirstOffset {
			return nil, fmt.Errorf("%w: txnindex entry %d: %+v", ErrCorrupt, i, e)
		}
		out = append(out, e)
	}
	return out, nil
}

// loadTxnLocked reads .txnindex once. s.txn.mu is held.
func (s *Segment) loadTxnLocked() error {
	if s.txn.loaded {
		return nil
	}
	if s.txn.exists.Load() {
		b, err := os.ReadFile(s.path(".txnindex"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		entries, err := decodeTxnIndex(b)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, s.path(".txnindex"))
		}
		s.txn.entries = entries
	}
	s.txn.loaded = true
	return nil
}

// AppendAbortedTxn adds e, whose abort marker is in the segment, to the
// aborted-transaction index, writing it to .txnindex (not synced: Seal and
// Close sync it). The appender of the owning log calls it, after the
// marker's batch is appended, or recovery while it rebuilds the index
// (then the caller syncs with SyncTxnIndex). A sealed segment takes
// entries too.
func (s *Segment) AppendAbortedTxn(e AbortedTxn) error {
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if err := s.loadTxnLocked(); err != nil {
		return err
	}
	f, err := os.OpenFile(s.path(".txnindex"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	pos := int64(len(s.txn.entries)) * TxnIndexEntrySize
	var buf [TxnIndexEntrySize]byte
	if _, err := f.WriteAt(appendTxnEntry(buf[:0], &e), pos); err != nil {
		if terr := f.Truncate(pos); terr != nil {
			err = errors.Join(err, terr)
		}
		f.Close()
		return fmt.Errorf("segment: write %s: %w", s.path(".txnindex"), err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.txn.entries = append(s.txn.entries, e)
	s.txn.unsynced = true
	s.txn.exists.Store(true)
	return nil
}

// HasAbortedTxns reports whether the segment may hold aborted-transaction
// entries, without reading its index.
func (s *Segment) HasAbortedTxns() bool { return s.txn.exists.Load() }

// AbortedTxns appends to dst the entries of transactions that overlap
// offsets [from, to): whose marker is at or past from and whose first
// offset is below to. done is true when no later segment can hold more:
// an entry's LastStableOffset reached to.
func (s *Segment) AbortedTxns(from, to int64, dst []AbortedTxn) (out []AbortedTxn, done bool, err error) {
	if !s.txn.exists.Load() {
		return dst, false, nil
	}
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if err := s.loadTxnLocked(); err != nil {
		return dst, false, err
	}
	for i := range s.txn.entries {
		e := &s.txn.entries[i]
		if e.LastOffset >= from && e.FirstOffset < to {
			dst = append(dst, *e)
		}
		if e.LastStableOffset >= to {
			return dst, true, nil
		}
	}
	return dst, false, nil
}

// ScannedControl reports whether the scan that opened the segment for
// recovery (OpenOptions.Recover) found a control batch: only then may it
// hold abort markers whose entries the caller must add again.
func (s *Segment) ScannedControl() bool { return s.txn.scannedControl }

// SyncTxnIndex makes the entries written to .txnindex durable.
func (s *Segment) SyncTxnIndex() error {
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if !s.txn.unsynced {
		return nil
	}
	f, err := os.OpenFile(s.path(".txnindex"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = durable.SyncData(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: sync %s: %w", s.path(".txnindex"), err)
	}
	s.txn.unsynced = false
	return nil
}

// resetTxnIndex drops the segment's aborted-transaction entries and its
// .txnindex file, for a recovery that rebuilds them (AppendAbortedTxn).
func (s *Segment) resetTxnIndex() error {
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if err := os.Remove(s.path(".txnindex")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.txn.entries = nil
	s.txn.loaded = true
	s.txn.unsynced = false
	s.txn.exists.Store(false)
	return nil
}

// txnIndexInto leaves the sync of .txnindex, if it has unsynced entries,
// to b (Close into a durable.Batch).
func (s *Segment) txnIndexInto(b *durable.Batch) {
	s.txn.mu.Lock()
	defer s.txn.mu.Unlock()
	if s.txn.unsynced {
		b.Written(s.path(".txnindex"))
		s.txn.unsynced = false
	}
}
