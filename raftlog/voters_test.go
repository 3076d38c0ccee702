package raftlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/ferrymq/ferry/meta"
)

func voterIDsOf(l *Log) []int32 {
	var ids []int32
	for _, v := range l.Voters() {
		ids = append(ids, v.NodeID)
	}
	return ids
}

// addController adds node i to c: a controller with a listener that is
// not among the voters.
func (c *testCluster) addController(i int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	if c.controllers == nil {
		c.controllers = map[int]string{}
	}
	c.controllers[i] = ln.Addr().String()
	c.dirs = append(c.dirs, filepath.Join(c.t.TempDir(), "raft"))
	c.logs = append(c.logs, nil)
	c.ms = append(c.ms, nil)
	c.start(i, ln)
}

func (c *testCluster) leader() *Log {
	c.t.Helper()
	var lead *Log
	waitFor(c.t, "a leader", func() bool {
		for _, l := range c.logs {
			if l != nil && l.IsLeader() {
				lead = l
				return true
			}
		}
		return false
	})
	return lead
}

// TestAddVoterAndRestart: a controller that is not a voter joins as a
// learner and AddVoter makes it one, with its address; the four nodes
// stop and start again with the old voter list, which does not name the
// new one, and the quorum of four works: its address is in their logs
// and snapshots (SnapshotEntries is 8, so both). The address book is in
// the snapshots' data.
func TestAddVoterAndRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := t.Context()
	c.addController(3)
	waitFor(t, "node 3 a learner", func() bool { return slices.Equal(c.logs[0].Learners(), []int32{3}) && c.logs[3].CaughtUp() })
	lead := c.leader()
	if err := c.logs[int(lead.LeaderID()+1)%3].AddVoter(ctx, 3, c.controllers[3]); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("AddVoter on a follower: %v", err)
	}
	if err := lead.AddVoter(ctx, 1, c.voters[1].Addr); !errors.Is(err, ErrDuplicateVoter) {
		t.Fatalf("AddVoter of a voter: %v", err)
	}
	if err := lead.AddVoter(ctx, 3, c.controllers[3]); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		waitFor(t, "four voters", func() bool { return slices.Equal(voterIDsOf(c.logs[i]), []int32{0, 1, 2, 3}) })
	}
	if vs := lead.Voters(); vs[3].Addr != c.controllers[3] {
		t.Fatalf("voters %+v", vs)
	}
	for i := range 20 {
		if err := c.logs[i%4].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot holds the book.
	ld := func(i int) *loaded {
		d, ld, err := openDisk(c.dirs[i])
		if err != nil {
			t.Fatal(err)
		}
		d.close()
		return ld
	}
	for i := range 4 {
		c.stop(i)
		snap := ld(i).snap
		var sd snapshotData
		if snap == nil || json.Unmarshal(snap.GetData(), &sd) != nil || len(sd.Voters) != 4 || sd.Voters[3] != (bookEntry{ID: 3, Addr: c.controllers[3]}) {
			t.Fatalf("node %d: snapshot book %+v", i, sd.Voters)
		}
	}
	// Without node 2, the quorum needs node 3: 0 and 1 find it in
	// their logs.
	for _, i := range []int{0, 1, 3} {
		c.start(i, nil)
	}
	for _, i := range []int{0, 1, 3} {
		if err := c.logs[i].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("after", i)}}); err != nil {
			t.Fatalf("node %d after the restart: %v", i, err)
		}
	}
	waitFor(t, "every node applied everything", func() bool {
		return c.ms[0].len() == 23 && c.ms[1].len() == 23 && c.ms[3].len() == 23
	})
}

