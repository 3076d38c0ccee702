package raftlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/ferrymq/ferry/meta"
)

// machine is a test state machine: the topic names applied, in order.
type machine struct {
	mu    sync.Mutex
	names []string
}

func (m *machine) apply(e meta.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Snapshot {
		m.names = nil
	}
	for _, r := range e.Records {
		m.names = append(m.names, r.Topic)
	}
	return nil
}

func (m *machine) snapshot() []meta.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]meta.Record, len(m.names))
	for i, n := range m.names {
		out[i] = meta.Record{Type: meta.TypeTopic, Topic: n}
	}
	return out
}

func (m *machine) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.names)
}

type testCluster struct {
	t      *testing.T
	dirs   []string
	voters []Voter
	logs   []*Log
	ms     []*machine
	// controllers are the controller addresses of nodes that are not
	// among voters (to be added as voters), by index.
	controllers map[int]string
	// electionTimeout, if set, replaces the tests' 200ms.
	electionTimeout time.Duration
}

func newTestCluster(t *testing.T, n int) *testCluster {
	return newLearnerCluster(t, n, 0)
}

// newLearnerCluster starts n voters and then learners nodes that are
// not (ids n, n+1, ...).
func newLearnerCluster(t *testing.T, n, learners int) *testCluster {
	c := &testCluster{t: t, logs: make([]*Log, n+learners), ms: make([]*machine, n+learners)}
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		c.voters = append(c.voters, Voter{NodeID: int32(i), Addr: ln.Addr().String()})
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), "raft"))
	}
	for i := range n {
		c.start(i, lns[i])
	}
	for i := range learners {
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), "raft"))
		c.start(n+i, nil)
	}
	t.Cleanup(func() {
		for _, l := range c.logs {
			if l != nil {
				l.Close()
			}
		}
	})
	return c
}

func (c *testCluster) start(i int, ln net.Listener) {
	c.t.Helper()
	learner := i >= len(c.voters) && c.controllers[i] == ""
	if ln == nil && !learner {
		addr := c.controllers[i]
		if i < len(c.voters) {
			addr = c.voters[i].Addr
		}
		var err error
		for range 50 {
			if ln, err = net.Listen("tcp", addr); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			c.t.Fatal(err)
		}
	}
	cfg := Config{Dir: c.dirs[i], NodeID: int32(i), Voters: c.voters, Learner: learner, ClusterID: "test", TickInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, SnapshotEntries: 8}
	if c.electionTimeout > 0 {
		cfg.ElectionTimeout = c.electionTimeout
	}
	if ln != nil {
		cfg.Listener = ln
	}
	if os.Getenv("FERRY_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", i)
	}
	l, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	m := &machine{}
	l.SetSnapshotSource(m.snapshot)
	done := make(chan error, 1)
	go func() { done <- l.Replay(m.apply) }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		c.t.Fatal("replay did not return")
	}
	c.logs[i], c.ms[i] = l, m
}

func (c *testCluster) stop(i int) {
	if err := c.logs[i].Close(); err != nil {
		c.t.Fatal(err)
	}
	c.logs[i] = nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReplicatedLog(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.logs[0].LeaderID() >= 0 })
	// Proposals from every node, the leader's and followers' alike.
	for i := range 12 {
		if err := c.logs[i%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		waitFor(t, "every entry applied", func() bool { return c.ms[i].len() == 12 })
	}
	// A node that was down catches up; with entries compacted behind
	// snapshots it gets a snapshot.
	c.stop(2)
	for i := range 30 {
		if err := c.logs[i%2].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("u", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	c.start(2, nil)
	waitFor(t, "the restarted node caught up", func() bool { return c.ms[2].len() == 42 })
	// Every node restarts from its own disk: snapshot and WAL.
	for i := range 3 {
		c.stop(i)
	}
	for i := range 3 {
		c.start(i, nil)
		if got := c.ms[i].len(); got != 42 {
			t.Fatalf("node %d replayed %d records, want 42", i, got)
		}
	}
	c.ms[0].mu.Lock()
	first, last := c.ms[0].names[0], c.ms[0].names[41]
	c.ms[0].mu.Unlock()
	if first != "t0" || last != "u29" {
		t.Fatalf("order: first %s last %s", first, last)
	}
	if err := c.logs[1].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: "after"}}); err != nil {
		t.Fatal(err)
	}
}

