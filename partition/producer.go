package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// producerBatches is how many recent batches are remembered per producer
// to recognise retries, as in Kafka.
const producerBatches = 5

const (
	snapshotExt = ".snapshot"
	// snapshotVersion is the format of the snapshot files. Change it
	// with the layout; a snapshot of a version this code does not read
	// does not decode, and the producers are rebuilt from an older one
	// or from the log instead. Version 3 added each producer's
	// coordinator epoch, version 2 its open transaction; versions 2 and
	// 1 (written before transactions were stored, so without any) are
	// still read, their producers without a coordinator epoch (-1).
	snapshotVersion   = 3
	snapshotVersionV2 = 2
	snapshotVersionV1 = 1
	// keptSnapshots is how many snapshot files are kept: the newest may
	// cover data a crash loses, the older ones are below it.
	keptSnapshots = 3
)

// snapshotPath names the snapshot of the state at offset at, as Kafka
// names its producer snapshots.
func snapshotPath(dir string, at int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", at, snapshotExt))
}

// snapshotOffsets lists the offsets of the snapshot files in dir, newest
// first.
func snapshotOffsets(dir string) []int64 {
	ents, _ := os.ReadDir(dir)
	var offs []int64
	for _, e := range ents {
		stem, ok := strings.CutSuffix(e.Name(), snapshotExt)
		if !ok || len(stem) != 20 {
			continue
		}
		if at, err := strconv.ParseInt(stem, 10, 64); err == nil {
			offs = append(offs, at)
		}
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] > offs[j] })
	return offs
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// syncDir is durable.SyncDir; tests replace it to see when the directory
// is synced.
var syncDir = durable.SyncDir

type batchMeta struct {
	firstSeq, lastSeq int32
	base, last        int64
}

// producer is the idempotence and transaction state of one producer id.
type producer struct {
	epoch   int16
	batches [producerBatches]batchMeta // oldest first, n in use
	n       int
	// txnFirst is the first offset of the producer's transaction open in
	// the partition, -1 when none is.
	txnFirst int64
	// coordEpoch is the coordinator epoch of the last marker written for
	// the producer, -1 if none: a marker of a lower one comes from a
	// transaction coordinator that a newer one has replaced, and is
	// refused (ErrCoordinatorFenced), as Kafka's ProducerStateManager
	// does.
	coordEpoch int32
	// lastSeen is when the producer last appended (Unix ms), or when the
	// state was loaded; it is not persisted.
	lastSeen int64
}

func newProducer(epoch int16) *producer { return &producer{epoch: epoch, txnFirst: -1, coordEpoch: -1} }

// setEpoch moves the producer to epoch; a new epoch forgets the batches
// of the old one (its sequences start again at 0). An open transaction
// and the coordinator epoch are kept: only a marker changes them.
func (p *producer) setEpoch(epoch int16) {
	if epoch != p.epoch {
		*p = producer{epoch: epoch, txnFirst: p.txnFirst, coordEpoch: p.coordEpoch, lastSeen: p.lastSeen}
	}
}

func (p *producer) last() *batchMeta {
	if p.n == 0 {
		return nil
	}
	return &p.batches[p.n-1]
}

func (p *producer) push(m batchMeta) {
	if p.n == producerBatches {
		copy(p.batches[:], p.batches[1:])
		p.n--
	}
	p.batches[p.n] = m
	p.n++
}

func inSequence(last, next int32) bool {
	return next == last+1 || (next == 0 && last == math.MaxInt32)
}

