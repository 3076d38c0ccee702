package group

import (
	"cmp"
	"slices"
)

// Server-side assignors for KIP-848 groups. Both are deterministic: the
// same input always gives the same output, whatever the map order.

// topicPartition is one partition an assignor may hand out.
type topicPartition struct {
	topic string
	id    [16]byte
	p     int32
}

// assignInput is what an assignor sees.
type assignInput struct {
	members []string                   // member IDs, sorted
	subs    map[string]map[string]bool // member → topics it subscribes to (existing ones)
	parts   []topicPartition           // every subscribed partition, by topic name then partition
	prev    map[string]assignment      // member → its previous target (the uniform assignor is sticky)
}

// assignUniform spreads the partitions as evenly as the subscriptions
// allow, keeping every partition where it was when that stays balanced
// (Kafka's "uniform" assignor, the default). Steps: keep each member's
// previous partitions that it still subscribes to; give every unassigned
// partition to the eligible member with the fewest; then move partitions
// from the most loaded member to an eligible one with at least two fewer
// until no move is possible.
func assignUniform(in assignInput) map[string]assignment {
	out := make(map[string]assignment, len(in.members))
	count := make(map[string]int, len(in.members))
	for _, m := range in.members {
		out[m] = assignment{}
	}
	index := make(map[tpKey]int, len(in.parts))
	for i, tp := range in.parts {
		index[tpKey{tp.id, tp.p}] = i
	}
	owner := make(map[tpKey]string, len(in.parts))
	give := func(m string, k tpKey) {
		owner[k] = m
		out[m].add(k.id, k.p)
		count[m]++
	}
	take := func(m string, k tpKey) {
		delete(owner, k)
		ps := out[m][k.id]
		if i, ok := slices.BinarySearch(ps, k.p); ok {
			ps = slices.Delete(ps, i, i+1)
		}
		if len(ps) == 0 {
			delete(out[m], k.id)
		} else {
			out[m][k.id] = ps
		}
		count[m]--
	}

	// 1. Stickiness.
	for _, m := range in.members {
		prev := in.prev[m]
		for _, id := range prev.sortedIDs() {
			for _, p := range prev[id] {
				k := tpKey{id, p}
				i, ok := index[k]
				if !ok || !in.subs[m][in.parts[i].topic] {
					continue
				}
				if _, taken := owner[k]; taken {
					continue
				}
				give(m, k)
			}
		}
	}

	// 2. Unassigned partitions go to the least loaded eligible member.
	leastLoaded := func(topic, except string) string {
		best := ""
		for _, m := range in.members {
			if m == except || !in.subs[m][topic] {
				continue
			}
			if best == "" || count[m] < count[best] {
				best = m
			}
		}
		return best
	}
	for _, tp := range in.parts {
		k := tpKey{tp.id, tp.p}
		if _, taken := owner[k]; taken {
			continue
		}
		if m := leastLoaded(tp.topic, ""); m != "" {
			give(m, k)
		}
	}

	// 3. Balance: move a partition from the most loaded member that has
	// one some member with at least two fewer can take, to the least
	// loaded such member; repeat. Always taking from the top keeps
	// members that give from ever having to take back. Each round finds,
	// per topic, the least loaded subscriber and the least loaded other
	// than it (what leastLoaded would answer), so a round costs the
	// members' subscriptions plus the partitions, not their product.
	pos := make(map[string]int, len(in.members))
	for i, m := range in.members {
		pos[m] = i
	}
	order := slices.Clone(in.members)
	type candidates struct{ best, second string }
	least := make(map[string]*candidates)
	for {
		slices.SortFunc(order, func(a, b string) int {
			if c := cmp.Compare(count[b], count[a]); c != 0 {
				return c
			}
			return cmp.Compare(pos[a], pos[b])
		})
		clear(least)
		for _, m := range in.members {
			for t := range in.subs[m] {
				c := least[t]
				switch {
				case c == nil:
					least[t] = &candidates{best: m}
				case count[m] < count[c.best]:
					c.second, c.best = c.best, m
				case c.second == "" || count[m] < count[c.second]:
					c.second = m
				}
			}
		}
		takerFor := func(topic, except string) string {
			c := least[topic]
			if c == nil {
				return ""
			}
			if c.best == except {
				return c.second
			}
			return c.best
		}
		moved := false
		for _, a := range order {
			// The partition with the highest index that a member with
			// at least two fewer can take.
			best, taker := -1, ""
			for id, ps := range out[a] {
				for _, p := range ps {
					i := index[tpKey{id, p}]
					if i <= best {
						continue
					}
					if b := takerFor(in.parts[i].topic, a); b != "" && count[b] < count[a]-1 {
						best, taker = i, b
					}
				}
			}
			if best >= 0 {
				tp := in.parts[best]
				k := tpKey{tp.id, tp.p}
				take(a, k)
				give(taker, k)
				moved = true
				break
			}
		}
		if !moved {
			return out
		}
	}
}

// assignRange gives each member a contiguous range of every topic it
// subscribes to; with partitions left over, the first members (by member
// ID) get one more (Kafka's "range" assignor; members subscribed to the
// same topics get the same partition numbers, which co-partitioned topics
// need).
func assignRange(in assignInput) map[string]assignment {
	out := make(map[string]assignment, len(in.members))
	for _, m := range in.members {
		out[m] = assignment{}
	}
	for start := 0; start < len(in.parts); {
		topic := in.parts[start].topic
		end := start
		for end < len(in.parts) && in.parts[end].topic == topic {
			end++
		}
		var subs []string
		for _, m := range in.members {
			if in.subs[m][topic] {
				subs = append(subs, m)
			}
		}
		if len(subs) > 0 {
			n := end - start
			per, extra := n/len(subs), n%len(subs)
			next := start
			for i, m := range subs {
				k := per
				if i < extra {
					k++
				}
				for _, tp := range in.parts[next : next+k] {
					out[m].add(tp.id, tp.p)
				}
				next += k
			}
		}
		start = end
	}
	return out
}
