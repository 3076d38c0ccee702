package server

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/group"
)

// Authorization of the group APIs, as Kafka checks them. The coordinator
// (package group) knows no principals: these handlers refuse what the
// principal may not do before calling it, and take out of its answers
// what the principal may not see. Without an authorizer they call it
// directly.
//
//   - JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//     ConsumerGroupHeartbeat: READ on the group
//     (GROUP_AUTHORIZATION_FAILED); ConsumerGroupHeartbeat also DESCRIBE
//     on each subscribed topic (TOPIC_AUTHORIZATION_FAILED).
//   - OffsetCommit: READ on the group, READ on each topic (its partitions
//     TOPIC_AUTHORIZATION_FAILED, the others committed).
//   - OffsetFetch: DESCRIBE on the group; topics named without DESCRIBE
//     get TOPIC_AUTHORIZATION_FAILED, and a fetch of every topic leaves
//     them out.
//   - OffsetDelete, DeleteGroups: DELETE on the group (OffsetDelete: READ
//     on each topic too).
//   - DescribeGroups, ConsumerGroupDescribe: DESCRIBE on each group; the
//     authorized operations when asked.
//   - ListGroups: every group with DESCRIBE on the cluster, else those the
//     principal may DESCRIBE.
//   - FindCoordinator: DESCRIBE on the group or transactional id.
//
// In a cluster, DescribeGroups, DeleteGroups and ListGroups sent by
// another broker (forwardedByBroker: the peer pool's client ID and
// CLUSTER_ACTION) are served without the group ACLs: the broker checked
// its client's request (a share group's deletion, the gathering of share
// groups), or asks for itself (whether a name is a consumer group before
// it creates a share group of that name).

func init() {
	regKey(8, 0, 10, handleOffsetCommit)
	regKey(9, 0, 10, handleOffsetFetch)
	regKey(10, 0, 6, handleFindCoordinator)
	regKey(11, 0, 9, groupReadCall(func(s *Server) func(context.Context, *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
		return s.groups.JoinGroup
	}, func(q *kmsg.JoinGroupRequest) string { return q.Group }, func(p *kmsg.JoinGroupResponse, c int16) { p.ErrorCode = c }))
	regKey(12, 0, 4, groupReadCall(func(s *Server) func(context.Context, *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
		return s.groups.Heartbeat
	}, func(q *kmsg.HeartbeatRequest) string { return q.Group }, func(p *kmsg.HeartbeatResponse, c int16) { p.ErrorCode = c }))
	regKey(13, 0, 5, groupReadCall(func(s *Server) func(context.Context, *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
		return s.groups.LeaveGroup
	}, func(q *kmsg.LeaveGroupRequest) string { return q.Group }, func(p *kmsg.LeaveGroupResponse, c int16) { p.ErrorCode = c }))
	regKey(14, 0, 5, groupReadCall(func(s *Server) func(context.Context, *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
		return s.groups.SyncGroup
	}, func(q *kmsg.SyncGroupRequest) string { return q.Group }, func(p *kmsg.SyncGroupResponse, c int16) { p.ErrorCode = c }))
	regKey(15, 0, 6, handleDescribeGroups)
	regKey(16, 0, 5, handleListGroups)
	regKey(42, 0, 3, handleDeleteGroups)
	regKey(47, 0, 0, handleOffsetDelete)
	regKey(68, 0, 1, handleConsumerGroupHeartbeat)
	regKey(69, 0, 1, handleConsumerGroupDescribe)
}

// groupCtx is the context of a coordinator call for r.
func groupCtx(r *request) context.Context {
	return group.WithClientInfo(r.c.ctx, group.ClientInfo{ClientID: r.clientID, Host: "/" + r.c.remoteIP()})
}

// groupReadCall makes the handler of an API that needs READ on its group
// and nothing else.
func groupReadCall[Req kmsg.Request, Resp kmsg.Response](call func(*Server) func(context.Context, Req) Resp, groupOf func(Req) string, setErr func(Resp, int16)) handlerFunc {
	return func(s *Server, r *request) kmsg.Response {
		req := r.kreq.(Req)
		if !r.allowed(auth.ResourceGroup, groupOf(req), auth.OpRead) {
			resp := req.ResponseKind().(Resp)
			setErr(resp, kerr.GroupAuthorizationFailed.Code)
			return resp
		}
		return groupCall(s, r, call(s))
	}
}

