package share

import (
	"bytes"
	"maps"
	"slices"
)

// assignment maps topic ID to sorted partitions.
type assignment map[[16]byte][]int32

func (a assignment) equal(b assignment) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

func (a assignment) add(id [16]byte, p int32) {
	ps := a[id]
	if i, ok := slices.BinarySearch(ps, p); !ok {
		a[id] = slices.Insert(ps, i, p)
	}
}

func (a assignment) has(id [16]byte, p int32) bool {
	_, ok := slices.BinarySearch(a[id], p)
	return ok
}

func (a assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) sortedIDs() [][16]byte {
	ids := slices.Collect(maps.Keys(a))
	slices.SortFunc(ids, func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	return ids
}

// assignSimple is the share groups' server-side assignor ("simple", as
// Kafka names its only one). Share groups need no exclusive ownership, so
// every partition of a subscribed topic is given to at least one of the
// members subscribing to it, spread evenly, and when a topic has more
// subscribers than partitions, each subscriber gets one partition and a
// partition is shared by several members, as Kafka's SimpleAssignor does.
// Per topic, with its subscribers sorted by member ID (m of them) and n
// partitions: when m <= n, partition p goes to subscriber p mod m; when m
// > n, subscriber i gets partition i mod n. The result depends only on the
// members, their subscriptions and the partition counts, so it is
// recomputed after a restart instead of being stored.
func assignSimple(members []*member, topics map[string]TopicInfo) map[string]assignment {
	out := make(map[string]assignment, len(members))
	subs := make(map[string][]string) // topic → subscribed member IDs, sorted
	for _, m := range members {
		out[m.id] = assignment{}
		for _, t := range m.topics {
			if _, ok := topics[t]; ok {
				subs[t] = append(subs[t], m.id)
			}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(subs)) {
		info := topics[t]
		ids := subs[t]
		slices.Sort(ids)
		n, m := int(info.Partitions), len(ids)
		if n <= 0 {
			continue
		}
		if m <= n {
			for p := range n {
				out[ids[p%m]].add(info.ID, int32(p))
			}
			continue
		}
		for i, id := range ids {
			out[id].add(info.ID, int32(i%n))
		}
	}
	return out
}
