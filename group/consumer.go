package group

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds the KIP-848 requests: ConsumerGroupHeartbeat (v0-v1) and
// ConsumerGroupDescribe (v0-v1), after Kafka's GroupMetadataManager, with
// the member timers; the group state is in consumer_state.go and the
// assignment and reconciliation steps in consumer_reconcile.go. The group epoch is bumped whenever membership,
// a subscription or the subscribed partitions change; the target assignment
// is then recomputed by the server-side assignor. Each member converges to
// its target one heartbeat at a time: partitions it must give up are revoked
// first (its epoch stays), and a partition is handed to its new owner only
// once no other member holds it, i.e. once the previous owner stopped
// reporting it.

// ConsumerGroupHeartbeat handles a KIP-848 ConsumerGroupHeartbeat request:
// join (epoch 0), heartbeat (the member's epoch), leave (-1) or static leave
// (-2). Any change is durable before the answer.
func (c *Coordinator) ConsumerGroupHeartbeat(ctx context.Context, req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.Version = req.Version
	fail := func(e *kerr.Error, msg string) *kmsg.ConsumerGroupHeartbeatResponse {
		resp.ErrorCode = e.Code
		if msg != "" {
			resp.ErrorMessage = &msg
		}
		return resp
	}
	if e, msg := c.validateHeartbeat(req); e != nil {
		return fail(e, msg)
	}
	g, res := c.lockGroup(req.Group, req.MemberEpoch == 0)
	switch res {
	case lookupClosed:
		return fail(kerr.CoordinatorNotAvailable, "")
	case lookupMissing:
		return fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s not found.", req.Group))
	case lookupOther:
		return fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", req.Group))
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)

	var extra []Record
	converted := false
	if g.kind == kindClassic {
		if req.MemberEpoch != 0 || g.state != stateEmpty || len(g.pending) > 0 {
			return fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", req.Group))
		}
		// An empty classic group becomes a consumer group; its offsets stay.
		if g.persisted {
			extra = append(extra, Record{Key: groupMetadataKey(g.name)})
		}
		g.resetClassic()
		g.persisted = false
		g.toConsumer()
		converted = true
	}
	// Nothing is copied up front: a change touches the members it
	// modifies (consumerGroup.touch), and a failed write rolls back to
	// what is stored.
	restore := func() {
		if converted {
			g.resetClassic()
			g.persisted = len(extra) > 0
			return
		}
		g.cg.rollback()
		c.syncConsumerTimersLocked(g)
	}
	var e *kerr.Error
	var msg string
	switch req.MemberEpoch {
	case epochLeave, epochStaticLeave:
		e, msg = c.consumerLeaveLocked(g, req, resp)
	default:
		e, msg = c.consumerHeartbeatLocked(g, req, clientInfoFrom(ctx), resp)
	}
	if e != nil {
		// Errors are returned before anything changes.
		if converted {
			restore()
		}
		resp.MemberID, resp.MemberEpoch, resp.Assignment = nil, 0, nil
		return fail(e, msg)
	}
	if err := c.persistConsumerLocked(g, extra); err != nil {
		c.log.Warn("storing consumer group", "group", g.name, "err", err)
		restore()
		resp.MemberID, resp.MemberEpoch, resp.Assignment = nil, 0, nil
		return fail(kerr.CoordinatorNotAvailable, "")
	}
	return resp
}

// validateHeartbeat applies Kafka's request checks
// (throwIfConsumerGroupHeartbeatRequestIsInvalid).
func (c *Coordinator) validateHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest) (*kerr.Error, string) {
	switch {
	case req.Group == "":
		return kerr.InvalidRequest, "GroupId can't be empty."
	case req.InstanceID != nil && *req.InstanceID == "":
		return kerr.InvalidRequest, "InstanceId can't be empty."
	case req.RackID != nil && *req.RackID == "":
		return kerr.InvalidRequest, "RackId can't be empty."
	case req.MemberID == "" && (req.Version >= 1 || req.MemberEpoch != 0):
		return kerr.InvalidRequest, "MemberId can't be empty."
	}
	switch {
	case req.MemberEpoch == 0:
		if req.RebalanceTimeoutMillis == -1 {
			return kerr.InvalidRequest, "RebalanceTimeoutMs must be provided in first request."
		}
		if req.Topics == nil || len(req.Topics) > 0 {
			return kerr.InvalidRequest, "TopicPartitions must be empty when (re-)joining."
		}
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			return kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
		}
	case req.MemberEpoch == epochStaticLeave:
		if req.InstanceID == nil {
			return kerr.InvalidRequest, "InstanceId can't be null."
		}
	case req.MemberEpoch < epochStaticLeave:
		return kerr.InvalidRequest, "MemberEpoch is invalid."
	}
	if req.SubscribedTopicRegex != nil {
		if _, err := compileSubscriptionRegex(*req.SubscribedTopicRegex); err != nil {
			return kerr.InvalidRegularExpression, "SubscribedTopicRegex is not a valid regular expression."
		}
	}
	if req.ServerAssignor != nil && !slices.Contains(c.cfg.ConsumerAssignors, *req.ServerAssignor) {
		return kerr.UnsupportedAssignor, fmt.Sprintf("ServerAssignor %s is not supported. Supported assignors: %s.",
			*req.ServerAssignor, strings.Join(c.cfg.ConsumerAssignors, ", "))
	}
	return nil, ""
}

