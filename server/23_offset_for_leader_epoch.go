package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/partition"
)

// OffsetForLeaderEpoch, v0-v4. Every partition has had one leader epoch,
// 0, since its creation, so epoch 0 (or any below it) ends at the log end
// offset; a later epoch is unknown (-1, -1, as Kafka answers). A
// CurrentLeaderEpoch above ours is UNKNOWN_LEADER_EPOCH.

func init() { regKey(23, 0, 4, handleOffsetForLeaderEpoch) }

func handleOffsetForLeaderEpoch(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		t := s.meta.Topic(rt.Topic)
		denied := !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpDescribe)
		if req.ReplicaID >= 0 {
			denied = !r.allowedCluster(auth.OpClusterAction)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			p, err := t.Partition(rp.Partition)
			switch {
			case denied && req.ReplicaID >= 0:
				sp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case err != nil:
				sp.ErrorCode = codeOf(err)
			case rp.CurrentLeaderEpoch > partition.LeaderEpoch:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case rp.LeaderEpoch <= partition.LeaderEpoch:
				sp.LeaderEpoch, sp.EndOffset = partition.LeaderEpoch, p.HighWatermark()
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
