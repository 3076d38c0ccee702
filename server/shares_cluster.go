package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/share"
)

// In a cluster the share coordinator follows the leadership of
// __share_group_state (share.Config.LoadOnLead): a broker serves the
// groups and share-partition state of the partitions it leads, loading
// each when it starts to lead it and dropping it when it stops. The
// topic is created by the controller's node once the brokers registered,
// as __consumer_offsets is, with share.coordinator.state.topic.replication.factor
// replicas (at most the voters) and share.coordinator.state.topic.min.isr,
// so an appended state record is on that many replicas before it is
// acknowledged. See docs/cluster.md for what is served.

// errShareStateStarting answers share calls that would write state before
// the controller created __share_group_state.
var errShareStateStarting = errors.New("server: __share_group_state is not created yet")

// shareLeadershipChanged loads or unloads partition p of
// __share_group_state in the share coordinator.
func (s *Server) shareLeadershipChanged(p int32, leading bool) {
	if s.shares == nil {
		return
	}
	if !leading {
		s.shares.Unload(p)
		return
	}
	if err := s.shares.Load(p); err != nil {
		s.logger.Error("loading share coordinator partition failed", "partition", p, "err", err)
	}
}

// shareStateTopicSpec is __share_group_state in a cluster, with
// share.coordinator.state.topic.replication.factor replicas at most and
// .min.isr; the share APIs wait for it (shareState.ready).
func (s *Server) shareStateTopicSpec() internalTopic {
	return internalTopic{
		name:         shareStateTopic,
		rfConfig:     "share.coordinator.state.topic.replication.factor",
		minISRConfig: "share.coordinator.state.topic.min.isr",
		partitions:   func(brokerSettings) int32 { return s.shareState.partitions },
		configs:      shareStateTopicConfigs,
		created:      func() { s.shareState.ready.Store(true) },
	}
}

// shareCoordinator answers FindCoordinator for a share-partition key
// ("group:topicID:partition", key type 2) in a cluster: the leader of the
// key's partition of __share_group_state, as Kafka.
func (s *Server) shareCoordinator(key string) (int32, string, int32, int16, *string) {
	t := s.meta.Topic(shareStateTopic)
	if t == nil || s.shares == nil {
		msg := "the share coordinator is starting"
		return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
	}
	st := t.State(s.shares.Partition(key))
	for _, b := range s.meta.Brokers() {
		if b.ID == st.Leader && !b.Fenced && b.Host != "" {
			return b.ID, b.Host, b.Port, 0, nil
		}
	}
	msg := fmt.Sprintf("partition %d of %s has no leader", s.shares.Partition(key), shareStateTopic)
	return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
}

// shareStateRetryFor is how long a share-partition leader keeps trying
// to reach the leader of a __share_group_state partition that is moving
// (no leader yet, or one still loading it) before the call fails.
const shareStateRetryFor = 5 * time.Second

// errBrokerStopping refuses share-partition state writes and reads on a
// broker that is shutting down, and ends its requests to other brokers
// (peerRequest): its listeners are closed, so followers no longer fetch
// from it, and an append it leads would wait for its in-sync replicas to
// shrink. What it held comes back on the next leaders.
var errBrokerStopping = errors.New("server: the broker is stopping")

// stopping reports whether Shutdown has begun.
func (s *Server) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// clusterShareState is the share engine's share.StateClient in a
// cluster: the leader of a __share_group_state partition is called
// in-process when it is this broker, with ReadShareGroupState and
// WriteShareGroupState through the peer pool otherwise.
type clusterShareState struct{ s *Server }

var _ share.StateClient = clusterShareState{}

func (cs clusterShareState) WriteShareGroupState(p int32, req *kmsg.WriteShareGroupStateRequest) (*kmsg.WriteShareGroupStateResponse, error) {
	resp, err := cs.s.shareStateCall(p, req, func() kmsg.Response { return cs.s.shares.WriteShareGroupState(req) })
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.WriteShareGroupStateResponse), nil
}

func (cs clusterShareState) ReadShareGroupState(p int32, req *kmsg.ReadShareGroupStateRequest) (*kmsg.ReadShareGroupStateResponse, error) {
	resp, err := cs.s.shareStateCall(p, req, func() kmsg.Response { return cs.s.shares.ReadShareGroupState(req) })
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.ReadShareGroupStateResponse), nil
}

