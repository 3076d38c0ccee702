package share

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ledReader is a Reader over a shared log as one broker sees it: it
// leads the partitions at the epoch set, or none.
type ledReader struct {
	*fakeReader
	leading atomic.Bool
	epoch   atomic.Int32
}

func (r *ledReader) Offsets(tp TopicPartition) (PartitionOffsets, error) {
	if !r.leading.Load() {
		return PartitionOffsets{}, ErrNotLeader
	}
	o, err := r.fakeReader.Offsets(tp)
	o.LeaderEpoch = r.epoch.Load()
	return o, err
}

// wireState is a StateClient that sends every request through its wire
// encoding to the coordinator currently set as the state leader, as the
// server's peer requests do.
type wireState struct {
	mu     sync.Mutex
	leader *Coordinator
	writes int
}

func (w *wireState) set(c *Coordinator) {
	w.mu.Lock()
	w.leader = c
	w.mu.Unlock()
}

func (w *wireState) target() *Coordinator {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leader
}

// roundTrip encodes m and decodes it into into, as the wire does.
func roundTrip[T interface {
	AppendTo([]byte) []byte
	ReadFrom([]byte) error
}](m T, into T) (T, error) {
	return into, into.ReadFrom(m.AppendTo(nil))
}

func (w *wireState) WriteShareGroupState(p int32, req *kmsg.WriteShareGroupStateRequest) (*kmsg.WriteShareGroupStateResponse, error) {
	in, err := roundTrip(req, kmsg.NewPtrWriteShareGroupStateRequest())
	if err != nil {
		return nil, err
	}
	if statePartitionFor(spKey{in.GroupID, TopicPartition{in.Topics[0].TopicID, in.Topics[0].Partitions[0].Partition}}, remoteParts) != p {
		return nil, errors.New("write sent to the wrong partition")
	}
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
	resp := w.target().WriteShareGroupState(in)
	return roundTrip(resp, kmsg.NewPtrWriteShareGroupStateResponse())
}

// ListOffset is not reached: every coordinator of these tests reads the
// same logs, as if it led every data partition.
func (w *wireState) ListOffset(TopicPartition, int64) (int64, error) {
	return 0, errors.New("wireState: ListOffset is not served")
}

func (w *wireState) ReadShareGroupState(p int32, req *kmsg.ReadShareGroupStateRequest) (*kmsg.ReadShareGroupStateResponse, error) {
	in, err := roundTrip(req, kmsg.NewPtrReadShareGroupStateRequest())
	if err != nil {
		return nil, err
	}
	resp := w.target().ReadShareGroupState(in)
	return roundTrip(resp, kmsg.NewPtrReadShareGroupStateResponse())
}

const remoteParts = 4

