package partition

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// AbortedTxn is an aborted transaction as a read_committed fetch reports
// it (with ProducerID and FirstOffset), from the aborted-transaction
// index: see segment.AbortedTxn.
type AbortedTxn = log.AbortedTxn

// VerificationGuard ties a transactional batch to the transaction
// coordinator's word that its partition is in the producer's open
// transaction (Kafka's verification guard, KIP-890). BeginVerification
// hands one out before the server asks the coordinator; AppendVerified
// takes the batch only if the guard is still the producer's, which a
// marker (the transaction ended meanwhile) undoes. So a batch verified
// just before its transaction's abort is never appended after the abort
// marker.
type VerificationGuard struct {
	producerID int64
	epoch      int16
	created    int64 // Unix ms, for expiry with the producers
}

// BeginVerification returns the guard under which a transactional batch
// of producerID at epoch must be verified with the coordinator before it
// is appended, or nil when the producer already has a transaction open
// here at that epoch (no verification is needed, as in Kafka). A
// concurrent request of the same producer and epoch shares the guard.
func (p *Partition) BeginVerification(producerID int64, epoch int16) *VerificationGuard {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.mu.producers[producerID]; st != nil && st.txnFirst >= 0 && st.epoch == epoch {
		return nil
	}
	if g := p.mu.verify[producerID]; g != nil && g.epoch == epoch {
		return g
	}
	g := &VerificationGuard{producerID: producerID, epoch: epoch, created: time.Now().UnixMilli()}
	p.mu.verify[producerID] = g
	return g
}

// checkTxnLocked applies the transaction rules to one batch about to be
// appended, after the batches before it in the same request (earlier): a
// transactional batch that opens its producer's transaction needs the
// producer's current verification guard; a producer with a transaction
// open sends only transactional batches, as Kafka requires.
func (p *Partition) checkTxnLocked(h *record.Header, earlier []record.Header, guard *VerificationGuard) error {
	if h.ProducerID < 0 {
		return nil
	}
	open := false
	if st := p.mu.producers[h.ProducerID]; st != nil && st.txnFirst >= 0 && st.epoch == h.ProducerEpoch {
		open = true
	}
	for i := range earlier {
		if e := &earlier[i]; e.ProducerID == h.ProducerID && e.IsTransactional() && e.ProducerEpoch == h.ProducerEpoch {
			open = true // that batch opens it, checked before this one
		}
	}
	switch {
	case !h.IsTransactional():
		if st := p.mu.producers[h.ProducerID]; st != nil && st.txnFirst >= 0 {
			return fmt.Errorf("%w: producer %d has a transaction open here and sent a batch outside it", ErrInvalidTxnState, h.ProducerID)
		}
	case open:
	case guard == nil || guard.producerID != h.ProducerID || guard.epoch != h.ProducerEpoch || p.mu.verify[h.ProducerID] != guard:
		return fmt.Errorf("%w: producer %d epoch %d: the batch is not part of a transaction verified with the coordinator", ErrInvalidTxnState, h.ProducerID, h.ProducerEpoch)
	}
	return nil
}

// opensTxnLocked reports whether batch h opens a transaction: it is
// transactional and its producer has none open here.
func (p *Partition) opensTxnLocked(h *record.Header) bool {
	if h.ProducerID < 0 || !h.IsTransactional() || h.IsControl() {
		return false
	}
	st := p.mu.producers[h.ProducerID]
	return st == nil || st.txnFirst < 0
}

// beginTxnLocked records that producerID opened a transaction at first.
func (p *Partition) beginTxnLocked(producerID, first int64) {
	delete(p.mu.verify, producerID)
	p.mu.ongoing[producerID] = first
	p.stable.begin(first)
}

// Marker is the end of a transaction in this partition: the control
// batch WriteMarker appends (Kafka's WriteTxnMarkers).
type Marker struct {
	ProducerID int64
	// ProducerEpoch is the epoch the partition must see: with
	// transaction version 2 the bumped one, one more than the
	// transaction's batches had, which then become fenced.
	ProducerEpoch int16
	// Commit is true for a commit marker, false for an abort.
	Commit bool
	// CoordinatorEpoch is the epoch of the transaction coordinator that
	// sends the marker; it goes into the marker's value. A marker of a
	// lower coordinator epoch than the producer's last one here is
	// refused (ErrCoordinatorFenced).
	CoordinatorEpoch int32
}

