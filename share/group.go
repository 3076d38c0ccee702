package share

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// group is one share group: its members and its share-partitions. Every
// field after mu is guarded by mu.
type group struct {
	name string
	part int32 // __share_group_state partition of the membership records

	mu        sync.Mutex
	dead      bool  // deleted; lockGroup looks the name up again
	epoch     int32 // group epoch
	persisted bool  // its ShareGroupMetadata record is live in the store
	members   map[string]*member
	sps       map[TopicPartition]*sharePartition
	// subMeta describes the partitions the members subscribe to as of the
	// last epoch bump; when it changes the epoch is bumped.
	subMeta     string
	metaChecked time.Time
	// checked holds the assigned partitions known to have state, with
	// Config.State: their initialization is not looked at again.
	checked map[TopicPartition]bool

	cfg atomicConfig // resolved group config; nil until needed or after a change
}

// member is a member of a share group.
type member struct {
	id         string
	rack       *string
	clientID   string
	clientHost string
	topics     []string // subscribed topic names, sorted, deduplicated
	epoch      int32
	prevEpoch  int32
	assigned   assignment // what the member was told it has (never mutated: replaced)
	target     assignment // what the assignor gives it at the group epoch
	session    Timer      // session timeout
	seq        uint64     // session timer generation
	// gone marks a member on its way out (it left, or its session
	// ended): its records are released and it is answered as unknown;
	// removing it from the group and the store follows.
	gone bool
}

func (c *Coordinator) newGroup(name string) *group {
	return &group{
		name:    name,
		part:    c.Partition(name),
		members: make(map[string]*member),
		sps:     make(map[TopicPartition]*sharePartition),
		checked: make(map[TopicPartition]bool),
	}
}

// state is the group state as Kafka names it for share groups.
func (g *group) state() string {
	if len(g.members) == 0 {
		return "Empty"
	}
	return "Stable"
}

func (g *group) sortedMembers() []*member {
	ms := slices.Collect(maps.Values(g.members))
	slices.SortFunc(ms, func(a, b *member) int { return strings.Compare(a.id, b.id) })
	return ms
}

func (g *group) stopTimersLocked() {
	for _, m := range g.members {
		if m.session != nil {
			m.session.Stop()
			m.session = nil
		}
	}
}

// ClientInfo identifies the client behind a request: its client.id and its
// host as Kafka shows it in ShareGroupDescribe (e.g. "/127.0.0.1").
type ClientInfo struct {
	ClientID string
	Host     string
}

type clientInfoKey struct{}

// WithClientInfo returns a context carrying ci. The server passes such a
// context to ShareGroupHeartbeat so members get their client ID and host.
func WithClientInfo(ctx context.Context, ci ClientInfo) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, ci)
}

func clientInfoFrom(ctx context.Context) ClientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(ClientInfo)
	return ci
}

// metadataRefreshInterval bounds how long a group goes without checking
// the partitions it subscribes to when no TopicsChanged call arrives.
const metadataRefreshInterval = 10 * time.Second

// notes are what to do once no lock is held: callbacks, then the
// records of releases written behind.
type notes struct {
	available []spKey
	gone      []string // members gone, of group
	group     string
	writes    []behind
}

// behind is a change already applied in memory, to be written.
type behind struct {
	sp  *sharePartition
	sbs []stateBatch
}

// fire tells the server what became deliverable and who left, then
// writes the releases behind: redelivery does not wait for the store.
func (c *Coordinator) fire(n *notes) {
	if c.cfg.Available != nil {
		for _, k := range n.available {
			c.cfg.Available(k.group, k.tp)
		}
	}
	if c.cfg.MemberGone != nil {
		for _, m := range n.gone {
			c.cfg.MemberGone(n.group, m)
		}
	}
	for _, w := range n.writes {
		c.writeBehind(w.sp, w.sbs)
	}
	n.available, n.gone, n.writes = nil, nil, nil
}

