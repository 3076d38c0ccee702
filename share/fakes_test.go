package share

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
)

var errInjected = errors.New("injected failure")

// memStore is an in-memory Store for tests. Appends and snapshots can be
// made to fail, and the store can be "cut": after a given number of
// further appends every write fails, as if the machine lost power then.
type memStore struct {
	mu           sync.Mutex
	parts        map[int32]*memPart
	failAppend   error
	failSnapshot error
	cutAfter     int // appends left before the cut; -1: no cut
	appends      int // successful appends
	snapshots    int
}

type memPart struct {
	start int64 // log start offset
	next  int64 // next offset
	recs  []memRec
}

type memRec struct {
	off int64
	r   Record
}

func newMemStore() *memStore { return &memStore{parts: make(map[int32]*memPart), cutAfter: -1} }

func (s *memStore) part(p int32) *memPart {
	mp := s.parts[p]
	if mp == nil {
		mp = &memPart{}
		s.parts[p] = mp
	}
	return mp
}

func (s *memStore) appendLocked(p int32, recs []Record) int64 {
	mp := s.part(p)
	first := mp.next
	for _, r := range recs {
		c := Record{Key: bytes.Clone(r.Key)}
		if r.Value != nil {
			c.Value = bytes.Clone(r.Value)
		}
		mp.recs = append(mp.recs, memRec{mp.next, c})
		mp.next++
	}
	return first
}

func (s *memStore) writable() error {
	if s.failAppend != nil {
		return s.failAppend
	}
	if s.cutAfter == 0 {
		return errInjected
	}
	if s.cutAfter > 0 {
		s.cutAfter--
	}
	return nil
}

func (s *memStore) Append(p int32, recs []Record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	s.appends++
	return s.appendLocked(p, recs), nil
}

func (s *memStore) Replay(p int32, fn func(int64, Record) error) error {
	s.mu.Lock()
	recs := slices.Clone(s.part(p).recs)
	s.mu.Unlock()
	for _, r := range recs {
		if err := fn(r.off, r.r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Snapshot(p int32, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSnapshot != nil {
		return s.failSnapshot
	}
	if err := s.writable(); err != nil {
		return err
	}
	mp := s.part(p)
	first := s.appendLocked(p, recs)
	i := 0
	for i < len(mp.recs) && mp.recs[i].off < first {
		i++
	}
	mp.recs = slices.Clone(mp.recs[i:])
	mp.start = first
	s.snapshots++
	return nil
}

// heal lifts every injected failure.
func (s *memStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAppend, s.failSnapshot, s.cutAfter = nil, nil, -1
}

// summary describes every non-empty partition.
func (s *memStore) summary() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s.parts)) {
		mp := s.parts[p]
		out = append(out, fmt.Sprintf("partition %d: start=%d end=%d records=%d", p, mp.start, mp.next, len(mp.recs)))
	}
	return out
}

// fakeLog is one partition log of the fake reader: batch headers only.
type fakeLog struct {
	batches  []Batch
	logStart int64
	next     int64           // log end offset (= high watermark)
	lso      int64           // last stable offset; -1: the high watermark
	times    map[int64]int64 // offset → HeaderDeliverAt
	aborted  []AbortedRange
	stamps   map[int64]int64 // batch base offset → max timestamp, for OffsetForTime
}

// fakeReader is an in-memory Reader.
type fakeReader struct {
	mu       sync.Mutex
	logs     map[TopicPartition]*fakeLog
	fail     error // every call fails with it
	failTime error // DeliveryTimes fails with it
	decodes  int   // DeliveryTimes calls
}

func newFakeReader() *fakeReader { return &fakeReader{logs: make(map[TopicPartition]*fakeLog)} }

func (r *fakeReader) log(tp TopicPartition) *fakeLog {
	l := r.logs[tp]
	if l == nil {
		l = &fakeLog{lso: -1, times: make(map[int64]int64), stamps: make(map[int64]int64)}
		r.logs[tp] = l
	}
	return l
}

// produce appends a batch of n records to tp and returns its base offset.
func (r *fakeReader) produce(tp TopicPartition, n int, ts int64, control, txn bool, pid int64, deliverAt map[int]int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log(tp)
	b := Batch{BaseOffset: l.next, LastOffset: l.next + int64(n) - 1, MaxTimestamp: ts, ProducerID: pid, Control: control, Transactional: txn}
	for i, at := range deliverAt {
		l.times[b.BaseOffset+int64(i)] = at
		b.MayDelay = true
	}
	l.batches = append(l.batches, b)
	l.stamps[b.BaseOffset] = ts
	l.next += int64(n)
	return b.BaseOffset
}

