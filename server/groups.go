package server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/coordstate"
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/share"
)

// The consumer-group coordinator lives in package group; this file wires
// it to the broker: its Store is the __consumer_offsets topic (package
// coordstate), and the group APIs (registered in groups_authz.go, which
// authorizes them) hand their requests to it. Every group
// call may block (a JoinGroup waits for the rebalance), so each runs in
// r.await and is cancelled when the connection goes away.

// offsetsTopic is Kafka's internal topic holding group offsets.
const offsetsTopic = "__consumer_offsets"

// startGroups creates __consumer_offsets if it does not exist yet, and the
// coordinator, which replays it.
func (s *Server) startGroups() error {
	bs := s.settings()
	if s.raft != nil {
		return s.startClusterGroups()
	}
	t := s.meta.Topic(offsetsTopic)
	if t == nil {
		var err error
		t, err = s.meta.CreateTopic(meta.NewTopic{
			Name:              offsetsTopic,
			Partitions:        int32(bs.int64("offsets.topic.num.partitions")),
			ReplicationFactor: 1,
			Configs: map[string]*string{
				"cleanup.policy":    ptr("compact"),
				"segment.bytes":     ptr(strconv.FormatInt(bs.int64("offsets.topic.segment.bytes"), 10)),
				"max.message.bytes": ptr("10485760"),
			},
			Internal: true,
		})
		if err != nil {
			return fmt.Errorf("server: create %s: %w", offsetsTopic, err)
		}
	}
	c, err := s.newGroupCoordinator(coordstate.New[group.Record](offsetsTopic, t.Partition), t.NumPartitions(), false)
	if err != nil {
		return err
	}
	s.groups = c
	return nil
}