func TestParseVoters(t *testing.T) {
	v, err := ParseVoters("2@b:9093, 1@a:9093")
	if err != nil || len(v) != 2 || v[0].NodeID != 1 || v[1].Addr != "b:9093" {
		t.Fatal(v, err)
	}
	for _, bad := range []string{"", "x@a:1", "1@a", "1@a:1,1@b:1", "-1@a:1"} {
		if _, err := ParseVoters(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDiskRecovery: a torn record at the end of the WAL is cut off and
// the entries before it kept; a corrupt record in an older file is an
// error, and nothing is removed.
func TestDiskRecovery(t *testing.T) {
	dir := t.TempDir()
	d, _, err := openDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(1); i <= 5; i++ {
		ents = append(ents, &pb.Entry{Term: new(uint64(1)), Index: new(i), Data: []byte(fmt.Sprint("e", i))})
	}
	if err := d.save(&pb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}, ents, true); err != nil {
		t.Fatal(err)
	}
	// A new leader overwrote entries 4 and 5.
	if err := d.save(nil, []*pb.Entry{{Term: new(uint64(2)), Index: new(uint64(4)), Data: []byte("x4")}}, true); err != nil {
		t.Fatal(err)
	}
	d.close()
	wal := filepath.Join(dir, walName(1))
	f, err := os.OpenFile(wal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 40, 1, 2}) // torn: a length and no body
	f.Close()
	d, ld, err := openDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	if len(ld.entries) != 4 || string(ld.entries[3].GetData()) != "x4" || ld.hard.GetCommit() != 5 {
		t.Fatalf("recovered %d entries, last %q, commit %d", len(ld.entries), ld.entries[len(ld.entries)-1].GetData(), ld.hard.GetCommit())
	}
	// A bit flipped in a file that is not the newest: an error.
	b, _ := os.ReadFile(wal)
	b[20] ^= 1
	os.WriteFile(wal, b, 0o644)
	os.WriteFile(filepath.Join(dir, walName(2)), nil, 0o644)
	if _, _, err := openDisk(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt older WAL: %v", err)
	}
	if _, err := os.Stat(wal); err != nil {
		t.Fatalf("the corrupt file was removed: %v", err)
	}
}

// TestCaughtUpAfterRestart: a node that was down while the quorum went on
// reports CaughtUp only once it has applied everything committed while it
// was away, not when it first hears from the leader (whose heartbeat
// carries only the commit index the node is known to hold).
func TestCaughtUpAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.logs[0].LeaderID() >= 0 })
	for round := range 3 {
		c.stop(2)
		for i := range 20 {
			if err := c.logs[i%2].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("r", round, "-", i)}}); err != nil {
				t.Fatal(err)
			}
		}
		want := c.ms[0].len()
		c.start(2, nil)
		l, m := c.logs[2], c.ms[2]
		deadline := time.Now().Add(20 * time.Second)
		for !l.CaughtUp() {
			if time.Now().After(deadline) {
				t.Fatal("the restarted node never caught up")
			}
			time.Sleep(50 * time.Microsecond)
		}
		if got := m.len(); got < want {
			t.Fatalf("round %d: CaughtUp with %d of the %d records committed", round, got, want)
		}
	}
}

