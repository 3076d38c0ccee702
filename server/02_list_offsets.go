package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/partition"
)

// ListOffsets, v0-v11.
//
// Timestamp -2 is the log start offset (earliest), -1 the high watermark
// (latest: the durable offset that Fetch serves up to), or with
// isolation_level read_committed (v2+) the last stable offset, -3 the
// record with the largest timestamp (v7+, KIP-734), -4 the earliest local
// offset (= earliest); -5 (latest tiered) and -6 (earliest pending
// upload) find nothing, there being no tiered storage. A timestamp >= 0
// finds the first record at or after it; none gives offset -1. As in
// Kafka, lookups by timestamp (and -3) answer only offsets below the high
// watermark, or below the last stable offset for read_committed. v0
// answers in OldStyleOffsets.
//
// Behavior:
//   - v1+: a partition named more than once gets INVALID_REQUEST at each
//     occurrence, as in Kafka.
//   - Lookups by timestamp are made per partition, all of a partition's
//     at once, so a request decompresses each batch at most once (v0 may
//     name a partition many times).

func init() { regKey(2, 0, 11, handleListOffsets) }

// topicPartition names a partition in a request.
type topicPartition struct {
	topic     string
	partition int32
}

// timestampLookups gathers a request's lookups by timestamp per partition,
// so that each partition is searched once (and each of its batches
// decompressed at most once) however many times the request names it.
type timestampLookups struct {
	p  *partition.Partition
	ts []int64
	at [][2]int // the answers' indexes in the response: topic, partition
}

func handleListOffsets(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	// From v1, Kafka answers INVALID_REQUEST to every occurrence of a
	// partition the request names more than once.
	var dup map[topicPartition]bool
	if r.version >= 1 {
		seen := map[topicPartition]bool{}
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				tp := topicPartition{rt.Topic, rp.Partition}
				if seen[tp] {
					if dup == nil {
						dup = map[topicPartition]bool{}
					}
					dup[tp] = true
				}
				seen[tp] = true
			}
		}
	}
	committed := r.version >= 2 && req.IsolationLevel == 1
	var lookups map[*partition.Partition]*timestampLookups
	for ti, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		t := s.meta.Topic(rt.Topic)
		denied := !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpDescribe)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p, err := t.Partition(rp.Partition)
			leader, epoch := true, int32(partition.LeaderEpoch)
			if err == nil {
				leader, epoch = p.Leader()
			}
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case dup[topicPartition{rt.Topic, rp.Partition}]:
				sp.ErrorCode = kerr.InvalidRequest.Code
			case err != nil:
				sp.ErrorCode = codeOf(err)
			case !leader:
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			case rp.CurrentLeaderEpoch > epoch:
				sp.ErrorCode = kerr.UnknownLeaderEpoch.Code
			case rp.CurrentLeaderEpoch >= 0 && rp.CurrentLeaderEpoch < epoch:
				sp.ErrorCode = kerr.FencedLeaderEpoch.Code
			case rp.Timestamp >= 0:
				sp.LeaderEpoch = epoch
				if lookups == nil {
					lookups = map[*partition.Partition]*timestampLookups{}
				}
				l := lookups[p]
				if l == nil {
					l = &timestampLookups{p: p}
					lookups[p] = l
				}
				l.ts = append(l.ts, rp.Timestamp)
				l.at = append(l.at, [2]int{ti, len(st.Partitions)})
			default:
				sp.LeaderEpoch = epoch
				listOffset(p, rp.Timestamp, committed, &sp)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	for _, l := range lookups {
		hw := fetchable(l.p, committed)
		matches, err := l.p.OffsetsForTimestamps(l.ts)
		logStart := l.p.LogStartOffset()
		for i, at := range l.at {
			sp := &resp.Topics[at[0]].Partitions[at[1]]
			switch {
			case err != nil:
				sp.ErrorCode = codeOf(err)
			case matches[i].OK && matches[i].Offset < hw:
				// As in Kafka, an offset at or past the high watermark
				// (not durable yet) is not answered.
				// A record below the log start (still in a segment that
				// DeleteRecords cut into) answers the log start.
				sp.Offset, sp.Timestamp = max(matches[i].Offset, logStart), matches[i].Timestamp
			}
		}
	}
	if r.version == 0 {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				sp := &resp.Topics[i].Partitions[j]
				if sp.ErrorCode == 0 && sp.Offset >= 0 {
					sp.OldStyleOffsets = []int64{sp.Offset}
				} else {
					sp.OldStyleOffsets = []int64{}
				}
			}
		}
	}
	return resp
}

// fetchable is the offset a consumer of the isolation level reads up to:
// the high watermark, or the last stable offset for read_committed.
func fetchable(p *partition.Partition, committed bool) int64 {
	if committed {
		return p.LastStableOffset()
	}
	return p.HighWatermark()
}

// listOffset answers the special timestamps (below 0).
func listOffset(p *partition.Partition, ts int64, committed bool, sp *kmsg.ListOffsetsResponseTopicPartition) {
	switch ts {
	case -2, -4:
		sp.Offset = p.LogStartOffset()
	case -5, -6:
		// Latest tiered (KIP-1005) and earliest pending upload
		// (KIP-1023): nothing is tiered, so none, as Kafka answers
		// without tiered storage.
		sp.LeaderEpoch = -1
	case -1:
		sp.Offset = fetchable(p, committed)
	case -3:
		hw := fetchable(p, committed)
		off, t, ok, err := p.MaxTimestamp()
		if err != nil {
			sp.ErrorCode = codeOf(err)
		} else if ok && off < hw {
			sp.Offset, sp.Timestamp = off, t
		}
	default:
		sp.ErrorCode = kerr.InvalidRequest.Code
	}
}