// topicName is the name of a topic named by name or, when empty, id.
func (s *Server) topicName(name string, id [16]byte) string {
	if name == "" && id != [16]byte{} {
		if t := s.meta.TopicByID(id); t != nil {
			return t.Name()
		}
	}
	return name
}

func handleOffsetCommit(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return groupCall(s, r, s.groups.OffsetCommit)
	}
	req := r.kreq.(*kmsg.OffsetCommitRequest)
	groupOK := r.allowed(auth.ResourceGroup, req.Group, auth.OpRead)
	kept, denied := splitAllowed(req.Topics, func(t kmsg.OffsetCommitRequestTopic) bool {
		return groupOK && r.allowed(auth.ResourceTopic, s.topicName(t.Topic, t.TopicID), auth.OpRead)
	})
	refuse := func(resp *kmsg.OffsetCommitResponse) *kmsg.OffsetCommitResponse {
		code := kerr.TopicAuthorizationFailed.Code
		if !groupOK {
			code = kerr.GroupAuthorizationFailed.Code
		}
		for _, t := range denied {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	if len(kept) == 0 {
		return refuse(req.ResponseKind().(*kmsg.OffsetCommitResponse))
	}
	allowed := *req
	allowed.Topics = kept
	ctx := groupCtx(r)
	r.await(func() kmsg.Response { return refuse(s.groups.OffsetCommit(ctx, &allowed)) })
	return nil
}

func handleOffsetFetch(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return groupCall(s, r, s.groups.OffsetFetch)
	}
	req := r.kreq.(*kmsg.OffsetFetchRequest)
	if r.version < 8 && !r.allowed(auth.ResourceGroup, req.Group, auth.OpDescribe) {
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		for _, t := range req.Topics { // v0-v1 have no top-level error
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.ErrorCode = p, -1, kerr.GroupAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	ctx := groupCtx(r)
	r.await(func() kmsg.Response {
		resp := s.groups.OffsetFetch(ctx, req)
		// Topics the principal may not describe: an error when named,
		// left out of a fetch of every topic.
		if r.version < 8 {
			named := req.Topics != nil
			kept := resp.Topics[:0]
			for _, t := range resp.Topics {
				if !r.allowed(auth.ResourceTopic, t.Topic, auth.OpDescribe) {
					if !named {
						continue
					}
					for i := range t.Partitions {
						t.Partitions[i].Offset, t.Partitions[i].Metadata, t.Partitions[i].ErrorCode = -1, nil, kerr.TopicAuthorizationFailed.Code
					}
				}
				kept = append(kept, t)
			}
			resp.Topics = kept
			return resp
		}
		for gi := range resp.Groups {
			g := &resp.Groups[gi]
			if !r.allowed(auth.ResourceGroup, g.Group, auth.OpDescribe) {
				g.Topics, g.ErrorCode = nil, kerr.GroupAuthorizationFailed.Code
				continue
			}
			named := false
			for _, rg := range req.Groups {
				if rg.Group == g.Group && rg.Topics != nil {
					named = true
				}
			}
			kept := g.Topics[:0]
			for _, t := range g.Topics {
				if !r.allowed(auth.ResourceTopic, s.topicName(t.Topic, t.TopicID), auth.OpDescribe) {
					if !named {
						continue
					}
					for i := range t.Partitions {
						t.Partitions[i].Offset, t.Partitions[i].Metadata, t.Partitions[i].ErrorCode = -1, nil, kerr.TopicAuthorizationFailed.Code
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

func handleDescribeGroups(s *Server, r *request) kmsg.Response {
	if s.authz == nil || r.forwardedByBroker() {
		return groupCall(s, r, func(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
			return s.describeGroups(ctx, r, req)
		})
	}
	req := r.kreq.(*kmsg.DescribeGroupsRequest)
	ctx := groupCtx(r)
	r.await(func() kmsg.Response {
		resp := s.describeGroups(ctx, r, req)
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !r.allowed(auth.ResourceGroup, g.Group, auth.OpDescribe) {
				*g = kmsg.NewDescribeGroupsResponseGroup()
				g.Group, g.ErrorCode = req.Groups[min(i, len(req.Groups)-1)], kerr.GroupAuthorizationFailed.Code
				continue
			}
			if req.IncludeAuthorizedOperations {
				g.AuthorizedOperations = r.authorizedOperations(auth.ResourceGroup, g.Group)
			}
		}
		return resp
	})
	return nil
}

func handleConsumerGroupDescribe(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return groupCall(s, r, s.groups.ConsumerGroupDescribe)
	}
	req := r.kreq.(*kmsg.ConsumerGroupDescribeRequest)
	ctx := groupCtx(r)
	r.await(func() kmsg.Response {
		resp := s.groups.ConsumerGroupDescribe(ctx, req)
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !r.allowed(auth.ResourceGroup, g.Group, auth.OpDescribe) {
				name := g.Group
				*g = kmsg.NewConsumerGroupDescribeResponseGroup()
				g.Group, g.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
				continue
			}
			if req.IncludeAuthorizedOperations {
				g.AuthorizedOperations = r.authorizedOperations(auth.ResourceGroup, g.Group)
			}
		}
		return resp
	})
	return nil
}

func handleListGroups(s *Server, r *request) kmsg.Response {
	if s.authz == nil || r.forwardedByBroker() || r.allowedCluster(auth.OpDescribe) {
		return groupCall(s, r, func(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
			return s.listGroups(ctx, r, req)
		})
	}
	req := r.kreq.(*kmsg.ListGroupsRequest)
	ctx := groupCtx(r)
	r.await(func() kmsg.Response {
		resp := s.listGroups(ctx, r, req)
		kept := resp.Groups[:0]
		for _, g := range resp.Groups {
			if r.allowed(auth.ResourceGroup, g.Group, auth.OpDescribe) {
				kept = append(kept, g)
			}
		}
		resp.Groups = kept
		return resp
	})
	return nil
}

func handleDeleteGroups(s *Server, r *request) kmsg.Response {
	if s.authz == nil || r.forwardedByBroker() {
		return groupCall(s, r, func(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
			return s.deleteGroups(ctx, r, req)
		})
	}
	req := r.kreq.(*kmsg.DeleteGroupsRequest)
	kept, denied := splitAllowed(req.Groups, func(g string) bool {
		return r.allowed(auth.ResourceGroup, g, auth.OpDelete)
	})
	refuse := func(resp *kmsg.DeleteGroupsResponse) *kmsg.DeleteGroupsResponse {
		for _, g := range denied {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
		}
		return resp
	}
	if len(kept) == 0 {
		return refuse(req.ResponseKind().(*kmsg.DeleteGroupsResponse))
	}
	allowed := *req
	allowed.Groups = kept
	ctx := groupCtx(r)
	r.await(func() kmsg.Response { return refuse(s.deleteGroups(ctx, r, &allowed)) })
	return nil
}

func handleOffsetDelete(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return groupCall(s, r, s.groups.OffsetDelete)
	}
	req := r.kreq.(*kmsg.OffsetDeleteRequest)
	if !r.allowed(auth.ResourceGroup, req.Group, auth.OpDelete) {
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	kept, denied := splitAllowed(req.Topics, func(t kmsg.OffsetDeleteRequestTopic) bool {
		return r.allowed(auth.ResourceTopic, t.Topic, auth.OpRead)
	})
	refuse := func(resp *kmsg.OffsetDeleteResponse) *kmsg.OffsetDeleteResponse {
		for _, t := range denied {
			rt := kmsg.NewOffsetDeleteResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetDeleteResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.TopicAuthorizationFailed.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	allowed := *req
	allowed.Topics = kept
	ctx := groupCtx(r)
	r.await(func() kmsg.Response { return refuse(s.groups.OffsetDelete(ctx, &allowed)) })
	return nil
}

func handleConsumerGroupHeartbeat(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return groupCall(s, r, s.groups.ConsumerGroupHeartbeat)
	}
	req := r.kreq.(*kmsg.ConsumerGroupHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	if !r.allowed(auth.ResourceGroup, req.Group, auth.OpRead) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp
	}
	for _, t := range req.SubscribedTopicNames {
		if !r.allowed(auth.ResourceTopic, t, auth.OpDescribe) {
			resp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.ErrorMessage = errMsg("not authorized to describe subscribed topic " + t)
			return resp
		}
	}
	return groupCall(s, r, s.groups.ConsumerGroupHeartbeat)
}
