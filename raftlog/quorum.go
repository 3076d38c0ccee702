package raftlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// This file answers what the quorum looks like (DescribeQuorum) and
// removes learners (UnregisterBroker). Only the leader knows how far each
// member's log goes (raft's progress), so Quorum answers there only.

var (
	// ErrNotLeader: this node does not lead the quorum, so it does not
	// know the other members' logs (Quorum), or does not lead at all.
	ErrNotLeader = errors.New("raftlog: this node does not lead the metadata quorum")
	// ErrVoter: a voter cannot be removed as a learner; the voters are
	// controller.quorum.voters.
	ErrVoter = errors.New("raftlog: node is a voter")
)

// Member is what the quorum's leader knows of one voter or learner.
type Member struct {
	// NodeID is the member's node.id.
	NodeID int32
	// LogEnd is the end of its log as the leader knows it: it holds the
	// entries up to this index (raft's match index; the leader's own last
	// index for the leader). 0 until it answered the leader.
	LogEnd int64
	// LastContact is when the leader last heard from it (the leader
	// itself: now). Zero if never since this node started.
	LastContact time.Time
	// CaughtUp is when its log last reached the leader's end, as seen at
	// the leader's ticks (the leader itself: now). Zero if never since
	// this node became leader.
	CaughtUp time.Time
}

// Quorum is the state of the metadata quorum, as its leader sees it.
type Quorum struct {
	// Leader is the node.id of the leader, -1 if none is known.
	Leader int32
	// Epoch is the leader's term.
	Epoch uint64
	// HighWatermark is the commit index: the entries up to it are
	// committed.
	HighWatermark int64
	// Voters and Learners are the members of the configuration, by node
	// id.
	Voters, Learners []Member
}

// quorumAsk is a Quorum request to the node's goroutine.
type quorumAsk struct {
	reply chan quorumReply
}

type quorumReply struct {
	q   Quorum
	err error
}

// Quorum describes the quorum. Only its leader knows the members' logs:
// elsewhere it returns ErrNotLeader with Leader set (-1 if unknown), so
// that the caller can ask the leader.
func (l *Log) Quorum(ctx context.Context) (Quorum, error) {
	if !l.IsLeader() {
		return Quorum{Leader: l.LeaderID()}, ErrNotLeader
	}
	ask := quorumAsk{reply: make(chan quorumReply, 1)}
	select {
	case l.quorumc <- ask:
	case <-l.done:
		return Quorum{Leader: -1}, ErrClosed
	case <-ctx.Done():
		return Quorum{Leader: l.LeaderID()}, ctx.Err()
	}
	select {
	case r := <-ask.reply:
		return r.q, r.err
	case <-l.done:
		return Quorum{Leader: -1}, ErrClosed
	case <-ctx.Done():
		return Quorum{Leader: l.LeaderID()}, ctx.Err()
	}
}

// quorum builds the answer to Quorum; the node's goroutine calls it.
func (l *Log) quorum() (Quorum, error) {
	st := l.rn.Status()
	if st.RaftState != raft.StateLeader {
		return Quorum{Leader: l.LeaderID()}, ErrNotLeader
	}
	now := time.Now()
	last, _ := l.storage.LastIndex()
	q := Quorum{Leader: int32(l.id - 1), Epoch: st.HardState.GetTerm(), HighWatermark: int64(st.HardState.GetCommit())}
	member := func(id uint64) Member {
		m := Member{NodeID: int32(id - 1), CaughtUp: l.caughtUp[id], LastContact: l.tr.lastContact(id)}
		if pr, ok := st.Progress[id]; ok {
			m.LogEnd = int64(pr.Match)
		}
		if id == l.id {
			m.LogEnd, m.LastContact, m.CaughtUp = int64(last), now, now
		}
		return m
	}
	for _, id := range slices.Sorted(slices.Values(l.confState.GetVoters())) {
		q.Voters = append(q.Voters, member(id))
	}
	for _, id := range slices.Sorted(slices.Values(l.confState.GetLearners())) {
		q.Learners = append(q.Learners, member(id))
	}
	return q, nil
}

// trackCaughtUp, on the leader, notes the members whose log reaches the
// leader's end now; the node's goroutine calls it each tick.
func (l *Log) trackCaughtUp() {
	if !l.IsLeader() {
		return
	}
	last, err := l.storage.LastIndex()
	if err != nil {
		return
	}
	now := time.Now()
	l.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.Match >= last {
			l.caughtUp[id] = now
		}
	})
}

// confAsk is a configuration change for the node's goroutine to propose.
type confAsk struct {
	cc   *pb.ConfChange
	errc chan error
}

// handTo gives a to the node's goroutine on ch and returns its answer
// on errc; ErrClosed if the log closes first, ctx's error if it ends
// before the goroutine takes a (once taken, a is answered).
func handTo[T any](ctx context.Context, l *Log, ch chan<- T, a T, errc <-chan error) error {
	select {
	case ch <- a:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-l.done:
		return ErrClosed
	}
}

// stopped reports whether err, from handTo, is the log closing or ctx
// ending rather than the goroutine's answer.
func stopped(ctx context.Context, err error) bool {
	return errors.Is(err, ErrClosed) || (ctx.Err() != nil && errors.Is(err, ctx.Err()))
}

// RemoveLearner removes node, a learner (a broker-only node), from the
// configuration, so that the leader stops replicating to it; it returns
// once this node applied the change, or ctx ends. A node that is no
// learner is left alone (nil): removing twice is harmless. A learner
// that connects again afterwards is added again (it asks to join by
// connecting), so remove nodes that are gone.
//
// Raft takes one configuration change at a time and drops a proposal
// made while another is pending, and a proposal may be lost in a leader
// change: it is proposed again every two election timeouts until
// applied.
func (l *Log) RemoveLearner(ctx context.Context, node int32) error {
	if slices.ContainsFunc(l.Voters(), func(v Voter) bool { return v.NodeID == node }) {
		return fmt.Errorf("%w: node %d is a voter (RemoveRaftVoter removes voters)", ErrVoter, node)
	}
	id := raftID(node)
	var next time.Time
	tick := time.NewTicker(l.cfg.TickInterval)
	defer tick.Stop()
	for {
		if !slices.Contains(l.Learners(), node) {
			return nil
		}
		if now := time.Now(); !now.Before(next) {
			ask := confAsk{cc: &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: &id}, errc: make(chan error, 1)}
			err := handTo(ctx, l, l.confc, ask, ask.errc)
			switch {
			case err == nil:
				next = now.Add(2 * l.cfg.ElectionTimeout)
			case errors.Is(err, raft.ErrProposalDropped):
				next = now.Add(l.cfg.TickInterval) // no leader yet
			case stopped(ctx, err):
				return err
			default:
				return fmt.Errorf("raftlog: removing learner %d: %w", node, err)
			}
		}
		select {
		case <-tick.C:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
