package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// OffsetForLeaderEpoch, v0-v4.
//
// Behavior:
//   - Answers from the partition's leader epoch cache, as Kafka's
//     LeaderEpochFileCache: for the current epoch, the log end; for an
//     older one, the largest epoch at or below it and the offset the
//     next epoch began at; for an unknown newer one, -1 and -1.
//   - On one broker every partition has had one epoch, 0, since its
//     creation, so epoch 0 (or any below it) ends at the high watermark.
//   - A consumer asks the leader or, v3+ (ReplicaID -1), a follower it
//     reads from (KIP-392), which answers from its own log; elsewhere
//     NOT_LEADER_OR_FOLLOWER. A follower (ReplicaID set, v3+) asks its
//     leader before it fetches, to find where its log diverges. A
//     CurrentLeaderEpoch above the replica's is UNKNOWN_LEADER_EPOCH,
//     below it FENCED_LEADER_EPOCH.

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
			if denied || err != nil {
				switch {
				case denied && req.ReplicaID >= 0:
					sp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
				case denied:
					sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				default:
					sp.ErrorCode = codeOf(err)
				}
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			leader, epoch := p.Leader()
			current := rp.CurrentLeaderEpoch
			if r.version < 2 {
				current = -1
			}
			switch {
			case !leader && (r.version < 3 || req.ReplicaID >= 0):
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			case current > epoch:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case current >= 0 && current < epoch:
				sp.ErrorCode = kerr.FencedLeaderEpoch.Code
			default:
				e, end, err := p.EndOffsetForEpoch(rp.LeaderEpoch)
				if err != nil {
					sp.ErrorCode = codeOf(err)
					break
				}
				sp.LeaderEpoch, sp.EndOffset = e, end
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
