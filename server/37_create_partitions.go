package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions, v0-v3. Grows topics to the requested count; an
// assignment must name only this broker. Durable before the answer.

func init() { regKey(37, 0, 3, handleCreatePartitions) }

func handleCreatePartitions(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	r.await(func() kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewCreatePartitionsResponseTopic()
			st.Topic = rt.Topic
			err := func() error {
				if seen[rt.Topic] > 1 {
					return newTopicError(kerr.InvalidRequest, "topic %q is named more than once", rt.Topic)
				}
				t := s.topics.get(rt.Topic)
				if t == nil {
					return newTopicError(kerr.UnknownTopicOrPartition, "topic %q does not exist", rt.Topic)
				}
				if rt.Assignment != nil {
					if len(rt.Assignment) != int(rt.Count)-len(t.partitions()) {
						return newTopicError(kerr.InvalidReplicaAssignment, "%d assignments for %d new partitions", len(rt.Assignment), int(rt.Count)-len(t.partitions()))
					}
					for _, a := range rt.Assignment {
						if len(a.Replicas) != 1 || a.Replicas[0] != s.cfg.NodeID {
							return newTopicError(kerr.InvalidReplicaAssignment, "replicas %v: only broker %d exists", a.Replicas, s.cfg.NodeID)
						}
					}
				}
				return s.addPartitions(t, rt.Count, req.ValidateOnly)
			}()
			st.ErrorCode, st.ErrorMessage = errCode(err)
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}