// ListOffset asks the leader of the data partition tp with ListOffsets
// (the group's coordinator initializing a partition it assigns).
func (cs clusterShareState) ListOffset(tp share.TopicPartition, timestamp int64) (int64, error) {
	s := cs.s
	t := s.meta.TopicByID(tp.TopicID)
	if t == nil {
		return 0, fmt.Errorf("%w: topic %s", share.ErrUnknownPartition, meta.TopicIDString(tp.TopicID))
	}
	leader := t.State(tp.Partition).Leader
	addr, ok := s.brokerAddr(leader)
	if !ok || s.peers == nil {
		return 0, fmt.Errorf("%w: %s-%d", errNoLeader, t.Name(), tp.Partition)
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(5)
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = t.Name()
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.Timestamp = tp.Partition, -1, timestamp
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := s.peerRequest(s.ctx, addr, req)
	if err != nil {
		return 0, err
	}
	lr := resp.(*kmsg.ListOffsetsResponse)
	if len(lr.Topics) != 1 || len(lr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("server: ListOffsets of %s-%d answered %d topics", t.Name(), tp.Partition, len(lr.Topics))
	}
	got := lr.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(got.ErrorCode); err != nil {
		return 0, fmt.Errorf("ListOffsets of %s-%d at broker %d: %w", t.Name(), tp.Partition, leader, err)
	}
	return got.Offset, nil
}

// shareStateCall sends req to the leader of partition p of
// __share_group_state, or runs local when that is this broker. While the
// partition has no reachable leader, or its leader answers
// NOT_COORDINATOR (it is loading the partition, or lost it), it tries
// again, reading the leader from the metadata each time, for
// shareStateRetryFor.
func (s *Server) shareStateCall(p int32, req kmsg.Request, local func() kmsg.Response) (kmsg.Response, error) {
	deadline := time.Now().Add(shareStateRetryFor)
	for {
		if s.stopping() {
			return nil, errBrokerStopping
		}
		resp, err := s.shareStateOnce(p, req, local)
		if err == nil && !notCoordinator(resp) {
			return resp, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return resp, nil
			}
			return nil, err
		}
		select {
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) shareStateOnce(p int32, req kmsg.Request, local func() kmsg.Response) (kmsg.Response, error) {
	t := s.meta.Topic(shareStateTopic)
	if t == nil {
		return nil, errShareStateStarting
	}
	leader := t.State(p).Leader
	if leader == s.cfg.NodeID {
		return local(), nil
	}
	addr, ok := s.brokerAddr(leader)
	if !ok || s.peers == nil {
		return nil, fmt.Errorf("%w: partition %d of %s", errNoLeader, p, shareStateTopic)
	}
	return s.peerRequest(s.ctx, addr, req)
}

// notCoordinator reports whether a state answer says its broker does not
// lead the partition.
func notCoordinator(resp kmsg.Response) bool {
	code := int16(0)
	switch r := resp.(type) {
	case *kmsg.WriteShareGroupStateResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				code = max(code, p.ErrorCode)
			}
		}
	case *kmsg.ReadShareGroupStateResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				code = max(code, p.ErrorCode)
			}
		}
	}
	return code == kerr.NotCoordinator.Code
}

// shareDataLeadershipChanged tells the share engine that this broker no
// longer leads a data partition: its share-partitions are dropped, to be
// read again by the next leader. (A partition it starts to lead is read
// at its first ShareFetch or ShareAcknowledge.)
func (s *Server) shareDataLeadershipChanged(topic string, p int32, leading bool) {
	if s.shares == nil || leading {
		return
	}
	t := s.meta.Topic(topic)
	if t == nil {
		return
	}
	s.shares.StopServing(share.TopicPartition{TopicID: t.ID(), Partition: p})
}

// shareForwardPrefix starts the client ID of requests between brokers
// (the peer pool's): a membership request carrying it was forwarded
// already and is never forwarded again.
const shareForwardPrefix = "ferry-broker-"

// fromBroker reports whether r was sent by another broker of the cluster
// (the peer pool's client ID).
func (r *request) fromBroker() bool { return strings.HasPrefix(r.clientID, shareForwardPrefix) }

