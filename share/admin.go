package share

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups returns the share groups a ListGroups request (v0-v5) asks
// for, filtered by state (v4+, case-insensitive) and type (v5+: only
// "share" matches), sorted by name. The server merges them with the
// consumer groups.
func (c *Coordinator) ListGroups(req *kmsg.ListGroupsRequest) []kmsg.ListGroupsResponseGroup {
	states := make(map[string]bool)
	for _, s := range req.StatesFilter {
		states[strings.ToLower(strings.TrimSpace(s))] = true
	}
	types := make(map[string]bool)
	for _, t := range req.TypesFilter {
		types[strings.ToLower(strings.TrimSpace(t))] = true
	}
	if len(types) > 0 && !types["share"] {
		return nil
	}
	var out []kmsg.ListGroupsResponseGroup
	for _, g := range c.loadedGroups(c.groupsSnapshot()) {
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.ProtocolType = "share"
		lg.GroupType = "share"
		lg.GroupState = g.state()
		g.mu.Unlock()
		if len(states) > 0 && !states[strings.ToLower(lg.GroupState)] {
			continue
		}
		out = append(out, lg)
	}
	return out
}

// DescribeGroup answers DescribeGroups (v0-v6) for name if it is a share
// group, as Kafka does: Dead, and from v6 GROUP_ID_NOT_FOUND "Group X is
// not a classic group." (share groups are described with
// ShareGroupDescribe). ok is false if no share group has that name.
func (c *Coordinator) DescribeGroup(version int16, name string) (kmsg.DescribeGroupsResponseGroup, bool) {
	if !c.Exists(name) {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		return dg, false
	}
	return ClassicDescription(version, name), true
}

// ClassicDescription is DescribeGroups' answer (v0-v6) for the share group
// name: Dead, and from v6 GROUP_ID_NOT_FOUND "Group X is not a classic
// group.", as Kafka answers.
func ClassicDescription(version int16, name string) kmsg.DescribeGroupsResponseGroup {
	dg := kmsg.NewDescribeGroupsResponseGroup()
	dg.Group = name
	dg.State = "Dead"
	if version >= 6 {
		dg.ErrorCode = kerr.GroupIDNotFound.Code
		dg.ErrorMessage = strPtr(fmt.Sprintf("Group %s is not a classic group.", name))
	}
	return dg
}

// DeleteGroup deletes a share group for DeleteGroups: its membership
// records and the state of every share-partition, tombstones durable
// before the answer. A group with members answers NON_EMPTY_GROUP. ok is
// false if no share group has that name (the server then asks the
// consumer-group coordinator).
func (c *Coordinator) DeleteGroup(name string) (code int16, ok bool) {
	if !c.groupServed(name) {
		return 0, false
	}
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		return kerr.CoordinatorNotAvailable.Code, true
	case lookupMissing:
		return 0, false
	}
	defer g.mu.Unlock()
	if len(g.members) > 0 {
		return kerr.NonEmptyGroup.Code, true
	}
	if c.remote() {
		// The state is on the leaders of the state partitions, of
		// whichever partitions the group ever consumed.
		if e := c.deleteRemoteLocked(g, allPartitions(c.cfg.Topics())); e != nil {
			return e.Code, true
		}
	}
	for _, sp := range g.spsSorted() {
		if err := c.deleteStateLocked(g, sp); err != nil {
			return kerr.CoordinatorNotAvailable.Code, true
		}
	}
	if g.persisted {
		if err := c.appendMembership(g, []Record{{Key: appendGroupKey(nil, g.name)}}); err != nil {
			return kerr.CoordinatorNotAvailable.Code, true
		}
		g.persisted = false
	}
	c.log.Info("share group deleted", "group", g.name)
	g.dead = true
	g.stopTimersLocked()
	c.mu.Lock()
	if c.mu.groups[g.name] == g {
		delete(c.mu.groups, g.name)
	}
	c.mu.Unlock()
	return 0, true
}

