package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/raftlog"
)

// RemoveRaftVoter, v0 (KIP-853).
//
// Behavior:
//   - Takes a voter out of the metadata quorum (a dead controller's
//     machine, before its replacement is added with AddRaftVoter). The
//     removed node, out of its own configuration once it applies the
//     change, no longer campaigns, and the others drop its messages
//     and never take it back (a removed node.id is retired): reuse its
//     machine with a new node.id and an empty data directory. Its broker
//     record, if it had one, stays (UnregisterBroker removes it).
//   - Served by the quorum's leader; another node forwards it there (as
//     DescribeQuorum), NOT_LEADER_OR_FOLLOWER when it cannot. A leader
//     removing itself first hands its leadership to the voter whose log
//     goes furthest, then proposes the change through it.
//   - Answered once the change is committed and applied on the node
//     that serves it, or REQUEST_TIMED_OUT after 30 s (the change may
//     still be applied).
//   - One change at a time: REQUEST_TIMED_OUT while another is pending.
//     Not a voter: VOTER_NOT_FOUND. The last voter: INVALID_REQUEST.
//   - A ClusterID that is not this cluster's: INCONSISTENT_CLUSTER_ID.
//     The directory id is ignored (one log directory, no ids).
//   - It needs ALTER on the cluster: CLUSTER_AUTHORIZATION_FAILED.
//   - A single node has no metadata quorum: UNSUPPORTED_VERSION.

func init() { regKey(81, 0, 0, handleRemoveRaftVoter) }

func handleRemoveRaftVoter(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.RemoveRaftVoterRequest)
	resp := req.ResponseKind().(*kmsg.RemoveRaftVoterResponse)
	fail := func(err error) kmsg.Response {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err)
		return resp
	}
	if err := s.checkVoterChange(r, req.ClusterID); err != nil {
		return fail(err)
	}
	fwd := *req
	r.await(func() kmsg.Response {
		ctx, cancel := context.WithTimeout(r.c.ctx, voterChangeTimeout)
		defer cancel()
		err := s.raft.RemoveVoter(ctx, req.VoterID)
		if errors.Is(err, raftlog.ErrNotLeader) {
			if resp, ok := s.forwardToQuorumLeader(ctx, r, &fwd, s.raft.LeaderID()); ok {
				return resp
			}
			err = fmt.Errorf("%w: the quorum's leader is node %d, which this node cannot forward to", err, s.raft.LeaderID())
		}
		if err != nil {
			return fail(fmt.Errorf("removing voter %d: %w", req.VoterID, err))
		}
		s.logger.Info("voter removed from the metadata quorum", "node", req.VoterID, "principal", r.principal)
		return resp
	})
	return nil
}
