package group

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit handles an OffsetCommit request (v0-v10). It answers only
// after the accepted offsets are durable in the Store; if the append fails,
// every partition of the commit answers COORDINATOR_NOT_AVAILABLE and
// nothing is applied.
func (c *Coordinator) OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	topics := c.cfg.Topics()
	resp, slots := commitSlots(req, topics)
	if len(slots) == 0 {
		return resp
	}
	failAll := func(code int16) *kmsg.OffsetCommitResponse {
		for _, s := range slots {
			s.resp.ErrorCode = code
		}
		return resp
	}

	g, res := c.lockGroup(req.Group, req.Generation < 0)
	switch res {
	case lookupClosed:
		return failAll(kerr.CoordinatorNotAvailable.Code)
	case lookupOther:
		return failAll(kerr.GroupIDNotFound.Code)
	case lookupMissing:
		if req.Version >= 9 {
			return failAll(kerr.GroupIDNotFound.Code)
		}
		return failAll(kerr.IllegalGeneration.Code)
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)

	var m *member
	var cm *cmember
	if code := c.validateCommitLocked(g, req, &m, &cm); code != 0 {
		return failAll(code)
	}
	accepted := c.acceptCommits(req, slots, cm, topics, time.Now())
	if m != nil {
		c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
	}
	if len(accepted) == 0 {
		return resp
	}
	recs := make([]Record, len(accepted))
	for i, a := range accepted {
		recs[i] = offsetRecord(g.name, a.topic, a.part.Partition, &a.entry)
	}
	if err := c.appendLocked(g, recs); err != nil {
		for _, a := range accepted {
			a.resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		}
		return resp
	}
	for _, a := range accepted {
		g.setOffset(a.topic, a.part.Partition, a.entry)
		a.resp.ErrorCode = 0
	}
	return resp
}

// commitSlot is one partition of an OffsetCommit that passed the topic
// checks, with its response partition, decided later; entry is filled in
// once the partition is accepted.
type commitSlot struct {
	topic string
	part  *kmsg.OffsetCommitRequestTopicPartition
	resp  *kmsg.OffsetCommitResponseTopicPartition
	entry offsetEntry
}

// commitSlots builds the response, one partition per request partition in
// request order, answering the topic-level errors (empty group, unknown
// topic or topic ID, partition out of range); the partitions that pass are
// returned as slots.
func commitSlots(req *kmsg.OffsetCommitRequest, topics map[string]TopicInfo) (*kmsg.OffsetCommitResponse, []*commitSlot) {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = req.Version
	var byID map[[16]byte]string
	if req.Version >= 10 {
		byID = topicsByID(topics)
	}
	var slots []*commitSlot
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, st)
		name := rt.Topic
		idKnown := true
		if req.Version >= 10 {
			name, idKnown = byID[rt.TopicID]
		}
		info, topicKnown := topics[name]
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[len(resp.Topics)-1].Partitions[j]
			*sp = kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case req.Group == "":
				sp.ErrorCode = kerr.InvalidGroupID.Code
			case !idKnown:
				sp.ErrorCode = kerr.UnknownTopicID.Code
			case !topicKnown || rp.Partition < 0 || rp.Partition >= info.Partitions:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				sp.ErrorCode = -1 // to be decided
				slots = append(slots, &commitSlot{topic: name, part: rp, resp: sp})
			}
		}
	}
	return resp, slots
}

// acceptCommits applies the per-partition checks (a KIP-848 member's
// partition epochs, the metadata size) and returns the accepted slots with
// their entries; the refused ones have their error set.
func (c *Coordinator) acceptCommits(req *kmsg.OffsetCommitRequest, slots []*commitSlot, cm *cmember, topics map[string]TopicInfo, now time.Time) []*commitSlot {
	var accepted []*commitSlot
	for _, s := range slots {
		if cm != nil {
			// KIP-1251: a KIP-848 member commits partitions it holds,
			// with an epoch no older than when it got them.
			at, ok := cm.assignedAt[tpKey{topics[s.topic].ID, s.part.Partition}]
			if !ok || req.Generation < at {
				s.resp.ErrorCode = kerr.StaleMemberEpoch.Code
				continue
			}
		}
		if s.part.Metadata != nil && len(*s.part.Metadata) > c.cfg.OffsetMetadataMaxBytes {
			s.resp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
			continue
		}
		s.entry = offsetEntry{
			offset:      s.part.Offset,
			leaderEpoch: -1,
			metadata:    derefStr(s.part.Metadata),
			commitTime:  now.UnixMilli(),
			expireTime:  -1,
		}
		if req.Version >= 6 {
			s.entry.leaderEpoch = s.part.LeaderEpoch
		}
		if req.Version == 1 && s.part.Timestamp != -1 {
			s.entry.commitTime = s.part.Timestamp
		}
		if req.Version >= 2 && req.Version <= 4 && req.RetentionTimeMillis != -1 {
			s.entry.expireTime = now.UnixMilli() + req.RetentionTimeMillis
		}
		accepted = append(accepted, s)
	}
	return accepted
}

