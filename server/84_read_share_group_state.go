package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// ReadShareGroupState, v0 (KIP-932), between the brokers of a cluster: the
// leader of a data partition reads the state of one of its
// share-partitions from the leader of the share-partition's
// __share_group_state partition (share/remote.go).
//
// Behavior:
//   - A single broker, which stores what it serves, answers
//     NOT_COORDINATOR.
//   - The state comes back as Ferry's ShareSnapshot value in tagged field
//     100 of the partition, Kafka's fields filled in beside it; without
//     state, StartOffset is -1 and StateEpoch the last epoch it had (-1:
//     none).
//   - A read at a newer leader epoch than the state's is stored first;
//     an older one is FENCED_LEADER_EPOCH. NOT_COORDINATOR: this broker
//     does not lead the state partition.
//   - Authorization (with an authorizer): CLUSTER_ACTION on the cluster,
//     as Kafka's inter-broker requests, else CLUSTER_AUTHORIZATION_FAILED.

func init() { regKey(84, 0, 0, handleReadShareGroupState) }

func handleReadShareGroupState(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ReadShareGroupStateRequest)
	if !r.allowedCluster(auth.OpClusterAction) {
		resp := req.ResponseKind().(*kmsg.ReadShareGroupStateResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewReadShareGroupStateResponseTopic()
			rt.TopicID = t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewReadShareGroupStateResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.ClusterAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	r.await(func() kmsg.Response { return s.shares.ReadShareGroupState(req) })
	return nil
}
