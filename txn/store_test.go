package txn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// memStore is an in-memory Store for unit tests. Append and Snapshot can be
// made to fail.
type memStore struct {
	mu           sync.Mutex
	parts        map[int32]*memPart
	failAppend   error
	failSnapshot error
	snapshots    int
	appends      []memAppend // every Append, in order, for crash tests
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

// memAppend is one record appended to one partition.
type memAppend struct {
	p int32
	r Record
}

var errInjected = errors.New("injected store failure")

func newMemStore() *memStore { return &memStore{parts: make(map[int32]*memPart)} }

func (s *memStore) part(p int32) *memPart {
	mp := s.parts[p]
	if mp == nil {
		mp = &memPart{}
		s.parts[p] = mp
	}
	return mp
}

func cloneRecord(r Record) Record {
	c := Record{Key: bytes.Clone(r.Key)}
	if r.Value != nil {
		c.Value = bytes.Clone(r.Value)
	}
	return c
}

func (s *memStore) appendLocked(p int32, recs []Record) int64 {
	mp := s.part(p)
	first := mp.next
	for _, r := range recs {
		mp.recs = append(mp.recs, memRec{mp.next, cloneRecord(r)})
		mp.next++
	}
	return first
}

func (s *memStore) Append(p int32, recs []Record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAppend != nil {
		return 0, s.failAppend
	}
	for _, r := range recs {
		s.appends = append(s.appends, memAppend{p, cloneRecord(r)})
	}
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

// prefix returns a store holding the first n records appended to s, as if
// the broker had stopped right after the n-th Append returned.
func (s *memStore) prefix(n int) *memStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := newMemStore()
	for _, a := range s.appends[:n] {
		out.appendLocked(a.p, []Record{a.r})
		out.appends = append(out.appends, a)
	}
	return out
}

// summary describes every non-empty partition: log start, end and record
// count.
func (s *memStore) summary() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s.parts)) {
		mp := s.parts[p]
		if mp.next == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("partition %d: start=%d end=%d records=%d", p, mp.start, mp.next, len(mp.recs)))
	}
	return out
}

// fakeMarkers records the markers written and can fail, refuse (unknown
// partition) or hold them per partition.
type fakeMarkers struct {
	mu      sync.Mutex
	written []writtenMarker
	fail    map[TopicPartition]int // failures left; -1 fails forever
	gone    map[TopicPartition]bool
	fenced  map[TopicPartition]bool          // refused as from a replaced coordinator
	gates   map[TopicPartition]chan struct{} // a marker waits until its gate closes
	calls   int
}

type writtenMarker struct {
	tp TopicPartition
	m  Marker
}

func newFakeMarkers() *fakeMarkers {
	return &fakeMarkers{
		fail:   make(map[TopicPartition]int),
		gone:   make(map[TopicPartition]bool),
		fenced: make(map[TopicPartition]bool),
		gates:  make(map[TopicPartition]chan struct{}),
	}
}

var errMarkerInjected = errors.New("injected marker failure")

func (f *fakeMarkers) WriteMarker(ctx context.Context, tp TopicPartition, m Marker) error {
	f.mu.Lock()
	f.calls++
	gate := f.gates[tp]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[tp] {
		return fmt.Errorf("%w: %s", ErrUnknownPartition, tp)
	}
	if f.fenced[tp] {
		return fmt.Errorf("%w: %s", ErrCoordinatorFenced, tp)
	}
	switch n := f.fail[tp]; {
	case n < 0:
		return errMarkerInjected
	case n > 0:
		f.fail[tp] = n - 1
		return errMarkerInjected
	}
	f.written = append(f.written, writtenMarker{tp, m})
	return nil
}

// take returns the markers written since the last take, sorted.
func (f *fakeMarkers) take() []writtenMarker {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.written
	f.written = nil
	slices.SortFunc(w, func(a, b writtenMarker) int {
		if c := compareTP(a.tp, b.tp); c != 0 {
			return c
		}
		return int(a.m.ProducerID - b.m.ProducerID)
	})
	return w
}

func (w writtenMarker) String() string {
	kind := "abort"
	if w.m.Commit {
		kind = "commit"
	}
	return fmt.Sprintf("marker %s/%d %s pid=%d epoch=%d", w.tp.Topic, w.tp.Partition, kind, w.m.ProducerID, w.m.ProducerEpoch)
}

// bounded reports, for every non-empty partition, whether it holds at most
// max records, and whether a snapshot was taken.
func (s *memStore) bounded(max int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s.parts)) {
		mp := s.parts[p]
		switch {
		case mp.next == 0:
		case len(mp.recs) <= max:
			out = append(out, fmt.Sprintf("partition %d: at most %d records", p, max))
		default:
			out = append(out, fmt.Sprintf("partition %d: more than %d records", p, max))
		}
	}
	return append(out, fmt.Sprintf("snapshotted=%v", s.snapshots > 0))
}

// lazyStore is a memStore that appends the records it may without
// waiting for durability through AppendNoSync, and counts them.
type lazyStore struct {
	*memStore
	lazy []Record
}

func (s *lazyStore) AppendNoSync(p int32, recs []Record) (int64, error) {
	s.lazy = append(s.lazy, recs...)
	return s.Append(p, recs)
}

// TestCompleteRecordNotSynced checks that only the Complete record of a
// transaction skips waiting for durability, and that a crash losing it
// leaves a transaction the next coordinator completes.
func TestCompleteRecordNotSynced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &lazyStore{memStore: newMemStore()}
		markers := newFakeMarkers()
		c, err := New(testConfig(store, markers))
		if err != nil {
			t.Fatal(err)
		}
		tc := &testClient{t: t, c: c, id: "lazy"}
		tc.init()
		tc.add(TopicPartition{"t", 0})
		tc.end(true)
		c.Close()
		if len(store.lazy) != 1 {
			t.Fatalf("%d records appended without sync, want the Complete record alone", len(store.lazy))
		}
		v, err := decodeValue(store.lazy[0].Value)
		if err != nil || v.state != stateCompleteCommit {
			t.Fatalf("the record appended without sync: %+v %v", v, err)
		}
		// A power cut loses it: the log ends with the PrepareCommit.
		lost := store.prefix(len(store.appends) - 1)
		markers.take()
		c2, err := New(testConfig(lost, markers))
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		synctest.Wait()
		if got := markers.take(); len(got) != 1 {
			t.Fatalf("markers written again after the loss: %v", got)
		}
		d := c2.DescribeTransactions(context.Background(), &kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"lazy"}})
		if st := d.TransactionStates[0].State; st != "CompleteCommit" {
			t.Fatalf("state after the restart: %s", st)
		}
	})
}
