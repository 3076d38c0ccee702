package share

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// slowStore delays every write by a random few microseconds outside the
// inner store's lock, so concurrent appends reach the log in another order
// than they were built in.
type slowStore struct {
	*memStore
	mu  sync.Mutex
	rng *rand.Rand
}

func (s *slowStore) pause() {
	s.mu.Lock()
	d := time.Duration(s.rng.IntN(1000)) * time.Microsecond
	s.mu.Unlock()
	time.Sleep(d)
}

func (s *slowStore) Append(p int32, recs []Record) (int64, error) {
	s.pause()
	return s.memStore.Append(p, recs)
}

// TestConcurrentReplay has members acquire, acknowledge and release one
// partition concurrently, with appends reordered by the store, then
// restarts and checks the replayed state against what was answered: no
// accepted record comes back, none is lost.
func TestConcurrentReplay(t *testing.T) {
	const records = 3000
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	store := &slowStore{memStore: newMemStore(), rng: rand.New(rand.NewPCG(seed, 2))}
	reader := newFakeReader()
	dlq := newFakeDLQ()
	tp := TopicPartition{topicID("t"), 0}
	for i := 0; i < records; i += 10 {
		reader.produce(tp, 10, time.Now().UnixMilli(), false, false, -1, nil)
	}
	cfg := Config{
		Store:              store,
		Reader:             reader,
		DLQ:                dlq,
		Topics:             func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions:    2,
		DeliveryCountLimit: 4,
		SnapshotSlack:      20000,
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupDLQTopic: "dlq.t", GroupAutoOffsetReset: "earliest"}
		},
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted := make(map[int64]bool)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			member := string(rune('a' + w))
			idle := 0
			for idle < 50 {
				got, e := c.Acquire(AcquireOptions{Group: "g", Member: member, Partition: tp, MaxRecords: 1 + rng.IntN(40)}, nil)
				if e != nil {
					t.Errorf("acquire: %v", e)
					return
				}
				if len(got) == 0 {
					idle++
					time.Sleep(time.Millisecond)
					continue
				}
				idle = 0
				if rng.IntN(4) == 0 {
					c.ReleaseSession("g", member, []TopicPartition{tp}) // written behind
					continue
				}
				var batches []AckBatch
				for _, r := range got {
					b := AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset}
					for range r.LastOffset - r.FirstOffset + 1 {
						b.Types = append(b.Types, []int8{ackAccept, ackAccept, ackAccept, ackRelease, ackReject}[rng.IntN(5)])
					}
					batches = append(batches, b)
				}
				mu.Lock()
				for _, r := range got {
					for off := r.FirstOffset; off <= r.LastOffset; off++ {
						if accepted[off] {
							t.Errorf("record %d delivered again after it was accepted", off)
						}
					}
				}
				mu.Unlock()
				if e := c.Acknowledge("g", member, tp, batches, false); e != nil {
					t.Errorf("acknowledge: %v", e)
					return
				}
				mu.Lock()
				for _, b := range batches {
					for i, ty := range b.Types {
						if ty == ackAccept {
							accepted[b.FirstOffset+int64(i)] = true
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Let the dead letters finish, then restart.
	deadline := time.Now().Add(10 * time.Second)
	for c.pendingDeadLetters() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c.Close()

	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for {
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: "z", Partition: tp, MaxRecords: 1000}, nil)
		if e != nil {
			t.Fatal(e)
		}
		if len(got) == 0 {
			break
		}
		var batches []AckBatch
		for _, r := range got {
			for off := r.FirstOffset; off <= r.LastOffset; off++ {
				if accepted[off] {
					t.Fatalf("record %d delivered again after a restart though it was accepted", off)
				}
				accepted[off] = true
			}
			batches = append(batches, AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: []int8{ackAccept}})
		}
		if e := c.Acknowledge("g", "z", tp, batches, false); e != nil {
			t.Fatal(e)
		}
	}
	for c.pendingDeadLetters() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for off := int64(0); off < records; off++ {
		dead := dlq.has("g", tp, off)
		switch {
		case accepted[off] && dead:
			t.Fatalf("record %d accepted and dead-lettered", off)
		case !accepted[off] && !dead:
			t.Fatalf("record %d lost", off)
		}
	}
}

// gateStore holds the next Append until released, so a test can make a
// record reach the log after records built later.
type gateStore struct {
	*memStore
	mu   sync.Mutex
	hold chan struct{} // non-nil: the next Append waits for it to close
	held chan struct{} // closed when an Append is waiting
}