// shareMembership serves a request of group's coordinator in a cluster
// (ShareGroupHeartbeat, ShareGroupDescribe, the share group offset APIs): here
// if this broker leads the group's partition of __share_group_state,
// else forwarded to that partition's leader, the answer passed back.
// Clients find the coordinator with FindCoordinator key type 0, which
// answers the leader of the group's __consumer_offsets partition, so
// that broker forwards. A request that cannot be forwarded answers
// NOT_COORDINATOR (the client looks again). It runs off the reader
// goroutine.
//
// The forwarded request carries the peer pool's client ID, so the
// coordinator records that as the member's client ID. With an
// authorizer, the handlers check the client's request here before
// forwarding it (and the answer before passing it back), and the
// coordinator checks only that this broker's principal has
// CLUSTER_ACTION (shares_authz.go).
func (s *Server) shareMembership(r *request, req kmsg.Request, group string, serve func() kmsg.Response) kmsg.Response {
	if s.cluster == nil || s.shares.Loaded(s.shares.Partition(group)) {
		return serve()
	}
	notCoord := func() kmsg.Response {
		resp := req.ResponseKind()
		switch resp := resp.(type) {
		case *kmsg.ShareGroupHeartbeatResponse:
			resp.ErrorCode = kerr.NotCoordinator.Code
		case *kmsg.ShareGroupDescribeResponse:
			g := kmsg.NewShareGroupDescribeResponseGroup()
			g.GroupID, g.ErrorCode = group, kerr.NotCoordinator.Code
			resp.Groups = append(resp.Groups, g)
		case *kmsg.DescribeShareGroupOffsetsResponse:
			g := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
			g.GroupID, g.ErrorCode = group, kerr.NotCoordinator.Code
			resp.Groups = append(resp.Groups, g)
		case *kmsg.AlterShareGroupOffsetsResponse:
			resp.ErrorCode = kerr.NotCoordinator.Code
		case *kmsg.DeleteShareGroupOffsetsResponse:
			resp.ErrorCode = kerr.NotCoordinator.Code
		}
		return resp
	}
	if r.fromBroker() {
		return notCoord()
	}
	t := s.meta.Topic(shareStateTopic)
	if t == nil || s.peers == nil {
		return notCoord()
	}
	leader := t.State(s.shares.Partition(group)).Leader
	addr, ok := s.brokerAddr(leader)
	if leader == s.cfg.NodeID || !ok {
		return notCoord()
	}
	if req.Key() == r.kreq.Key() {
		req.SetVersion(r.version)
	}
	resp, err := s.peerRequest(s.ctx, addr, req)
	if err != nil {
		s.logger.Debug("forwarding a share group request failed", "group", group, "broker", leader, "err", err)
		return notCoord()
	}
	return resp
}

// describeShareGroups answers ShareGroupDescribe: in a cluster each group
// is described by the leader of its partition of __share_group_state
// (shareMembership).
func (s *Server) describeShareGroups(ctx context.Context, r *request, req *kmsg.ShareGroupDescribeRequest) *kmsg.ShareGroupDescribeResponse {
	if s.cluster == nil {
		return s.shares.ShareGroupDescribe(ctx, req)
	}
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	for _, name := range req.GroupIDs {
		one := *req
		one.GroupIDs = []string{name}
		got := s.shareMembership(r, &one, name, func() kmsg.Response { return s.shares.ShareGroupDescribe(ctx, &one) })
		resp.Groups = append(resp.Groups, got.(*kmsg.ShareGroupDescribeResponse).Groups...)
	}
	return resp
}

// describeShareOffsets answers DescribeShareGroupOffsets: in a cluster
// each group is described by its coordinator (shareMembership), which
// reads the state from the leaders of the state partitions.
func (s *Server) describeShareOffsets(ctx context.Context, r *request, req *kmsg.DescribeShareGroupOffsetsRequest) *kmsg.DescribeShareGroupOffsetsResponse {
	if s.cluster == nil {
		return s.shares.DescribeShareGroupOffsets(ctx, req)
	}
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	for _, g := range req.Groups {
		one := *req
		one.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{g}
		got := s.shareMembership(r, &one, g.GroupID, func() kmsg.Response { return s.shares.DescribeShareGroupOffsets(ctx, &one) })
		resp.Groups = append(resp.Groups, got.(*kmsg.DescribeShareGroupOffsetsResponse).Groups...)
	}
	return resp
}