// checkSequenceLocked applies Kafka's idempotence rules to one batch.
// earlier holds the batches before it in the same request, which are not
// in the state yet. It returns the original offset of a duplicate.
func (p *Partition) checkSequenceLocked(h *record.Header, earlier []record.Header) (int64, bool, error) {
	if h.ProducerID < 0 {
		return 0, false, nil
	}
	st := p.mu.producers[h.ProducerID]
	epoch := int16(-1)
	if st != nil {
		epoch = st.epoch
	}
	lastSeq, haveLast := int32(-1), false
	if st != nil && st.last() != nil {
		lastSeq, haveLast = st.last().lastSeq, true
	}
	for i := range earlier {
		if e := &earlier[i]; e.ProducerID == h.ProducerID {
			if e.ProducerEpoch != epoch {
				haveLast = false
			}
			epoch = e.ProducerEpoch
			lastSeq, haveLast = e.LastSequence(), true
		}
	}
	if h.ProducerEpoch < epoch {
		return 0, false, fmt.Errorf("%w: producer %d epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, epoch)
	}
	if st != nil && h.ProducerEpoch == st.epoch {
		for i := 0; i < st.n; i++ {
			b := &st.batches[i]
			if b.firstSeq == h.BaseSequence && b.lastSeq == h.LastSequence() {
				return b.base, true, nil
			}
		}
	}
	switch {
	case h.ProducerEpoch != epoch:
		// A new epoch starts at sequence 0, unless the old epoch is
		// unknown (state lost to retention or never seen).
		if h.BaseSequence != 0 && epoch != -1 {
			return 0, false, fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
	case haveLast && !inSequence(lastSeq, h.BaseSequence):
		return 0, false, fmt.Errorf("%w: producer %d expected sequence %d, got %d", ErrOutOfOrderSequence, h.ProducerID, lastSeq+1, h.BaseSequence)
	}
	return 0, false, nil
}

// recordBatch remembers an appended batch of an idempotent producer (a
// data batch: markers go through endTxn) and returns its state. A
// transactional batch opens the producer's transaction if none is open:
// started is then true.
func recordBatch(m map[int64]*producer, h *record.Header) (st *producer, started bool) {
	st = m[h.ProducerID]
	if st == nil {
		st = newProducer(h.ProducerEpoch)
		m[h.ProducerID] = st
	}
	st.setEpoch(h.ProducerEpoch)
	st.lastSeen = time.Now().UnixMilli()
	st.push(batchMeta{firstSeq: h.BaseSequence, lastSeq: h.LastSequence(), base: h.BaseOffset, last: h.LastOffset()})
	if h.IsTransactional() && st.txnFirst < 0 {
		st.txnFirst = h.BaseOffset
		started = true
	}
	return st, started
}

// endTxn applies a marker of producerID at epoch, written by the
// transaction coordinator of coordEpoch, to m and returns the first offset
// of the transaction it ends, -1 when none was open. The producer takes
// the marker's coordinator epoch, as Kafka's does (a marker in the log
// was accepted by its leader).
func endTxn(m map[int64]*producer, producerID int64, epoch int16, coordEpoch int32) int64 {
	st := m[producerID]
	if st == nil {
		st = newProducer(epoch)
		m[producerID] = st
	}
	st.setEpoch(epoch)
	st.coordEpoch = coordEpoch
	st.lastSeen = time.Now().UnixMilli()
	first := st.txnFirst
	st.txnFirst = -1
	return first
}

// ExpireProducers forgets producers that have not appended for
// producer.id.expiration.ms, as Kafka does, unless a transaction of
// theirs is open here; a forgotten producer's next batch is taken at any
// sequence. It returns how many were forgotten.
func (p *Partition) ExpireProducers(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	limit := now.UnixMilli() - p.mu.cfg.ProducerIDExpirationMs
	n := 0
	for id, st := range p.mu.producers {
		if st.lastSeen < limit && st.txnFirst < 0 {
			delete(p.mu.producers, id)
			n++
		}
	}
	for id, g := range p.mu.verify {
		if g.created < limit {
			delete(p.mu.verify, id)
		}
	}
	return n
}

// loadProducers rebuilds producer state from the newest snapshot at or
// below the log end (a newer one describes data a crash lost, and is
// deleted) plus the batches after it, or from the whole log when there is
// none. With rebuildFrom >= 0 (an unclean open, whose recovery scanned the
// segments from that offset on and dropped their aborted-transaction
// indexes) the snapshot used is at or below rebuildFrom, and every abort
// marker from rebuildFrom on gets its entry in the log's index again.
// snapAt is the offset of the snapshot taken when it describes the whole
// log (it is at the log end), else -1.
func loadProducers(l *log.Log, rebuildFrom int64) (m map[int64]*producer, snapAt int64, err error) {
	m, snapAt, err = loadProducerState(l, rebuildFrom)
	if err != nil || snapAt < l.NextOffset() {
		snapAt = -1
	}
	return m, snapAt, err
}

func loadProducerState(l *log.Log, rebuildFrom int64) (map[int64]*producer, int64, error) {
	m, at := map[int64]*producer{}, l.LogStartOffset()
	limit := l.NextOffset()
	if rebuildFrom >= 0 {
		limit = min(limit, rebuildFrom)
	}
	removed := false
	for _, off := range snapshotOffsets(l.Dir()) {
		if off > l.NextOffset() {
			// It describes data a crash lost. Delete it, or it would
			// be taken once the log grows past it again.
			if err := os.Remove(snapshotPath(l.Dir(), off)); err != nil {
				return nil, 0, err
			}
			removed = true
			continue
		}
		if off > limit {
			continue
		}
		if sm, err := readProducerSnapshot(snapshotPath(l.Dir(), off), off); err == nil {
			m, at = sm, off
			break
		}
	}
	if removed {
		// The removal must outlast a power cut too: a stale snapshot
		// that came back would be taken once the log passes it.
		if err := syncDir(l.Dir()); err != nil {
			return nil, 0, err
		}
	}
	// Expiry counts from now for every producer loaded: when they last
	// appended is not recorded.
	now := time.Now().UnixMilli()
	open := ongoingTxns{}
	for id, st := range m {
		st.lastSeen = now
		if st.txnFirst >= 0 {
			open[id] = st.txnFirst
		}
	}
	if at >= l.NextOffset() {
		return m, at, nil
	}
	var werr error
	err := l.Walk(at, func(batch []byte, h *record.Header) bool {
		if h.ProducerID < 0 || h.BaseOffset < at {
			return true
		}
		if !h.IsControl() {
			if _, started := recordBatch(m, h); started {
				open[h.ProducerID] = h.BaseOffset
			}
			return true
		}
		typ, err := record.ControlType(batch)
		if err != nil {
			werr = fmt.Errorf("partition: control batch at %d: %w", h.BaseOffset, err)
			return false
		}
		if typ != record.ControlAbort && typ != record.ControlCommit {
			return true // a control record of another kind: not a marker
		}
		coordEpoch, err := record.MarkerCoordinatorEpoch(batch)
		if err != nil {
			werr = fmt.Errorf("partition: marker at %d: %w", h.BaseOffset, err)
			return false
		}
		first := endTxn(m, h.ProducerID, h.ProducerEpoch, coordEpoch)
		delete(open, h.ProducerID)
		if typ == record.ControlAbort && first >= 0 && rebuildFrom >= 0 && h.BaseOffset >= rebuildFrom {
			werr = l.AppendAbortedTxn(log.AbortedTxn{
				ProducerID:       h.ProducerID,
				FirstOffset:      first,
				LastOffset:       h.BaseOffset,
				LastStableOffset: open.lastStable(h.BaseOffset + 1),
			})
		}
		return werr == nil
	})
	if err == nil {
		err = werr
	}
	return m, at, err
}

// ongoingTxns maps the producers with a transaction open in the partition
// to the transaction's first offset.
type ongoingTxns map[int64]int64

// lastStable is the last stable offset with these transactions open:
// the first offset of the oldest, or end when none is.
func (o ongoingTxns) lastStable(end int64) int64 {
	for _, first := range o {
		end = min(end, first)
	}
	return end
}

// errSnapshot marks a producer snapshot that does not decode; the next
// older one, or the log, is used instead.
var errSnapshot = errors.New("partition: bad producer snapshot")

// readProducerSnapshot reads the snapshot file of the state at offset at.
func readProducerSnapshot(path string, at int64) (map[int64]*producer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	got, m, err := decodeProducerSnapshot(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, path)
	}
	if got != at {
		return nil, fmt.Errorf("%w: %s holds the state at %d", errSnapshot, path, got)
	}
	return m, nil
}

// decodeProducerSnapshot decodes a snapshot of version 1, 2 or 3 (see the
// package comment): the offset it was taken at and the producers.
// Anything but a well-formed snapshot, whole, with a matching checksum,
// one entry per producer and nothing after the entries, is errSnapshot.
func decodeProducerSnapshot(b []byte) (int64, map[int64]*producer, error) {
	const (
		head = 1 + 8 + 4 // version, offset, count
		meta = 4 + 4 + 8 + 8
	)
	be := binary.BigEndian
	if len(b) < head+4 || (b[0] != snapshotVersion && b[0] != snapshotVersionV2 && b[0] != snapshotVersionV1) ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return 0, nil, fmt.Errorf("%w: bad version, length or checksum", errSnapshot)
	}
	// producer id, epoch, transaction's first offset, coordinator epoch, n
	entry := 8 + 2 + 8 + 4 + 1
	switch b[0] {
	case snapshotVersionV2:
		entry = 8 + 2 + 8 + 1
	case snapshotVersionV1:
		entry = 8 + 2 + 1
	}
	at := int64(be.Uint64(b[1:]))
	if at < 0 {
		return 0, nil, fmt.Errorf("%w: taken at offset %d", errSnapshot, at)
	}
	count := be.Uint32(b[9:])
	rest := b[head : len(b)-4]
	if uint64(count) > uint64(len(rest)/entry) {
		return 0, nil, fmt.Errorf("%w: %d producers in %d bytes", errSnapshot, count, len(rest))
	}
	m := make(map[int64]*producer, count)
	for i := uint32(0); i < count; i++ {
		if len(rest) < entry {
			return 0, nil, fmt.Errorf("%w: truncated", errSnapshot)
		}
		id := int64(be.Uint64(rest))
		st := newProducer(int16(be.Uint16(rest[8:])))
		if b[0] != snapshotVersionV1 {
			st.txnFirst = int64(be.Uint64(rest[10:]))
			if st.txnFirst < -1 || st.txnFirst > at {
				return 0, nil, fmt.Errorf("%w: producer %d has a transaction open at %d", errSnapshot, id, st.txnFirst)
			}
		}
		if b[0] == snapshotVersion {
			st.coordEpoch = int32(be.Uint32(rest[18:]))
		}
		n := int(rest[entry-1])
		rest = rest[entry:]
		if n > producerBatches || len(rest) < n*meta {
			return 0, nil, fmt.Errorf("%w: truncated", errSnapshot)
		}
		if m[id] != nil {
			return 0, nil, fmt.Errorf("%w: producer %d twice", errSnapshot, id)
		}
		for j := 0; j < n; j++ {
			st.push(batchMeta{
				firstSeq: int32(be.Uint32(rest)),
				lastSeq:  int32(be.Uint32(rest[4:])),
				base:     int64(be.Uint64(rest[8:])),
				last:     int64(be.Uint64(rest[16:])),
			})
			rest = rest[meta:]
		}
		m[id] = st
	}
	if len(rest) != 0 {
		return 0, nil, fmt.Errorf("%w: %d bytes after the producers", errSnapshot, len(rest))
	}
	return at, m, nil
}