func (s *gateStore) Append(p int32, recs []Record) (int64, error) {
	s.mu.Lock()
	hold, held := s.hold, s.held
	s.hold, s.held = nil, nil
	s.mu.Unlock()
	if hold != nil {
		close(held)
		<-hold
	}
	return s.memStore.Append(p, recs)
}

// TestReplayOutOfOrder makes records of one partition reach the log out
// of the order they were built in: a release written behind lands after
// the acceptance of the records it released, and a delivery count carried
// by an acknowledgement of other records lands after the acceptance of
// the records it counts. The replayed state must keep the acceptances.
func TestReplayOutOfOrder(t *testing.T) {
	store := &gateStore{memStore: newMemStore()}
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	reader.produce(tp, 1, 0, false, false, -1, nil)
	reader.produce(tp, 9, 0, false, false, -1, nil)
	reader.produce(tp, 10, 0, false, false, -1, nil)
	cfg := Config{
		Store:           store,
		Reader:          reader,
		Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions: 1,
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupAutoOffsetReset: "earliest"}
		},
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	acquire := func(m string, max int, want string) {
		t.Helper()
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: m, Partition: tp, MaxRecords: max}, nil)
		if e != nil || formatRanges(got) != want {
			t.Fatalf("%s acquired %s (%v), want %s", m, formatRanges(got), e, want)
		}
	}
	accept := func(m string, first, last int64) {
		t.Helper()
		if e := c.Acknowledge("g", m, tp, []AckBatch{{FirstOffset: first, LastOffset: last, Types: []int8{ackAccept}}}, false); e != nil {
			t.Fatalf("%s accepting %d-%d: %v", m, first, last, e)
		}
	}
	// gate holds the next Append; wait returns once it is held.
	gate := func() (wait, release func()) {
		hold, held := make(chan struct{}), make(chan struct{})
		store.mu.Lock()
		store.hold, store.held = hold, held
		store.mu.Unlock()
		return func() { <-held }, func() { close(hold) }
	}

	acquire("x", 1, "0-0x1") // offset 0 stays in flight: nothing below moves the start
	acquire("a", 9, "1-9x1")

	// a's records are released; the record saying so is held back while b
	// takes and accepts them.
	held, open := gate()
	done := make(chan struct{})
	go func() {
		c.ReleaseSession("g", "a", []TopicPartition{tp})
		close(done)
	}()
	held()
	acquire("b", 9, "1-9x2")
	accept("b", 1, 9)
	open()
	<-done

	// c acquires 10-19 (its delivery count is carried by the next record
	// written, d's), and accepts them before d's record lands.
	acquire("c", 10, "10-19x1")
	acquire("d", 10, "none")
	held, open = gate()
	done = make(chan struct{})
	go func() {
		// A release by a member that holds nothing still writes the
		// delivery counts of acquired records.
		if e := c.Acknowledge("g", "x", tp, []AckBatch{{FirstOffset: 0, LastOffset: 0, Types: []int8{ackRelease}}}, false); e != nil {
			t.Errorf("x releasing 0: %v", e)
		}
		close(done)
	}()
	held()
	accept("c", 10, 19)
	open()
	<-done
	c.Close()

	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acquire("z", 100, "0-0x2")
}