// validateCommitLocked applies Kafka's group-level OffsetCommit checks. A
// classic member that commits is returned through m (its commit counts as a
// heartbeat), a KIP-848 member through cm (its partitions are checked one
// by one).
func (c *Coordinator) validateCommitLocked(g *group, req *kmsg.OffsetCommitRequest, m **member, cm **cmember) int16 {
	if g.kind == kindConsumer {
		cg := g.cg
		if req.Generation < 0 && len(cg.members) == 0 {
			return 0 // admin or standalone commit to an empty group
		}
		mem := cg.members[req.MemberID]
		if mem == nil {
			return kerr.UnknownMemberID.Code
		}
		if req.Version < 9 {
			return kerr.UnsupportedVersion.Code
		}
		// KIP-1251: assignment epoch <= request epoch <= member epoch;
		// the lower bound is checked per partition.
		if req.Generation > mem.epoch || req.Generation < 0 {
			return kerr.StaleMemberEpoch.Code
		}
		*cm = mem
		return 0
	}
	if req.Generation < 0 && g.state == stateEmpty {
		return 0 // admin or standalone commit to an empty group
	}
	if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil {
		if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
			return code
		}
		if req.Generation != g.generation {
			return kerr.IllegalGeneration.Code
		}
	} else if g.state != stateEmpty {
		return kerr.UnknownMemberID.Code
	}
	if g.state == stateCompletingRebalance {
		// The member has its new generation from JoinGroup but no
		// assignment yet.
		return kerr.RebalanceInProgress.Code
	}
	*m = g.members[req.MemberID]
	return 0
}

func (g *group) setOffset(topic string, p int32, e offsetEntry) {
	ps := g.offsets[topic]
	if ps == nil {
		ps = make(map[int32]offsetEntry)
		g.offsets[topic] = ps
	}
	ps[p] = e
}

func (g *group) deleteOffset(topic string, p int32) {
	if ps := g.offsets[topic]; ps != nil {
		delete(ps, p)
		if len(ps) == 0 {
			delete(g.offsets, topic)
		}
	}
}

func (g *group) getOffset(topic string, p int32) (offsetEntry, bool) {
	e, ok := g.offsets[topic][p]
	return e, ok
}

func topicsByID(topics map[string]TopicInfo) map[[16]byte]string {
	m := make(map[[16]byte]string, len(topics))
	for name, t := range topics {
		m[t.ID] = name
	}
	return m
}

