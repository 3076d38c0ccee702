package raftlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// This file changes the voters of a running quorum (AddRaftVoter,
// RemoveRaftVoter) and keeps the address book: where each voter's
// controller listener is.
//
// Raft's configuration holds node ids only. The address of a voter
// travels in the Context of the ConfChange that makes it one (the
// bootstrap's entries too, in clusters started since), each node adds it
// to its book and its transport when it applies the entry, and every
// snapshot carries the book of its voters (snapshotData.Voters). At
// start the book is controller.quorum.voters, then the snapshot's book,
// then the configuration entries of the WAL as they are applied; so
// controller.quorum.voters only bootstraps a new cluster and tells a
// joining node where the quorum is.
//
// One change at a time: raft turns a configuration change proposed while
// another is pending into an empty entry without an error, so the leader
// refuses one (ErrChangePending) while an entry of its log that it has
// not applied is a configuration change, and until it applied the
// entries of its own term's start (raft refuses changes until then).

var (
	// ErrChangePending: a configuration change is not applied yet, or
	// the leader has not applied the start of its term; try again.
	ErrChangePending = errors.New("raftlog: another change of the configuration is pending")
	// ErrDuplicateVoter: the node is a voter already.
	ErrDuplicateVoter = errors.New("raftlog: node is a voter already")
	// ErrVoterNotFound: the node is not a voter.
	ErrVoterNotFound = errors.New("raftlog: node is not a voter")
	// ErrNotCaughtUp: the node to add is not a learner whose log reaches
	// the leader's commit index.
	ErrNotCaughtUp = errors.New("raftlog: node is not a caught-up learner")
	// ErrLastVoter: the only voter cannot be removed.
	ErrLastVoter = errors.New("raftlog: the last voter cannot be removed")
)

// bookEntry is one voter's address, as snapshots hold it.
type bookEntry struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
}

// loadBook builds the address book at start: controller.quorum.voters,
// replaced by the snapshot's book when the snapshot has one, and tells
// the transport (not started yet) of each address.
func (l *Log) loadBook(ld *loaded) {
	for _, v := range l.cfg.Voters {
		l.book[raftID(v.NodeID)] = v.Addr
	}
	if ld.snap != nil {
		var sd snapshotData
		if json.Unmarshal(ld.snap.GetData(), &sd) == nil {
			l.replaceBook(sd.Voters, ld.snap.GetMetadata().GetConfState())
		}
	}
	for id, addr := range l.book {
		l.tr.setPeer(id, addr)
	}
}

// replaceBook makes entries the book (a snapshot's). A snapshot without
// one (written before voters could change) keeps the book, which is
// controller.quorum.voters then. Only the snapshot's voters are kept.
func (l *Log) replaceBook(entries []bookEntry, cs *pb.ConfState) {
	if len(entries) == 0 {
		return
	}
	book := map[uint64]string{}
	for _, e := range entries {
		book[raftID(e.ID)] = e.Addr
	}
	for id := range l.book {
		if _, ok := book[id]; !ok && !slices.Contains(cs.GetVoters(), id) {
			delete(l.book, id)
			l.tr.dropVoter(id)
		}
	}
	for id, addr := range book {
		if addr != "" {
			l.book[id] = addr
		}
	}
}

// restoreBook takes the book of a snapshot this node restores (its own
// at start, or the leader's) and tells the transport.
func (l *Log) restoreBook(entries []bookEntry, cs *pb.ConfState) {
	l.replaceBook(entries, cs)
	for id, addr := range l.book {
		l.tr.setPeer(id, addr)
	}
}

// applyBook updates the book for a configuration change about to be
// applied: a voter added with its address, a voter removed. A change
// without an address (a learner, or the bootstrap of a cluster started
// before voters could change) leaves the book alone.
func (l *Log) applyBook(cc *pb.ConfChange) {
	id := cc.GetNodeId()
	switch cc.GetType() {
	case pb.ConfChangeType_ConfChangeAddNode:
		if addr := string(cc.GetContext()); addr != "" {
			if l.book[id] != addr {
				l.logger.Info("metadata quorum voter", "node", int64(id)-1, "addr", addr)
			}
			l.book[id] = addr
			l.tr.setPeer(id, addr)
		}
		if !slices.Contains(l.confState.GetVoters(), id) {
			l.snapNow = true // the book in a snapshot at once
		}
		delete(l.removed, id)
	case pb.ConfChangeType_ConfChangeRemoveNode:
		if slices.Contains(l.confState.GetVoters(), id) {
			l.logger.Info("voter removed from the metadata quorum", "node", int64(id)-1)
			delete(l.book, id)
			l.tr.dropVoter(id)
			l.removed[id] = true
			l.snapNow = true
		}
	}
}

