package server

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// Authorization of the share-group APIs, as Kafka checks them. The share
// coordinator knows no principals: these checks run before it is called,
// or take out of its answers what the principal may not see. Without an
// authorizer every check passes.
//
//   - ShareGroupHeartbeat: READ on the group (GROUP_AUTHORIZATION_FAILED),
//     DESCRIBE on each subscribed topic (TOPIC_AUTHORIZATION_FAILED).
//   - ShareFetch, ShareAcknowledge: READ on the group (top-level), READ on
//     each topic (its partitions TOPIC_AUTHORIZATION_FAILED; they are
//     neither acquired nor acknowledged).
//   - ShareGroupDescribe, DescribeShareGroupOffsets: DESCRIBE on each
//     group; DescribeShareGroupOffsets also DESCRIBE on each topic.
//   - AlterShareGroupOffsets: READ on the group and on each topic;
//     DeleteShareGroupOffsets: DELETE on the group, READ on each topic.
//   - FindCoordinator of share-partitions: CLUSTER_ACTION (brokers only).
//
// In a cluster a broker forwards ShareGroupHeartbeat, ShareGroupDescribe,
// DescribeShareGroupOffsets, AlterShareGroupOffsets,
// DeleteShareGroupOffsets and the DeleteGroups of a share group to the
// group's coordinator (shareMembership, forwardShareDelete) and gathers
// ListGroups from every broker after checking its client's request as
// above, and
// checks the answer it passes back (ShareGroupDescribe and
// DescribeShareGroupOffsets filter the answer by the client's
// principal). The coordinator does not know that client: it checks that
// the forwarding broker's principal has CLUSTER_ACTION on the cluster
// (forwardedByBroker), as Kafka checks a broker's forwarded requests,
// and no group or topic ACLs. A client that sets the peer pool's client
// ID itself without CLUSTER_ACTION is checked as any client.

// topicAllowed reports whether the principal may do op on the topic with
// id (an unknown id passes: the answer will say it is unknown).
func (r *request) topicAllowed(id [16]byte, op auth.Operation) bool {
	if r.c.s.authz == nil {
		return true
	}
	t := r.c.s.meta.TopicByID(id)
	return t == nil || r.allowed(auth.ResourceTopic, t.Name(), op)
}

// forwardedByBroker reports a share-group request forwarded by another
// broker of the cluster (shareMembership): the peer pool's client ID,
// from a principal with CLUSTER_ACTION on the cluster, which only the
// brokers have. The forwarding broker authorized it (see above).
func (r *request) forwardedByBroker() bool {
	return r.c.s.cluster != nil && strings.HasPrefix(r.clientID, shareForwardPrefix) && r.allowedCluster(auth.OpClusterAction)
}

func handleShareGroupHeartbeat(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ShareGroupHeartbeatRequest)
	fail := func(e *kerr.Error) kmsg.Response {
		resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
		resp.ErrorCode = e.Code
		return resp
	}
	if !r.forwardedByBroker() {
		if !r.allowed(auth.ResourceGroup, req.GroupID, auth.OpRead) {
			return fail(kerr.GroupAuthorizationFailed)
		}
		for _, t := range req.SubscribedTopicNames {
			if !r.allowed(auth.ResourceTopic, t, auth.OpDescribe) {
				return fail(kerr.TopicAuthorizationFailed)
			}
		}
	}
	return shareCall(s, r, true, func(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest) *kmsg.ShareGroupHeartbeatResponse {
		return s.shareMembership(r, req, req.GroupID, func() kmsg.Response { return s.shares.ShareGroupHeartbeat(ctx, req) }).(*kmsg.ShareGroupHeartbeatResponse)
	})
}

func handleShareGroupDescribe(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ShareGroupDescribeRequest)
	ctx := r.c.ctx
	r.await(func() kmsg.Response {
		resp := s.describeShareGroups(ctx, r, req)
		if s.authz == nil || r.forwardedByBroker() {
			return resp
		}
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !r.allowed(auth.ResourceGroup, g.GroupID, auth.OpDescribe) {
				name := g.GroupID
				*g = kmsg.NewShareGroupDescribeResponseGroup()
				g.GroupID, g.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
				continue
			}
			if req.IncludeAuthorizedOperations {
				g.AuthorizedOperations = r.authorizedOperations(auth.ResourceGroup, g.GroupID)
			}
		}
		return resp
	})
	return nil
}