// TestSessionEndRedeliversBeforeWriting checks that the records of a
// member whose session ended can be acquired again before the store has
// written their release: redelivery waits for no fsync.
func TestSessionEndRedeliversBeforeWriting(t *testing.T) {
	store := &gateStore{memStore: newMemStore()}
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	reader.produce(tp, 1000, 0, false, false, -1, nil)
	available := make(chan struct{}, 16)
	c, err := New(Config{
		Store:                store,
		Reader:               reader,
		Topics:               func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions:      1,
		SessionTimeout:       200 * time.Millisecond,
		HeartbeatInterval:    50 * time.Millisecond,
		MinHeartbeatInterval: 50 * time.Millisecond,
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupAutoOffsetReset: "earliest"}
		},
		Available: func(string, TopicPartition) { available <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.SubscribedTopicNames = "g", "a", []string{"t"}
	if resp := c.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != 0 {
		t.Fatalf("join: %d", resp.ErrorCode)
	}
	got, e := c.Acquire(AcquireOptions{Group: "g", Member: "a", Partition: tp, MaxRecords: 1000}, nil)
	if e != nil || formatRanges(got) != "0-999x1" {
		t.Fatalf("a acquired %s (%v)", formatRanges(got), e)
	}
	// Every write from now on waits until the end of the test.
	hold, held := make(chan struct{}), make(chan struct{})
	store.mu.Lock()
	store.hold, store.held = hold, held
	store.mu.Unlock()
	defer close(hold)
	select {
	case <-available:
	case <-time.After(10 * time.Second):
		t.Fatal("a's records were not made available")
	}
	got, e = c.Acquire(AcquireOptions{Group: "g", Member: "b", Partition: tp, MaxRecords: 1000}, nil)
	if e != nil || formatRanges(got) != "0-999x2" {
		t.Fatalf("b acquired %s (%v)", formatRanges(got), e)
	}
}

// TestExpiryDuringAcknowledgement lets a lock expire while the
// acknowledgement of its records is being written: the timer must wait
// for the acknowledgement to settle them instead of visiting again and
// again.
func TestExpiryDuringAcknowledgement(t *testing.T) {
	store := &gateStore{memStore: newMemStore()}
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	reader.produce(tp, 10, 0, false, false, -1, nil)
	c, err := New(Config{
		Store:                 store,
		Reader:                reader,
		Topics:                func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions:       1,
		RecordLockDuration:    50 * time.Millisecond,
		MinRecordLockDuration: 50 * time.Millisecond,
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupAutoOffsetReset: "earliest"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, e := c.Acquire(AcquireOptions{Group: "g", Member: "a", Partition: tp, MaxRecords: 10}, nil); e != nil || len(got) == 0 {
		t.Fatalf("acquired %s (%v)", formatRanges(got), e)
	}
	hold, held := make(chan struct{}), make(chan struct{})
	store.mu.Lock()
	store.hold, store.held = hold, held
	store.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if e := c.Acknowledge("g", "a", tp, []AckBatch{{FirstOffset: 0, LastOffset: 9, Types: []int8{ackAccept}}}, false); e != nil {
			t.Errorf("accept: %v", e)
		}
	}()
	<-held
	before := c.timers.visits.Load()
	time.Sleep(300 * time.Millisecond) // the lock expires meanwhile
	visits := c.timers.visits.Load() - before
	close(hold)
	<-done
	if visits > 5 {
		t.Errorf("the timer visited the partition %d times while its acknowledgement was written", visits)
	}
	if got, _ := c.Acquire(AcquireOptions{Group: "g", Member: "b", Partition: tp, MaxRecords: 10}, nil); len(got) != 0 {
		t.Errorf("accepted records acquired again: %s", formatRanges(got))
	}
}

// TestAcknowledgeAll acknowledges several partitions in one call: one
// append per state partition, outcomes per partition, and a failed
// partition does not hold back the others.
func TestAcknowledgeAll(t *testing.T) {
	store := newMemStore()
	reader := newFakeReader()
	var tps []TopicPartition
	for p := range int32(6) {
		tp := TopicPartition{topicID("t"), p}
		tps = append(tps, tp)
		reader.produce(tp, 5, 0, false, false, -1, nil)
	}
	c, err := New(Config{
		Store:           store,
		Reader:          reader,
		Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: 6}} },
		StatePartitions: 2,
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupAutoOffsetReset: "earliest"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var acks []PartitionAcks
	for _, tp := range tps {
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: "a", Partition: tp, MaxRecords: 5}, nil)
		if e != nil || formatRanges(got) != "0-4x1" {
			t.Fatalf("acquired %s (%v)", formatRanges(got), e)
		}
		acks = append(acks, PartitionAcks{Partition: tp, Batches: []AckBatch{{FirstOffset: 0, LastOffset: 4, Types: []int8{ackAccept}}}})
	}
	acks[2].Batches[0].LastOffset = 9 // past what was acquired
	store.mu.Lock()
	before := store.appends
	store.mu.Unlock()
	c.AcknowledgeAll("g", "a", acks, false)
	store.mu.Lock()
	appends := store.appends - before
	store.mu.Unlock()
	if appends != 2 {
		t.Errorf("%d appends for 6 partitions in 2 state partitions", appends)
	}
	for i, a := range acks {
		want := "ok"
		if i == 2 {
			want = "INVALID_REQUEST"
		}
		if got := kerrName(a.Err); got != want {
			t.Errorf("partition %d: %s, want %s", i, got, want)
		}
		got, _ := c.Acquire(AcquireOptions{Group: "g", Member: "b", Partition: a.Partition, MaxRecords: 5}, nil)
		if len(got) != 0 {
			t.Errorf("partition %d: accepted records acquired again: %s", i, formatRanges(got))
		}
	}
}