// removedIDs are the node ids of the voters removed, for a snapshot.
func (l *Log) removedIDs() []int32 {
	var out []int32
	for id := range l.removed {
		out = append(out, int32(id-1))
	}
	slices.Sort(out)
	return out
}

// restoreRemoved takes the removed voters of a snapshot.
func (l *Log) restoreRemoved(ids []int32) {
	clear(l.removed)
	for _, n := range ids {
		l.removed[raftID(n)] = true
	}
}

// bookEntries are the addresses of the voters of the configuration
// applied, for a snapshot.
func (l *Log) bookEntries() []bookEntry {
	var out []bookEntry
	for _, id := range slices.Sorted(slices.Values(l.confState.GetVoters())) {
		out = append(out, bookEntry{ID: int32(id - 1), Addr: l.book[id]})
	}
	return out
}

// updateVotersView publishes the voters of the configuration applied
// with their addresses.
func (l *Log) updateVotersView() {
	if l.confState == nil {
		return
	}
	var vs []Voter
	for _, id := range slices.Sorted(slices.Values(l.confState.GetVoters())) {
		vs = append(vs, Voter{NodeID: int32(id - 1), Addr: l.book[id]})
	}
	l.votersView.Store(&vs)
}

// voterAtStart reports whether this node is a voter in the state loaded
// (the bootstrap, the snapshot's configuration, and the configuration
// entries of the WAL after it). One that is not dials the voters and
// reads their messages back on the same connections, as a learner does,
// so that the leader reaches it before it knows its address.
func (l *Log) voterAtStart(ld *loaded, bootstrap bool) bool {
	voter := bootstrap // a WAL without a snapshot holds the bootstrap's entries
	if ld.snap != nil {
		voter = slices.Contains(ld.snap.GetMetadata().GetConfState().GetVoters(), l.id)
	}
	for _, e := range ld.entries {
		if e.GetType() != pb.EntryType_EntryConfChange {
			continue
		}
		var cc pb.ConfChange
		if unmarshal(e.GetData(), &cc) != nil || cc.GetNodeId() != l.id {
			continue
		}
		switch cc.GetType() {
		case pb.ConfChangeType_ConfChangeAddNode:
			voter = true
		case pb.ConfChangeType_ConfChangeRemoveNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
			voter = false
		}
	}
	return voter
}

// voterAsk is a voter change for the node's goroutine to check and
// propose.
type voterAsk struct {
	add  bool
	node uint64
	addr string
	errc chan error
}

// AddVoter makes node, a learner whose log has caught up (a controller
// started with a controller listener at addr that joined as a learner),
// a voter, with addr as its address in the book. Only the leader does
// (ErrNotLeader elsewhere). It returns once this node applied the
// change, or ctx ends (the change may still be applied).
func (l *Log) AddVoter(ctx context.Context, node int32, addr string) error {
	if addr == "" {
		return fmt.Errorf("%w: node %d: no address", ErrNotCaughtUp, node)
	}
	id := raftID(node)
	if err := l.askVoterChange(ctx, voterAsk{add: true, node: id, addr: addr}); err != nil {
		return err
	}
	return l.waitConf(ctx, func() bool { return slices.ContainsFunc(l.Voters(), func(v Voter) bool { return v.NodeID == node }) })
}

// RemoveVoter takes node out of the voters. Only the leader does
// (ErrNotLeader elsewhere); a leader removing itself first hands its
// leadership to the voter whose log goes furthest, so that the quorum is
// not left without a leader for an election timeout, and the change is
// then proposed through the new leader. The removed node, out of its own
// configuration once it applies the change, no longer campaigns. It
// returns once this node applied the change, or ctx ends.
func (l *Log) RemoveVoter(ctx context.Context, node int32) error {
	id := raftID(node)
	if err := l.askVoterChange(ctx, voterAsk{node: id}); err != nil {
		return err
	}
	return l.waitConf(ctx, func() bool { return !slices.ContainsFunc(l.Voters(), func(v Voter) bool { return v.NodeID == node }) })
}

// errTransferring: the leader is handing its leadership over before it
// removes itself.
var errTransferring = errors.New("raftlog: transferring leadership")