// clusterShareGroups returns the share groups ListGroups lists on this
// broker in a cluster: those whose coordinator FindCoordinator (key type
// 0) names this broker, as a client asks every broker and expects each
// group from one. Their membership is served by the leaders of their
// partitions of __share_group_state, so local holds this broker's, and
// the others' are asked with ListGroups (answered, between brokers, with
// their share groups only). A broker that cannot be reached is left out.
func (s *Server) clusterShareGroups(ctx context.Context, req *kmsg.ListGroupsRequest, local []kmsg.ListGroupsResponseGroup) []kmsg.ListGroupsResponseGroup {
	all := local
	for _, b := range s.meta.Brokers() {
		if b.ID == s.cfg.NodeID || b.Fenced || s.peers == nil {
			continue
		}
		addr, ok := s.brokerAddr(b.ID)
		if !ok {
			continue
		}
		one := *req
		resp, err := s.peerRequest(ctx, addr, &one)
		if err != nil {
			s.logger.Debug("listing the share groups of a broker failed", "broker", b.ID, "err", err)
			continue
		}
		all = append(all, resp.(*kmsg.ListGroupsResponse).Groups...)
	}
	seen := make(map[string]bool, len(all))
	var out []kmsg.ListGroupsResponseGroup
	for _, g := range all {
		if seen[g.Group] {
			continue // moving between brokers: listed by both
		}
		seen[g.Group] = true
		if id, _, _, code, _ := s.clusterCoordinator(g.Group); code == 0 && id == s.cfg.NodeID {
			out = append(out, g)
		}
	}
	return out
}

// remoteShareGroup reports whether name is a share group coordinated by
// another broker, asked with ShareGroupDescribe (shareMembership).
func (s *Server) remoteShareGroup(ctx context.Context, r *request, name string) bool {
	req := kmsg.NewPtrShareGroupDescribeRequest()
	req.SetVersion(1)
	req.GroupIDs = []string{name}
	resp := s.shareMembership(r, req, name, func() kmsg.Response { return s.shares.ShareGroupDescribe(ctx, req) }).(*kmsg.ShareGroupDescribeResponse)
	return len(resp.Groups) == 1 && resp.Groups[0].ErrorCode == 0
}

// otherGroupTimeout bounds the question a coordinator asks the
// coordinator of the other kind of group before it creates a group.
const otherGroupTimeout = 5 * time.Second

// askOtherCoordinator sends req to the leader of partition p of topic:
// the coordinator, on another broker, of the groups of the other kind
// (share or consumer) whose name falls in p. It answers nil, nil when
// there is none to ask: the topic does not exist yet (so neither does a
// group of that kind), or this broker leads p (and its own coordinator
// answered already).
func (s *Server) askOtherCoordinator(topic string, p int32, req kmsg.Request) (kmsg.Response, error) {
	t := s.meta.Topic(topic)
	if t == nil {
		return nil, nil
	}
	leader := t.State(p).Leader
	if leader == s.cfg.NodeID {
		return nil, nil
	}
	addr, ok := s.brokerAddr(leader)
	if !ok || s.peers == nil {
		return nil, fmt.Errorf("%w: partition %d of %s", errNoLeader, p, topic)
	}
	ctx, cancel := context.WithTimeout(s.ctx, otherGroupTimeout)
	defer cancel()
	resp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		return nil, fmt.Errorf("asking broker %d, the leader of partition %d of %s: %w", leader, p, topic, err)
	}
	return resp, nil
}

// remoteShareGroupExists asks the share coordinator of name, when that
// is another broker, whether name is a share group (ShareGroupDescribe,
// served there without forwarding as it comes from a broker).
func (s *Server) remoteShareGroupExists(name string) (bool, error) {
	req := kmsg.NewPtrShareGroupDescribeRequest()
	req.SetVersion(1)
	req.GroupIDs = []string{name}
	resp, err := s.askOtherCoordinator(shareStateTopic, s.shares.Partition(name), req)
	if resp == nil || err != nil {
		return false, err
	}
	groups := resp.(*kmsg.ShareGroupDescribeResponse).Groups
	if len(groups) != 1 {
		return false, fmt.Errorf("server: ShareGroupDescribe of %s answered %d groups", name, len(groups))
	}
	switch code := groups[0].ErrorCode; code {
	case 0:
		return true, nil
	case kerr.GroupIDNotFound.Code:
		return false, nil
	default:
		return false, fmt.Errorf("ShareGroupDescribe of %s: %w", name, kerr.ErrorForCode(code))
	}
}

