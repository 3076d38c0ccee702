package meta

import (
	"errors"
	"reflect"
	"sync"
	"testing"
)

// memLog is a replicated log stand-in: entries commit at once, in memory.
type memLog struct {
	mu      sync.Mutex
	apply   func(Entry) error
	entries []Entry
	snap    func() []Record
}

func (m *memLog) Replay(apply func(Entry) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apply = apply
	for _, e := range m.entries {
		if err := apply(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memLog) Propose(recs []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := Entry{Offset: int64(len(m.entries)), Records: append([]Record(nil), recs...)}
	m.entries = append(m.entries, e)
	return m.apply(e)
}

func (m *memLog) Close() error                         { return nil }
func (m *memLog) SetSnapshotSource(fn func() []Record) { m.snap = fn }

func openCluster(t *testing.T, node int32, l *memLog) *Store {
	t.Helper()
	s, err := Open(Config{DataDir: t.TempDir(), NodeID: node, Log: l, Replicated: true, ClusterID: "test-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestClusterImage: brokers, placement and conditional partition changes
// in the image, and a snapshot that rebuilds the same image elsewhere.
func TestClusterImage(t *testing.T) {
	l := &memLog{}
	s := openCluster(t, 0, l)
	for id := range int32(3) {
		b := id
		if err := l.Propose([]Record{{Type: TypeBroker, Broker: &b, Host: "h", Port: 9092 + id}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateTopic(NewTopic{Name: "t", Partitions: 4, ReplicationFactor: 4}); !errors.Is(err, ErrInvalidReplicationFactor) {
		t.Fatalf("four replicas on three brokers: %v", err)
	}
	tp, err := s.CreateTopic(NewTopic{Name: "t", Partitions: 4, ReplicationFactor: 2, Configs: map[string]*string{"retention.ms": ptr("1000")}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range int32(4) {
		st := tp.State(i)
		if len(st.Replicas) != 2 || st.Replicas[0] == st.Replicas[1] || st.Leader != st.Replicas[0] || !reflect.DeepEqual(st.ISR, st.Replicas) {
			t.Fatalf("partition %d: %+v", i, st)
		}
	}
	if _, err := s.CreateTopic(NewTopic{Name: "t", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second topic of the name: %v", err)
	}
	// A change from a stale partition epoch is dropped.
	st := tp.State(0)
	next := NextState(st, st.Replicas[1], []int32{st.Replicas[1]}, nil, nil)
	if next.LeaderEpoch != 1 || next.PartitionEpoch != 1 {
		t.Fatalf("next epochs %+v", next)
	}
	if err := s.ChangePartitions([]PartitionChange{{Topic: tp, Partition: 0, Expect: st.PartitionEpoch, State: next}}); err != nil {
		t.Fatal(err)
	}
	stale := NextState(st, st.Replicas[0], st.Replicas, nil, nil)
	if err := s.ChangePartitions([]PartitionChange{{Topic: tp, Partition: 0, Expect: st.PartitionEpoch, State: stale}}); err != nil {
		t.Fatal(err)
	}
	if got := tp.State(0); !reflect.DeepEqual(got, next) {
		t.Fatalf("state %+v, want %+v (the stale change dropped)", got, next)
	}
	// Producer id blocks do not overlap between brokers.
	a, err := s.NextProducerID()
	if err != nil {
		t.Fatal(err)
	}
	b1 := int32(1)
	if err := l.Propose([]Record{{Type: TypeProducerIDs, Broker: &b1, Block: producerIDBlock}}); err != nil {
		t.Fatal(err)
	}
	s.image.mu.RLock()
	start1 := s.image.pidBlocks[1]
	s.image.mu.RUnlock()
	if start1 <= a || start1 < producerIDBlock {
		t.Fatalf("broker 1's block starts at %d, broker 0 has %d", start1, a)
	}
	// Security metadata goes into snapshots too.
	if err := s.CreateACLs([]ACL{{ResourceType: 2, ResourceName: "t", PatternType: 3, Principal: "User:alice", Host: "*", Operation: 3, Permission: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterScramCredentials([]ScramChange{{User: "alice", Mechanism: "SCRAM-SHA-256", Credential: &ScramCredential{Salt: []byte("s"), Iterations: 4096, StoredKey: []byte("k"), ServerKey: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	alice := "alice"
	if err := s.AlterClientQuotas([]QuotaChange{{Entity: QuotaEntity{{Type: "user", Name: &alice}}, Key: "producer_byte_rate", Value: ptr(1024.0)}}); err != nil {
		t.Fatal(err)
	}
	// A snapshot rebuilds the image on a fresh node.
	recs := s.snapshotRecords()
	l2 := &memLog{entries: []Entry{{Snapshot: true, Records: recs}}}
	s2 := openCluster(t, 5, l2)
	if !reflect.DeepEqual(s2.Brokers(), s.Brokers()) {
		t.Fatalf("brokers %v, want %v", s2.Brokers(), s.Brokers())
	}
	t2 := s2.Topic("t")
	if t2 == nil || t2.ID() != tp.ID() || !reflect.DeepEqual(t2.States(), tp.States()) || t2.Configs()["retention.ms"] != "1000" {
		t.Fatalf("topic after the snapshot: %+v", t2)
	}
	if !reflect.DeepEqual(s2.ACLs(), s.ACLs()) || !reflect.DeepEqual(s2.ScramUsers(), s.ScramUsers()) || !reflect.DeepEqual(s2.ClientQuotas(), s.ClientQuotas()) || len(s2.ACLs()) != 1 {
		t.Fatalf("security after the snapshot: %v %v %v", s2.ACLs(), s2.ScramUsers(), s2.ClientQuotas())
	}
	if s2.reservedPIDs.Load() != s.reservedPIDs.Load() {
		t.Fatalf("reserved producer ids %d, want %d", s2.reservedPIDs.Load(), s.reservedPIDs.Load())
	}
	// Node 5 holds no replica: its partitions are not opened.
	if _, err := t2.Partition(0); !errors.Is(err, ErrNotReplica) {
		t.Fatalf("partition on a broker without a replica: %v", err)
	}
	// Node 0 opens its replicas once Reconcile runs.
	s.Reconcile()
	for i := range int32(4) {
		_, err := tp.Partition(i)
		hosted := false
		for _, r := range tp.State(i).Replicas {
			hosted = hosted || r == 0
		}
		if hosted != (err == nil) {
			t.Fatalf("partition %d: hosted %v, %v", i, hosted, err)
		}
	}
	// A deletion removes the local replicas at the next Reconcile.
	if err := s.DeleteTopic(tp); err != nil {
		t.Fatal(err)
	}
	s.Reconcile()
	if s.Topic("t") != nil {
		t.Fatal("topic still there")
	}
}

func ptr[T any](v T) *T { return &v }

// TestUnregisterBroker: an unregistered broker leaves the image, a
// fencing decided before the removal and committed after it does not
// bring it back, unregistering it again is BROKER_ID_NOT_REGISTERED, and
// it registers again as any broker does.
func TestUnregisterBroker(t *testing.T) {
	l := &memLog{}
	s := openCluster(t, 0, l)
	for id := range int32(2) {
		b := id
		if err := l.Propose([]Record{{Type: TypeBroker, Broker: &b, Host: "h", Port: 9000 + id}}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() []int32 {
		var out []int32
		for _, b := range s.Brokers() {
			out = append(out, b.ID)
		}
		return out
	}
	if err := s.UnregisterBroker(1); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !reflect.DeepEqual(got, []int32{0}) {
		t.Fatalf("brokers after unregistering 1: %v", got)
	}
	// The controller fenced broker 1 from an older image.
	if err := s.ChangeCluster([]Broker{{ID: 1, Host: "h", Port: 9001, Fenced: true}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !reflect.DeepEqual(got, []int32{0}) {
		t.Fatalf("a fencing brought broker 1 back: %v", got)
	}
	if err := s.UnregisterBroker(1); !errors.Is(err, ErrBrokerNotRegistered) {
		t.Fatalf("unregistering twice: %v", err)
	}
	b := int32(1)
	if err := l.Propose([]Record{{Type: TypeBroker, Broker: &b, Host: "h2", Port: 9001}}); err != nil {
		t.Fatal(err)
	}
	if got := s.Brokers(); len(got) != 2 || !reflect.DeepEqual(got[1], Broker{ID: 1, Host: "h2", Port: 9001}) {
		t.Fatalf("brokers after 1 registered again: %+v", got)
	}
	// A snapshot taken now rebuilds the same brokers.
	l2 := &memLog{entries: []Entry{{Snapshot: true, Records: l.snap()}}}
	if got := openCluster(t, 0, l2).Brokers(); !reflect.DeepEqual(got, s.Brokers()) {
		t.Fatalf("brokers from the snapshot %+v, want %+v", got, s.Brokers())
	}
}

// TestRegisterController: a controller-only node's Kafka listener is in
// the image, not among the brokers, and survives a snapshot.
func TestRegisterController(t *testing.T) {
	l := &memLog{}
	s := openCluster(t, 2, l)
	if err := s.RegisterController("c2", 9002); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterController("c2b", 9012); err != nil {
		t.Fatal(err)
	}
	want := []Controller{{ID: 2, Host: "c2b", Port: 9012}}
	if got := s.Controllers(); !reflect.DeepEqual(got, want) || len(s.Brokers()) != 0 {
		t.Fatalf("controllers %+v, brokers %+v", got, s.Brokers())
	}
	l2 := &memLog{entries: []Entry{{Snapshot: true, Records: l.snap()}}}
	if got := openCluster(t, 2, l2).Controllers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("controllers from the snapshot %+v, want %+v", got, want)
	}
}

// TestBrokerRack: a broker registers its broker.rack; a record written
// before racks (no "rack") reads as none; the controller's fencing keeps
// the rack, and so does a snapshot.
func TestBrokerRack(t *testing.T) {
	old, err := decodeRecord([]byte(TypeBroker), []byte(`{"broker":1,"host":"h","port":9093}`))
	if err != nil {
		t.Fatal(err)
	}
	l := &memLog{}
	s, err := Open(Config{DataDir: t.TempDir(), NodeID: 0, Log: l, Replicated: true, ClusterID: "test-cluster", Props: map[string]string{"broker.rack": "us-east-1a"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.RegisterBroker("h", 9092, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Propose([]Record{old}); err != nil {
		t.Fatal(err)
	}
	want := []Broker{{ID: 0, Host: "h", Port: 9092, Rack: "us-east-1a"}, {ID: 1, Host: "h", Port: 9093}}
	if got := s.Brokers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("brokers %+v, want %+v", got, want)
	}
	// A fencing change, as the controller writes it, and one written
	// before racks existed, keep the rack.
	fenced := want[0]
	fenced.Fenced = true
	if err := s.ChangeCluster([]Broker{fenced}, nil); err != nil {
		t.Fatal(err)
	}
	id := int32(0)
	if err := l.Propose([]Record{{Type: TypeBroker, Broker: &id, Host: "h", Port: 9092, IfRegistered: true}}); err != nil {
		t.Fatal(err)
	}
	want[0].Fenced = false
	if got := s.Brokers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after fencing changes: brokers %+v, want %+v", got, want)
	}
	s2 := openCluster(t, 5, &memLog{entries: []Entry{{Snapshot: true, Records: s.snapshotRecords()}}})
	if got := s2.Brokers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a snapshot: brokers %+v, want %+v", got, want)
	}
}