// askVoterChange has the node's goroutine check and propose a change;
// a leader removing itself waits for its leadership to move, then
// proposes through the new leader.
func (l *Log) askVoterChange(ctx context.Context, a voterAsk) error {
	for {
		a.errc = make(chan error, 1)
		err := handTo(ctx, l, l.voterc, a, a.errc)
		if !errors.Is(err, errTransferring) {
			return err
		}
		// Wait for another leader, then propose through it: the checks
		// were made on this node while it led.
		deadline := time.Now().Add(4 * l.cfg.ElectionTimeout)
		for l.IsLeader() || l.LeaderID() < 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: the leadership did not move before removing this node", ErrTimeout)
			}
			select {
			case <-time.After(l.cfg.TickInterval):
			case <-l.done:
				return ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return l.proposeRemoval(ctx, a.node)
	}
}

// proposeRemoval proposes removing node through the leader (raft
// forwards a follower's proposal), again every election timeout until
// this node applied it: a new leader drops a change proposed before it
// applied the start of its term.
func (l *Log) proposeRemoval(ctx context.Context, id uint64) error {
	for {
		if !slices.Contains(l.confStateVoters(), id) {
			return nil
		}
		ask := confAsk{cc: &pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: &id}, errc: make(chan error, 1)}
		// Whatever the answer, the loop sees whether the removal applied.
		if err := handTo(ctx, l, l.confc, ask, ask.errc); stopped(ctx, err) {
			return err
		}
		select {
		case <-time.After(l.cfg.ElectionTimeout):
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// confStateVoters are the voters' raft ids of the configuration applied.
func (l *Log) confStateVoters() []uint64 {
	var ids []uint64
	for _, v := range l.Voters() {
		ids = append(ids, raftID(v.NodeID))
	}
	return ids
}

// waitConf waits until cond holds of the configuration applied here.
func (l *Log) waitConf(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(l.cfg.TickInterval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("%w: the configuration change is not applied yet", ErrTimeout)
		}
	}
	return nil
}

// startVoterChange checks a voter change on the leader and proposes it;
// the node's goroutine calls it.
func (l *Log) startVoterChange(a voterAsk) error {
	st := l.rn.Status()
	if st.RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	if err := l.pendingChange(); err != nil {
		return err
	}
	voters := l.confState.GetVoters()
	node := int64(a.node) - 1
	if a.add {
		switch {
		case slices.Contains(voters, a.node):
			return fmt.Errorf("%w: node %d", ErrDuplicateVoter, node)
		case !slices.Contains(l.confState.GetLearners(), a.node):
			return fmt.Errorf("%w: node %d has not joined the metadata log (start it as a controller with its controller listener; it joins as a learner)", ErrNotCaughtUp, node)
		case st.Progress[a.node].Match < st.HardState.GetCommit():
			return fmt.Errorf("%w: node %d holds the log up to %d, the commit index is %d", ErrNotCaughtUp, node, st.Progress[a.node].Match, st.HardState.GetCommit())
		}
		l.logger.Info("adding a voter to the metadata quorum", "node", node, "addr", a.addr)
		return proposeErr(l.rn.ProposeConfChange(&pb.ConfChange{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: &a.node, Context: []byte(a.addr)}))
	}
	switch {
	case !slices.Contains(voters, a.node):
		return fmt.Errorf("%w: node %d", ErrVoterNotFound, node)
	case len(voters) == 1:
		return fmt.Errorf("%w: node %d", ErrLastVoter, node)
	case a.node == l.id:
		var to, match uint64
		for id, pr := range st.Progress {
			if id != l.id && slices.Contains(voters, id) && (to == 0 || pr.Match > match) {
				to, match = id, pr.Match
			}
		}
		l.logger.Info("handing the leadership over before leaving the metadata quorum", "to", int64(to)-1)
		l.rn.TransferLeader(to)
		return errTransferring
	}
	l.logger.Info("removing a voter from the metadata quorum", "node", node)
	return proposeErr(l.rn.ProposeConfChange(&pb.ConfChange{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: &a.node}))
}

// proposeErr: raft drops a proposal while the leadership moves.
func proposeErr(err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		return fmt.Errorf("%w: %v", ErrChangePending, err)
	}
	return err
}

// pendingChange returns ErrChangePending when raft would drop a
// configuration change now: one is in the log and not applied, or the
// leader has not applied the start of its term.
func (l *Log) pendingChange() error {
	if l.applied < l.leaderStart {
		return fmt.Errorf("%w: the leader has not applied the start of its term (%d of %d)", ErrChangePending, l.applied, l.leaderStart)
	}
	last, err := l.storage.LastIndex()
	if err != nil || last <= l.applied {
		return err
	}
	ents, err := l.storage.Entries(l.applied+1, last+1, 1<<62)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.GetType() == pb.EntryType_EntryConfChange || e.GetType() == pb.EntryType_EntryConfChangeV2 {
			return fmt.Errorf("%w: entry %d is not applied yet", ErrChangePending, e.GetIndex())
		}
	}
	return nil
}
