package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// UnregisterBroker, v0 (KIP-500, KIP-631).
//
// Behavior:
//   - Removes the broker's registration from the metadata (a
//     remove_broker record): Metadata and DescribeCluster no longer list
//     it, no replica is placed on it, the controller no longer fences it
//     and takes it out of ISRs and leaderships as it does a fenced
//     broker's. Partition assignments do not change, as in Kafka: its
//     replicas stay named until they are reassigned.
//   - A broker-only node (a raft learner) is also removed from the
//     configuration of the metadata log, so that the quorum's leader
//     stops sending it the log; the answer comes once this node applied
//     that change.
//   - A broker that runs registers again at once (as Kafka's does at its
//     next heartbeat), and a broker-only node that connects to the
//     voters is added back as a learner: it is meant for brokers that are
//     gone. One that comes back later joins and registers as a new one.
//   - An id neither registered nor a learner answers
//     BROKER_ID_NOT_REGISTERED. A voter's raft membership is never
//     touched (RemoveRaftVoter removes voters).
//   - It needs ALTER on the cluster: CLUSTER_AUTHORIZATION_FAILED.
//   - A single node (no controller.quorum.voters) answers
//     UNSUPPORTED_VERSION, as Kafka's brokers do without KRaft.

func init() { regKey(64, 0, 0, handleUnregisterBroker) }

// unregisterTimeout bounds the removal of a learner.
const unregisterTimeout = 10 * time.Second

func handleUnregisterBroker(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.UnregisterBrokerRequest)
	resp := req.ResponseKind().(*kmsg.UnregisterBrokerResponse)
	fail := func(err error) kmsg.Response {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err)
		return resp
	}
	if !r.allowedCluster(auth.OpAlter) {
		return fail(fmt.Errorf("%w: ALTER on the cluster is not allowed", kerr.ClusterAuthorizationFailed))
	}
	if s.raft == nil {
		return fail(fmt.Errorf("%w: a single node has no other brokers (controller.quorum.voters is not set)", kerr.UnsupportedVersion))
	}
	id := req.BrokerID
	r.await(func() kmsg.Response {
		learner := slices.Contains(s.raft.Learners(), id)
		err := s.meta.UnregisterBroker(id)
		switch {
		case errors.Is(err, meta.ErrBrokerNotRegistered) && learner:
			// A learner that never registered, or a removal retried
			// after its broker record went: take it out of the raft
			// configuration all the same.
		case err != nil:
			return fail(err)
		default:
			s.logger.Info("broker unregistered", "broker", id, "principal", r.principal)
		}
		if !learner {
			return resp
		}
		ctx, cancel := context.WithTimeout(r.c.ctx, unregisterTimeout)
		defer cancel()
		if err := s.raft.RemoveLearner(ctx, id); err != nil {
			return fail(fmt.Errorf("broker %d unregistered, but not removed from the metadata log's learners yet: %w", id, err))
		}
		return resp
	})
	return nil
}
