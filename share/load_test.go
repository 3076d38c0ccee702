package share

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLoadOnLead moves a share group between two coordinators over one
// store, as leadership moves between brokers: a coordinator serves only
// the state partitions it loaded, the one that unloads writes nothing and
// answers NOT_COORDINATOR and NOT_LEADER_OR_FOLLOWER, and the one that
// loads serves the members and the share-partition state: accepted
// records never come back, acquired ones come back available.
func TestLoadOnLead(t *testing.T) {
	const parts = 4
	store := newMemStore()
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	reader.produce(tp, 10, 0, false, false, -1, nil)
	newCoord := func() *Coordinator {
		c, err := New(Config{
			Store:           store,
			Reader:          reader,
			Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
			StatePartitions: parts,
			LoadOnLead:      true,
			GroupConfigs: func(string) map[string]string {
				return map[string]string{GroupAutoOffsetReset: "earliest"}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := newCoord(), newCoord()
	groupPart := a.Partition("g")
	statePart := statePartitionFor(spKey{"g", tp}, parts)

	heartbeat := func(c *Coordinator, member string, epoch int32) *kmsg.ShareGroupHeartbeatResponse {
		t.Helper()
		req := kmsg.NewPtrShareGroupHeartbeatRequest()
		req.GroupID, req.MemberID, req.MemberEpoch = "g", member, epoch
		if epoch == 0 {
			req.SubscribedTopicNames = []string{"t"}
		}
		return c.ShareGroupHeartbeat(context.Background(), req)
	}
	acquire := func(c *Coordinator, member string) (string, *kerr.Error) {
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: member, Partition: tp, MaxRecords: 100}, nil)
		return formatRanges(got), e
	}

	// Nothing is loaded: nothing is served, and nothing is written.
	if resp := heartbeat(a, "m1", 0); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("join before load: error %d, want NOT_COORDINATOR", resp.ErrorCode)
	}
	if _, e := acquire(a, "m1"); e != kerr.NotLeaderForPartition {
		t.Fatalf("acquire before load: %v, want NOT_LEADER_OR_FOLLOWER", e)
	}
	if n := writes(store); n != 0 {
		t.Fatalf("%d writes before any load", n)
	}

	// a leads everything: join, acquire all ten, accept 0-4.
	for p := range int32(parts) {
		if err := a.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	resp := heartbeat(a, "m1", 0)
	if resp.ErrorCode != 0 {
		t.Fatalf("join: %d", resp.ErrorCode)
	}
	if got, e := acquire(a, "m1"); e != nil || got != "0-9x1" {
		t.Fatalf("m1 acquired %s (%v)", got, e)
	}
	if e := a.Acknowledge("g", "m1", tp, []AckBatch{{FirstOffset: 0, LastOffset: 4, Types: []int8{1}}}, false); e != nil {
		t.Fatalf("accept: %v", e)
	}

	// b has loaded nothing yet.
	if resp := heartbeat(b, "m1", resp.MemberEpoch); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("heartbeat to b: error %d, want NOT_COORDINATOR", resp.ErrorCode)
	}

	// Leadership moves to b. a serves nothing and writes nothing.
	before := writes(store)
	for p := range int32(parts) {
		a.Unload(p)
	}
	if resp := heartbeat(a, "m1", resp.MemberEpoch); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("heartbeat after unload: error %d, want NOT_COORDINATOR", resp.ErrorCode)
	}
	if _, e := acquire(a, "m1"); e != kerr.NotLeaderForPartition {
		t.Fatalf("acquire after unload: %v, want NOT_LEADER_OR_FOLLOWER", e)
	}
	if e := a.Acknowledge("g", "m1", tp, []AckBatch{{FirstOffset: 5, LastOffset: 9, Types: []int8{1}}}, false); e != kerr.NotLeaderForPartition {
		t.Fatalf("acknowledge after unload: %v, want NOT_LEADER_OR_FOLLOWER", e)
	}
	if len(a.ListGroups(kmsg.NewPtrListGroupsRequest())) != 0 {
		t.Fatal("a lists a group it does not coordinate")
	}
	if after := writes(store); after != before {
		t.Fatalf("unloading made %d writes", after-before)
	}

	// b loads the group's partition first: the member is back, the
	// share-partition is not served until its own partition loads (when
	// the two differ).
	if err := b.Load(groupPart); err != nil {
		t.Fatal(err)
	}
	if resp := heartbeat(b, "m1", resp.MemberEpoch); resp.ErrorCode != 0 {
		t.Fatalf("heartbeat to b after load: error %d", resp.ErrorCode)
	}
	if statePart != groupPart {
		if _, e := acquire(b, "m2"); e != kerr.NotLeaderForPartition {
			t.Fatalf("acquire before its partition loads: %v, want NOT_LEADER_OR_FOLLOWER", e)
		}
	}
	if err := b.Load(statePart); err != nil {
		t.Fatal(err)
	}
	got, e := acquire(b, "m2")
	if e != nil || (got != "5-9x1" && got != "5-9x2") {
		t.Fatalf("m2 acquired %s (%v), want 5-9 again and never 0-4", got, e)
	}
	if e := b.Acknowledge("g", "m2", tp, []AckBatch{{FirstOffset: 5, LastOffset: 9, Types: []int8{1}}}, false); e != nil {
		t.Fatalf("accept on b: %v", e)
	}
	dresp := b.ShareGroupDescribe(context.Background(), &kmsg.ShareGroupDescribeRequest{GroupIDs: []string{"g"}})
	if g := dresp.Groups[0]; g.ErrorCode != 0 || len(g.Members) != 1 || g.Members[0].MemberID != "m1" {
		t.Fatalf("describe on b: %+v", g)
	}

	// And back to a, which loads what b wrote.
	for p := range int32(parts) {
		b.Unload(p)
	}
	for p := range int32(parts) {
		if err := a.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	reader.produce(tp, 2, 0, false, false, -1, nil)
	if got, e := acquire(a, "m1"); e != nil || got != "10-11x1" {
		t.Fatalf("m1 acquired %s (%v) after moving back, want only the new 10-11", got, e)
	}
}

// TestUnloadStopsSessions checks that an unloaded group's member sessions
// stop: its members are not timed out (and nothing written) by a broker
// that no longer coordinates it.
func TestUnloadStopsSessions(t *testing.T) {
	store := newMemStore()
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	c, err := New(Config{
		Store:                store,
		Reader:               reader,
		Topics:               func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions:      1,
		LoadOnLead:           true,
		SessionTimeout:       100 * time.Millisecond,
		HeartbeatInterval:    50 * time.Millisecond,
		MinHeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Load(0); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.SubscribedTopicNames = "g", "m", []string{"t"}
	if resp := c.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != 0 {
		t.Fatalf("join: %d", resp.ErrorCode)
	}
	c.Unload(0)
	before := writes(store)
	time.Sleep(300 * time.Millisecond)
	if after := writes(store); after != before {
		t.Fatalf("an unloaded group's session ended and made %d writes", after-before)
	}
	if c.Exists("g") {
		t.Fatal("an unloaded group still exists")
	}
}

// writes counts the appends and snapshots store has taken.
func writes(s *memStore) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appends + s.snapshots
}

// ledStore is a store that only its current leader may write, as a
// __share_group_state partition of a cluster: an append succeeds only if
// its coordinator leads when it lands, and a leadership move waits for
// the appends in flight (they are in the new leader's log, or failed).
type ledStore struct {
	*memStore
	mu     sync.RWMutex
	leader *Coordinator
	self   *Coordinator
}

var errNotLeader = errors.New("not the leader")

func (s *ledStore) Append(p int32, recs []Record) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.leader != s.self {
		return 0, errNotLeader
	}
	return s.memStore.Append(p, recs)
}

func (s *ledStore) Snapshot(p int32, recs []Record) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.leader != s.self {
		return errNotLeader
	}
	return s.memStore.Snapshot(p, recs)
}