// OffsetFetch handles an OffsetFetch request: one group before v8, several
// after. Unknown groups and uncommitted partitions answer offset -1 with no
// error; with no partitions requested (null topics, v2+) every committed
// offset of the group is returned.
func (c *Coordinator) OffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Version = req.Version
	if req.Version >= 8 {
		for i := range req.Groups {
			rg := &req.Groups[i]
			resp.Groups = append(resp.Groups, c.fetchGroup(req.Version, rg.Group, rg.MemberID, rg.MemberEpoch, rg.Topics, rg.Topics == nil, req.RequireStable))
		}
		return resp
	}
	var topics []kmsg.OffsetFetchRequestGroupTopic
	for _, t := range req.Topics {
		gt := kmsg.NewOffsetFetchRequestGroupTopic()
		gt.Topic = t.Topic
		gt.Partitions = t.Partitions
		topics = append(topics, gt)
	}
	all := req.Topics == nil && req.Version >= 2
	out := c.fetchGroup(req.Version, req.Group, nil, -1, topics, all, req.Version >= 7 && req.RequireStable)
	resp.ErrorCode = out.ErrorCode
	if out.ErrorCode != 0 && req.Version < 2 {
		// No group-level error before v2: report it on every partition.
		for _, t := range req.Topics {
			st := kmsg.NewOffsetFetchResponseTopic()
			st.Topic = t.Topic
			for _, p := range t.Partitions {
				sp := kmsg.NewOffsetFetchResponseTopicPartition()
				sp.Partition = p
				sp.Offset = -1
				sp.Metadata = strPtr("")
				sp.ErrorCode = out.ErrorCode
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	for _, t := range out.Topics {
		st := kmsg.NewOffsetFetchResponseTopic()
		st.Topic = t.Topic
		for _, p := range t.Partitions {
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition = p.Partition
			sp.Offset = p.Offset
			sp.LeaderEpoch = p.LeaderEpoch
			sp.Metadata = p.Metadata
			sp.ErrorCode = p.ErrorCode
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// fetchGroup answers one group of an OffsetFetch. With requireStable
// (v7+), a partition an open transaction committed an offset of answers
// UNSTABLE_OFFSET_COMMIT, as Kafka does, and the client retries.
func (c *Coordinator) fetchGroup(v int16, name string, memberID *string, memberEpoch int32, req []kmsg.OffsetFetchRequestGroupTopic, all, requireStable bool) kmsg.OffsetFetchResponseGroup {
	out := kmsg.NewOffsetFetchResponseGroup()
	out.Group = name
	if name == "" {
		out.ErrorCode = kerr.InvalidGroupID.Code
		return out
	}
	var topics map[string]TopicInfo
	var byID map[[16]byte]string
	if v >= 10 {
		topics = c.cfg.Topics()
		byID = topicsByID(topics)
	}
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		out.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return out
	case lookupOK:
		defer g.mu.Unlock()
	}
	if g != nil && g.kind == kindConsumer && (memberID != nil || memberEpoch >= 0) {
		// A member of a KIP-848 group fetches with its epoch; admin
		// clients send neither.
		m := g.cg.members[derefStr(memberID)]
		if m == nil {
			out.ErrorCode = kerr.UnknownMemberID.Code
			return out
		}
		if memberEpoch != m.epoch {
			out.ErrorCode = kerr.StaleMemberEpoch.Code
			return out
		}
	}
	fill := func(topic string, p int32, e offsetEntry, ok bool) kmsg.OffsetFetchResponseGroupTopicPartition {
		sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		sp.Partition = p
		sp.Offset, sp.LeaderEpoch, sp.Metadata = -1, -1, strPtr("")
		switch {
		case requireStable && g != nil && g.hasPendingOffset(topic, p):
			sp.ErrorCode = kerr.UnstableOffsetCommit.Code
		case ok:
			sp.Offset, sp.LeaderEpoch, sp.Metadata = e.offset, e.leaderEpoch, strPtr(e.metadata)
		}
		return sp
	}
	if all {
		if g == nil {
			return out
		}
		names := make([]string, 0, len(g.offsets))
		for t := range g.offsets {
			names = append(names, t)
		}
		slices.Sort(names)
		for _, t := range names {
			st := kmsg.NewOffsetFetchResponseGroupTopic()
			st.Topic = t
			if v >= 10 {
				info, ok := topics[t]
				if !ok {
					continue // no ID to name it by
				}
				st.TopicID = info.ID
			}
			ps := make([]int32, 0, len(g.offsets[t]))
			for p := range g.offsets[t] {
				ps = append(ps, p)
			}
			slices.Sort(ps)
			for _, p := range ps {
				st.Partitions = append(st.Partitions, fill(t, p, g.offsets[t][p], true))
			}
			out.Topics = append(out.Topics, st)
		}
		return out
	}
	for _, rt := range req {
		st := kmsg.NewOffsetFetchResponseGroupTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		name, known := rt.Topic, true
		if v >= 10 {
			name, known = byID[rt.TopicID]
		}
		for _, p := range rt.Partitions {
			var e offsetEntry
			ok := false
			if g != nil && known {
				e, ok = g.getOffset(name, p)
			}
			sp := fill(name, p, e, ok)
			if !known {
				sp.ErrorCode = kerr.UnknownTopicID.Code
			}
			st.Partitions = append(st.Partitions, sp)
		}
		out.Topics = append(out.Topics, st)
	}
	return out
}

// OffsetDelete handles an OffsetDelete request: it removes committed offsets
// of topics the group does not consume (GROUP_SUBSCRIBED_TO_TOPIC for those
// it does). A classic group with members that does not use the consumer
// protocol refuses with NON_EMPTY_GROUP.
func (c *Coordinator) OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.Version = req.Version
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	topics := c.cfg.Topics()
	g, res := c.lockGroup(req.Group, false)
	switch res {
	case lookupClosed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	case lookupMissing:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	defer g.mu.Unlock()
	if g.kind == kindClassic && g.state != stateEmpty && g.protocolType != "consumer" {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	}
	type del struct {
		topic string
		p     int32
		resp  *kmsg.OffsetDeleteResponseTopicPartition
	}
	var dels []del
	var recs []Record
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, st)
		_, known := topics[rt.Topic]
		subscribed := known && g.subscribedTo(rt.Topic, topics)
		for j, rp := range rt.Partitions {
			sp := &resp.Topics[len(resp.Topics)-1].Partitions[j]
			*sp = kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case !known:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case subscribed:
				sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				if _, ok := g.getOffset(rt.Topic, rp.Partition); ok {
					dels = append(dels, del{rt.Topic, rp.Partition, sp})
					recs = append(recs, offsetRecord(g.name, rt.Topic, rp.Partition, nil))
				}
			}
		}
	}
	if len(recs) == 0 {
		return resp
	}
	if err := c.appendLocked(g, recs); err != nil {
		for _, d := range dels {
			d.resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		}
		return resp
	}
	for _, d := range dels {
		g.deleteOffset(d.topic, d.p)
	}
	return resp
}

// retentionLoop expires old offsets every OffsetsRetentionCheckInterval.
func (c *Coordinator) retentionLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.OffsetsRetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
			c.expireOffsets()
		}
	}
}