// consumerHeartbeatLocked handles a join or a heartbeat. Errors are
// returned before anything changes.
func (c *Coordinator) consumerHeartbeatLocked(g *group, req *kmsg.ConsumerGroupHeartbeatRequest, ci ClientInfo, resp *kmsg.ConsumerGroupHeartbeatResponse) (*kerr.Error, string) {
	cg := g.cg
	id := req.MemberID
	if id == "" {
		id = c.cfg.newUUID()
	}
	join := req.MemberEpoch == 0
	m, replace, fresh, e, msg := c.findConsumerMemberLocked(g, req, id)
	if e != nil {
		return e, msg
	}

	// From here on nothing fails.
	m, subChanged := c.admitConsumerMemberLocked(g, req, id, m, replace, fresh)
	if updateConsumerMember(cg, m, req, ci) {
		subChanged = true
	}

	// Bump the group epoch if the subscriptions or the subscribed
	// partitions changed, and compute the new target assignment.
	c.refreshConsumerMetadataLocked(g, nil, subChanged || cg.epoch == 0)

	// Move the member towards its target.
	prevAssigned := m.assigned
	c.reconcileLocked(g, m, req.Topics)
	c.scheduleSessionTimeoutLocked(g, m.id)

	resp.MemberID = strPtr(m.id)
	resp.MemberEpoch = m.epoch
	resp.HeartbeatIntervalMillis = millis(c.cfg.ConsumerHeartbeatInterval)
	full := req.RebalanceTimeoutMillis != -1 && (req.SubscribedTopicNames != nil || req.SubscribedTopicRegex != nil) && req.Topics != nil
	if join || full || !prevAssigned.equal(m.assigned) {
		resp.Assignment = responseAssignment(m.assigned)
	}
	return nil, ""
}

// findConsumerMemberLocked finds the member a join or heartbeat is from, or
// decides how it joins: m is the known member (nil for a new one), replace
// a static member that left (-2) and is replaced by this incarnation, and
// fresh is set when the member joins (new, or known and starting over). A
// heartbeat from an unknown or fenced member returns its error.
func (c *Coordinator) findConsumerMemberLocked(g *group, req *kmsg.ConsumerGroupHeartbeatRequest, id string) (m, replace *cmember, fresh bool, e *kerr.Error, msg string) {
	cg := g.cg
	join := req.MemberEpoch == 0
	if req.InstanceID == nil {
		m = cg.members[id]
		switch {
		case m == nil && !join:
			return nil, nil, false, kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", id, g.name)
		case m == nil || join:
			return m, nil, true, nil, ""
		}
		e, msg = checkMemberEpoch(m, req)
		return m, nil, false, e, msg
	}
	var existing *cmember
	if sid, ok := cg.static[*req.InstanceID]; ok {
		existing = cg.members[sid]
	}
	if join {
		switch {
		case existing == nil:
			return cg.members[id], nil, true, nil, ""
		case existing.id == id:
			return existing, nil, true, nil, ""
		case existing.epoch != epochStaticLeave:
			return nil, nil, false, kerr.UnreleasedInstanceID, fmt.Sprintf("Static member %s with instance id %s cannot join the group because the instance id is owned by %s member.", id, *req.InstanceID, existing.id)
		}
		return nil, existing, true, nil, ""
	}
	switch {
	case existing == nil:
		return nil, nil, false, kerr.UnknownMemberID, fmt.Sprintf("Instance id %s is unknown.", *req.InstanceID)
	case existing.id != id:
		return nil, nil, false, kerr.FencedInstanceID, fmt.Sprintf("Static member %s with instance id %s is fenced by existing member %s.", id, *req.InstanceID, existing.id)
	}
	if e, msg := checkMemberEpoch(existing, req); e != nil {
		return nil, nil, false, e, msg
	}
	return existing, nil, false, nil, ""
}