// TestLearner: a node that is not a voter joins as a raft learner by
// connecting: the leader adds it, it receives the log (a snapshot, the
// leader having compacted), proposes through the leader, and its absence
// costs the quorum nothing. Its membership survives restarts of every
// node, snapshots included.
func TestLearner(t *testing.T) {
	c := newLearnerCluster(t, 3, 0)
	waitFor(t, "a leader", func() bool { return c.logs[0].LeaderID() >= 0 })
	for i := range 20 {
		if err := c.logs[i%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// The learner, node 3, starts after the leader compacted its log.
	c.logs, c.ms = append(c.logs, nil), append(c.ms, nil)
	c.dirs = append(c.dirs, filepath.Join(t.TempDir(), "raft"))
	c.start(3, nil)
	l := c.logs[3]
	if l.Addr() != nil {
		t.Fatalf("a learner listens on %v", l.Addr())
	}
	waitFor(t, "the learner caught up", func() bool { return l.CaughtUp() && c.ms[3].len() == 20 })
	for i := range 3 {
		waitFor(t, "every voter lists the learner", func() bool { return slices.Equal(c.logs[i].Learners(), []int32{3}) })
	}
	if l.IsLeader() || l.LeaderID() == 3 {
		t.Fatal("the learner leads")
	}
	// A learner's proposal goes through the leader.
	if err := l.Propose([]meta.Record{{Type: meta.TypeTopic, Topic: "from-learner"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitFor(t, "the learner's entry applied", func() bool { return c.ms[i].len() == 21 })
	}
	// The leader hears from the learner (fencing counts on it).
	leader := c.logs[l.LeaderID()]
	waitFor(t, "contact with the learner", func() bool { return time.Since(leader.LastContact(3)) < time.Second })
	// Without the learner, the voters commit as before; it catches up
	// when it returns.
	c.stop(3)
	for i := range 10 {
		if err := c.logs[i%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("u", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	c.start(3, nil)
	waitFor(t, "the restarted learner caught up", func() bool { return c.logs[3].CaughtUp() && c.ms[3].len() == 31 })
	// Every node restarts; the learner stays a learner (its membership is
	// in the voters' snapshots and WALs, and its own).
	for i := range 4 {
		c.stop(i)
	}
	for i := range 4 {
		c.start(i, nil)
	}
	waitFor(t, "a leader", func() bool { return c.logs[0].LeaderID() >= 0 && c.logs[0].LeaderID() != 3 })
	for i := range 4 {
		if got := c.logs[i].Learners(); !slices.Equal(got, []int32{3}) {
			t.Fatalf("node %d: learners %v after restart", i, got)
		}
	}
	if err := c.logs[3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: "again"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		waitFor(t, "every node applied the last entry", func() bool { return c.ms[i].len() == 32 })
	}
}

func TestLearnerConfig(t *testing.T) {
	voters := []Voter{{NodeID: 0, Addr: "127.0.0.1:1"}}
	for _, cfg := range []Config{
		{Dir: t.TempDir(), NodeID: 1, Voters: voters},                                   // not a voter
		{Dir: t.TempDir(), NodeID: 0, Voters: voters, Learner: true},                    // a voter as learner
		{Dir: t.TempDir(), NodeID: 1, Voters: voters, Learner: true, ListenAddr: "x:1"}, // a learner listening
	} {
		if l, err := Open(cfg); err == nil {
			l.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestTransportHello: a voter takes a connection from a node that is not
// a voter as a learner's (and writes back on it), and refuses one from
// another cluster or with an id no node.id has.
func TestTransportHello(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransport(raftID(0), "c1", ln, slog.New(slog.DiscardHandler))
	tr.setPeer(raftID(0), ln.Addr().String())
	tr.recv = func(*pb.Message) {}
	tr.unreachable = func(uint64) {}
	tr.snapDone = func(uint64, bool) {}
	tr.start()
	defer tr.stop()
	hello := func(from uint64, cluster string) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		h := (&transport{id: from, clusterID: cluster}).hello()
		if _, err := c.Write(h); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, bad := range []net.Conn{hello(1<<40, "c1"), hello(raftID(7), "c2"), hello(raftID(0), "c1")} {
		bad.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bad.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a bad hello was kept: %v", err)
		}
	}
	good := hello(raftID(7), "c1")
	waitFor(t, "the learner attached", func() bool { return slices.Equal(tr.learners(), []uint64{raftID(7)}) })
	// A message to the learner goes back on its connection.
	tr.send(&pb.Message{To: new(raftID(7)), From: new(raftID(0)), Type: pb.MessageType_MsgHeartbeat.Enum()})
	good.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(good)
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		t.Fatalf("nothing written back to the learner: %v", err)
	}
	good.Close()
	waitFor(t, "the learner detached", func() bool { return len(tr.learners()) == 0 })
}

// TestQuorumAndRemoveLearner: the leader describes the quorum (its
// voters and learners, how far their logs go, when it heard from them);
// the other nodes say they cannot. A learner that stopped is removed from
// the configuration through a follower (raft forwards the change), every
// node sees it gone, and, started again, it joins again and catches up.
func TestQuorumAndRemoveLearner(t *testing.T) {
	c := newLearnerCluster(t, 3, 1)
	waitFor(t, "every node lists the learner", func() bool {
		for _, l := range c.logs {
			if !slices.Equal(l.Learners(), []int32{3}) {
				return false
			}
		}
		return c.logs[3].CaughtUp()
	})
	for i := range 5 {
		if err := c.logs[i%4].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	lead := c.logs[0].LeaderID()
	leader := c.logs[lead]
	var q Quorum
	waitFor(t, "every member's log at the leader's end", func() bool {
		var err error
		if q, err = leader.Quorum(ctx); err != nil {
			t.Fatal(err)
		}
		for _, m := range append(slices.Clone(q.Voters), q.Learners...) {
			if m.LogEnd != q.HighWatermark || m.CaughtUp.IsZero() || time.Since(m.LastContact) > time.Second {
				return false
			}
		}
		return true
	})
	ids := func(ms []Member) []int32 {
		var out []int32
		for _, m := range ms {
			out = append(out, m.NodeID)
		}
		return out
	}
	if q.Leader != lead || q.Epoch == 0 || q.HighWatermark < 5 || !slices.Equal(ids(q.Voters), []int32{0, 1, 2}) || !slices.Equal(ids(q.Learners), []int32{3}) {
		t.Fatalf("quorum %+v; leader %d", q, lead)
	}
	follower := c.logs[(lead+1)%3]
	if fq, err := follower.Quorum(ctx); !errors.Is(err, ErrNotLeader) || fq.Leader != lead {
		t.Fatalf("a follower's quorum: %+v, %v", fq, err)
	}
	if err := follower.RemoveLearner(ctx, lead); !errors.Is(err, ErrVoter) {
		t.Fatalf("removing voter %d: %v", lead, err)
	}

	c.stop(3)
	if err := follower.RemoveLearner(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		waitFor(t, "the learner removed everywhere", func() bool { return len(c.logs[i].Learners()) == 0 })
	}
	if q, err := leader.Quorum(ctx); err != nil || len(q.Learners) != 0 {
		t.Fatalf("quorum after the removal: %+v, %v", q, err)
	}
	if err := follower.RemoveLearner(ctx, 3); err != nil {
		t.Fatalf("removing it again: %v", err)
	}
	for i := range 10 {
		if err := c.logs[i%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("u", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Back, it asks to join again by connecting, and catches up.
	c.start(3, nil)
	for i := range 4 {
		waitFor(t, "the learner back everywhere", func() bool { return slices.Equal(c.logs[i].Learners(), []int32{3}) })
	}
	waitFor(t, "the returned learner caught up", func() bool { return c.logs[3].CaughtUp() && c.ms[3].len() == 15 })
}
