package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/raftlog"
)

// AddRaftVoter, v0-v1 (KIP-853).
//
// Behavior:
//   - Makes a node a voter of the metadata quorum. The node is a
//     controller (process.roles has controller) started with a controller
//     listener and a node.id not among the voters: it joins the metadata
//     log as a learner (it dials the voters, and the leader adds it), and
//     once its log reaches the leader's commit index this request
//     promotes it, with the request's listener as its controller address
//     (the one named by the first of controller.listener.names, CONTROLLER
//     by default, else the first given). The address is kept in the log
//     and in snapshots: every node, restarted or new, finds the voter.
//   - Served by the quorum's leader; another node forwards it there (as
//     DescribeQuorum), NOT_LEADER_OR_FOLLOWER when it cannot.
//   - Answered once the change is committed and applied on the leader
//     (AckWhenCommitted is always honoured), or REQUEST_TIMED_OUT after
//     TimeoutMillis (30 s if not set): the change may still be applied.
//   - One change at a time: while another change of the configuration is
//     not applied, or the leader has not applied the start of its term,
//     REQUEST_TIMED_OUT (as Kafka's leader answers with a voter change
//     pending); a node that is not a learner yet, or whose log is behind,
//     REQUEST_TIMED_OUT too; a voter already, DUPLICATE_VOTER.
//   - A ClusterID that is not this cluster's: INCONSISTENT_CLUSTER_ID. No
//     listener: INVALID_REQUEST. The directory id is ignored (one log
//     directory, no ids).
//   - It needs ALTER on the cluster: CLUSTER_AUTHORIZATION_FAILED.
//   - A single node has no metadata quorum: UNSUPPORTED_VERSION.
//
// Version notes:
//   - v1 adds AckWhenCommitted; Ferry answers after the commit either way.

func init() { regKey(80, 0, 1, handleAddRaftVoter) }

// voterChangeTimeout bounds a voter change when the request gives none.
const voterChangeTimeout = 30 * time.Second

func handleAddRaftVoter(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AddRaftVoterRequest)
	resp := req.ResponseKind().(*kmsg.AddRaftVoterResponse)
	fail := func(err error) kmsg.Response {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err)
		return resp
	}
	if err := s.checkVoterChange(r, req.ClusterID); err != nil {
		return fail(err)
	}
	addr, err := voterAddr(s, req.Listeners)
	if err != nil {
		return fail(err)
	}
	fwd := *req
	r.await(func() kmsg.Response {
		ctx, cancel := context.WithTimeout(r.c.ctx, requestTimeout(req.TimeoutMillis))
		defer cancel()
		err := s.raft.AddVoter(ctx, req.VoterID, addr)
		if errors.Is(err, raftlog.ErrNotLeader) {
			if resp, ok := s.forwardToQuorumLeader(ctx, r, &fwd, s.raft.LeaderID()); ok {
				return resp
			}
			err = fmt.Errorf("%w: the quorum's leader is node %d, which this node cannot forward to", err, s.raft.LeaderID())
		}
		if err != nil {
			return fail(fmt.Errorf("adding voter %d: %w", req.VoterID, err))
		}
		s.logger.Info("voter added to the metadata quorum", "node", req.VoterID, "addr", addr, "principal", r.principal)
		return resp
	})
	return nil
}

// checkVoterChange checks what AddRaftVoter and RemoveRaftVoter both
// need: ALTER on the cluster, a cluster, and its id when one is given.
func (s *Server) checkVoterChange(r *request, clusterID *string) error {
	switch {
	case !r.allowedCluster(auth.OpAlter):
		return fmt.Errorf("%w: ALTER on the cluster is not allowed", kerr.ClusterAuthorizationFailed)
	case s.raft == nil:
		return fmt.Errorf("%w: a single node has no metadata quorum (controller.quorum.voters is not set)", kerr.UnsupportedVersion)
	case clusterID != nil && *clusterID != "" && *clusterID != s.meta.ClusterID():
		return fmt.Errorf("%w: cluster %s, this is %s", kerr.InconsistentClusterID, *clusterID, s.meta.ClusterID())
	}
	return nil
}

// voterAddr is the controller address among an AddRaftVoter's listeners:
// the one named as this cluster's controller listeners are, else the
// first.
func voterAddr(s *Server, ls []kmsg.AddRaftVoterRequestListener) (string, error) {
	if len(ls) == 0 {
		return "", fmt.Errorf("%w: no listener: the new voter's controller listener is needed", kerr.InvalidRequest)
	}
	l := ls[0]
	for _, c := range ls {
		if c.Name == s.controllerListenerName() {
			l = c
			break
		}
	}
	if l.Host == "" || l.Port == 0 {
		return "", fmt.Errorf("%w: listener %s has no host or port", kerr.InvalidRequest, l.Name)
	}
	return net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))), nil
}

// requestTimeout is a request's TimeoutMillis, or voterChangeTimeout.
func requestTimeout(ms int32) time.Duration {
	if ms <= 0 {
		return voterChangeTimeout
	}
	return time.Duration(ms) * time.Millisecond
}