func (r *fakeReader) Offsets(tp TopicPartition) (PartitionOffsets, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return PartitionOffsets{}, r.fail
	}
	l := r.logs[tp]
	if l == nil {
		return PartitionOffsets{}, fmt.Errorf("%w: %x/%d", ErrUnknownPartition, tp.TopicID[:2], tp.Partition)
	}
	lso := l.lso
	if lso < 0 {
		lso = l.next
	}
	return PartitionOffsets{LogStart: l.logStart, HighWatermark: l.next, LastStable: lso, LeaderEpoch: 0}, nil
}

func (r *fakeReader) OffsetForTime(tp TopicPartition, ms int64) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.logs[tp]
	if l == nil {
		return 0, ErrUnknownPartition
	}
	for _, b := range l.batches {
		if b.LastOffset >= l.logStart && b.MaxTimestamp >= ms {
			return max(b.BaseOffset, l.logStart), nil
		}
	}
	return l.next, nil
}

func (r *fakeReader) ReadBatches(dst []Batch, tp TopicPartition, from, limit int64, maxRecords int) ([]Batch, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return dst, r.fail
	}
	l := r.logs[tp]
	if l == nil {
		return dst, ErrUnknownPartition
	}
	from = max(from, l.logStart)
	i := sort.Search(len(l.batches), func(i int) bool { return l.batches[i].LastOffset >= from })
	covered := 0
	for ; i < len(l.batches) && l.batches[i].BaseOffset < limit && covered < maxRecords; i++ {
		b := l.batches[i]
		dst = append(dst, b)
		covered += int(b.LastOffset - max(b.BaseOffset, from) + 1)
	}
	return dst, nil
}

func (r *fakeReader) DeliveryTimes(dst []RecordTime, tp TopicPartition, b *Batch) ([]RecordTime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decodes++
	if r.failTime != nil {
		return dst, r.failTime
	}
	l := r.logs[tp]
	for off := b.BaseOffset; off <= b.LastOffset; off++ {
		if at, ok := l.times[off]; ok {
			dst = append(dst, RecordTime{Offset: off, DeliverAt: at})
		}
	}
	return dst, nil
}

func (r *fakeReader) AbortedTransactions(dst []AbortedRange, tp TopicPartition, from, to int64) ([]AbortedRange, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.log(tp).aborted {
		if a.LastOffset >= from && a.FirstOffset < to {
			dst = append(dst, a)
		}
	}
	return dst, nil
}

// fakeDLQ is an in-memory DLQWriter: it records every dead letter.
type fakeDLQ struct {
	mu      sync.Mutex
	written map[dlqSource]DeadLetter // per source offset
	order   []dlqSource
	fail    error // WriteDeadLetters fails with it
	// failAfter writes only that many records of the next write before
	// failing, as a crash in the middle would.
	partial int
	writes  int
}

type dlqSource struct {
	group  string
	tp     TopicPartition
	offset int64
}

func newFakeDLQ() *fakeDLQ { return &fakeDLQ{written: make(map[dlqSource]DeadLetter), partial: -1} }

func (d *fakeDLQ) WriteDeadLetters(dl *DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes++
	if d.fail != nil && d.partial < 0 {
		return d.fail
	}
	for off := dl.FirstOffset; off <= dl.LastOffset; off++ {
		if d.partial == 0 {
			d.partial = -1
			return errInjected
		}
		if d.partial > 0 {
			d.partial--
		}
		src := dlqSource{dl.Group, dl.Source, off}
		if _, dup := d.written[src]; dup {
			panic(fmt.Sprintf("dead letter written twice: %+v", src))
		}
		one := *dl
		one.FirstOffset, one.LastOffset = off, off
		d.written[src] = one
		d.order = append(d.order, src)
	}
	return nil
}

func (d *fakeDLQ) DeadLettersWritten(dl *DeadLetter) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	off := dl.FirstOffset
	for off <= dl.LastOffset {
		if _, ok := d.written[dlqSource{dl.Group, dl.Source, off}]; !ok {
			break
		}
		off++
	}
	return off, nil
}

func (d *fakeDLQ) has(group string, tp TopicPartition, off int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.written[dlqSource{group, tp, off}]
	return ok
}