// WriteMarker appends m's control batch and returns its offset once it is
// durable. It ends the producer's transaction here: the producer's epoch
// becomes m's (a new one resets its sequences), its verification guard is
// dropped, and an abort adds the transaction to the aborted-transaction
// index. A marker repeated after the transaction ended (a coordinator
// completing it again after a restart) is appended too and changes
// nothing else. A marker older than the producer's epoch is refused with
// ErrInvalidProducerEpoch, and one whose coordinator epoch is lower than
// that of the producer's last marker here (sent by a coordinator a newer
// one has replaced) with ErrCoordinatorFenced; either writes nothing.
func (p *Partition) WriteMarker(m Marker) (int64, error) {
	off, err := p.appendMarker(m)
	if err != nil {
		return -1, err
	}
	return off, p.Sync()
}

func (p *Partition) appendMarker(m Marker) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return -1, ErrClosed
	}
	if m.ProducerID < 0 || m.ProducerEpoch < 0 {
		return -1, fmt.Errorf("%w: marker of producer %d epoch %d", ErrInvalidRecord, m.ProducerID, m.ProducerEpoch)
	}
	leader, epoch := p.Leader() // a replica of a cluster: only its leader writes
	if !leader {
		return -1, ErrNotLeader
	}
	if st := p.mu.producers[m.ProducerID]; st != nil {
		if m.ProducerEpoch < st.epoch {
			return -1, fmt.Errorf("%w: marker of producer %d at epoch %d, current %d", ErrInvalidProducerEpoch, m.ProducerID, m.ProducerEpoch, st.epoch)
		}
		if m.CoordinatorEpoch < st.coordEpoch {
			return -1, fmt.Errorf("%w: marker of producer %d from coordinator epoch %d, current %d", ErrCoordinatorFenced, m.ProducerID, m.CoordinatorEpoch, st.coordEpoch)
		}
	}
	batch := record.AppendControlBatch(nil, m.ProducerID, m.ProducerEpoch, m.Commit, m.CoordinatorEpoch, time.Now().UnixMilli())
	record.SetLeaderEpoch(batch, epoch)
	h, err := record.Parse(batch)
	if err != nil {
		panic(fmt.Sprintf("partition: a marker we built does not parse: %v", err))
	}
	off, err := p.log.Append(batch, &h)
	if err != nil {
		return -1, err
	}
	first := endTxn(p.mu.producers, m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch)
	delete(p.mu.verify, m.ProducerID)
	if first >= 0 {
		delete(p.mu.ongoing, m.ProducerID)
		if !m.Commit {
			e := AbortedTxn{
				ProducerID:       m.ProducerID,
				FirstOffset:      first,
				LastOffset:       off,
				LastStableOffset: p.mu.ongoing.lastStable(off + 1),
			}
			if err := p.log.AppendAbortedTxn(e); err != nil {
				// The log refuses appends from now on: recovery
				// rebuilds the index from the marker.
				return -1, err
			}
		}
		p.stable.end(p.mu.ongoing, first, off)
	}
	p.maybeSnapshotLocked()
	return off, nil
}

// completedTxn is a transaction whose marker is appended but not yet
// below the high watermark: it still holds the last stable offset at its
// first offset.
type completedTxn struct{ first, marker int64 }

// stableState is what the last stable offset is computed from, under a
// leaf lock of its own (the log calls notify while the partition's mu may
// be held, at Close).
type stableState struct {
	mu            sync.Mutex
	ongoingMin    int64          // first offset of the oldest open transaction; MaxInt64 if none
	completed     []completedTxn // markers above the high watermark
	firstUnstable atomic.Int64   // min(ongoingMin, completed firsts): the first unstable offset
}

func (s *stableState) init(ongoing ongoingTxns) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ongoingMin = ongoing.lastStable(math.MaxInt64)
	s.updateLocked()
}

