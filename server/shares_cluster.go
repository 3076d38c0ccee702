package server

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// In a cluster the share coordinator follows the leadership of
// __share_group_state (share.Config.LoadOnLead): a broker serves the
// groups and share-partition state of the partitions it leads, loading
// each when it starts to lead it and dropping it when it stops. The
// topic is created by the controller's node once the brokers registered,
// as __consumer_offsets is, with share.coordinator.state.topic.replication.factor
// replicas (at most the voters) and share.coordinator.state.topic.min.isr,
// so an appended state record is on that many replicas before it is
// acknowledged. See docs/cluster.md for what is served.

// errShareStateStarting answers share calls that would write state before
// the controller created __share_group_state.
var errShareStateStarting = errors.New("server: __share_group_state is not created yet")

// shareLeadershipChanged loads or unloads partition p of
// __share_group_state in the share coordinator.
func (s *Server) shareLeadershipChanged(p int32, leading bool) {
	if s.shares == nil {
		return
	}
	if !leading {
		s.shares.Unload(p)
		return
	}
	if err := s.shares.Load(p); err != nil {
		s.logger.Error("loading share coordinator partition failed", "partition", p, "err", err)
	}
}

// shareStateTopicSpec is __share_group_state in a cluster, with
// share.coordinator.state.topic.replication.factor replicas at most and
// .min.isr; the share APIs wait for it (shareState.ready).
func (s *Server) shareStateTopicSpec() internalTopic {
	return internalTopic{
		name:         shareStateTopic,
		rfConfig:     "share.coordinator.state.topic.replication.factor",
		minISRConfig: "share.coordinator.state.topic.min.isr",
		partitions:   func(brokerSettings) int32 { return s.shareState.partitions },
		configs:      shareStateTopicConfigs,
		created:      func() { s.shareState.ready.Store(true) },
	}
}

// shareCoordinator answers FindCoordinator for a share-partition key
// ("group:topicID:partition", key type 2) in a cluster: the leader of the
// key's partition of __share_group_state, as Kafka.
func (s *Server) shareCoordinator(key string) (int32, string, int32, int16, *string) {
	t := s.meta.Topic(shareStateTopic)
	if t == nil || s.shares == nil {
		msg := "the share coordinator is starting"
		return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
	}
	st := t.State(s.shares.Partition(key))
	for _, b := range s.meta.Brokers() {
		if b.ID == st.Leader && !b.Fenced && b.Host != "" {
			return b.ID, b.Host, b.Port, 0, nil
		}
	}
	msg := fmt.Sprintf("partition %d of %s has no leader", s.shares.Partition(key), shareStateTopic)
	return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
}