// TestFailoverStress moves the leadership of every state partition back
// and forth between two coordinators while members acquire and accept
// records on whichever leads: an accepted record is never acquired again,
// and in the end every record is accepted.
func TestFailoverStress(t *testing.T) {
	const (
		parts   = 3
		records = 3000
	)
	mem := newMemStore()
	reader := newFakeReader()
	tps := []TopicPartition{{topicID("t"), 0}, {topicID("t"), 1}}
	for _, tp := range tps {
		reader.produce(tp, records, 0, false, false, -1, nil)
	}
	var owner struct {
		sync.RWMutex
		leader *Coordinator
	}
	stores := make([]*ledStore, 2)
	coords := make([]*Coordinator, 2)
	for i := range coords {
		stores[i] = &ledStore{memStore: mem}
		c, err := New(Config{
			Store:           stores[i],
			Reader:          reader,
			Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tps[0].TopicID, Partitions: 2}} },
			StatePartitions: parts,
			LoadOnLead:      true,
			SnapshotSlack:   4 << 10,
			GroupConfigs: func(string) map[string]string {
				return map[string]string{GroupAutoOffsetReset: "earliest"}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		coords[i] = c
		stores[i].self = c
	}
	setLeader := func(c *Coordinator) {
		for _, s := range stores {
			s.mu.Lock()
		}
		for _, s := range stores {
			s.leader = c
		}
		for _, s := range stores {
			s.mu.Unlock()
		}
	}
	move := func(from, to *Coordinator) {
		setLeader(to)
		if from != nil {
			for p := range int32(parts) {
				from.Unload(p)
			}
		}
		for p := range int32(parts) {
			if err := to.Load(p); err != nil {
				t.Error(err)
			}
		}
		owner.Lock()
		owner.leader = to
		owner.Unlock()
	}
	move(nil, coords[0])

	type key struct {
		tp  TopicPartition
		off int64
	}
	var mu sync.Mutex
	accepted := make(map[key]bool)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			member := fmt.Sprintf("m%d", w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				owner.RLock()
				c := owner.leader
				owner.RUnlock()
				tp := tps[(w+i)%len(tps)]
				got, e := c.Acquire(AcquireOptions{Group: "g", Member: member, Partition: tp, MaxRecords: 50}, nil)
				if e != nil {
					continue
				}
				mu.Lock()
				for _, r := range got {
					for o := r.FirstOffset; o <= r.LastOffset; o++ {
						if accepted[key{tp, o}] {
							mu.Unlock()
							t.Errorf("%v offset %d acquired again after its accept was answered", tp, o)
							return
						}
					}
				}
				mu.Unlock()
				var batches []AckBatch
				for _, r := range got {
					batches = append(batches, AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: []int8{1}})
				}
				if len(batches) == 0 {
					continue
				}
				if e := c.Acknowledge("g", member, tp, batches, false); e == nil {
					mu.Lock()
					for _, b := range batches {
						for o := b.FirstOffset; o <= b.LastOffset; o++ {
							accepted[key{tp, o}] = true
						}
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range 20 {
		time.Sleep(20 * time.Millisecond)
		move(coords[i%2], coords[(i+1)%2])
	}
	// Let the members finish on the last leader.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		if n == records*len(tps) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := len(accepted); n != records*len(tps) {
		t.Fatalf("%d of %d records accepted", n, records*len(tps))
	}
}

// BenchmarkLoad measures what a new leader spends loading one state
// partition: the state of 100 share-partitions of 10 groups, written as
// 10,000 acknowledgements of 10 records each plus 20 members. One op is
// one Load and one Unload.
func BenchmarkLoad(b *testing.B) {
	const groups, partitions, acks = 10, 10, 100
	store := newMemStore()
	tp := func(p int) TopicPartition { return TopicPartition{topicID("t"), int32(p)} }
	topics := map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: partitions}}
	cfg := Config{
		Store:           store,
		Reader:          endlessReader{batchLen: 10},
		Topics:          func() map[string]TopicInfo { return topics },
		StatePartitions: 1,
		LoadOnLead:      true,
		SnapshotSlack:   1 << 40,
		GroupConfigs:    earliest,
	}
	w, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Load(0); err != nil {
		b.Fatal(err)
	}
	for g := range groups {
		group := fmt.Sprintf("g%d", g)
		for m := range 2 {
			req := kmsg.NewPtrShareGroupHeartbeatRequest()
			req.GroupID, req.MemberID, req.SubscribedTopicNames = group, fmt.Sprintf("m%d", m), []string{"t"}
			if resp := w.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != 0 {
				b.Fatalf("join: %d", resp.ErrorCode)
			}
		}
		for p := range partitions {
			for range acks {
				got, e := w.Acquire(AcquireOptions{Group: group, Member: "m0", Partition: tp(p), MaxRecords: 10, Strict: true}, nil)
				if e != nil || len(got) != 1 {
					b.Fatalf("acquire: %v %v", got, e)
				}
				if e := w.Acknowledge(group, "m0", tp(p), []AckBatch{{FirstOffset: got[0].FirstOffset, LastOffset: got[0].LastOffset, Types: []int8{1}}}, false); e != nil {
					b.Fatal(e)
				}
			}
		}
	}
	w.Close()
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Load(0); err != nil {
			b.Fatal(err)
		}
		c.Unload(0)
	}
}