// TestRemoteState runs share-partitions served by the leader of their data
// partition and stored by another coordinator (Config.State): records
// acknowledged through one leader are never delivered again by the next,
// records it held come back, a leader that lost the partition without
// knowing it is fenced, the state survives a move of the state leader,
// and the state leader's snapshots keep share-partitions it never served.
func TestRemoteState(t *testing.T) {
	store := newMemStore()
	log := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	log.produce(tp, 10, 0, false, false, -1, nil)
	state := &wireState{}
	topics := func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} }
	newCoord := func(r Reader) *Coordinator {
		c, err := New(Config{
			Store:           store,
			Reader:          r,
			Topics:          topics,
			StatePartitions: remoteParts,
			LoadOnLead:      true,
			State:           state,
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
	// s stores (it leads every __share_group_state partition and
	// coordinates the group); a and b serve the data partition in turn.
	s := newCoord(&ledReader{fakeReader: log})
	ra, rb := &ledReader{fakeReader: log}, &ledReader{fakeReader: log}
	a, b := newCoord(ra), newCoord(rb)
	for p := range int32(remoteParts) {
		if err := s.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	state.set(s)
	acquire := func(c *Coordinator, member string) (string, *kerr.Error) {
		got, e := c.Acquire(AcquireOptions{Group: "g", Member: member, Partition: tp, MaxRecords: 100}, nil)
		return formatRanges(got), e
	}
	accept := func(c *Coordinator, member string, first, last int64) *kerr.Error {
		return c.Acknowledge("g", member, tp, []AckBatch{{FirstOffset: first, LastOffset: last, Types: []int8{1}}}, false)
	}

	// Membership is the state leader's; nobody else initializes anything.
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.SubscribedTopicNames = "g", "m1", []string{"t"}
	if resp := s.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != 0 {
		t.Fatalf("join: %d", resp.ErrorCode)
	}
	if resp := a.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("join at a data leader: %d, want NOT_COORDINATOR", resp.ErrorCode)
	}

	// A broker that does not lead the data partition serves nothing.
	if _, e := acquire(a, "m1"); e != kerr.NotLeaderForPartition {
		t.Fatalf("acquire without leading: %v", e)
	}

	// a leads at epoch 1: it initializes the state through s, acquires
	// everything and accepts 0-4.
	ra.epoch.Store(1)
	ra.leading.Store(true)
	if got, e := acquire(a, "m1"); e != nil || got != "0-9x1" {
		t.Fatalf("a acquired %s (%v)", got, e)
	}
	if e := accept(a, "m1", 0, 4); e != nil {
		t.Fatalf("accept through a: %v", e)
	}
	if _, sp := s.lookup(spKey{"g", tp}); sp != nil {
		t.Fatal("the state leader serves the share-partition it stores")
	}
	// The acquisitions' delivery counts reach the store behind.
	waitFor(t, func() bool {
		val, _, err := s.readState(spKey{"g", tp}, 1)
		if err != nil || val == nil {
			return false
		}
		v, err := decodeStateValue(val, true, nil)
		return err == nil && v.start == 5 && len(v.batches) > 0 && v.batches[0].count == 1
	})

	// The coordinator describes the start offset from the state, with no
	// lag (it does not lead the data partition), and fences nobody.
	dreq := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	dreq.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: "g"}}
	d := s.DescribeShareGroupOffsets(context.Background(), dreq)
	if len(d.Groups) != 1 || len(d.Groups[0].Topics) != 1 || len(d.Groups[0].Topics[0].Partitions) != 1 {
		t.Fatalf("described %+v", d)
	}
	if p := d.Groups[0].Topics[0].Partitions[0]; p.StartOffset != 5 || p.Lag != -1 {
		t.Fatalf("described start offset %d lag %d, want 5 and -1", p.StartOffset, p.Lag)
	}
	if e := a.Acknowledge("g", "m1", tp, []AckBatch{{FirstOffset: 5, LastOffset: 5, Types: []int8{2}}}, false); e != nil {
		t.Fatalf("a release after the description: %v", e)
	}

	// The state leader snapshots the share-partition it never served.
	sp := statePartitionFor(spKey{"g", tp}, remoteParts)
	if err := s.snapshotPartition(s.parts[sp], true); err != nil {
		t.Fatal(err)
	}
	if !hasSnapshot(store, sp, spKey{"g", tp}) {
		t.Fatal("the state leader's snapshot dropped the share-partition")
	}

	// The data partition moves to b at epoch 2 before a learns it. b
	// reads the state: 5-9 come back (a's member held them), 0-4 never.
	rb.epoch.Store(2)
	rb.leading.Store(true)
	if got, e := acquire(b, "m2"); e != nil || got != "5-9x2" {
		t.Fatalf("b acquired %s (%v), want 5-9x2", got, e)
	}
	// a still believes it leads: its acknowledgement is fenced, not
	// answered as done.
	if e := accept(a, "m1", 6, 9); e != kerr.NotLeaderForPartition {
		t.Fatalf("accept through the old leader: %v, want NOT_LEADER_OR_FOLLOWER", e)
	}
	if e := accept(b, "m2", 5, 9); e != nil {
		t.Fatalf("accept through b: %v", e)
	}
	ra.leading.Store(false)
	a.StopServing(tp)
	if _, sp := a.lookup(spKey{"g", tp}); sp != nil {
		t.Fatal("StopServing kept the share-partition")
	}

	// The state leader moves: s2 replays the partitions (s's snapshot
	// and what followed) and serves the state; b goes on writing.
	s2 := newCoord(&ledReader{fakeReader: log})
	for p := range int32(remoteParts) {
		s.Unload(p)
		if err := s2.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	state.set(s2)
	log.produce(tp, 5, 0, false, false, -1, nil)
	if got, e := acquire(b, "m2"); e != nil || got != "10-14x1" {
		t.Fatalf("b acquired %s (%v) after the state leader moved", got, e)
	}
	if e := accept(b, "m2", 10, 12); e != nil {
		t.Fatalf("accept after the state leader moved: %v", e)
	}

	// a leads again at epoch 3: it reads the state afresh from s2.
	rb.leading.Store(false)
	ra.epoch.Store(3)
	ra.leading.Store(true)
	if got, e := acquire(a, "m1"); e != nil || got != "13-14x2" {
		t.Fatalf("a acquired %s (%v) at epoch 3, want 13-14x2", got, e)
	}
	// b's late write is fenced too.
	if e := accept(b, "m2", 13, 14); e != kerr.NotLeaderForPartition {
		t.Fatalf("accept through b at epoch 2: %v, want NOT_LEADER_OR_FOLLOWER", e)
	}
}

// TestRemoteStaleLeaderRereads: a broker that lost a data partition and
// led it again without being told in between drops what it held and
// reads the state again, at its new epoch.
func TestRemoteStaleLeaderRereads(t *testing.T) {
	store := newMemStore()
	log := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	log.produce(tp, 4, 0, false, false, -1, nil)
	state := &wireState{}
	newCoord := func(r Reader) *Coordinator {
		c, err := New(Config{
			Store: store, Reader: r, StatePartitions: remoteParts, LoadOnLead: true, State: state,
			Topics:       func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
			GroupConfigs: func(string) map[string]string { return map[string]string{GroupAutoOffsetReset: "earliest"} },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	s := newCoord(&ledReader{fakeReader: log})
	for p := range int32(remoteParts) {
		if err := s.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	state.set(s)
	r := &ledReader{fakeReader: log}
	r.leading.Store(true)
	a := newCoord(r)
	got, e := a.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 100}, nil)
	if e != nil || formatRanges(got) != "0-3x1" {
		t.Fatalf("acquired %s (%v)", formatRanges(got), e)
	}
	r.epoch.Store(5)
	got, e = a.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 100}, nil)
	if e != nil || formatRanges(got) == "none" {
		t.Fatalf("after the epoch moved: acquired %s (%v), want the records again", formatRanges(got), e)
	}
	if _, sp := a.lookup(spKey{"g", tp}); sp == nil || sp.leaderEpoch != 5 {
		t.Fatal("the state was not read again at the new epoch")
	}
}

// TestStateRecordsWire: Ferry's state records cross WriteShareGroupState
// and ReadShareGroupState whole, delays and dead-letter reasons included.
func TestStateRecordsWire(t *testing.T) {
	tp := TopicPartition{topicID("t"), 3}
	v := stateValue{snapshotEpoch: 2, stateEpoch: 2, leaderEpoch: 7, start: 10, deliveryComplete: 1, batches: []stateBatch{
		{first: 10, last: 12, state: persistAvailable, count: 2, notBefore: 1767225600000},
		{first: 13, last: 13, state: persistArchiving, count: 1, reason: ReasonRejected},
		{first: 14, last: 20, state: persistAcked, count: 1},
	}}
	recs := []Record{
		{Key: appendShareKey(nil, keyShareSnapshot, "g", tp), Value: appendStateValue(nil, &v, true)},
		{Key: appendShareKey(nil, keyShareUpdate, "g", tp), Value: appendStateValue(nil, &v, false)},
		{Key: appendShareKey(nil, keyShareUpdate, "g", TopicPartition{topicID("u"), 0})},
	}
	req, err := writeStateRequest(recs)
	if err != nil {
		t.Fatal(err)
	}
	in, err := roundTrip(req, kmsg.NewPtrWriteShareGroupStateRequest())
	if err != nil {
		t.Fatal(err)
	}
	got, err := stateRecords(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records back, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i].Key, recs[i].Key) || !bytes.Equal(got[i].Value, recs[i].Value) || (got[i].Value == nil) != (recs[i].Value == nil) {
			t.Errorf("record %d changed on the wire", i)
		}
	}
	if p := in.Topics[0].Partitions[0]; p.LeaderEpoch != 7 || p.StartOffset != 10 || len(p.StateBatches) != 3 {
		t.Errorf("Kafka's fields: %+v", p)
	}
	// A request without Ferry's tags is refused, not guessed at.
	bare := kmsg.NewPtrWriteShareGroupStateRequest()
	bare.GroupID = "g"
	bt := kmsg.NewWriteShareGroupStateRequestTopic()
	bt.Partitions = append(bt.Partitions, kmsg.NewWriteShareGroupStateRequestTopicPartition())
	bare.Topics = append(bare.Topics, bt)
	if _, err := stateRecords(bare); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bare request: %v, want ErrCorrupt", err)
	}
	// Records of two groups never share a request.
	other := Record{Key: appendShareKey(nil, keyShareUpdate, "h", tp), Value: recs[1].Value}
	if _, err := writeStateRequest([]Record{recs[1], other}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("two groups: %v, want ErrCorrupt", err)
	}
}