// admitConsumerMemberLocked applies what findConsumerMemberLocked decided:
// a replacing static incarnation inherits the old one's assignment, a new
// member is added, a known member joining again starts over owning
// nothing. It returns the member and whether membership changed.
func (c *Coordinator) admitConsumerMemberLocked(g *group, req *kmsg.ConsumerGroupHeartbeatRequest, id string, m, replace *cmember, fresh bool) (*cmember, bool) {
	cg := g.cg
	switch {
	case replace != nil:
		cg.touch(replace)
		cg.touchNew(id)
		m = replace.clone()
		m.id = id
		m.epoch, m.prevEpoch, m.state = 0, 0, memberStable
		m.pendingRevoke = assignment{}
		cg.release(replace, replace.assigned)
		cg.release(replace, replace.pendingRevoke)
		delete(cg.members, replace.id)
		c.stopConsumerTimersLocked(g, replace.id)
		cg.members[id] = m
		cg.claim(m, m.assigned)
		m.assignedAt = nil
		m.stored = memberRecords{}
		m.stampAssigned()
		c.log.Info("static consumer member replaced", "group", g.name, "instance", *req.InstanceID, "old", replace.id, "new", id)
	case m == nil:
		cg.touchNew(id)
		m = &cmember{id: id, assigned: assignment{}, pendingRevoke: assignment{}, target: assignment{}}
		cg.members[id] = m
		c.log.Info("consumer member joins", "group", g.name, "member", id)
		return m, true
	case fresh:
		cg.touch(m)
		cg.release(m, m.assigned)
		cg.release(m, m.pendingRevoke)
		m.assigned, m.pendingRevoke = assignment{}, assignment{}
		m.assignedAt = nil
		m.epoch, m.prevEpoch, m.state = 0, 0, memberStable
		c.cancelRebalanceTimeoutLocked(g, m.id)
		c.log.Info("consumer member rejoins", "group", g.name, "member", id)
	}
	return m, false
}