// newGroupCoordinator starts the group coordinator on store, of n
// partitions; with loadOnLead it loads only the partitions this broker
// leads (a cluster).
func (s *Server) newGroupCoordinator(store group.Store, n int32, loadOnLead bool) (*group.Coordinator, error) {
	bs := s.settings()
	ms := func(name string) time.Duration { return time.Duration(bs.int64(name)) * time.Millisecond }
	delay := ms("group.initial.rebalance.delay.ms")
	if delay == 0 {
		delay = -1 // the coordinator reads 0 as "default"; Kafka's 0 means none
	}
	c, err := group.New(group.Config{
		Store:                         store,
		Topics:                        s.groupTopics,
		OtherGroup:                    s.shareGroupExists,
		Logger:                        s.logger,
		NodeID:                        s.cfg.NodeID,
		OffsetsTopicPartitions:        n,
		LoadOnLead:                    loadOnLead,
		MinSessionTimeout:             ms("group.min.session.timeout.ms"),
		MaxSessionTimeout:             ms("group.max.session.timeout.ms"),
		InitialRebalanceDelay:         delay,
		OffsetsRetention:              time.Duration(bs.int64("offsets.retention.minutes")) * time.Minute,
		OffsetsRetentionCheckInterval: ms("offsets.retention.check.interval.ms"),
		ConsumerSessionTimeout:        ms("group.consumer.session.timeout.ms"),
		ConsumerHeartbeatInterval:     ms("group.consumer.heartbeat.interval.ms"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: start group coordinator: %w", err)
	}
	return c, nil
}

func ptr[T any](v T) *T { return &v }

func (s *Server) stopGroups() error {
	if s.groups == nil {
		return nil
	}
	return s.groups.Close()
}

// topicsChanged tells the coordinator that topics were created, grown or
// deleted (KIP-848 regex subscriptions and assignments follow them).
func (s *Server) topicsChanged() {
	if !s.started.Load() {
		return // New calls it once it is done
	}
	if s.groups != nil {
		s.groups.TopicsChanged()
	}
	if s.shares != nil {
		s.shares.TopicsChanged()
	}
}

func (s *Server) groupTopics() map[string]group.TopicInfo {
	topics := s.meta.Topics()
	m := make(map[string]group.TopicInfo, len(topics))
	for _, t := range topics {
		m[t.Name()] = group.TopicInfo{ID: t.ID(), Partitions: t.NumPartitions()}
	}
	return m
}

// groupCall runs a coordinator call off the reader goroutine.
func groupCall[Req kmsg.Request, Resp kmsg.Response](s *Server, r *request, fn func(context.Context, Req) Resp) kmsg.Response {
	req := r.kreq.(Req)
	ctx := groupCtx(r)
	r.await(func() kmsg.Response { return fn(ctx, req) })
	return nil
}

// coordinatorShare is FindCoordinator's key type of share coordinators.
const coordinatorShare = 2

// FindCoordinator, v0-v6. This broker coordinates every group (key type
// 0), every transactional id (key type 1) and every share-partition (key
// type 2, "group:topicID:partition"); v4+ batches keys. Other key types
// answer COORDINATOR_NOT_AVAILABLE. Share coordinators are found by
// brokers only: CLUSTER_ACTION on the cluster, as Kafka asks. In a
// cluster, a group's coordinator is the leader of its partition of
// __consumer_offsets, a transactional id's of its partition of
// __transaction_state (txn_cluster.go), a share-partition's of its
// partition of __share_group_state (shares_cluster.go).
func handleFindCoordinator(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := r.brokerHostPort()
	answer := func(key string) (int32, string, int32, int16, *string) {
		switch {
		case req.CoordinatorType == 0 && !r.allowed(auth.ResourceGroup, key, auth.OpDescribe):
			return -1, "", -1, kerr.GroupAuthorizationFailed.Code, nil
		case req.CoordinatorType == 1 && !r.allowed(auth.ResourceTransactionalID, key, auth.OpDescribe):
			return -1, "", -1, kerr.TransactionalIDAuthorizationFailed.Code, nil
		case req.CoordinatorType == coordinatorShare && !r.allowedCluster(auth.OpClusterAction):
			return -1, "", -1, kerr.ClusterAuthorizationFailed.Code, nil
		}
		if req.CoordinatorType != 0 && req.CoordinatorType != 1 && req.CoordinatorType != coordinatorShare {
			msg := fmt.Sprintf("coordinator type %d is not served", req.CoordinatorType)
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
		}
		if key == "" && (r.version < 4 || req.CoordinatorType == 1) {
			// Kafka answers an empty group or transactional id with
			// INVALID_REQUEST.
			msg := "coordinator key is empty"
			return -1, "", -1, kerr.InvalidRequest.Code, &msg
		}
		if s.cluster == nil {
			return s.cfg.NodeID, host, port, 0, nil
		}
		var id int32
		var code int16
		var msg *string
		switch req.CoordinatorType {
		case 1:
			id, _, _, code, msg = s.clusterTxnCoordinator(key)
		case coordinatorShare:
			id, _, _, code, msg = s.shareCoordinator(key)
		default:
			id, _, _, code, msg = s.clusterCoordinator(key)
		}
		if code != 0 {
			return -1, "", -1, code, msg
		}
		// The coordinator's address on the listener the client is on.
		h, p := r.brokerAddr(id)
		return id, h, p, 0, nil
	}
	if r.version >= 4 {
		for _, k := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = k
			c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = answer(k)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
	return resp
}

// listGroups lists consumer groups and share groups together, by name.
// In a cluster a share group is listed by the broker FindCoordinator
// names for it (clusterShareGroups).
func (s *Server) listGroups(ctx context.Context, r *request, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	if s.cluster != nil && r.fromBroker() {
		// Another broker gathering the share groups of the cluster.
		resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
		resp.Groups = s.shares.ListGroups(req)
		return resp
	}
	resp := s.groups.ListGroups(ctx, req)
	if resp.ErrorCode != 0 {
		return resp
	}
	shared := s.shares.ListGroups(req)
	if s.cluster != nil {
		shared = s.clusterShareGroups(ctx, req, shared)
	}
	if len(shared) > 0 {
		resp.Groups = append(resp.Groups, shared...)
		slices.SortFunc(resp.Groups, func(a, b kmsg.ListGroupsResponseGroup) int { return strings.Compare(a.Group, b.Group) })
	}
	return resp
}

// describeGroups describes share groups as Kafka does (Dead, and from v6
// GROUP_ID_NOT_FOUND: "not a classic group"), consumer groups through
// their coordinator. In a cluster a group this broker does not know is
// looked up at its share group coordinator.
func (s *Server) describeGroups(ctx context.Context, r *request, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := s.groups.DescribeGroups(ctx, req)
	for i := range resp.Groups {
		g := &resp.Groups[i]
		if dg, ok := s.shares.DescribeGroup(req.Version, g.Group); ok {
			*g = dg
			continue
		}
		unknown := g.State == "Dead" || g.ErrorCode == kerr.GroupIDNotFound.Code
		if s.cluster != nil && unknown && !r.fromBroker() && s.remoteShareGroup(ctx, r, g.Group) {
			*g = share.ClassicDescription(req.Version, g.Group)
		}
	}
	return resp
}

// deleteGroups deletes share groups through the share coordinator and
// the others through the group coordinator. In a cluster a share group
// coordinated by another broker is deleted there (forwardShareDelete); a
// request forwarded so deletes share groups only.
func (s *Server) deleteGroups(ctx context.Context, r *request, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version
	var rest []string
	codes := make(map[string]int16)
	for _, name := range req.Groups {
		if code, ok := s.shares.DeleteGroup(name); ok {
			codes[name] = code
			continue
		}
		if s.cluster != nil && r.fromBroker() {
			codes[name] = kerr.GroupIDNotFound.Code
			continue
		}
		if s.cluster != nil {
			if code, ok := s.forwardShareDelete(ctx, req.Version, name); ok {
				codes[name] = code
				continue
			}
		}
		rest = append(rest, name)
	}
	if len(rest) > 0 {
		sub := *req
		sub.Groups = rest
		for _, g := range s.groups.DeleteGroups(ctx, &sub).Groups {
			codes[g.Group] = g.ErrorCode
		}
	}
	for _, name := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group, g.ErrorCode = name, codes[name]
		resp.Groups = append(resp.Groups, g)
	}
	return resp
}
