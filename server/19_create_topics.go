package server

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
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
	// CREATE on the cluster, or on each topic.
	clusterCreate := r.allowedCluster(auth.OpCreate)
	r.await(func() kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.NumPartitions, st.ReplicationFactor = -1, -1
			var err error
			if !clusterCreate && !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpCreate) {
				err = kerr.TopicAuthorizationFailed
			} else {
				err = s.createTopicFromRequest(&rt, seen[rt.Topic] > 1, req.ValidateOnly)
			}
			if err != nil {
				code, msg := errorCode(err)
				st.ErrorCode = code
				if r.version >= 1 {
					st.ErrorMessage = msg
				}
			} else if r.version >= 5 {
				t := s.meta.Topic(rt.Topic)
				if req.ValidateOnly || t == nil {
					st.NumPartitions = rt.NumPartitions
					if st.NumPartitions == -1 {
						st.NumPartitions = int32(s.settings().int64("num.partitions"))
					}
					st.ReplicationFactor = rt.ReplicationFactor
					if st.ReplicationFactor == -1 {
						st.ReplicationFactor = int16(s.settings().int64("default.replication.factor"))
					}
				} else {
					st.TopicID = t.ID()
					st.NumPartitions = t.NumPartitions()
					st.ReplicationFactor = int16(len(t.State(0).Replicas))
					if !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpDescribeConfigs) {
						st.ConfigErrorCode = kerr.TopicAuthorizationFailed.Code
						resp.Topics = append(resp.Topics, st)
						continue
					}
					for _, c := range s.meta.Settings().DescribeTopicConfigs(t.Configs(), meta.DescribeOptions{}) {
						cc := kmsg.NewCreateTopicsResponseTopicConfig()
						cc.Name, cc.Value, cc.Source, cc.IsSensitive = c.Name, c.Value, int8(c.Source), false
						st.Configs = append(st.Configs, cc)
					}
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		if s.cluster != nil && !req.ValidateOnly {
			// The new partitions opened and led here, as they are on
			// the other nodes at about the same time.
			ctx, cancel := context.WithTimeout(r.c.ctx, max(time.Duration(req.TimeoutMillis)*time.Millisecond, time.Second))
			s.cluster.Settle(ctx.Done())
			cancel()
		}
		return resp
	})
	return nil
}

func (s *Server) createTopicFromRequest(rt *kmsg.CreateTopicsRequestTopic, duplicate, validateOnly bool) error {
	if duplicate {
		return fmt.Errorf("%w: topic %q is named more than once in the request", kerr.InvalidRequest, rt.Topic)
	}
	partitions, replication := rt.NumPartitions, rt.ReplicationFactor
	if len(rt.ReplicaAssignment) > 0 {
		if partitions != -1 || replication != -1 {
			return fmt.Errorf("%w: both a replica assignment and a partition count or replication factor were given", kerr.InvalidRequest)
		}
		partitions = int32(len(rt.ReplicaAssignment))
		for i, ra := range rt.ReplicaAssignment {
			if ra.Partition != int32(i) {
				return fmt.Errorf("%w: replica assignment partitions must be 0..%d in order", kerr.InvalidReplicaAssignment, len(rt.ReplicaAssignment)-1)
			}
			if len(ra.Replicas) == 0 {
				return fmt.Errorf("%w: partition %d has no replicas", kerr.InvalidReplicaAssignment, ra.Partition)
			}
			if s.cluster != nil {
				continue // package meta checks the brokers and the replica counts
			}
			for _, b := range ra.Replicas {
				if b != s.cfg.NodeID {
					return fmt.Errorf("%w: broker %d does not exist", kerr.InvalidReplicaAssignment, b)
				}
			}
			if len(ra.Replicas) > 1 {
				return fmt.Errorf("%w: replication factor %d is larger than the number of brokers (1)", kerr.InvalidReplicationFactor, len(ra.Replicas))
			}
		}
		replication = int16(len(rt.ReplicaAssignment[0].Replicas))
		if s.cluster == nil {
			replication = 1
		}
	}
	configs := map[string]*string{}
	for _, c := range rt.Configs {
		configs[c.Name] = c.Value
	}
	nt := meta.NewTopic{Name: rt.Topic, Partitions: partitions, ReplicationFactor: replication, Configs: configs}
	if s.cluster != nil {
		for _, ra := range rt.ReplicaAssignment {
			nt.Assignments = append(nt.Assignments, ra.Replicas)
		}
	}
	if validateOnly {
		return s.meta.ValidateTopic(nt)
	}
	_, err := s.meta.CreateTopic(nt)
	return err
}
