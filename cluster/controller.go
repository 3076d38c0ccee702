package cluster

import (
	"slices"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// The controller is the node whose raft node leads the metadata quorum.
// Every controllerInterval it:
//
//   - fences a broker it has not heard from for SessionTimeout (raft's
//     heartbeats and their answers reach it every tick from each live
//     voter), and unfences one it hears from again;
//   - gives every partition whose leader is fenced a new leader: the
//     first of its replicas, in order, that is in the ISR and not fenced
//     (unclean.leader.election.enable: any live replica when no in-sync
//     one is left); with none, the partition has no leader (-1) and
//     keeps its ISR, to be led again by one of them when it returns;
//   - removes fenced brokers from the ISRs they are in (never the last
//     member), so that acks=all produces stop waiting for them;
//   - completes reassignments whose target replicas are all in sync;
//   - every LeaderRebalance.Interval (counted from when it became
//     controller), moves leaderships back to preferred replicas where a
//     broker's imbalance exceeds LeaderRebalance.PerBrokerPercentage
//     (rebalance.go).
//
// Every change is conditional on the partition epoch it was computed
// from, so a change racing another (an ISR change by the leader) is
// dropped and recomputed at the next pass.
const controllerInterval = 100 * time.Millisecond

func (n *Node) controllerLoop() {
	defer n.wg.Done()
	var leaderSince, nextRebalance time.Time
	prevLeader := int32(-1)
	lastLeader := int32(-1)
	rebalance := n.cfg.LeaderRebalance
	for {
		if !n.sleep(controllerInterval) {
			return
		}
		cur := n.cfg.Raft.LeaderID()
		if cur != lastLeader {
			if cur == n.cfg.NodeID {
				leaderSince = time.Now()
				prevLeader = lastLeader
				nextRebalance = leaderSince.Add(rebalance.Interval)
			}
			lastLeader = cur
		}
		if cur != n.cfg.NodeID || !n.cfg.Raft.CaughtUp() {
			continue
		}
		n.controlOnce(leaderSince, prevLeader)
		if now := time.Now(); rebalance.Enable && !now.Before(nextRebalance) {
			n.rebalanceLeaders()
			nextRebalance = now.Add(rebalance.Interval)
		}
	}
}

// alive reports whether broker id is in contact with the controller. A
// new controller heard only from the old one while it followed: it gives
// the others a moment to answer its first heartbeats, but not the old
// leader, whose silence is what made it controller.
func (n *Node) alive(id int32, now, leaderSince time.Time, prevLeader int32) bool {
	if id == n.cfg.NodeID {
		return true
	}
	last := n.cfg.Raft.LastContact(id)
	if id != prevLeader {
		if floor := leaderSince.Add(-n.cfg.SessionTimeout + 300*time.Millisecond); last.Before(floor) {
			last = floor
		}
	}
	return now.Sub(last) < n.cfg.SessionTimeout
}

func (n *Node) controlOnce(leaderSince time.Time, prevLeader int32) {
	st := n.cfg.Store
	now := time.Now()
	fenced := map[int32]bool{}
	var fences []meta.Broker
	for _, b := range st.Brokers() {
		alive := n.alive(b.ID, now, leaderSince, prevLeader)
		fenced[b.ID] = !alive
		if b.Fenced == !alive {
			continue
		}
		b.Fenced = !alive
		fences = append(fences, b)
		if alive {
			n.logger.Info("broker unfenced", "broker", b.ID)
		} else {
			n.logger.Warn("broker fenced: no contact", "broker", b.ID, "for", now.Sub(n.cfg.Raft.LastContact(b.ID)).Round(time.Millisecond))
		}
	}
	live := func(id int32) bool {
		f, known := fenced[id]
		return known && !f
	}
	var changes []meta.PartitionChange
	flush := func() bool {
		// The fencing and the leader changes it causes commit together,
		// in one entry: a failover costs one round of the quorum.
		err := st.ChangeCluster(fences, changes)
		fences, changes = nil, changes[:0]
		if err != nil {
			n.logger.Warn("controller changes failed", "err", err)
			return false
		}
		return true
	}
	for _, t := range st.Topics() {
		for i := range t.NumPartitions() {
			ps := t.State(i)
			if next, ok := n.decide(t, i, ps, live); ok {
				changes = append(changes, meta.PartitionChange{Topic: t, Partition: i, Expect: ps.PartitionEpoch, State: next})
			}
			if len(changes) >= 1000 && !flush() {
				return
			}
		}
	}
	flush()
}

// decide returns the next state of a partition, if it must change.
func (n *Node) decide(t *meta.Topic, part int32, ps meta.PartitionState, live func(int32) bool) (meta.PartitionState, bool) {
	isr := slices.DeleteFunc(slices.Clone(ps.ISR), func(r int32) bool { return !live(r) })
	leader := ps.Leader
	if leader < 0 || !live(leader) {
		leader = -1
		for _, r := range ps.Replicas {
			if slices.Contains(isr, r) {
				leader = r
				break
			}
		}
		if leader < 0 && n.cfg.Unclean(t) {
			for _, r := range ps.Replicas {
				if live(r) {
					leader = r
					isr = []int32{r}
					n.logger.Warn("unclean leader election: records may be lost", "topic", t.Name(), "partition", part, "replica", r)
					break
				}
			}
		}
	}
	if len(isr) == 0 {
		// Nobody in sync is alive: keep the ISR (its last members may
		// return and lead again).
		isr = ps.ISR
	}
	target := ps.Target
	replicas := ps.Replicas
	if target != nil && leader >= 0 && allIn(target, isr) {
		// Reassignment complete: drop the replicas not in the target.
		replicas = slices.Clone(target)
		isr = slices.DeleteFunc(slices.Clone(isr), func(r int32) bool { return !slices.Contains(target, r) })
		if !slices.Contains(target, leader) {
			leader = isr[0]
		}
		target = nil
	}
	if leader == ps.Leader && slices.Equal(isr, ps.ISR) && slices.Equal(replicas, ps.Replicas) && slices.Equal(target, ps.Target) {
		return ps, false
	}
	if leader != ps.Leader {
		n.logger.Info("partition leader change", "topic", t.Name(), "partition", part, "old_leader", ps.Leader, "leader", leader, "epoch", ps.LeaderEpoch+1, "isr", isr)
	}
	return meta.NextState(ps, leader, isr, replicas, target), true
}

func allIn(a, b []int32) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
