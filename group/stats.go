package group

import (
	"cmp"
	"slices"
)

// GroupStats describes one group for the broker's metrics: its members
// and committed offsets.
type GroupStats struct {
	// Name is the group id.
	Name string
	// Protocol is "classic" (JoinGroup/SyncGroup, and groups that only
	// commit) or "consumer" (KIP-848).
	Protocol string
	// Members counts the group's members.
	Members int
	// Offsets are the group's committed offsets, sorted by topic and
	// partition.
	Offsets []CommittedOffset
}

// CommittedOffset is one partition's committed offset.
type CommittedOffset struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Stats returns every group's members and committed offsets, sorted by
// group id. Each group's lock is held only while that group is copied.
func (c *Coordinator) Stats() []GroupStats {
	groups := c.groupsSnapshot()
	out := make([]GroupStats, 0, len(groups))
	for _, g := range groups {
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		gs := GroupStats{Name: g.name, Protocol: g.kind.String(), Offsets: make([]CommittedOffset, 0, g.offsetCount())}
		if g.kind == kindConsumer {
			gs.Members = len(g.cg.members)
		} else {
			gs.Members = len(g.members)
		}
		for topic, ps := range g.offsets {
			for p, e := range ps {
				gs.Offsets = append(gs.Offsets, CommittedOffset{Topic: topic, Partition: p, Offset: e.offset})
			}
		}
		g.mu.Unlock()
		slices.SortFunc(gs.Offsets, func(a, b CommittedOffset) int {
			return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
		})
		out = append(out, gs)
	}
	return out
}
