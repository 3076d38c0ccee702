package server

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
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
					return fmt.Errorf("%w: topic %q is named more than once", kerr.InvalidRequest, rt.Topic)
				}
				if !r.allowed(auth.ResourceTopic, rt.Topic, auth.OpAlter) {
					return kerr.TopicAuthorizationFailed
				}
				t := s.meta.Topic(rt.Topic)
				if t == nil {
					return fmt.Errorf("%w: topic %q does not exist", kerr.UnknownTopicOrPartition, rt.Topic)
				}
				if rt.Assignment != nil {
					if added := rt.Count - t.NumPartitions(); len(rt.Assignment) != int(added) {
						return fmt.Errorf("%w: %d assignments for %d new partitions", kerr.InvalidReplicaAssignment, len(rt.Assignment), added)
					}
					for _, a := range rt.Assignment {
						if len(a.Replicas) != 1 || a.Replicas[0] != s.cfg.NodeID {
							return fmt.Errorf("%w: replicas %v: only broker %d exists", kerr.InvalidReplicaAssignment, a.Replicas, s.cfg.NodeID)
						}
					}
				}
				return s.meta.AddPartitions(t, rt.Count, req.ValidateOnly)
			}()
			st.ErrorCode, st.ErrorMessage = errorCode(err)
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}