// encodeProducerSnapshot encodes the state m at offset at.
func encodeProducerSnapshot(at int64, m map[int64]*producer) []byte {
	be := binary.BigEndian
	b := []byte{snapshotVersion}
	b = be.AppendUint64(b, uint64(at))
	b = be.AppendUint32(b, uint32(len(m)))
	for id, st := range m {
		b = be.AppendUint64(b, uint64(id))
		b = be.AppendUint16(b, uint16(st.epoch))
		b = be.AppendUint64(b, uint64(st.txnFirst))
		b = be.AppendUint32(b, uint32(st.coordEpoch))
		b = append(b, byte(st.n))
		for j := 0; j < st.n; j++ {
			bm := &st.batches[j]
			b = be.AppendUint32(b, uint32(bm.firstSeq))
			b = be.AppendUint32(b, uint32(bm.lastSeq))
			b = be.AppendUint64(b, uint64(bm.base))
			b = be.AppendUint64(b, uint64(bm.last))
		}
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// writeProducerSnapshot writes the snapshot at offset at, durably at once
// or when b commits (b nil: at once), then removes the oldest beyond
// keptSnapshots.
func writeProducerSnapshot(b *durable.Batch, dir string, at int64, m map[int64]*producer) error {
	if err := b.WriteFile(snapshotPath(dir, at), encodeProducerSnapshot(at, m)); err != nil {
		return err
	}
	b.After(func() {
		for i, off := range snapshotOffsets(dir) {
			if i >= keptSnapshots {
				os.Remove(snapshotPath(dir, off))
			}
		}
	})
	return nil
}
