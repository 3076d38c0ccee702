package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// WriteShareGroupState, v0-v1 (KIP-932), between the brokers of a
// cluster: the leader of a data partition writes the state changes of its
// share-partitions through the leader of their __share_group_state
// partition (share/remote.go).
//
// Behavior:
//   - A single broker, which stores what it serves, answers
//     NOT_COORDINATOR.
//   - Each partition carries one Ferry ShareSnapshot or ShareUpdate
//     record: its value in tagged field 100 (absent: a tombstone), its key
//     type in tag 101; Kafka's fields are informative. All the records of
//     a request live in one state partition and are appended as one
//     batch, answered once on its in-sync replicas.
//   - Every partition carries the one outcome: NOT_COORDINATOR (this
//     broker does not lead the state partition), FENCED_LEADER_EPOCH (a
//     newer leader read the state), INVALID_REQUEST, KAFKA_STORAGE_ERROR.
//   - Authorization (with an authorizer): CLUSTER_ACTION on the cluster,
//     else CLUSTER_AUTHORIZATION_FAILED.
//
// Version notes:
//   - v1 adds DeliveryCompleteCount (KIP-1226), not used: the record
//     value carries it.

func init() { regKey(85, 0, 1, handleWriteShareGroupState) }

func handleWriteShareGroupState(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.WriteShareGroupStateRequest)
	if !r.allowedCluster(auth.OpClusterAction) {
		resp := req.ResponseKind().(*kmsg.WriteShareGroupStateResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewWriteShareGroupStateResponseTopic()
			rt.TopicID = t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewWriteShareGroupStateResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.ClusterAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	r.await(func() kmsg.Response { return s.shares.WriteShareGroupState(req) })
	return nil
}