// ShareGroupHeartbeat handles a ShareGroupHeartbeat request (v0-v1): join
// (member epoch 0), heartbeat (its epoch), or leave (-1). Membership
// changes are durable before the answer.
func (c *Coordinator) ShareGroupHeartbeat(ctx context.Context, req *kmsg.ShareGroupHeartbeatRequest) *kmsg.ShareGroupHeartbeatResponse {
	resp := kmsg.NewPtrShareGroupHeartbeatResponse()
	resp.Version = req.Version
	fail := func(e *kerr.Error, msg string) *kmsg.ShareGroupHeartbeatResponse {
		resp.ErrorCode = e.Code
		if msg != "" {
			resp.ErrorMessage = &msg
		}
		resp.MemberID, resp.MemberEpoch, resp.Assignment = nil, 0, nil
		return resp
	}
	switch {
	case strings.TrimSpace(req.GroupID) == "":
		return fail(kerr.InvalidRequest, "GroupId can't be empty.")
	case strings.TrimSpace(req.MemberID) == "":
		return fail(kerr.InvalidRequest, "MemberId can't be empty.")
	case req.RackID != nil && strings.TrimSpace(*req.RackID) == "":
		return fail(kerr.InvalidRequest, "RackId can't be empty.")
	case req.MemberEpoch < -1:
		return fail(kerr.InvalidRequest, "MemberEpoch is invalid.")
	case req.MemberEpoch == 0 && len(req.SubscribedTopicNames) == 0:
		return fail(kerr.InvalidRequest, "SubscribedTopicNames must be set in first request.")
	}
	if !c.groupServed(req.GroupID) {
		return fail(kerr.NotCoordinator, "")
	}
	g, res := c.lockGroup(req.GroupID, req.MemberEpoch == 0)
	switch res {
	case lookupClosed:
		return fail(kerr.CoordinatorNotAvailable, "")
	case lookupMissing:
		return fail(kerr.GroupIDNotFound, fmt.Sprintf("Share group %s not found.", req.GroupID))
	case lookupOther:
		return fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a share group.", req.GroupID))
	}
	var n notes
	defer c.fire(&n)
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	if !c.groupServed(g.name) {
		// Unloaded since the check above; Unload has collected the
		// groups it clears, so this one must not take a member.
		return fail(kerr.NotCoordinator, "")
	}
	if req.MemberEpoch == -1 {
		m := g.members[req.MemberID]
		if m == nil || m.gone {
			return fail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", req.MemberID, g.name))
		}
		// Its records go back first, and are redelivered while the
		// membership change is written.
		c.releaseMemberLocked(g, m, &n)
		g.mu.Unlock()
		c.fire(&n)
		g.mu.Lock()
		if !g.dead && g.members[m.id] == m && m.gone {
			if err := c.removeMemberLocked(g, m, &n, true); err != nil {
				m.gone = false
				return fail(kerr.CoordinatorNotAvailable, "")
			}
		}
		c.log.Info("share member leaves", "group", g.name, "member", m.id)
		resp.MemberID = strPtr(req.MemberID)
		resp.MemberEpoch = -1
		return resp
	}
	if e, msg := c.heartbeatLocked(g, req, clientInfoFrom(ctx), resp); e != nil {
		return fail(e, msg)
	}
	return resp
}

// undo is what a failed heartbeat restores.
type undo struct {
	epoch     int32
	persisted bool
	subMeta   string
	members   map[string]member
}

func (g *group) saveUndo() undo {
	u := undo{epoch: g.epoch, persisted: g.persisted, subMeta: g.subMeta, members: make(map[string]member, len(g.members))}
	for id, m := range g.members {
		u.members[id] = *m
	}
	return u
}

func (g *group) restore(u undo) {
	g.epoch, g.persisted, g.subMeta = u.epoch, u.persisted, u.subMeta
	for id, m := range g.members {
		old, ok := u.members[id]
		if !ok {
			if m.session != nil {
				m.session.Stop()
			}
			delete(g.members, id)
			continue
		}
		session, seq := m.session, m.seq
		*m = old
		m.session, m.seq = session, seq
	}
}