// remoteConsumerGroupExists asks the group coordinator of name, when
// that is another broker, whether name is a consumer group: DescribeGroups
// v5 answers state Dead for a name that is none (or a share group's).
func (s *Server) remoteConsumerGroupExists(name string) (bool, error) {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.SetVersion(5)
	req.Groups = []string{name}
	resp, err := s.askOtherCoordinator(offsetsTopic, s.groups.Partition(name), req)
	if resp == nil || err != nil {
		return false, err
	}
	groups := resp.(*kmsg.DescribeGroupsResponse).Groups
	if len(groups) != 1 {
		return false, fmt.Errorf("server: DescribeGroups of %s answered %d groups", name, len(groups))
	}
	if code := groups[0].ErrorCode; code != 0 {
		return false, fmt.Errorf("DescribeGroups of %s: %w", name, kerr.ErrorForCode(code))
	}
	return groups[0].State != "Dead", nil
}

// forwardShareDelete deletes name at its share group coordinator when
// that is another broker, and reports its answer; ok is false when name
// is not a share group there (or the broker cannot be reached): it is
// then a consumer group's name, deleted here.
func (s *Server) forwardShareDelete(ctx context.Context, version int16, name string) (code int16, ok bool) {
	t := s.meta.Topic(shareStateTopic)
	if t == nil || s.peers == nil {
		return 0, false
	}
	leader := t.State(s.shares.Partition(name)).Leader
	addr, found := s.brokerAddr(leader)
	if leader == s.cfg.NodeID || !found {
		return 0, false
	}
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.SetVersion(version)
	req.Groups = []string{name}
	resp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		s.logger.Debug("forwarding DeleteGroups failed", "group", name, "broker", leader, "err", err)
		return 0, false
	}
	groups := resp.(*kmsg.DeleteGroupsResponse).Groups
	if len(groups) != 1 || groups[0].ErrorCode == kerr.GroupIDNotFound.Code {
		return 0, false
	}
	return groups[0].ErrorCode, true
}

// shareGoneQueue bounds the member removals waiting to be told to the
// other brokers; past it they are dropped (their records then wait for
// their acquisition locks there), with a warning.
const shareGoneQueue = 1024

// shareMemberGone is share.Config.MemberGone: the share coordinator
// removed a member (it left, or its session timed out) and released what
// it held on this broker. Its share session here ends; in a cluster the
// other brokers, which lead other partitions the member may hold records
// of, are told to end its sessions and release its records at once
// (shareGoneLoop).
func (s *Server) shareMemberGone(group, member string) {
	s.shareSessions.dropMember(group, member)
	if s.shareGone == nil {
		return
	}
	select {
	case s.shareGone <- shareSessionKey{group, member}:
	default:
		s.logger.Warn("share member removal not told to the other brokers: too many queued", "group", group, "member", member)
	}
}

// The notice that a member is gone is retried, with a backoff from
// shareGoneBackoff doubling up to shareGoneBackoffMax, while its target
// is a live broker of the cluster and the member's records there may
// still be locked: until the group's record lock duration has passed
// since the member was removed, after which they were released anyway.
// Each attempt waits at most shareGoneAttemptTimeout for its answer.
const (
	shareGoneBackoff        = 100 * time.Millisecond
	shareGoneBackoffMax     = 2 * time.Second
	shareGoneAttemptTimeout = 2 * time.Second
)

// goneNotice is one broker still to be told that a share member is gone.
type goneNotice struct {
	key     shareSessionKey
	broker  int32
	backoff time.Duration // before the next attempt after a failure
	next    time.Time     // when to try (again)
	until   time.Time     // past it the member's locks there expired: give up
}