// TestDeliveryCountKeptAcrossLeaders checks that records acquired on a
// leader that is then lost come back on the next one with their delivery
// count: the acquisitions are written behind.
func TestDeliveryCountKeptAcrossLeaders(t *testing.T) {
	store := newMemStore()
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	reader.produce(tp, 10, 0, false, false, -1, nil)
	newCoord := func() *Coordinator {
		c, err := New(Config{
			Store:           store,
			Reader:          reader,
			Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
			StatePartitions: 1,
			LoadOnLead:      true,
			GroupConfigs:    earliest,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Load(0); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newCoord()
	for round := 1; round <= 3; round++ {
		want := writes(store) + 1 // the acquisition, written behind
		if round == 1 {
			want++ // and the share-partition's initialization before it
		}
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 100}, nil)
		if want := fmt.Sprintf("0-9x%d", round); e != nil || formatRanges(got) != want {
			t.Fatalf("round %d: acquired %s (%v), want %s", round, formatRanges(got), e, want)
		}
		deadline := time.Now().Add(10 * time.Second)
		for writes(store) < want {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the acquisition was not written behind", round)
			}
			time.Sleep(time.Millisecond)
		}
		// The leader is lost; the next one loads the partition.
		c.Unload(0)
		c = newCoord()
	}
}
