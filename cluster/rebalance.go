package cluster

import (
	"slices"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// LeaderRebalance configures the return of leaderships to preferred
// replicas, as Kafka's controller does it.
type LeaderRebalance struct {
	// Enable turns it on (auto.leader.rebalance.enable, true in Kafka).
	Enable bool
	// Interval is how often the controller checks the balance
	// (leader.imbalance.check.interval.seconds). Default 300 s.
	Interval time.Duration
	// PerBrokerPercentage: a broker's preferred partitions go back to it
	// once more than this percentage of them are led by others
	// (leader.imbalance.per.broker.percentage, 10 in Kafka; 0: any).
	PerBrokerPercentage int
}

// preferredPart is one partition as the balance check sees it.
type preferredPart struct {
	topic     *meta.Topic
	partition int32
	// preferred is the first replica; leader the current leader.
	preferred, leader int32
	// eligible: the preferred replica is in the ISR and unfenced, so it
	// may lead.
	eligible bool
}

// imbalanced returns the partitions whose leadership goes back to their
// preferred replica, as Kafka's controller picks them: for each broker,
// the partitions it is the preferred replica of but does not lead; when
// they are more than pct percent of those it is the preferred replica
// of, the ones it may lead.
func imbalanced(parts []preferredPart, pct int) []preferredPart {
	type tally struct{ total, elsewhere int }
	by := map[int32]*tally{}
	for _, p := range parts {
		t := by[p.preferred]
		if t == nil {
			t = &tally{}
			by[p.preferred] = t
		}
		t.total++
		if p.leader != p.preferred {
			t.elsewhere++
		}
	}
	var out []preferredPart
	for _, p := range parts {
		t := by[p.preferred]
		if p.leader != p.preferred && p.eligible && t.elsewhere*100 > pct*t.total {
			out = append(out, p)
		}
	}
	return out
}

// rebalanceLeaders moves leaderships back to preferred replicas where a
// broker's imbalance exceeds the configured percentage, through
// ElectLeaders (a preferred election, conditional on each partition's
// epoch like every controller change). Partitions being reassigned are
// left alone: their replica list is changing.
func (n *Node) rebalanceLeaders() {
	live := map[int32]bool{}
	for _, b := range n.cfg.Store.Brokers() {
		live[b.ID] = !b.Fenced
	}
	var parts []preferredPart
	for _, t := range n.cfg.Store.Topics() {
		for i := range t.NumPartitions() {
			st := t.State(i)
			if len(st.Replicas) == 0 || st.Target != nil {
				continue
			}
			pref := st.Replicas[0]
			parts = append(parts, preferredPart{
				topic: t, partition: i, preferred: pref, leader: st.Leader,
				eligible: live[pref] && slices.Contains(st.ISR, pref),
			})
		}
	}
	moves := imbalanced(parts, n.cfg.LeaderRebalance.PerBrokerPercentage)
	if len(moves) == 0 {
		return
	}
	byTopic := map[*meta.Topic][]int32{}
	var topics []*meta.Topic
	for _, p := range moves {
		if byTopic[p.topic] == nil {
			topics = append(topics, p.topic)
		}
		byTopic[p.topic] = append(byTopic[p.topic], p.partition)
	}
	moved := 0
	for _, t := range topics {
		for k, err := range n.ElectLeaders(ElectPreferred, t, byTopic[t]) {
			if err != nil {
				n.logger.Info("preferred leader election skipped", "topic", t.Name(), "partition", byTopic[t][k], "err", err)
				continue
			}
			moved++
		}
	}
	n.logger.Info("leaderships moved back to preferred replicas", "partitions", moved, "of", len(moves))
}