// shareGoneLoop tells the other brokers of the cluster about the members
// the share coordinator removed: each gets a ShareAcknowledge of the
// member at share session epoch -1 with no partitions, which a broker
// answers, when it comes from another broker, by ending the member's
// session and releasing every record it holds there (shareMemberRemoved).
// A broker that could not be told (unreachable, or too slow to answer)
// is told again, with backoff, while it is alive and the member's
// records may still be locked there. It runs until Close.
func (s *Server) shareGoneLoop() {
	defer s.wg.Done()
	var pending []goneNotice
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var wake <-chan time.Time
		if len(pending) > 0 {
			next := pending[0].next
			for _, n := range pending[1:] {
				if n.next.Before(next) {
					next = n.next
				}
			}
			timer.Reset(time.Until(next))
			wake = timer.C
		}
		select {
		case <-s.ctx.Done():
			return
		case gone := <-s.shareGone:
			pending = append(pending, s.goneNotices(gone, time.Now())...)
		case <-wake:
		}
		pending = s.tellGone(pending)
	}
}

// goneNotices are the notices of gone to every other live broker.
func (s *Server) goneNotices(gone shareSessionKey, now time.Time) []goneNotice {
	if s.peers == nil {
		return nil
	}
	until := now.Add(s.shareLockDuration(gone.group))
	var out []goneNotice
	for _, b := range s.meta.Brokers() {
		if b.ID != s.cfg.NodeID && !b.Fenced {
			out = append(out, goneNotice{key: gone, broker: b.ID, backoff: shareGoneBackoff, next: now, until: until})
		}
	}
	return out
}

// tellGone sends the notices that are due and returns those to try
// again later.
func (s *Server) tellGone(pending []goneNotice) []goneNotice {
	kept := pending[:0]
	for _, n := range pending {
		now := time.Now()
		if now.Before(n.next) {
			kept = append(kept, n)
			continue
		}
		if !s.brokerAlive(n.broker) {
			continue // fenced or gone: its share-partitions are read again by their next leaders
		}
		err := s.tellGoneOnce(n, now)
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil {
			return nil
		}
		n.next = time.Now().Add(n.backoff)
		n.backoff = min(2*n.backoff, shareGoneBackoffMax)
		if n.next.After(n.until) {
			s.logger.Warn("share member removal not told to a broker; its records there wait for their locks", "broker", n.broker, "group", n.key.group, "member", n.key.member, "err", err)
			continue
		}
		s.logger.Debug("telling a broker that a share member is gone failed; retrying", "broker", n.broker, "group", n.key.group, "member", n.key.member, "err", err, "in", n.backoff)
		kept = append(kept, n)
	}
	clear(pending[len(kept):])
	return kept
}

// tellGoneOnce sends one notice of n.
func (s *Server) tellGoneOnce(n goneNotice, now time.Time) error {
	addr, ok := s.brokerAddr(n.broker)
	if !ok {
		return fmt.Errorf("%w: broker %d has no address", errNoLeader, n.broker)
	}
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.SetVersion(1)
	req.GroupID, req.MemberID = kmsg.StringPtr(n.key.group), kmsg.StringPtr(n.key.member)
	req.ShareSessionEpoch = -1
	ctx, cancel := context.WithTimeout(s.ctx, min(shareGoneAttemptTimeout, max(n.until.Sub(now), time.Millisecond)))
	defer cancel()
	resp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.(*kmsg.ShareAcknowledgeResponse).ErrorCode)
}

// brokerAlive reports whether id is a registered broker that is not
// fenced.
func (s *Server) brokerAlive(id int32) bool {
	for _, b := range s.meta.Brokers() {
		if b.ID == id {
			return !b.Fenced
		}
	}
	return false
}

// shareLockDuration is the record lock duration of group: its
// share.record.lock.duration.ms, else the broker's
// group.share.record.lock.duration.ms.
func (s *Server) shareLockDuration(group string) time.Duration {
	if v, ok := s.meta.GroupConfigs(group)[share.GroupRecordLockDuration]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return time.Duration(n) * time.Millisecond
		}
	}
	return time.Duration(s.settings().int64("group.share.record.lock.duration.ms")) * time.Millisecond
}

// shareMemberRemoved serves a ShareAcknowledge from another broker at
// epoch -1 with no partitions: the group's coordinator removed member, so
// its share session here ends and every record it holds here is released
// at once.
func (s *Server) shareMemberRemoved(group, member string) {
	s.shareSessions.dropMember(group, member)
	s.shares.ReleaseMember(group, member)
}
