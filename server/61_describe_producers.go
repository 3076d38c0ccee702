package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// DescribeProducers, v0 (KIP-664).
//
// Behavior:
//   - Every producer a partition remembers (idempotent and transactional):
//     its epoch, last sequence, when it last appended (this broker's clock,
//     or when the state was loaded after a restart), and the first offset
//     of its transaction open in the partition (-1 if none), and the
//     coordinator epoch of its last marker there (-1 if none; 0 on one
//     broker).
//   - An unknown partition answers UNKNOWN_TOPIC_OR_PARTITION, an offline
//     one KAFKA_STORAGE_ERROR; one of a topic the principal may not READ
//     TOPIC_AUTHORIZATION_FAILED.

func init() { regKey(61, 0, 0, handleDescribeProducers) }

func handleDescribeProducers(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		t := s.meta.Topic(rt.Topic)
		denied := !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpRead)
		for _, part := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = part
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p, err := t.Partition(part)
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, ps := range p.Producers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID = ps.ProducerID
				ap.ProducerEpoch = int32(ps.ProducerEpoch)
				ap.LastSequence = ps.LastSequence
				ap.LastTimestamp = ps.LastTimestamp
				ap.CoordinatorEpoch = ps.CoordinatorEpoch
				ap.CurrentTxnStartOffset = ps.TxnStartOffset
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
