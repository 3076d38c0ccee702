package cluster

import (
	"errors"
	"slices"

	"github.com/ferrymq/ferry/meta"
)

// Errors of ElectLeaders, each one Kafka code.
var (
	// ErrElectionNotNeeded: the partition already has the leader asked
	// for (ELECTION_NOT_NEEDED).
	ErrElectionNotNeeded = errors.New("cluster: election not needed")
	// ErrPreferredNotAvailable: the preferred replica is not in sync or
	// not alive (PREFERRED_LEADER_NOT_AVAILABLE).
	ErrPreferredNotAvailable = errors.New("cluster: preferred leader not available")
	// ErrNoEligibleLeader: no live replica may lead
	// (ELIGIBLE_LEADERS_NOT_AVAILABLE).
	ErrNoEligibleLeader = errors.New("cluster: no eligible leader available")
)

// Election types of ElectLeaders, numbered as on the wire.
const (
	ElectPreferred int8 = 0
	ElectUnclean   int8 = 1
)

// ElectLeaders elects leaders for partitions of t, as Kafka's
// ElectLeaders: the preferred replica (the first) when it is in sync and
// alive; or, unclean, any live replica of a partition that has no leader.
// It returns one error per partition, nil where a leader was elected.
func (n *Node) ElectLeaders(kind int8, t *meta.Topic, parts []int32) []error {
	live := map[int32]bool{}
	for _, b := range n.cfg.Store.Brokers() {
		live[b.ID] = !b.Fenced
	}
	errs := make([]error, len(parts))
	var changes []meta.PartitionChange
	var at []int
	for k, i := range parts {
		if i < 0 || i >= t.NumPartitions() {
			errs[k] = meta.ErrUnknownTopicOrPartition
			continue
		}
		st := t.State(i)
		leader := int32(-1)
		isr := st.ISR
		switch kind {
		case ElectPreferred:
			pref := st.Replicas[0]
			switch {
			case st.Leader == pref:
				errs[k] = ErrElectionNotNeeded
			case !live[pref] || !slices.Contains(st.ISR, pref):
				errs[k] = ErrPreferredNotAvailable
			default:
				leader = pref
			}
		default:
			if st.Leader >= 0 && live[st.Leader] {
				errs[k] = ErrElectionNotNeeded
				break
			}
			for _, r := range st.Replicas {
				if live[r] {
					leader, isr = r, []int32{r}
					break
				}
			}
			if leader < 0 {
				errs[k] = ErrNoEligibleLeader
			}
		}
		if errs[k] != nil {
			continue
		}
		changes = append(changes, meta.PartitionChange{Topic: t, Partition: i, Expect: st.PartitionEpoch, State: meta.NextState(st, leader, isr, nil, st.Target)})
		at = append(at, k)
	}
	if err := n.cfg.Store.ChangePartitions(changes); err != nil {
		for _, k := range at {
			errs[k] = err
		}
	}
	return errs
}