func (s *stableState) updateLocked() {
	first := s.ongoingMin
	for _, c := range s.completed {
		first = min(first, c.first)
	}
	s.firstUnstable.Store(first)
}

// begin records a transaction opened at first (at or past the log end,
// so never below the last stable offset already given out).
func (s *stableState) begin(first int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ongoingMin = min(s.ongoingMin, first)
	s.updateLocked()
}

// forget drops a transaction begun but not appended (the append
// failed): the oldest open one is again that of ongoing.
func (s *stableState) forget(ongoing ongoingTxns) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ongoingMin = ongoing.lastStable(math.MaxInt64)
	s.updateLocked()
}

// end records that the transaction opened at first has its marker at
// marker; ongoing is what stays open.
func (s *stableState) end(ongoing ongoingTxns, first, marker int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if first <= s.ongoingMin {
		s.ongoingMin = ongoing.lastStable(math.MaxInt64)
	}
	s.completed = append(s.completed, completedTxn{first: first, marker: marker})
	s.updateLocked()
}

// durable drops the completed transactions whose markers are below hw.
func (s *stableState) durable(hw int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.completed) == 0 {
		return
	}
	kept := s.completed[:0]
	for _, c := range s.completed {
		if c.marker >= hw {
			kept = append(kept, c)
		}
	}
	clear(s.completed[len(kept):])
	s.completed = kept
	s.updateLocked()
}

// LastStableOffset is the offset up to which read_committed consumers
// read: the first offset of the oldest transaction still open (or whose
// marker is not durable yet), or the high watermark when that is lower;
// never below the log start offset. Every record below it is durable and
// belongs to no open transaction.
func (p *Partition) LastStableOffset() int64 {
	lso := min(p.stable.firstUnstable.Load(), p.HighWatermark())
	return max(lso, p.log.LogStartOffset())
}

// AbortedTxns returns the aborted transactions that overlap offsets
// [from, to), in marker order: what a read_committed fetch of those
// offsets reports, so the consumer drops their records. The share-group
// engine reads them the same way for share.isolation.level=read_committed.
func (p *Partition) AbortedTxns(from, to int64) ([]AbortedTxn, error) {
	return p.log.AbortedTxns(from, to, nil)
}

// ViewEnd returns the offset after the last batch of data, whole batches
// as a View holds them, or -1 when data holds none.
func ViewEnd(data []byte) int64 {
	end := int64(-1)
	for len(data) >= record.HeaderSize {
		n, err := record.BatchSize(data)
		if err != nil || n > len(data) {
			break
		}
		end = record.BaseOffset(data) + int64(int32(binary.BigEndian.Uint32(data[record.PosLastOffsetDelta:]))) + 1
		data = data[n:]
	}
	return end
}

// ProducerState describes one producer of the partition, as
// DescribeProducers reports it.
type ProducerState struct {
	ProducerID    int64
	ProducerEpoch int16
	// LastSequence is the last sequence number appended, -1 if none is
	// remembered (after a marker of a new epoch, or an expiry).
	LastSequence int32
	// LastTimestamp is when the producer last appended, in Unix ms, as
	// this broker's clock saw it (after a restart: when it was loaded).
	LastTimestamp int64
	// CoordinatorEpoch is the coordinator epoch of the producer's last
	// marker here, -1 if none.
	CoordinatorEpoch int32
	// TxnStartOffset is the first offset of the producer's transaction
	// open here, -1 if none is.
	TxnStartOffset int64
}

// Producers returns the state of every producer the partition
// remembers, by producer id.
func (p *Partition) Producers() []ProducerState {
	p.mu.Lock()
	out := make([]ProducerState, 0, len(p.mu.producers))
	for id, st := range p.mu.producers {
		ps := ProducerState{ProducerID: id, ProducerEpoch: st.epoch, LastSequence: -1, LastTimestamp: st.lastSeen, CoordinatorEpoch: st.coordEpoch, TxnStartOffset: st.txnFirst}
		if b := st.last(); b != nil {
			ps.LastSequence = b.lastSeq
		}
		out = append(out, ps)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ProducerID < out[j].ProducerID })
	return out
}