// hasSnapshot reports whether partition p of the store, from its log
// start, holds a ShareSnapshot of k.
func hasSnapshot(s *memStore, p int32, k spKey) bool {
	want := appendShareKey(nil, keyShareSnapshot, k.group, k.tp)
	found := false
	s.Replay(p, func(_ int64, r Record) error {
		if bytes.Equal(r.Key, want) && r.Value != nil {
			found = true
		}
		return nil
	})
	return found
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRemoteFenceWithoutState: once a leader found no state for a
// share-partition, an older leader can neither read nor create it.
func TestRemoteFenceWithoutState(t *testing.T) {
	store := newMemStore()
	log := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	log.produce(tp, 4, 0, false, false, -1, nil)
	state := &wireState{}
	newCoord := func(r Reader) *Coordinator {
		c, err := New(Config{
			Store: store, Reader: r, StatePartitions: remoteParts, LoadOnLead: true, State: state,
			Topics:       func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
			GroupConfigs: func(string) map[string]string { return map[string]string{GroupAutoOffsetReset: "earliest"} },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	s := newCoord(&ledReader{fakeReader: log})
	for p := range int32(remoteParts) {
		if err := s.Load(p); err != nil {
			t.Fatal(err)
		}
	}
	state.set(s)
	ra, rb := &ledReader{fakeReader: log}, &ledReader{fakeReader: log}
	ra.leading.Store(true)
	ra.epoch.Store(1)
	rb.leading.Store(true)
	rb.epoch.Store(2)
	a, b := newCoord(ra), newCoord(rb)
	// b, the newer leader, reads (an acknowledgement: nothing to create).
	if e := b.Acknowledge("g", "m", tp, []AckBatch{{FirstOffset: 0, LastOffset: 0, Types: []int8{1}}}, false); e != kerr.InvalidRecordState {
		t.Fatalf("acknowledge without state: %v", e)
	}
	if _, e := a.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 10}, nil); e != kerr.NotLeaderForPartition {
		t.Fatalf("the older leader acquired (%v), want NOT_LEADER_OR_FOLLOWER", e)
	}
	if got, e := b.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 10}, nil); e != nil || formatRanges(got) != "0-3x1" {
		t.Fatalf("the newer leader acquired %s (%v)", formatRanges(got), e)
	}
}
