package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/partition"
)

// ListOffsets, v0-v11.
//
// Timestamp -2 is the log start offset (earliest), -1 the high watermark
// (latest: the durable offset that Fetch serves up to; also the last
// stable offset for read_committed, there being no open transactions), -3
// the record with the largest timestamp (v7+, KIP-734), -4 the earliest
// local offset (= earliest); -5 (latest tiered) and -6 (earliest pending
// upload) find nothing, there being no tiered storage. A timestamp >= 0
// finds the first record at or after it; none gives offset -1. As in
// Kafka, lookups by timestamp answer only offsets below the high
// watermark. v0 answers in OldStyleOffsets.

func init() { regKey(2, 0, 11, handleListOffsets) }

func handleListOffsets(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t := s.topics.get(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p := t.partition(rp.Partition)
			switch {
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.CurrentLeaderEpoch > partition.LeaderEpoch:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			default:
				sp.LeaderEpoch = partition.LeaderEpoch
				listOffset(p, rp.Timestamp, &sp)
			}
			if r.version == 0 {
				if sp.ErrorCode == 0 && sp.Offset >= 0 {
					sp.OldStyleOffsets = []int64{sp.Offset}
				} else {
					sp.OldStyleOffsets = []int64{}
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func listOffset(p *partition.Partition, ts int64, sp *kmsg.ListOffsetsResponseTopicPartition) {
	switch ts {
	case -2, -4:
		sp.Offset = p.LogStartOffset()
	case -5, -6:
		// Latest tiered (KIP-1005) and earliest pending upload
		// (KIP-1023): nothing is tiered, so none, as Kafka answers
		// without tiered storage.
		sp.LeaderEpoch = -1
	case -1:
		sp.Offset = p.HighWatermark()
	case -3:
		hw := p.HighWatermark()
		off, t, ok, err := p.MaxTimestamp()
		if err != nil {
			sp.ErrorCode, _ = kafkaError(err)
		} else if ok && off < hw {
			sp.Offset, sp.Timestamp = off, t
		}
	default:
		if ts < 0 {
			sp.ErrorCode = kerr.InvalidRequest.Code
			return
		}
		// As in Kafka, an offset found at or past the high watermark
		// (not durable yet) is not answered.
		hw := p.HighWatermark()
		off, t, ok, err := p.OffsetForTimestamp(ts)
		if ok && off >= hw {
			ok = false
		}
		if err != nil {
			sp.ErrorCode, _ = kafkaError(err)
		} else if ok && off >= p.LogStartOffset() {
			sp.Offset, sp.Timestamp = off, t
		} else if ok {
			sp.Offset, sp.Timestamp = p.LogStartOffset(), t
		}
	}
}
