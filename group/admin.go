package group

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupAuthorizedOps is the AuthorizedOperations bit field of a group when
// no ACLs apply: READ (3), DELETE (6) and DESCRIBE (8).
const groupAuthorizedOps = 1<<3 | 1<<6 | 1<<8

// DescribeGroups handles a DescribeGroups request (v0-v6). Only classic
// groups are described; a KIP-848 group, like an unknown one, is Dead with
// GROUP_ID_NOT_FOUND (v6+), as Kafka answers. Use ConsumerGroupDescribe for
// those.
func (c *Coordinator) DescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	resp.Version = req.Version
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		c.describeGroup(req, name, &dg)
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) describeGroup(req *kmsg.DescribeGroupsRequest, name string, dg *kmsg.DescribeGroupsResponseGroup) {
	if name == "" {
		dg.ErrorCode = kerr.InvalidGroupID.Code
		return
	}
	g, res := c.lockGroup(name, false)
	if res == lookupClosed {
		dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return
	}
	if g != nil {
		defer g.mu.Unlock()
	}
	if g == nil || g.kind != kindClassic {
		dg.State = stateDead.String()
		if req.Version >= 6 {
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			msg := fmt.Sprintf("Group %s not found.", name)
			if g != nil {
				msg = fmt.Sprintf("Group %s is not a classic group.", name)
			}
			dg.ErrorMessage = &msg
		}
		return
	}
	dg.State = g.state.String()
	dg.ProtocolType = g.protocolType
	stable := g.state == stateStable
	if stable {
		dg.Protocol = g.protocol
	}
	for _, m := range g.sortedMembers() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = cloneStrPtr(m.instanceID)
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		if stable {
			dm.ProtocolMetadata = m.metadataFor(g.protocol)
			dm.MemberAssignment = m.assignment
		}
		dg.Members = append(dg.Members, dm)
	}
	if req.IncludeAuthorizedOperations {
		dg.AuthorizedOperations = groupAuthorizedOps
	}
}

// ListGroups handles a ListGroups request: every group, filtered by state
// (v4+, case-insensitive) and type (v5+, "classic" or "consumer").
func (c *Coordinator) ListGroups(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := kmsg.NewPtrListGroupsResponse()
	resp.Version = req.Version
	states := make(map[string]bool)
	for _, s := range req.StatesFilter {
		states[strings.ToLower(strings.TrimSpace(s))] = true
	}
	types := make(map[string]bool)
	for _, t := range req.TypesFilter {
		types[strings.ToLower(strings.TrimSpace(t))] = true
	}
	if c.isClosed() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.GroupType = g.kind.String()
		if g.kind == kindConsumer {
			lg.ProtocolType = "consumer"
			lg.GroupState = g.cg.state()
		} else {
			lg.ProtocolType = g.protocolType
			lg.GroupState = g.state.String()
		}
		g.mu.Unlock()
		if len(states) > 0 && !states[strings.ToLower(lg.GroupState)] {
			continue
		}
		if len(types) > 0 && !types[lg.GroupType] {
			continue
		}
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// DeleteGroups handles a DeleteGroups request: an empty group is deleted
// with its offsets (tombstones are durable before the answer); a group with
// members answers NON_EMPTY_GROUP.
func (c *Coordinator) DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version
	for _, name := range req.Groups {
		r := kmsg.NewDeleteGroupsResponseGroup()
		r.Group = name
		r.ErrorCode = c.deleteGroup(name)
		resp.Groups = append(resp.Groups, r)
	}
	return resp
}

func (c *Coordinator) deleteGroup(name string) int16 {
	if name == "" {
		return kerr.InvalidGroupID.Code
	}
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		return kerr.CoordinatorNotAvailable.Code
	case lookupMissing:
		return kerr.GroupIDNotFound.Code
	}
	defer g.mu.Unlock()
	if !g.isEmpty() {
		return kerr.NonEmptyGroup.Code
	}
	recs := g.offsetTombstones(nil)
	recs = append(recs, g.pendingTombstones()...)
	if g.persisted {
		recs = append(recs, g.groupTombstones()...)
	}
	if len(recs) > 0 {
		if err := c.appendLocked(g, recs); err != nil {
			return kerr.CoordinatorNotAvailable.Code
		}
	}
	c.dropPendingLocked(g)
	c.log.Info("group deleted", "group", g.name, "offsets", g.offsetCount())
	c.removeGroupLocked(g)
	return 0
}

// offsetTombstones returns tombstones for g's offsets of the topics keep
// rejects (all of them when keep is nil), sorted.
func (g *group) offsetTombstones(drop func(topic string) bool) []Record {
	var recs []Record
	names := make([]string, 0, len(g.offsets))
	for t := range g.offsets {
		if drop == nil || drop(t) {
			names = append(names, t)
		}
	}
	slices.Sort(names)
	for _, t := range names {
		ps := make([]int32, 0, len(g.offsets[t]))
		for p := range g.offsets[t] {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		for _, p := range ps {
			recs = append(recs, offsetRecord(g.name, t, p, nil))
		}
	}
	return recs
}

// groupTombstones deletes g's group records (classic or KIP-848).
func (g *group) groupTombstones() []Record {
	if g.kind == kindConsumer {
		return g.cg.tombstones(g.name)
	}
	return []Record{{Key: groupMetadataKey(g.name)}}
}

// TopicsChanged tells the coordinator that topics were created, deleted or
// grew partitions. Offsets of topics that no longer exist, or were recreated
// under a new ID since the previous call, are removed from every group
// (tombstones are written), and KIP-848 groups re-resolve
// their subscriptions (regexes included) and, if the partitions they
// subscribe to changed, bump their epoch and compute a new target
// assignment. It returns when every group has been updated.
func (c *Coordinator) TopicsChanged() {
	topics := c.cfg.Topics()
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return
	}
	prev := c.mu.knownTopics
	c.mu.knownTopics = topics
	c.mu.Unlock()
	// A topic is gone if it no longer exists, or if it was recreated under
	// a new ID since the last call.
	deleted := func(name string) bool {
		now, ok := topics[name]
		if !ok {
			return true
		}
		before, ok := prev[name]
		return ok && before.ID != now.ID
	}
	for _, g := range c.groupsSnapshot() {
		g.mu.Lock()
		if !g.dead && !c.isClosed() {
			c.topicsChangedLocked(g, topics, deleted)
		}
		g.mu.Unlock()
	}
}

func (c *Coordinator) topicsChangedLocked(g *group, topics map[string]TopicInfo, deleted func(string) bool) {
	if recs := g.offsetTombstones(deleted); len(recs) > 0 {
		if err := c.appendLocked(g, recs); err != nil {
			c.log.Warn("dropping offsets of deleted topics", "group", g.name, "err", err)
		} else {
			for t := range g.offsets {
				if deleted(t) {
					delete(g.offsets, t)
				}
			}
			c.log.Info("dropped offsets of deleted topics", "group", g.name, "partitions", len(recs))
		}
	}
	if g.kind == kindConsumer && c.refreshConsumerMetadataLocked(g, topics, false) {
		if err := c.persistConsumerLocked(g, nil); err != nil {
			c.log.Warn("storing consumer group", "group", g.name, "err", err)
		}
	}
}