// heartbeatLocked handles a join or a heartbeat. Errors are returned
// before anything changes.
func (c *Coordinator) heartbeatLocked(g *group, req *kmsg.ShareGroupHeartbeatRequest, ci ClientInfo, resp *kmsg.ShareGroupHeartbeatResponse) (*kerr.Error, string) {
	m := g.members[req.MemberID]
	if m != nil && m.gone {
		// On its way out: unknown; a join starts a new incarnation.
		if m.session != nil {
			m.session.Stop()
		}
		delete(g.members, m.id)
		m = nil
	}
	switch {
	case m == nil && req.MemberEpoch != 0:
		return kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", req.MemberID, g.name)
	case m == nil && len(g.members) >= c.cfg.MaxGroupSize:
		return kerr.GroupMaxSizeReached, fmt.Sprintf("The share group has reached its maximum capacity of %d members.", c.cfg.MaxGroupSize)
	case m != nil && req.MemberEpoch > m.epoch:
		return kerr.FencedMemberEpoch, fmt.Sprintf("The share group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
	case m != nil && req.MemberEpoch != 0 && req.MemberEpoch < m.epoch && req.MemberEpoch != m.prevEpoch:
		return kerr.FencedMemberEpoch, fmt.Sprintf("The share group member has a smaller member epoch (%d) than the one known by the group coordinator (%d), and it does not match the previous member epoch (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch, m.prevEpoch)
	}
	u := g.saveUndo()
	var recs []Record
	subChanged := false
	metaChanged := false
	if m == nil {
		m = &member{id: req.MemberID, assigned: assignment{}, target: assignment{}}
		g.members[m.id] = m
		subChanged, metaChanged = true, true
		c.log.Info("share member joins", "group", g.name, "member", m.id)
	}
	if req.RackID != nil && (m.rack == nil || *m.rack != *req.RackID) {
		m.rack = strPtr(*req.RackID)
		metaChanged = true
	}
	if req.SubscribedTopicNames != nil {
		topics := slices.Compact(slices.Sorted(slices.Values(req.SubscribedTopicNames)))
		if !slices.Equal(topics, m.topics) {
			m.topics = topics
			subChanged, metaChanged = true, true
		}
	}
	if m.clientID != ci.ClientID || m.clientHost != ci.Host {
		m.clientID, m.clientHost = ci.ClientID, ci.Host
		metaChanged = true
	}
	if metaChanged {
		recs = append(recs, memberRecord(g.name, m))
	}

	// Bump the group epoch if the subscriptions or the subscribed
	// partitions changed, and compute the new target assignment.
	bumped := c.refreshMetadataLocked(g, nil, subChanged)
	if bumped || !g.persisted {
		recs = append(recs, groupRecord(g))
	}

	// A share member takes its target at once: nothing is revoked.
	prevAssigned := m.assigned
	if m.epoch != g.epoch {
		m.prevEpoch, m.epoch = m.epoch, g.epoch
		m.assigned = m.target
		recs = append(recs, assignmentRecord(g.name, m))
	}

	if len(recs) > 0 {
		if err := c.appendMembership(g, recs); err != nil {
			c.log.Warn("storing share group", "group", g.name, "err", err)
			g.restore(u)
			return kerr.CoordinatorNotAvailable, ""
		}
		g.persisted = true
	}
	if bumped {
		c.initializePartitionsLocked(g)
	}
	c.scheduleSessionLocked(g, m)

	resp.MemberID = strPtr(m.id)
	resp.MemberEpoch = m.epoch
	resp.HeartbeatIntervalMillis = millis(c.groupConfig(g).heartbeatInterval)
	if req.MemberEpoch == 0 || req.SubscribedTopicNames != nil || !prevAssigned.equal(m.assigned) {
		resp.Assignment = responseAssignment(m.assigned)
	}
	return nil, ""
}

func responseAssignment(a assignment) *kmsg.ShareGroupHeartbeatResponseAssignment {
	out := &kmsg.ShareGroupHeartbeatResponseAssignment{}
	out.TopicPartitions = []kmsg.ShareGroupHeartbeatResponseAssignmentTopicPartition{}
	for _, id := range a.sortedIDs() {
		t := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
		t.TopicID = id
		t.Partitions = slices.Clone(a[id])
		out.TopicPartitions = append(out.TopicPartitions, t)
	}
	return out
}

// subscriptionMetadata describes the partitions g's members subscribe to.
func (g *group) subscriptionMetadata(topics map[string]TopicInfo) string {
	all := make(map[string]bool)
	for _, m := range g.members {
		for _, t := range m.topics {
			if _, ok := topics[t]; ok {
				all[t] = true
			}
		}
	}
	var b strings.Builder
	for _, t := range slices.Sorted(maps.Keys(all)) {
		info := topics[t]
		fmt.Fprintf(&b, "%s/%x/%d;", t, info.ID, info.Partitions)
	}
	return b.String()
}

// refreshMetadataLocked bumps the group epoch and recomputes the targets
// if force is set or the subscribed partitions changed since the last
// bump. topics nil means fetch them (at most every
// metadataRefreshInterval unless forced). It reports whether it bumped.
func (c *Coordinator) refreshMetadataLocked(g *group, topics map[string]TopicInfo, force bool) bool {
	now := c.clock.Now()
	if !force && topics == nil && now.Sub(g.metaChecked) < metadataRefreshInterval {
		return false
	}
	if topics == nil {
		topics = c.cfg.Topics()
	}
	g.metaChecked = now
	meta := g.subscriptionMetadata(topics)
	if !force && meta == g.subMeta {
		return false
	}
	g.subMeta = meta
	g.epoch++
	c.computeTargetsLocked(g, topics)
	c.log.Info("share group epoch bumped", "group", g.name, "epoch", g.epoch, "members", len(g.members))
	return true
}

func (c *Coordinator) computeTargetsLocked(g *group, topics map[string]TopicInfo) {
	out := assignSimple(g.sortedMembers(), topics)
	for id, m := range g.members {
		m.target = out[id]
	}
}

// scheduleSessionLocked (re)arms m's session timeout.
func (c *Coordinator) scheduleSessionLocked(g *group, m *member) {
	if m.session != nil {
		m.session.Stop()
	}
	m.seq++
	seq := m.seq
	id := m.id
	m.session = c.clock.AfterFunc(c.groupConfig(g).sessionTimeout, func() {
		if !c.enter() {
			return
		}
		defer c.wg.Done()
		var n notes
		g.mu.Lock()
		cur := g.members[id]
		if g.dead || c.isClosed() || cur == nil || cur.seq != seq || cur.gone {
			g.mu.Unlock()
			return
		}
		c.log.Info("share member session timed out", "group", g.name, "member", id)
		c.releaseMemberLocked(g, cur, &n)
		g.mu.Unlock()
		c.fire(&n) // redelivery does not wait for the membership change
		g.mu.Lock()
		if !g.dead && g.members[id] == cur && cur.gone {
			if err := c.removeMemberLocked(g, cur, &n, false); err != nil {
				c.log.Warn("storing share group", "group", g.name, "err", err)
			}
			c.maybeDropLocked(g)
		}
		g.mu.Unlock()
		c.fire(&n)
	})
}

// removeMemberLocked removes m from g (it left, or its session ended) and
// bumps the group epoch; its records were released by
// releaseMemberLocked. With strict, a failure to store the change undoes
// it and is returned; otherwise the member is removed anyway (after a
// restart it is back, without a session, and times out again).
func (c *Coordinator) removeMemberLocked(g *group, m *member, n *notes, strict bool) error {
	c.releaseMemberLocked(g, m, n) // what it acquired since
	u := g.saveUndo()
	delete(g.members, m.id)
	g.epoch++
	c.computeTargetsLocked(g, c.cfg.Topics())
	recs := []Record{
		{Key: appendMemberKey(nil, keyMemberMetadata, g.name, m.id)},
		{Key: appendMemberKey(nil, keyMemberAssignment, g.name, m.id)},
		groupRecord(g),
	}
	if err := c.appendMembership(g, recs); err != nil {
		if strict {
			g.restore(u)
			g.members[m.id] = m
			return err
		}
		c.log.Warn("storing share group", "group", g.name, "err", err)
	} else {
		g.persisted = true
	}
	if m.session != nil {
		m.session.Stop()
		m.session = nil
	}
	n.group = g.name
	n.gone = append(n.gone, m.id)
	return nil
}

// releaseMemberLocked marks m gone and releases every record it holds;
// n says what became available and writes the release behind.
func (c *Coordinator) releaseMemberLocked(g *group, m *member, n *notes) {
	m.gone = true
	gc := c.groupConfig(g)
	for _, sp := range g.spsSorted() {
		c.releaseWhere(sp, gc, func(r *run) bool { return r.member == m.id }, n)
	}
}

// spsSorted returns g's share-partitions in topic ID, partition order.
func (g *group) spsSorted() []*sharePartition {
	sps := slices.Collect(maps.Values(g.sps))
	slices.SortFunc(sps, func(a, b *sharePartition) int {
		if c := strings.Compare(string(a.key.tp.TopicID[:]), string(b.key.tp.TopicID[:])); c != 0 {
			return c
		}
		return int(a.key.tp.Partition - b.key.tp.Partition)
	})
	return sps
}

// maybeDropLocked forgets g if it holds nothing: a group created by a
// request that then failed.
func (c *Coordinator) maybeDropLocked(g *group) {
	if len(g.members) > 0 || len(g.sps) > 0 || g.persisted {
		return
	}
	g.dead = true
	g.stopTimersLocked()
	c.mu.Lock()
	if c.mu.groups[g.name] == g {
		delete(c.mu.groups, g.name)
	}
	c.mu.Unlock()
}

func memberRecord(group string, m *member) Record {
	v := memberValue{rack: m.rack, clientID: m.clientID, clientHost: m.clientHost, topics: m.topics}
	return Record{Key: appendMemberKey(nil, keyMemberMetadata, group, m.id), Value: appendMemberValue(nil, &v)}
}

func groupRecord(g *group) Record {
	return Record{Key: appendGroupKey(nil, g.name), Value: appendGroupValue(nil, groupValue{epoch: g.epoch, hash: int64(javaStringHash(g.subMeta))})}
}

func assignmentRecord(group string, m *member) Record {
	v := assignmentValue{epoch: m.epoch, prevEpoch: m.prevEpoch, assigned: m.assigned}
	return Record{Key: appendMemberKey(nil, keyMemberAssignment, group, m.id), Value: appendAssignmentValue(nil, &v)}
}

// ShareGroupDescribe handles a ShareGroupDescribe request (v0-v1).
func (c *Coordinator) ShareGroupDescribe(ctx context.Context, req *kmsg.ShareGroupDescribeRequest) *kmsg.ShareGroupDescribeResponse {
	resp := kmsg.NewPtrShareGroupDescribeResponse()
	resp.Version = req.Version
	topics := c.cfg.Topics()
	names := make(map[[16]byte]string, len(topics))
	for name, t := range topics {
		names[t.ID] = name
	}
	for _, name := range req.GroupIDs {
		rg := kmsg.NewShareGroupDescribeResponseGroup()
		rg.GroupID = name
		c.describeGroup(name, names, &rg)
		if req.IncludeAuthorizedOperations && rg.ErrorCode == 0 {
			rg.AuthorizedOperations = groupAuthorizedOps
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// groupAuthorizedOps is the AuthorizedOperations bit field of a group when
// no ACLs apply: READ (3), DELETE (6) and DESCRIBE (8).
const groupAuthorizedOps = 1<<3 | 1<<6 | 1<<8

func (c *Coordinator) describeGroup(name string, names map[[16]byte]string, rg *kmsg.ShareGroupDescribeResponseGroup) {
	if name == "" {
		rg.ErrorCode = kerr.InvalidGroupID.Code
		return
	}
	if !c.groupServed(name) {
		rg.ErrorCode = kerr.NotCoordinator.Code
		return
	}
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		rg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return
	case lookupMissing:
		rg.ErrorCode = kerr.GroupIDNotFound.Code
		rg.ErrorMessage = strPtr(fmt.Sprintf("Group %s not found.", name))
		return
	}
	defer g.mu.Unlock()
	rg.GroupState = g.state()
	rg.GroupEpoch = g.epoch
	rg.AssignmentEpoch = g.epoch
	rg.Assignor = "simple"
	for _, m := range g.sortedMembers() {
		dm := kmsg.NewShareGroupDescribeResponseGroupMember()
		dm.MemberID = m.id
		if m.rack != nil {
			dm.RackID = strPtr(*m.rack)
		}
		dm.MemberEpoch = m.epoch
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		dm.SubscribedTopicNames = slices.Clone(m.topics)
		if dm.SubscribedTopicNames == nil {
			dm.SubscribedTopicNames = []string{}
		}
		dm.Assignment.TopicPartitions = []kmsg.ShareGroupDescribeResponseGroupMemberAssignmentTopicPartition{}
		for _, id := range m.assigned.sortedIDs() {
			tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
			tp.TopicID = id
			tp.Topic = names[id]
			tp.Partitions = slices.Clone(m.assigned[id])
			dm.Assignment.TopicPartitions = append(dm.Assignment.TopicPartitions, tp)
		}
		rg.Members = append(rg.Members, dm)
	}
}
