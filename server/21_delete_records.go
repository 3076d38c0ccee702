package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// DeleteRecords, v0-v2. Moves each partition's log start offset up to the
// given offset (-1: the high watermark), deleting whole segments below it.
// The new start is durable before the answer. An offset past the high
// watermark is OFFSET_OUT_OF_RANGE; an internal topic is
// INVALID_TOPIC_EXCEPTION.

func init() { regKey(21, 0, 2, handleDeleteRecords) }

func handleDeleteRecords(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	r.await(func() kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewDeleteRecordsResponseTopic()
			st.Topic = rt.Topic
			t := s.meta.Topic(rt.Topic)
			denied := !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpDelete)
			for _, rp := range rt.Partitions {
				sp := kmsg.NewDeleteRecordsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.LowWatermark = -1
				p, err := t.Partition(rp.Partition)
				if denied {
					sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				} else if err != nil {
					sp.ErrorCode = codeOf(err)
				} else if t.Internal() {
					// As Kafka: the coordinator's records are not the
					// client's to delete.
					sp.ErrorCode = kerr.InvalidTopicException.Code
				} else if low, err := p.DeleteRecords(rp.Offset); err != nil {
					sp.ErrorCode = codeOf(err)
				} else {
					sp.LowWatermark = low
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}