// deleteStateLocked tombstones the state of sp and forgets it. g.mu is
// held.
func (c *Coordinator) deleteStateLocked(g *group, sp *sharePartition) error {
	p := c.parts[sp.part]
	recs := []Record{{Key: sp.snapKey}, {Key: sp.updKey}}
	c.lockPart(p)
	defer c.unlockPart(p)
	if err := c.appendState(p, recs); err != nil {
		c.log.Warn("deleting share-partition state", "group", g.name, "err", err)
		return err
	}
	sp.mu.Lock()
	sp.dead = true
	c.noteEpoch(sp.key, sp.stateEpoch)
	sp.mu.Unlock()
	p.unregister(sp)
	c.appended(p, recs, false)
	c.removeSPLocked(g, sp)
	return nil
}

// DescribeShareGroupOffsets handles DescribeShareGroupOffsets (v0-v1):
// each partition's start offset, and from v1 its lag (records from the
// start offset to the high watermark whose delivery is not complete,
// KIP-1226). A partition without state answers start offset -1 and lag -1;
// with no topics listed, every partition with state is described.
func (c *Coordinator) DescribeShareGroupOffsets(ctx context.Context, req *kmsg.DescribeShareGroupOffsetsRequest) *kmsg.DescribeShareGroupOffsetsResponse {
	resp := kmsg.NewPtrDescribeShareGroupOffsetsResponse()
	resp.Version = req.Version
	topics := c.cfg.Topics()
	for i := range req.Groups {
		rg := &req.Groups[i]
		out := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
		out.GroupID = rg.GroupID
		if c.isClosed() {
			out.ErrorCode = kerr.CoordinatorNotAvailable.Code
			resp.Groups = append(resp.Groups, out)
			continue
		}
		if !c.groupServed(rg.GroupID) {
			out.ErrorCode = kerr.NotCoordinator.Code
			resp.Groups = append(resp.Groups, out)
			continue
		}
		g := c.findGroup(rg.GroupID)
		sps := make(map[TopicPartition]*sharePartition)
		if g != nil {
			g.mu.Lock()
			maps.Copy(sps, g.sps)
			g.mu.Unlock()
		}
		type want struct {
			topic string
			parts []int32
		}
		var wants []want
		var stored map[TopicPartition]remoteState
		if rg.Topics == nil && c.remote() {
			// The state is on the leaders of the state partitions: read
			// which partitions of every topic have some.
			stored = c.readStates(rg.GroupID, allPartitions(topics))
			byName := make(map[string][]int32)
			for tp, st := range stored {
				if st.err == nil && st.val == nil {
					continue
				}
				if name, _, ok := topicByID(topics, tp.TopicID); ok {
					byName[name] = append(byName[name], tp.Partition)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(byName)) {
				wants = append(wants, want{name, slices.Sorted(slices.Values(byName[name]))})
			}
		} else if rg.Topics == nil {
			byName := make(map[string][]int32)
			for tp := range sps {
				if name, _, ok := topicByID(topics, tp.TopicID); ok {
					byName[name] = append(byName[name], tp.Partition)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(byName)) {
				wants = append(wants, want{name, slices.Sorted(slices.Values(byName[name]))})
			}
		} else {
			for _, t := range rg.Topics {
				wants = append(wants, want{t.Topic, t.Partitions})
			}
		}
		for _, w := range wants {
			ot := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
			ot.Topic = w.topic
			info, known := topics[w.topic]
			ot.TopicID = info.ID
			for _, p := range w.parts {
				op := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
				op.Partition = p
				op.StartOffset, op.Lag, op.LeaderEpoch = -1, -1, -1
				switch {
				case known && c.remote():
					tp := TopicPartition{info.ID, p}
					st, ok := stored[tp]
					if !ok {
						st = c.readStates(rg.GroupID, []TopicPartition{tp})[tp]
					}
					c.describeRemote(tp, st, &op)
				case known:
					c.describeOffsets(TopicPartition{info.ID, p}, sps, &op)
				}
				ot.Partitions = append(ot.Partitions, op)
			}
			if rg.Topics == nil && len(ot.Partitions) == 0 {
				continue
			}
			out.Topics = append(out.Topics, ot)
		}
		resp.Groups = append(resp.Groups, out)
	}
	return resp
}

func (c *Coordinator) describeOffsets(tp TopicPartition, sps map[TopicPartition]*sharePartition, op *kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition) {
	offs, err := c.cfg.Reader.Offsets(tp)
	if err != nil {
		return // unknown partition: no data, as Kafka answers
	}
	op.LeaderEpoch = offs.LeaderEpoch
	sp := sps[tp]
	if sp == nil {
		return
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.dead {
		return
	}
	op.StartOffset = sp.start
	op.Lag = max(0, offs.HighWatermark-sp.start-sp.deliveryCompleteLocked(offs.HighWatermark))
}

// AlterShareGroupOffsets handles AlterShareGroupOffsets (v0): the start
// offset of each listed partition is set and its in-flight state and
// delivery counts are dropped, durably. The group must have no members
// (NON_EMPTY_GROUP); it is created if it does not exist.
func (c *Coordinator) AlterShareGroupOffsets(ctx context.Context, req *kmsg.AlterShareGroupOffsetsRequest) *kmsg.AlterShareGroupOffsetsResponse {
	resp := kmsg.NewPtrAlterShareGroupOffsetsResponse()
	resp.Version = req.Version
	if !c.groupServed(req.GroupID) {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	g, res := c.lockGroup(req.GroupID, true)
	switch res {
	case lookupClosed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	case lookupOther:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		resp.ErrorMessage = strPtr(fmt.Sprintf("Group %s is not a share group.", req.GroupID))
		return resp
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	if len(g.members) > 0 {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	}
	topics := c.cfg.Topics()
	_, nowMs := c.now()
	altered := false
	defer func() {
		// With Config.State the state lives elsewhere: the group
		// exists by its own record, as Kafka creates it.
		if altered && !g.persisted {
			if err := c.appendMembership(g, []Record{groupRecord(g)}); err != nil {
				c.log.Warn("storing share group", "group", g.name, "err", err)
			} else {
				g.persisted = true
			}
		}
	}()
	for _, rt := range req.Topics {
		ot := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		info, known := topics[rt.Topic]
		ot.TopicID = info.ID
		for _, rp := range rt.Partitions {
			op := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			op.Partition = rp.Partition
			switch {
			case !known || rp.Partition < 0 || rp.Partition >= info.Partitions:
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case rp.StartOffset < 0:
				op.ErrorCode = kerr.InvalidRequest.Code
			case c.remote():
				if e := c.resetRemoteLocked(g, TopicPartition{info.ID, rp.Partition}, rp.StartOffset, nowMs); e != nil {
					op.ErrorCode = e.Code
				} else {
					altered = true
				}
			case !c.spServed(spKey{g.name, TopicPartition{info.ID, rp.Partition}}):
				op.ErrorCode = kerr.NotCoordinator.Code
			default:
				if err := c.resetStateLocked(g, TopicPartition{info.ID, rp.Partition}, rp.StartOffset, nowMs); err != nil {
					op.ErrorCode = kerr.CoordinatorNotAvailable.Code
				}
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

// resetStateLocked gives tp a fresh state starting at start, with a new
// state epoch, written as a ShareSnapshot record before it is used.
func (c *Coordinator) resetStateLocked(g *group, tp TopicPartition, start, nowMs int64) error {
	key := spKey{group: g.name, tp: tp}
	sp := g.sps[tp]
	fresh := sp == nil
	if fresh {
		sp = newSharePartition(key, c.cfg.StatePartitions)
		sp.createTime = nowMs
	}
	p := c.parts[sp.part]
	epoch := c.nextEpoch(key)
	c.lockPart(p)
	defer c.unlockPart(p)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	tmp := &sharePartition{key: key, leaderEpoch: sp.leaderEpoch, createTime: sp.createTime}
	tmp.resetLocked(start, epoch)
	recs := []Record{{Key: sp.snapKey, Value: tmp.snapshotValueLocked(nowMs)}}
	if err := c.appendState(p, recs); err != nil {
		c.log.Warn("resetting share-partition state", "group", g.name, "err", err)
		return err
	}
	sp.resetLocked(start, epoch)
	if fresh {
		c.addSPLocked(g, sp)
		p.register(sp)
	}
	c.appended(p, recs, false)
	c.log.Info("share-partition start offset altered", "group", g.name, "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition, "start_offset", start)
	return nil
}

// DeleteShareGroupOffsets handles DeleteShareGroupOffsets (v0): the state
// of every partition of the listed topics is deleted, durably; the next
// assignment initializes it again from share.auto.offset.reset. The group
// must exist (GROUP_ID_NOT_FOUND) and have no members (NON_EMPTY_GROUP).
func (c *Coordinator) DeleteShareGroupOffsets(ctx context.Context, req *kmsg.DeleteShareGroupOffsetsRequest) *kmsg.DeleteShareGroupOffsetsResponse {
	resp := kmsg.NewPtrDeleteShareGroupOffsetsResponse()
	resp.Version = req.Version
	if !c.groupServed(req.GroupID) {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return resp
	}
	g, res := c.lockGroup(req.GroupID, false)
	switch res {
	case lookupClosed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	case lookupMissing:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		resp.ErrorMessage = strPtr(fmt.Sprintf("Group %s not found.", req.GroupID))
		return resp
	}
	defer g.mu.Unlock()
	if len(g.members) > 0 {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	}
	topics := c.cfg.Topics()
	for _, rt := range req.Topics {
		ot := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		info, known := topics[rt.Topic]
		ot.TopicID = info.ID
		if !known {
			ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		if c.remote() {
			tps := make([]TopicPartition, 0, info.Partitions)
			for p := range info.Partitions {
				tps = append(tps, TopicPartition{info.ID, p})
			}
			if e := c.deleteRemoteLocked(g, tps); e != nil {
				ot.ErrorCode = e.Code
			}
			resp.Topics = append(resp.Topics, ot)
			continue
		}
		for _, sp := range g.spsSorted() {
			if sp.key.tp.TopicID != info.ID {
				continue
			}
			if err := c.deleteStateLocked(g, sp); err != nil {
				ot.ErrorCode = kerr.CoordinatorNotAvailable.Code
				break
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	return resp
}

// TopicsChanged tells the coordinator that topics were created, deleted
// or grew partitions, or that a topic's delivery.delay.ms changed. The state of deleted topics (or of a topic
// recreated under a new ID) is deleted from every group, and groups whose
// subscribed partitions changed bump their epoch and reassign. It returns
// when every group has been updated.
func (c *Coordinator) TopicsChanged() {
	topics := c.refreshTopics()
	ids := make(map[[16]byte]bool, len(topics))
	for _, t := range topics {
		ids[t.ID] = true
	}
	if c.isClosed() {
		return
	}
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if g.dead || c.isClosed() {
			g.mu.Unlock()
			continue
		}
		for _, sp := range g.spsSorted() {
			if !ids[sp.key.tp.TopicID] {
				if err := c.deleteStateLocked(g, sp); err != nil {
					c.log.Warn("dropping state of a deleted topic", "group", g.name, "err", err)
				}
			}
		}
		if len(g.members) > 0 && c.refreshMetadataLocked(g, topics, false) {
			// Members take their targets at their next heartbeat.
			if err := c.appendMembership(g, []Record{groupRecord(g)}); err != nil {
				c.log.Warn("storing share group", "group", g.name, "err", err)
			} else {
				g.persisted = true
			}
			c.initializePartitionsLocked(g)
		}
		c.maybeDropLocked(g)
		g.mu.Unlock()
	}
}
