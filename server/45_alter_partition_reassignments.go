package server

import (
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// AlterPartitionReassignments, v0-v1; ListPartitionReassignments, v0.
//
// Behavior:
//   - A partition given replicas starts moving to them: the new replicas
//     are added, fetch from the leader and enter the ISR; then the
//     controller drops the replicas not in the target (and moves the
//     leadership if its leader is one of them). Null replicas cancel a
//     reassignment in progress (NO_REASSIGNMENT_IN_PROGRESS if none):
//     the replicas it added are removed.
//   - v1 with AllowReplicationFactorChange false refuses a target of
//     another replica count (INVALID_REPLICATION_FACTOR, KIP-860).
//   - List shows each partition being moved: its replicas (old and new),
//     those being added and those being removed.
//   - Alter needs ALTER on the cluster, List DESCRIBE on it:
//     CLUSTER_AUTHORIZATION_FAILED otherwise, as Kafka.
//   - On a single broker the only assignment is the broker itself, and
//     nothing is ever in progress.

func init() {
	regKey(45, 0, 1, handleAlterPartitionReassignments)
	regKey(46, 0, 0, handleListPartitionReassignments)
}

func handleAlterPartitionReassignments(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterPartitionAssignmentsRequest)
	resp := req.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	if !r.allowedCluster(auth.OpAlter) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	r.await(func() kmsg.Response {
		for _, rt := range req.Topics {
			st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
			st.Topic = rt.Topic
			t := s.meta.Topic(rt.Topic)
			for _, rp := range rt.Partitions {
				sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
				sp.Partition = rp.Partition
				var err error
				switch {
				case t == nil || rp.Partition < 0 || rp.Partition >= t.NumPartitions():
					err = meta.ErrUnknownTopicOrPartition
				case s.cluster == nil && rp.Replicas == nil:
					err = meta.ErrNoReassignment
				case s.cluster == nil:
					if !slices.Equal(rp.Replicas, []int32{s.cfg.NodeID}) {
						err = fmt.Errorf("%w: only broker %d exists", kerr.InvalidReplicaAssignment, s.cfg.NodeID)
					}
				case t.Internal():
					err = fmt.Errorf("%w: the replicas of internal topics are placed by the cluster", kerr.InvalidReplicaAssignment)
				case r.version >= 1 && !req.AllowReplicationFactorChange && rp.Replicas != nil && len(rp.Replicas) != len(t.State(rp.Partition).Replicas):
					err = fmt.Errorf("%w: %d replicas for a partition of %d, and the request does not allow a change", kerr.InvalidReplicationFactor, len(rp.Replicas), len(t.State(rp.Partition).Replicas))
				default:
					err = s.meta.Reassign(t, rp.Partition, rp.Replicas)
				}
				sp.ErrorCode, sp.ErrorMessage = errorCode(err)
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	})
	return nil
}

func handleListPartitionReassignments(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ListPartitionReassignmentsRequest)
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	if !r.allowedCluster(auth.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	add := func(t *meta.Topic, parts []int32) {
		rt := kmsg.NewListPartitionReassignmentsResponseTopic()
		rt.Topic = t.Name()
		for _, i := range parts {
			if i < 0 || i >= t.NumPartitions() {
				continue
			}
			ps := t.State(i)
			if ps.Target == nil {
				continue
			}
			rp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
			rp.Partition = i
			rp.Replicas = ps.Replicas
			rp.AddingReplicas = ps.Adding
			for _, r := range ps.Replicas {
				if !slices.Contains(ps.Target, r) {
					rp.RemovingReplicas = append(rp.RemovingReplicas, r)
				}
			}
			if rp.AddingReplicas == nil {
				rp.AddingReplicas = []int32{}
			}
			if rp.RemovingReplicas == nil {
				rp.RemovingReplicas = []int32{}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(rt.Partitions) > 0 {
			resp.Topics = append(resp.Topics, rt)
		}
	}
	if req.Topics == nil {
		for _, t := range s.meta.Topics() {
			ps := make([]int32, t.NumPartitions())
			for i := range ps {
				ps[i] = int32(i)
			}
			add(t, ps)
		}
		return resp
	}
	for _, rt := range req.Topics {
		if t := s.meta.Topic(rt.Topic); t != nil {
			add(t, rt.Partitions)
		}
	}
	return resp
}
