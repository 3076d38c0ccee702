package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateTopics, v0-v7.
//
// NumPartitions and ReplicationFactor of -1 (v4+) take num.partitions and
// default.replication.factor. A replica assignment is accepted when it
// puts every partition on this broker alone. A replication factor above
// the number of brokers (1) is INVALID_REPLICATION_FACTOR. ValidateOnly
// checks without creating. v5+ answers with the topic's configs and
// counts. The topic is durable in the metadata log before the answer.

func init() { regKey(19, 0, 7, handleCreateTopics) }

func handleCreateTopics(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	r.await(func() kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.NumPartitions, st.ReplicationFactor = -1, -1
			err := s.createTopicFromRequest(&rt, seen[rt.Topic] > 1, req.ValidateOnly)
			if err != nil {
				code, msg := errCode(err)
				st.ErrorCode = code
				if r.version >= 1 {
					st.ErrorMessage = msg
				}
			} else if r.version >= 5 {
				t := s.topics.get(rt.Topic)
				if req.ValidateOnly || t == nil {
					st.NumPartitions = rt.NumPartitions
					if st.NumPartitions == -1 {
						st.NumPartitions = int32(s.settings().int64("num.partitions"))
					}
					st.ReplicationFactor = 1
				} else {
					st.TopicID = t.id
					st.NumPartitions = int32(len(t.partitions()))
					st.ReplicationFactor = 1
					s.topics.mu.RLock()
					overrides := t.configs
					s.topics.mu.RUnlock()
					for _, c := range s.settings().describeTopicConfigs(overrides, nil, false, false) {
						cc := kmsg.NewCreateTopicsResponseTopicConfig()
						cc.Name, cc.Value, cc.Source, cc.IsSensitive = c.Name, c.Value, int8(c.Source), false
						st.Configs = append(st.Configs, cc)
					}
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}

func (s *Server) createTopicFromRequest(rt *kmsg.CreateTopicsRequestTopic, duplicate, validateOnly bool) error {
	if duplicate {
		return newTopicError(kerr.InvalidRequest, "topic %q is named more than once in the request", rt.Topic)
	}
	partitions, replication := rt.NumPartitions, rt.ReplicationFactor
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || replication != -1 {
			return newTopicError(kerr.InvalidRequest, "both a replica assignment and a partition count or replication factor were given")
		}
		partitions = int32(len(rt.ReplicaAssignment))
		for i, ra := range rt.ReplicaAssignment {
			if ra.Partition != int32(i) {
				return newTopicError(kerr.InvalidReplicaAssignment, "replica assignment partitions must be 0..%d in order", len(rt.ReplicaAssignment)-1)
			}
			if len(ra.Replicas) == 0 {
				return newTopicError(kerr.InvalidReplicaAssignment, "partition %d has no replicas", ra.Partition)
			}
			for _, b := range ra.Replicas {
				if b != s.cfg.NodeID {
					return newTopicError(kerr.InvalidReplicaAssignment, "broker %d does not exist", b)
				}
			}
			if len(ra.Replicas) > 1 {
				return newTopicError(kerr.InvalidReplicationFactor, "replication factor %d is larger than the number of brokers (1)", len(ra.Replicas))
			}
		}
		replication = 1
	}
	configs := map[string]*string{}
	for _, c := range rt.Configs {
		configs[c.Name] = c.Value
	}
	_, err := s.createTopic(rt.Topic, partitions, replication, configs, false, validateOnly)
	return err
}