func handleDescribeShareGroupOffsets(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeShareGroupOffsetsRequest)
	ctx := r.c.ctx
	r.await(func() kmsg.Response {
		resp := s.describeShareOffsets(ctx, r, req)
		if s.authz == nil || r.forwardedByBroker() {
			return resp
		}
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !r.allowed(auth.ResourceGroup, g.GroupID, auth.OpDescribe) {
				g.Topics, g.ErrorCode = nil, kerr.GroupAuthorizationFailed.Code
				continue
			}
			named := false
			for _, rg := range req.Groups {
				if rg.GroupID == g.GroupID && rg.Topics != nil {
					named = true
				}
			}
			kept := g.Topics[:0]
			for _, t := range g.Topics {
				if !r.allowed(auth.ResourceTopic, t.Topic, auth.OpDescribe) {
					if !named {
						continue // a description of every topic leaves it out
					}
					for j := range t.Partitions {
						p := &t.Partitions[j]
						p.StartOffset, p.Lag, p.ErrorCode = -1, -1, kerr.TopicAuthorizationFailed.Code
					}
				}
				kept = append(kept, t)
			}
			g.Topics = kept
		}
		return resp
	})
	return nil
}

func handleAlterShareGroupOffsets(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterShareGroupOffsetsRequest)
	forwarded := r.forwardedByBroker()
	if !forwarded && !r.allowed(auth.ResourceGroup, req.GroupID, auth.OpRead) {
		resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	alter := func(ctx context.Context, req *kmsg.AlterShareGroupOffsetsRequest) *kmsg.AlterShareGroupOffsetsResponse {
		return s.shareMembership(r, req, req.GroupID, func() kmsg.Response { return s.shares.AlterShareGroupOffsets(ctx, req) }).(*kmsg.AlterShareGroupOffsetsResponse)
	}
	if s.authz == nil || forwarded {
		return shareCall(s, r, true, alter)
	}
	kept, denied := splitAllowed(req.Topics, func(t kmsg.AlterShareGroupOffsetsRequestTopic) bool {
		return r.allowed(auth.ResourceTopic, t.Topic, auth.OpRead)
	})
	allowed := *req
	allowed.Topics = kept
	ctx := r.c.ctx
	r.await(func() kmsg.Response {
		if err := s.ensureShareState(); err != nil {
			resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return resp
		}
		resp := alter(ctx, &allowed)
		for _, t := range denied {
			rt := kmsg.NewAlterShareGroupOffsetsResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	})
	return nil
}

func handleDeleteShareGroupOffsets(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteShareGroupOffsetsRequest)
	forwarded := r.forwardedByBroker()
	if !forwarded && !r.allowed(auth.ResourceGroup, req.GroupID, auth.OpDelete) {
		resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	del := func(ctx context.Context, req *kmsg.DeleteShareGroupOffsetsRequest) *kmsg.DeleteShareGroupOffsetsResponse {
		return s.shareMembership(r, req, req.GroupID, func() kmsg.Response { return s.shares.DeleteShareGroupOffsets(ctx, req) }).(*kmsg.DeleteShareGroupOffsetsResponse)
	}
	if s.authz == nil || forwarded {
		return shareCall(s, r, true, del)
	}
	kept, denied := splitAllowed(req.Topics, func(t kmsg.DeleteShareGroupOffsetsRequestTopic) bool {
		return r.allowed(auth.ResourceTopic, t.Topic, auth.OpRead)
	})
	allowed := *req
	allowed.Topics = kept
	ctx := r.c.ctx
	r.await(func() kmsg.Response {
		if err := s.ensureShareState(); err != nil {
			resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return resp
		}
		resp := del(ctx, &allowed)
		for _, t := range denied {
			rt := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	})
	return nil
}
