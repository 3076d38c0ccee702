package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/txn"
)

// WriteTxnMarkers, v0-v2.
//
// Behavior:
//   - On one broker the transaction coordinator writes its markers itself
//     (txn.go); the API is answered for tools that send it. In a cluster
//     the coordinators send it to the leaders of their transactions'
//     partitions (txn_cluster.go). Each marker is appended to each of its
//     partitions (to the group coordinator for __consumer_offsets, and in
//     a cluster to that partition too, for its coordinator epoch) and
//     made durable (on the ISR, in a cluster) before the answer, by the
//     same code; a broker that does not lead the partition (or whose
//     group coordinator has not loaded it) answers NOT_LEADER_OR_FOLLOWER.
//   - A partition that does not exist answers UNKNOWN_TOPIC_OR_PARTITION; a
//     marker older than its producer's epoch there is dropped, with no
//     error, as Kafka's coordinator drops it.
//   - A marker whose coordinator epoch is lower than that of its
//     producer's last marker on the partition answers
//     TRANSACTION_COORDINATOR_FENCED and writes nothing, as Kafka's
//     partitions do: it comes from a coordinator a newer one replaced,
//     which gives the transaction up on that answer.
//   - It needs CLUSTER_ACTION on the cluster: every partition answers
//     CLUSTER_AUTHORIZATION_FAILED otherwise, as in Kafka.
//
// Version notes:
//   - v2 carries the transaction version (KIP-1228), which changes nothing
//     here: the marker's epoch is the one to write.

func init() { regKey(27, 0, 2, handleWriteTxnMarkers) }

func handleWriteTxnMarkers(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.WriteTxnMarkersRequest)
	if !r.allowedCluster(auth.OpClusterAction) {
		// Kafka answers every partition.
		resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
		for _, m := range req.Markers {
			rm := kmsg.NewWriteTxnMarkersResponseMarker()
			rm.ProducerID = m.ProducerID
			for _, t := range m.Topics {
				rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					rp.Partition, rp.ErrorCode = p, kerr.ClusterAuthorizationFailed.Code
					rt.Partitions = append(rt.Partitions, rp)
				}
				rm.Topics = append(rm.Topics, rt)
			}
			resp.Markers = append(resp.Markers, rm)
		}
		return resp
	}
	r.await(func() kmsg.Response {
		resp := req.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
		for _, m := range req.Markers {
			rm := kmsg.NewWriteTxnMarkersResponseMarker()
			rm.ProducerID = m.ProducerID
			for _, t := range m.Topics {
				rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					rp.Partition = p
					err := s.writeMarker(r.c.ctx, t.Topic, p, partition.Marker{
						ProducerID:       m.ProducerID,
						ProducerEpoch:    m.ProducerEpoch,
						Commit:           m.Committed,
						CoordinatorEpoch: m.CoordinatorEpoch,
					})
					switch {
					case errors.Is(err, txn.ErrUnknownPartition):
						rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
					case err != nil:
						rp.ErrorCode = codeOf(err)
					}
					rt.Partitions = append(rt.Partitions, rp)
				}
				rm.Topics = append(rm.Topics, rt)
			}
			resp.Markers = append(resp.Markers, rm)
		}
		return resp
	})
	return nil
}
