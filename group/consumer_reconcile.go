package group

import (
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds KIP-848 assignment and reconciliation, after Kafka's
// TargetAssignmentBuilder and CurrentAssignmentBuilder: the target
// assignment computed at each group epoch, the epoch checks of a
// heartbeat, and the steps that move a member towards its target.

// checkMemberEpoch fences a member whose epoch is neither its current one
// nor its previous one with a subset of its assignment (the response that
// carried the new epoch may have been lost).
func checkMemberEpoch(m *cmember, req *kmsg.ConsumerGroupHeartbeatRequest) (*kerr.Error, string) {
	switch {
	case req.MemberEpoch > m.epoch:
		return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
	case req.MemberEpoch < m.epoch:
		if req.MemberEpoch != m.prevEpoch || !ownedSubset(req.Topics, m.assigned) {
			return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
		}
	}
	return nil, ""
}

func ownedSubset(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, a assignment) bool {
	if owned == nil {
		return false
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if !a.has(t.TopicID, p) {
				return false
			}
		}
	}
	return true
}

// ownsAny reports whether the member still reports any partition of a.
// Without a Topics field (a lightweight heartbeat) it is assumed to.
func ownsAny(a assignment, owned []kmsg.ConsumerGroupHeartbeatRequestTopic) bool {
	if owned == nil {
		return true
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if a.has(t.TopicID, p) {
				return true
			}
		}
	}
	return false
}

func responseAssignment(a assignment) *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	out := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	for _, id := range a.sortedIDs() {
		t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		t.TopicID = id
		t.Partitions = slices.Clone(a[id])
		out.Topics = append(out.Topics, t)
	}
	return &out
}

// computeTargetLocked runs the assignor over every member and makes the
// result the target of the current group epoch.
func (c *Coordinator) computeTargetLocked(g *group, topics map[string]TopicInfo) {
	cg := g.cg
	members := cg.sortedMembers()
	in := assignInput{subs: make(map[string]map[string]bool, len(members)), prev: make(map[string]assignment, len(members))}
	all := make(map[string]bool)
	for _, m := range members {
		in.members = append(in.members, m.id)
		s := m.subscribed(topics)
		in.subs[m.id] = s
		in.prev[m.id] = m.target
		for t := range s {
			all[t] = true
		}
	}
	for _, t := range slices.Sorted(maps.Keys(all)) {
		info := topics[t]
		for p := int32(0); p < info.Partitions; p++ {
			in.parts = append(in.parts, topicPartition{topic: t, id: info.ID, p: p})
		}
	}
	var out map[string]assignment
	if cg.preferredAssignor(c.cfg.ConsumerAssignors[0]) == AssignorRange {
		out = assignRange(in)
	} else {
		out = assignUniform(in)
	}
	for _, m := range members {
		m.target = out[m.id]
		if m.target == nil {
			m.target = assignment{}
		}
	}
	cg.assignmentEpoch = cg.epoch
}

// reconcileLocked moves m one step towards its target assignment (Kafka's
// CurrentAssignmentBuilder). owned is what the member reports it holds (nil
// if it did not say).
func (c *Coordinator) reconcileLocked(g *group, m *cmember, owned []kmsg.ConsumerGroupHeartbeatRequestTopic) {
	cg := g.cg
	if m.epoch == epochStaticLeave {
		return
	}
	if m.state == memberStable && m.epoch == cg.assignmentEpoch {
		return
	}
	if m.state == memberUnrevokedPartitions && ownsAny(m.pendingRevoke, owned) {
		return // still waiting for the member to let go
	}

	keep, revoke, add := assignment{}, assignment{}, assignment{}
	unreleased := false
	ids := make(map[[16]byte]bool)
	for id := range m.target {
		ids[id] = true
	}
	for id := range m.assigned {
		ids[id] = true
	}
	for id := range ids {
		for _, p := range m.assigned[id] {
			if m.target.has(id, p) {
				keep.add(id, p)
			} else {
				revoke.add(id, p)
			}
		}
		for _, p := range m.target[id] {
			if keep.has(id, p) {
				continue
			}
			if o, ok := cg.owners[tpKey{id, p}]; ok && o != m.id {
				unreleased = true // another member still holds it
				continue
			}
			add.add(id, p)
		}
	}

	oldAssigned, oldPending, oldState := m.assigned, m.pendingRevoke, m.state
	switch {
	case len(revoke) > 0 && ownsAny(revoke, owned):
		// Revoke first; the epoch stays until the member confirms.
		m.state = memberUnrevokedPartitions
		m.prevEpoch = m.epoch
		m.assigned, m.pendingRevoke = keep, revoke
	default:
		for id, ps := range add {
			for _, p := range ps {
				keep.add(id, p)
			}
		}
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
		m.assigned, m.pendingRevoke = keep, assignment{}
	}
	cg.release(m, oldAssigned)
	cg.release(m, oldPending)
	cg.claim(m, m.assigned)
	cg.claim(m, m.pendingRevoke)
	m.stampAssigned()

	if m.state == memberUnrevokedPartitions {
		if oldState != memberUnrevokedPartitions || !oldPending.equal(m.pendingRevoke) {
			c.scheduleRebalanceTimeoutLocked(g, m)
		}
	} else {
		c.cancelRebalanceTimeoutLocked(g, m.id)
	}
}
