package meta

import (
	"math/rand/v2"
	"slices"
)

// Rack-aware placement of new partitions, as Kafka's
// AdminUtils.assignReplicasToBrokersRackAware: when every live broker
// has a broker.rack and there are two racks or more, the brokers are
// ordered alternating racks (a1, b1, c1, a2, b2, ...), leaders go round
// robin over that order, and each follower is the next broker (with the
// same shifting as without racks) in a rack that has no replica of the
// partition yet, while such racks remain, then on a broker that has
// none. So a partition's replicas span as many racks as they can, and
// the leaders spread over racks and brokers.

// rackAlternated returns the brokers of live ordered alternating racks
// (racks in name order, brokers of a rack in id order), or nil unless
// every broker has a rack and there are at least two.
func rackAlternated(live []Broker) (order []int32, rackOf map[int32]string, racks int) {
	byRack := map[string][]int32{}
	rackOf = map[int32]string{}
	for _, b := range live {
		if b.Rack == "" {
			return nil, nil, 0
		}
		byRack[b.Rack] = append(byRack[b.Rack], b.ID)
		rackOf[b.ID] = b.Rack
	}
	if len(byRack) < 2 {
		return nil, nil, 0
	}
	names := make([]string, 0, len(byRack))
	for r, ids := range byRack {
		slices.Sort(ids)
		names = append(names, r)
	}
	slices.Sort(names)
	for i := 0; len(order) < len(live); i++ {
		for _, r := range names {
			if ids := byRack[r]; i < len(ids) {
				order = append(order, ids[i])
			}
		}
	}
	return order, rackOf, len(byRack)
}

// assignByRack places n partitions of rf replicas each on order (from
// rackAlternated), as the package comment above says.
func assignByRack(order []int32, rackOf map[int32]string, racks int, n int32, rf int16) [][]int32 {
	size := len(order)
	start := rand.IntN(size)
	shift := rand.IntN(size)
	out := make([][]int32, n)
	for i := range int(n) {
		if i > 0 && i%size == 0 {
			shift++
		}
		first := (i + start) % size
		reps := []int32{order[first]}
		withRack := map[string]bool{rackOf[order[first]]: true}
		for k := 0; len(reps) < int(rf); k++ {
			b := order[(first+1+(shift*racks+k)%max(size-1, 1))%size]
			rackFree := !withRack[rackOf[b]] || len(withRack) == racks
			brokerFree := !slices.Contains(reps, b)
			if rackFree && brokerFree {
				reps = append(reps, b)
				withRack[rackOf[b]] = true
			}
		}
		out[i] = reps
	}
	return out
}