// updateConsumerMember copies the member's fields from the request and
// reports whether anything that affects the assignment changed. A
// heartbeat that repeats what the member said before changes nothing.
func updateConsumerMember(cg *consumerGroup, m *cmember, req *kmsg.ConsumerGroupHeartbeatRequest, ci ClientInfo) bool {
	changed := false
	nm := m.memberMeta
	if req.InstanceID != nil && !sameStr(nm.instanceID, req.InstanceID) {
		nm.instanceID = cloneStrPtr(req.InstanceID)
		changed = true
	}
	if req.RackID != nil && !sameStr(nm.rackID, req.RackID) {
		nm.rackID = cloneStrPtr(req.RackID)
		changed = true
	}
	if req.RebalanceTimeoutMillis != -1 {
		nm.rebalanceTimeout = req.RebalanceTimeoutMillis
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != nm.serverAssignor {
		nm.serverAssignor = *req.ServerAssignor
		changed = true
	}
	if req.SubscribedTopicNames != nil && !sameTopicNames(nm.topicNames, req.SubscribedTopicNames) {
		if names := slices.Compact(slices.Sorted(slices.Values(req.SubscribedTopicNames))); !slices.Equal(names, nm.topicNames) {
			nm.topicNames = names
			changed = true
		}
	}
	if req.SubscribedTopicRegex != nil && !sameStr(nm.regex, req.SubscribedTopicRegex) {
		nm.regex = cloneStrPtr(req.SubscribedTopicRegex)
		changed = true
	}
	nm.clientID, nm.clientHost = ci.ClientID, ci.Host
	if !nm.equal(&m.memberMeta) {
		cg.touch(m)
		if m.instanceID != nil && cg.static[*m.instanceID] == m.id && !sameStr(m.instanceID, nm.instanceID) {
			delete(cg.static, *m.instanceID)
		}
		if nm.regex != nil && !sameStr(m.regex, nm.regex) {
			m.re, _ = compileSubscriptionRegex(*nm.regex)
		}
		m.memberMeta = nm
	}
	if m.instanceID != nil {
		cg.static[*m.instanceID] = m.id
	}
	return changed
}

// sameTopicNames reports, without allocating, whether names in the order
// given are sorted, with duplicates only next to each other: a request
// that repeats the member's subscription as it was sent before. False
// means "compare after sorting".
func sameTopicNames(sorted, names []string) bool {
	if len(names) < len(sorted) {
		return false
	}
	i := 0
	for _, n := range names {
		switch {
		case i > 0 && n == sorted[i-1]:
		case i < len(sorted) && n == sorted[i]:
			i++
		default:
			return false
		}
	}
	return i == len(sorted)
}

func sameStr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// consumerLeaveLocked handles epochs -1 (leave) and -2 (static member
// leaves for now).
func (c *Coordinator) consumerLeaveLocked(g *group, req *kmsg.ConsumerGroupHeartbeatRequest, resp *kmsg.ConsumerGroupHeartbeatResponse) (*kerr.Error, string) {
	cg := g.cg
	var m *cmember
	if req.InstanceID == nil {
		m = cg.members[req.MemberID]
		if m == nil {
			return kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", req.MemberID, g.name)
		}
	} else {
		if sid, ok := cg.static[*req.InstanceID]; ok {
			m = cg.members[sid]
		}
		if m == nil {
			return kerr.UnknownMemberID, fmt.Sprintf("Instance id %s is unknown.", *req.InstanceID)
		}
		if m.id != req.MemberID {
			return kerr.FencedInstanceID, fmt.Sprintf("Static member %s with instance id %s is fenced by existing member %s.", req.MemberID, *req.InstanceID, m.id)
		}
	}
	resp.MemberID = strPtr(req.MemberID)
	resp.MemberEpoch = req.MemberEpoch
	if req.MemberEpoch == epochStaticLeave && m.instanceID != nil {
		// Keep the assignment for the next incarnation until the session
		// times out; release what it was giving up anyway.
		cg.touch(m)
		cg.release(m, m.pendingRevoke)
		m.pendingRevoke = assignment{}
		m.stampAssigned()
		m.epoch = epochStaticLeave
		c.cancelRebalanceTimeoutLocked(g, m.id)
		c.log.Info("static consumer member leaves for now", "group", g.name, "member", m.id, "instance", *m.instanceID)
		return nil, ""
	}
	c.log.Info("consumer member leaves", "group", g.name, "member", m.id)
	c.fenceMemberLocked(g, m)
	return nil, ""
}

// fenceMemberLocked removes m from the group and rebalances the rest.
func (c *Coordinator) fenceMemberLocked(g *group, m *cmember) {
	cg := g.cg
	cg.touch(m)
	cg.release(m, m.assigned)
	cg.release(m, m.pendingRevoke)
	delete(cg.members, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
	c.stopConsumerTimersLocked(g, m.id)
	c.refreshConsumerMetadataLocked(g, nil, true)
}

func (c *Coordinator) scheduleSessionTimeoutLocked(g *group, id string) {
	s := g.cgSession[id]
	if s == nil {
		s = &timerSlot{}
		g.cgSession[id] = s
	}
	c.afterFuncLocked(g, &s.t, c.cfg.ConsumerSessionTimeout, func() {
		m := g.cg.members[id]
		if g.kind != kindConsumer || m == nil || g.cgSession[id] != s {
			return
		}
		c.log.Info("consumer member session expired", "group", g.name, "member", id, "epoch", m.epoch)
		c.fenceMemberLocked(g, m)
		if err := c.persistConsumerLocked(g, nil); err != nil {
			c.log.Warn("storing consumer group", "group", g.name, "err", err)
		}
	})
}

func (c *Coordinator) scheduleRebalanceTimeoutLocked(g *group, m *cmember) {
	id, epoch := m.id, m.epoch
	s := g.cgRebalance[id]
	if s == nil {
		s = &timerSlot{}
		g.cgRebalance[id] = s
	}
	d := msDuration(m.rebalanceTimeout)
	if d <= 0 {
		d = c.cfg.ConsumerSessionTimeout
	}
	c.afterFuncLocked(g, &s.t, d, func() {
		m := g.cg.members[id]
		if g.kind != kindConsumer || m == nil || g.cgRebalance[id] != s {
			return
		}
		if m.state != memberUnrevokedPartitions || m.epoch != epoch {
			return
		}
		c.log.Info("consumer member did not revoke in time", "group", g.name, "member", id, "epoch", epoch)
		c.fenceMemberLocked(g, m)
		if err := c.persistConsumerLocked(g, nil); err != nil {
			c.log.Warn("storing consumer group", "group", g.name, "err", err)
		}
	})
}

func (c *Coordinator) cancelRebalanceTimeoutLocked(g *group, id string) {
	if s := g.cgRebalance[id]; s != nil {
		stopTimer(&s.t)
		delete(g.cgRebalance, id)
	}
}

func (c *Coordinator) stopConsumerTimersLocked(g *group, id string) {
	if s := g.cgSession[id]; s != nil {
		stopTimer(&s.t)
		delete(g.cgSession, id)
	}
	c.cancelRebalanceTimeoutLocked(g, id)
}

// syncConsumerTimersLocked makes the timers match the members after the
// state was replaced (a revert or a load): every member has a session
// timeout, every member waiting for a revocation a rebalance timeout.
func (c *Coordinator) syncConsumerTimersLocked(g *group) {
	if g.kind != kindConsumer {
		return
	}
	for id := range g.cgSession {
		if g.cg.members[id] == nil {
			c.stopConsumerTimersLocked(g, id)
		}
	}
	for id := range g.cgRebalance {
		if m := g.cg.members[id]; m == nil || m.state != memberUnrevokedPartitions {
			c.cancelRebalanceTimeoutLocked(g, id)
		}
	}
	for _, m := range g.cg.sortedMembers() {
		if g.cgSession[m.id] == nil {
			c.scheduleSessionTimeoutLocked(g, m.id)
		}
		if m.state == memberUnrevokedPartitions && g.cgRebalance[m.id] == nil {
			c.scheduleRebalanceTimeoutLocked(g, m)
		}
	}
}

// ConsumerGroupDescribe handles a ConsumerGroupDescribe request. Unknown
// and classic groups answer GROUP_ID_NOT_FOUND.
func (c *Coordinator) ConsumerGroupDescribe(ctx context.Context, req *kmsg.ConsumerGroupDescribeRequest) *kmsg.ConsumerGroupDescribeResponse {
	resp := kmsg.NewPtrConsumerGroupDescribeResponse()
	resp.Version = req.Version
	for _, name := range req.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = name
		c.describeConsumerGroup(req, name, &dg)
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) describeConsumerGroup(req *kmsg.ConsumerGroupDescribeRequest, name string, dg *kmsg.ConsumerGroupDescribeResponseGroup) {
	fail := func(e *kerr.Error, msg string) {
		dg.ErrorCode = e.Code
		if msg != "" {
			dg.ErrorMessage = &msg
		}
	}
	if name == "" {
		fail(kerr.InvalidGroupID, "")
		return
	}
	topics := c.cfg.Topics()
	names := topicsByID(topics)
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		fail(kerr.CoordinatorNotAvailable, "")
		return
	case lookupMissing:
		fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s not found.", name))
		return
	}
	defer g.mu.Unlock()
	if g.kind != kindConsumer {
		fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", name))
		return
	}
	cg := g.cg
	dg.State = cg.state()
	dg.Epoch = cg.epoch
	dg.AssignmentEpoch = cg.assignmentEpoch
	dg.AssignorName = cg.preferredAssignor(c.cfg.ConsumerAssignors[0])
	toKmsg := func(a assignment) kmsg.Assignment {
		out := kmsg.NewAssignment()
		for _, id := range a.sortedIDs() {
			tp := kmsg.NewAssignmentTopicPartition()
			tp.TopicID = id
			tp.Topic = names[id]
			tp.Partitions = slices.Clone(a[id])
			out.TopicPartitions = append(out.TopicPartitions, tp)
		}
		return out
	}
	for _, m := range cg.sortedMembers() {
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = cloneStrPtr(m.instanceID)
		dm.RackID = cloneStrPtr(m.rackID)
		dm.MemberEpoch = m.epoch
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.SubscribedTopics = slices.Clone(m.topicNames)
		if dm.SubscribedTopics == nil {
			dm.SubscribedTopics = []string{}
		}
		dm.SubscribedTopicRegex = cloneStrPtr(m.regex)
		dm.Assignment = toKmsg(m.assigned)
		dm.TargetAssignment = toKmsg(m.target)
		dm.MemberType = 1 // consumer protocol
		dg.Members = append(dg.Members, dm)
	}
	if req.IncludeAuthorizedOperations {
		dg.AuthorizedOperations = groupAuthorizedOps
	}
}
