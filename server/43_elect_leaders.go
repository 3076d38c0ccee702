package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/meta"
)

// ElectLeaders, v0-v2.
//
// Behavior:
//   - ElectionType 0 (preferred, the only one before v1) moves each
//     partition's leadership to its first replica when that replica is
//     in sync and alive (PREFERRED_LEADER_NOT_AVAILABLE otherwise,
//     ELECTION_NOT_NEEDED when it leads already); 1 (unclean) gives a
//     partition without a leader any live replica, which may lose
//     records.
//   - Null topics mean every partition. On a single broker every
//     partition has its preferred leader: ELECTION_NOT_NEEDED.
//   - The change is recorded in the metadata log before the answer.
//   - It needs ALTER on the cluster: CLUSTER_AUTHORIZATION_FAILED, for
//     the request (v1+) and each partition named, otherwise.

func init() { regKey(43, 0, 2, handleElectLeaders) }

func handleElectLeaders(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ElectLeadersRequest)
	resp := req.ResponseKind().(*kmsg.ElectLeadersResponse)
	kind := req.ElectionType
	if r.version == 0 {
		kind = cluster.ElectPreferred
	}
	if kind != cluster.ElectPreferred && kind != cluster.ElectUnclean {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	if !r.allowedCluster(auth.OpAlter) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		for _, rt := range req.Topics {
			st := kmsg.NewElectLeadersResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewElectLeadersResponseTopicPartition()
				sp.Partition, sp.ErrorCode = p, kerr.ClusterAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	type want struct {
		t     *meta.Topic
		name  string
		parts []int32
	}
	var wants []want
	if req.Topics == nil {
		for _, t := range s.meta.Topics() {
			ps := make([]int32, t.NumPartitions())
			for i := range ps {
				ps[i] = int32(i)
			}
			wants = append(wants, want{t, t.Name(), ps})
		}
	} else {
		for _, rt := range req.Topics {
			wants = append(wants, want{s.meta.Topic(rt.Topic), rt.Topic, rt.Partitions})
		}
	}
	r.await(func() kmsg.Response {
		for _, w := range wants {
			rt := kmsg.NewElectLeadersResponseTopic()
			rt.Topic = w.name
			var errs []error
			switch {
			case w.t == nil:
				errs = make([]error, len(w.parts))
				for i := range errs {
					errs[i] = meta.ErrUnknownTopicOrPartition
				}
			case s.cluster == nil:
				errs = make([]error, len(w.parts))
				for i, p := range w.parts {
					errs[i] = cluster.ErrElectionNotNeeded
					if p < 0 || p >= w.t.NumPartitions() {
						errs[i] = meta.ErrUnknownTopicOrPartition
					}
				}
			default:
				errs = s.cluster.ElectLeaders(kind, w.t, w.parts)
			}
			for i, p := range w.parts {
				rp := kmsg.NewElectLeadersResponseTopicPartition()
				rp.Partition = p
				rp.ErrorCode, rp.ErrorMessage = errorCode(errs[i])
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	})
	return nil
}