// expireOffsets removes expired offsets (writing tombstones) and deletes
// groups left empty with no offsets, as Kafka's cleanupGroupMetadata does.
func (c *Coordinator) expireOffsets() {
	topics := c.cfg.Topics()
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if !g.dead && !c.isClosed() {
			c.expireGroupLocked(g, topics, time.Now())
		}
		g.mu.Unlock()
	}
}

func (c *Coordinator) expireGroupLocked(g *group, topics map[string]TopicInfo, now time.Time) {
	type tp struct {
		topic string
		p     int32
	}
	var expired []tp
	allExpired := true
	if base, ok := g.expirationBase(); ok {
		nowMs := now.UnixMilli()
		for t, ps := range g.offsets {
			if g.subscribedTo(t, topics) {
				allExpired = false
				continue
			}
			for p, e := range ps {
				var gone bool
				if e.expireTime >= 0 {
					gone = nowMs >= e.expireTime
				} else {
					gone = nowMs-base(e) >= c.cfg.OffsetsRetention.Milliseconds()
				}
				if gone {
					expired = append(expired, tp{t, p})
				} else {
					allExpired = false
				}
			}
		}
	} else if g.offsetCount() > 0 {
		allExpired = false
	}
	slices.SortFunc(expired, func(a, b tp) int {
		if a.topic != b.topic {
			if a.topic < b.topic {
				return -1
			}
			return 1
		}
		return int(a.p - b.p)
	})
	deleteGroup := allExpired && g.isEmpty() && len(g.pending) == 0 && len(g.txnOffsets) == 0
	var recs []Record
	for _, e := range expired {
		recs = append(recs, offsetRecord(g.name, e.topic, e.p, nil))
	}
	if deleteGroup && g.persisted {
		recs = append(recs, g.groupTombstones()...)
	}
	if len(recs) > 0 {
		if err := c.appendLocked(g, recs); err != nil {
			c.log.Warn("expiring offsets", "group", g.name, "err", err)
			return
		}
	}
	for _, e := range expired {
		g.deleteOffset(e.topic, e.p)
	}
	if len(expired) > 0 {
		c.log.Info("expired offsets", "group", g.name, "partitions", len(expired))
	}
	if deleteGroup {
		c.log.Info("deleting empty group", "group", g.name)
		c.removeGroupLocked(g)
	}
}

// expirationBase returns the timestamp an offset's retention counts from,
// or false when g's offsets do not expire now (Kafka's
// offsetExpirationCondition).
func (g *group) expirationBase() (func(offsetEntry) int64, bool) {
	byCommit := func(e offsetEntry) int64 { return e.commitTime }
	if g.kind == kindConsumer {
		return byCommit, true
	}
	if g.protocolType == "" {
		return byCommit, true // simple group: only commits
	}
	switch {
	case g.state == stateEmpty && g.stateTime.IsZero():
		return byCommit, true // loaded from a record without a state timestamp
	case g.state == stateEmpty:
		emptySince := g.stateTime.UnixMilli()
		return func(offsetEntry) int64 { return emptySince }, true
	case g.state == stateStable && g.protocolType == "consumer" && g.subscribed != nil:
		return byCommit, true // only unsubscribed topics expire
	}
	return nil, false
}