// TestRemoveVoter: a follower is removed (a voter not among them:
// VOTER_NOT_FOUND), then the leader removes itself: it hands its
// leadership over first; the last voter cannot go. The removed nodes,
// running, never lead again.
func TestRemoveVoter(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := t.Context()
	lead := c.leader()
	waitFor(t, "the leader applied its term's start", func() bool { return c.askPending(lead) == nil })
	if err := lead.RemoveVoter(ctx, 7); !errors.Is(err, ErrVoterNotFound) {
		t.Fatalf("removing a node that is no voter: %v", err)
	}
	f := (lead.LeaderID() + 1) % 3
	if err := lead.RemoveVoter(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := lead.RemoveVoter(ctx, lead.LeaderID()); err != nil {
		t.Fatal(err)
	}
	last := c.leader()
	if last == lead || last.LeaderID() == f {
		t.Fatalf("leader %d after removing %d and %d", last.LeaderID(), f, lead.LeaderID())
	}
	// A removed node may never learn of its removal (the leader stops
	// sending to it once it applied it); the others drop its messages.
	waitFor(t, "one voter left", func() bool { return slices.Equal(voterIDsOf(last), []int32{last.LeaderID()}) })
	if err := last.RemoveVoter(ctx, last.LeaderID()); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("removing the last voter: %v", err)
	}
	if err := last.Propose([]meta.Record{{Type: meta.TypeTopic, Topic: "alone"}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * 200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, l := range c.logs {
			if l != last && l.IsLeader() {
				t.Fatalf("removed node %d leads", l.LeaderID())
			}
		}
	}
}

// TestVoterChangePending: while a configuration change is not applied
// (the followers are gone, so it cannot commit), another is refused
// with ErrChangePending instead of being turned into an empty entry.
func TestVoterChangePending(t *testing.T) {
	c := newTestCluster(t, 3)
	c.electionTimeout = 3 * time.Second // the leader keeps leading alone a while
	for i := range 3 {
		c.stop(i)
		c.start(i, nil)
	}
	lead := c.leader()
	self := lead.LeaderID()
	waitFor(t, "the leader applied its term's start", func() bool {
		err := c.askPending(lead)
		return err == nil
	})
	for i := range int32(3) {
		if i != self {
			c.stop(int(i))
		}
	}
	id := raftID(9)
	ask := confAsk{cc: &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: &id}, errc: make(chan error, 1)}
	lead.confc <- ask
	if err := <-ask.errc; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := lead.RemoveVoter(ctx, (self+1)%3); !errors.Is(err, ErrChangePending) {
		t.Fatalf("a voter change while another is pending: %v", err)
	}
}

// askPending asks l's goroutine whether a change is pending, through a
// change that is refused either way (node 7 is no voter).
func (c *testCluster) askPending(l *Log) error {
	a := voterAsk{node: raftID(7), errc: make(chan error, 1)}
	l.voterc <- a
	err := <-a.errc
	if errors.Is(err, ErrVoterNotFound) {
		return nil
	}
	return err
}

// TestOlderDataStarts: nodes whose raft directories were written before
// voters could change (bootstrap entries without addresses, no
// snapshot) start and form the quorum, their voters' addresses those of
// controller.quorum.voters; a voter added then is found after a restart
// with the same list.
func TestOlderDataStarts(t *testing.T) {
	c := &testCluster{t: t, logs: make([]*Log, 3), ms: make([]*machine, 3)}
	var ents []*pb.Entry
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		c.voters = append(c.voters, Voter{NodeID: int32(i), Addr: ln.Addr().String()})
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), "raft"))
		id := raftID(int32(i))
		cc := &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: &id}
		data, err := proto.Marshal(cc)
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, &pb.Entry{Term: new(uint64(1)), Index: new(uint64(i + 1)), Type: pb.EntryType_EntryConfChange.Enum(), Data: data})
	}
	t.Cleanup(func() {
		for _, l := range c.logs {
			if l != nil {
				l.Close()
			}
		}
	})
	for i := range 3 {
		// What the first start of an older node wrote: raft's bootstrap.
		d, _, err := openDisk(c.dirs[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := d.save(&pb.HardState{Term: new(uint64(1)), Commit: new(uint64(3))}, ents, true); err != nil {
			t.Fatal(err)
		}
		d.close()
		c.start(i, nil)
	}
	for i := range 5 {
		if err := c.logs[i%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if vs := c.logs[i].Voters(); !slices.Equal(vs, c.voters) {
			t.Fatalf("node %d: voters %+v, want %+v", i, vs, c.voters)
		}
	}
	c.addController(3)
	waitFor(t, "node 3 a learner", func() bool { return c.logs[3].CaughtUp() && slices.Equal(c.logs[0].Learners(), []int32{3}) })
	waitFor(t, "node 3 added", func() bool {
		err := c.leader().AddVoter(t.Context(), 3, c.controllers[3])
		if err != nil && !errors.Is(err, ErrChangePending) && !errors.Is(err, ErrNotLeader) {
			t.Fatal(err)
		}
		return err == nil
	})
	for i := range 4 {
		c.stop(i)
	}
	for _, i := range []int{0, 1, 3} {
		c.start(i, nil)
	}
	if err := c.logs[3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: "after"}}); err != nil {
		t.Fatal(err)
	}
}
