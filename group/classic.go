package group

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds the classic protocol: JoinGroup (v0-v9), SyncGroup
// (v0-v5), Heartbeat (v0-v4) and LeaveGroup (v0-v5), and the group state
// machine behind them, after Kafka's GroupMetadataManager:
//
//	Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//	  ▲                 ▲    │                                        │ leader SyncGroup
//	  └─ no members ────┘    └──────── member change ◀── Stable ◀─────┘

// JoinGroup handles a JoinGroup request. It blocks until the group's join
// phase completes (or ctx is done, or the coordinator closes).
func (c *Coordinator) JoinGroup(ctx context.Context, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	resp := newJoinResp(req.Version)
	resp.MemberID = req.MemberID
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	if st := msDuration(req.SessionTimeoutMillis); st < c.cfg.MinSessionTimeout || st > c.cfg.MaxSessionTimeout {
		resp.ErrorCode = kerr.InvalidSessionTimeout.Code
		return resp
	}
	g, res := c.lockGroup(req.Group, req.MemberID == "")
	switch res {
	case lookupClosed:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	case lookupMissing:
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	case lookupOther:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	wait, now := c.joinLocked(g, req, clientInfoFrom(ctx))
	c.maybeDropLocked(g)
	g.mu.Unlock()
	if now != nil {
		return now
	}
	return c.awaitJoin(ctx, wait, req.Version)
}

func newJoinResp(v int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = v
	return r
}

func joinError(v int16, code int16, memberID string) *kmsg.JoinGroupResponse {
	r := newJoinResp(v)
	r.ErrorCode = code
	r.MemberID = memberID
	return r
}

func (c *Coordinator) awaitJoin(ctx context.Context, ch chan *kmsg.JoinGroupResponse, v int16) *kmsg.JoinGroupResponse {
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
	case <-c.quit:
	}
	// The member stays in the group, waiting (Kafka cannot see a client go
	// away either); the response it gets later lands in the buffered ch.
	select {
	case r := <-ch:
		return r
	default:
	}
	return joinError(v, kerr.CoordinatorNotAvailable.Code, "")
}

// joinLocked runs a join; it returns either the channel the response will
// arrive on or the response itself.
func (c *Coordinator) joinLocked(g *group, req *kmsg.JoinGroupRequest, ci ClientInfo) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	if g.kind == kindConsumer {
		if len(g.cg.members) > 0 {
			return nil, joinError(req.Version, kerr.InconsistentGroupProtocol.Code, "")
		}
		if err := c.convertToClassicLocked(g); err != nil {
			return nil, joinError(req.Version, kerr.CoordinatorNotAvailable.Code, req.MemberID)
		}
	}
	if req.MemberID == "" {
		return c.joinNewLocked(g, req, ci)
	}
	return c.joinExistingLocked(g, req, ci)
}

func (c *Coordinator) joinNewLocked(g *group, req *kmsg.JoinGroupRequest, ci ClientInfo) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		return nil, joinError(req.Version, kerr.InconsistentGroupProtocol.Code, "")
	}
	prefix := ci.ClientID
	if req.InstanceID != nil {
		prefix = *req.InstanceID
	}
	id := c.cfg.newID(prefix)
	if req.InstanceID != nil {
		if old, ok := g.static[*req.InstanceID]; ok {
			return c.replaceStaticLocked(g, req, ci, old, id)
		}
		return c.addMemberLocked(g, req, ci, id), nil
	}
	if req.Version >= 4 {
		// KIP-394: hand out the ID and have the member join again with it,
		// so a member whose first response is lost does not leave a ghost.
		p := &pendingMember{id: id}
		g.pending[id] = p
		c.afterFuncLocked(g, &p.timer, msDuration(req.SessionTimeoutMillis), func() { c.expirePendingLocked(g, p) })
		c.log.Debug("pending member", "group", g.name, "member", id)
		return nil, joinError(req.Version, kerr.MemberIDRequired.Code, id)
	}
	return c.addMemberLocked(g, req, ci, id), nil
}

func (c *Coordinator) joinExistingLocked(g *group, req *kmsg.JoinGroupRequest, ci ClientInfo) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	id := req.MemberID
	if !g.supportsProtocols(req.ProtocolType, req.Protocols) {
		return nil, joinError(req.Version, kerr.InconsistentGroupProtocol.Code, id)
	}
	if _, ok := g.pending[id]; ok && req.InstanceID == nil {
		return c.addMemberLocked(g, req, ci, id), nil
	}
	if code := g.validateMember(id, req.InstanceID); code != 0 {
		return nil, joinError(req.Version, code, id)
	}
	m := g.members[id]
	switch g.state {
	case statePreparingRebalance:
		return c.updateMemberLocked(g, m, req), nil
	case stateCompletingRebalance:
		if m.matches(req.Protocols) {
			// The member lost its JoinGroup response: send it again.
			return nil, g.joinResponse(m, req.Version)
		}
		return c.updateMemberLocked(g, m, req), nil
	case stateStable:
		if g.leader == id || !m.matches(req.Protocols) {
			// A leader's join forces a rebalance: it is how a client
			// reacts to metadata changes that do not change its own
			// subscription.
			return c.updateMemberLocked(g, m, req), nil
		}
		resp := g.joinResponse(m, req.Version)
		resp.Members = nil
		return nil, resp
	}
	return nil, joinError(req.Version, kerr.UnknownMemberID.Code, id)
}

// addMemberLocked adds a new member awaiting the join phase and returns the
// channel its response arrives on.
func (c *Coordinator) addMemberLocked(g *group, req *kmsg.JoinGroupRequest, ci ClientInfo, id string) chan *kmsg.JoinGroupResponse {
	g.seq++
	m := &member{
		id:               id,
		instanceID:       cloneStrPtr(req.InstanceID),
		clientID:         ci.ClientID,
		clientHost:       ci.Host,
		sessionTimeout:   msDuration(req.SessionTimeoutMillis),
		rebalanceTimeout: joinRebalanceTimeout(req),
		protocolType:     req.ProtocolType,
		isNew:            true,
		seq:              g.seq,
	}
	if g.state == statePreparingRebalance && g.prevState == stateEmpty {
		g.newMemberAdded = true // extends the initial delay
	}
	if len(g.members) == 0 {
		g.protocolType = req.ProtocolType
	}
	g.members[id] = m
	g.setProtocols(m, req.Protocols)
	if g.leader == "" {
		g.leader = id
	}
	if p := g.pending[id]; p != nil {
		stopTimer(&p.timer)
		delete(g.pending, id)
	}
	if m.instanceID != nil {
		g.static[*m.instanceID] = id
	}
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinWait, m.joinVersion = ch, req.Version
	g.awaitingJoin++
	// A new member cannot heartbeat and its socket is parked, so bound how
	// long it may wait instead (Kafka's new member join timeout).
	c.scheduleHeartbeatLocked(g, m, newMemberJoinTimeout)
	c.log.Info("member joins", "group", g.name, "member", id, "state", g.state)
	c.maybePrepareRebalanceOrCompleteJoinLocked(g)
	return ch
}

// updateMemberLocked records a known member's new join and parks it.
func (c *Coordinator) updateMemberLocked(g *group, m *member, req *kmsg.JoinGroupRequest) chan *kmsg.JoinGroupResponse {
	g.setProtocols(m, req.Protocols)
	m.sessionTimeout = msDuration(req.SessionTimeoutMillis)
	m.rebalanceTimeout = joinRebalanceTimeout(req)
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	if m.joinWait != nil {
		// The member joined again while its previous join was parked:
		// only the newest request gets the result.
		m.joinWait <- joinError(m.joinVersion, kerr.RebalanceInProgress.Code, m.id)
	} else {
		g.awaitingJoin++
	}
	m.joinWait, m.joinVersion = ch, req.Version
	c.maybePrepareRebalanceOrCompleteJoinLocked(g)
	return ch
}

// replaceStaticLocked handles a static member joining with an unknown
// member ID while its instance ID maps to oldID: the old incarnation is
// fenced and the new one takes its place, assignment included (KIP-345).
func (c *Coordinator) replaceStaticLocked(g *group, req *kmsg.JoinGroupRequest, ci ClientInfo, oldID, newID string) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	old := g.members[oldID]
	leaderBefore := g.leader
	pendingSyncBefore := false
	if _, ok := g.pendingSync[oldID]; ok {
		pendingSyncBefore = true
	}

	// Fence the old incarnation if it is parked somewhere.
	if old.joinWait != nil {
		r := joinError(old.joinVersion, kerr.FencedInstanceID.Code, oldID)
		old.joinWait <- r
		old.joinWait = nil
		g.awaitingJoin--
	}
	if old.syncWait != nil {
		r := newSyncResp(old.syncVersion)
		r.ErrorCode = kerr.FencedInstanceID.Code
		old.syncWait <- r
		old.syncWait = nil
	}
	stopTimer(&old.hbTimer)
	oldProtocols := old.protocols
	g.setProtocols(old, nil)
	delete(g.members, oldID)

	m := &member{
		id:               newID,
		instanceID:       old.instanceID,
		clientID:         ci.ClientID,
		clientHost:       ci.Host,
		sessionTimeout:   old.sessionTimeout,
		rebalanceTimeout: old.rebalanceTimeout,
		protocolType:     old.protocolType,
		assignment:       old.assignment,
		seq:              old.seq,
	}
	g.members[newID] = m
	g.setProtocols(m, oldProtocols)
	if g.leader == oldID {
		g.leader = newID
	}
	if pendingSyncBefore {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = struct{}{}
	}
	g.static[*m.instanceID] = newID
	c.log.Info("static member replaced", "group", g.name, "instance", *m.instanceID, "old", oldID, "new", newID, "state", g.state)

	// Now update it with the request, as for any known member.
	g.setProtocols(m, req.Protocols)
	m.sessionTimeout = msDuration(req.SessionTimeoutMillis)
	m.rebalanceTimeout = joinRebalanceTimeout(req)
	c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)

	switch g.state {
	case stateStable:
		if g.protocol == g.selectProtocol() {
			// Nothing the assignment depends on changed: keep the
			// generation, store the new member ID and answer at once.
			if err := c.persistClassicLocked(g, nil); err != nil {
				// Put the old incarnation back.
				stopTimer(&m.hbTimer)
				g.setProtocols(m, nil)
				delete(g.members, newID)
				g.members[oldID] = old
				g.setProtocols(old, oldProtocols)
				g.static[*old.instanceID] = oldID
				g.leader = leaderBefore
				if pendingSyncBefore {
					delete(g.pendingSync, newID)
					g.pendingSync[oldID] = struct{}{}
				}
				c.scheduleHeartbeatLocked(g, old, old.sessionTimeout)
				return nil, joinError(req.Version, kerr.CoordinatorNotAvailable.Code, "")
			}
			resp := g.joinResponse(m, req.Version)
			if req.Version >= 9 {
				// KIP-814: a replaced leader learns that it leads,
				// with the members, but is told to skip the
				// assignment: the group keeps the one it has.
				resp.SkipAssignment = m.id == g.leader
				return nil, resp
			}
			// Before v9 there is no SkipAssignment: answer with the
			// leader ID the group had before and no members, so a
			// replaced leader does not assign again.
			resp.Members = nil
			resp.LeaderID = leaderBefore
			return nil, resp
		}
		ch := c.parkJoinLocked(g, m, req.Version)
		c.prepareRebalanceLocked(g)
		return ch, nil
	case stateCompletingRebalance:
		// The leader may already have assigned under the old member ID.
		ch := c.parkJoinLocked(g, m, req.Version)
		c.prepareRebalanceLocked(g)
		return ch, nil
	default: // PreparingRebalance: the new incarnation waits for the join phase.
		ch := c.parkJoinLocked(g, m, req.Version)
		c.maybeCompleteJoinLocked(g)
		return ch, nil
	}
}

func (c *Coordinator) parkJoinLocked(g *group, m *member, v int16) chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	m.joinWait, m.joinVersion = ch, v
	g.awaitingJoin++
	return ch
}

func (c *Coordinator) expirePendingLocked(g *group, p *pendingMember) {
	if g.pending[p.id] != p {
		return
	}
	delete(g.pending, p.id)
	c.log.Info("pending member expired", "group", g.name, "member", p.id)
	if g.state == statePreparingRebalance {
		c.maybeCompleteJoinLocked(g)
	}
}

// joinRebalanceTimeout is the request's rebalance timeout; v0 has none and
// uses the session timeout.
func joinRebalanceTimeout(req *kmsg.JoinGroupRequest) time.Duration {
	if req.Version == 0 || req.RebalanceTimeoutMillis < 0 {
		return msDuration(req.SessionTimeoutMillis)
	}
	return msDuration(req.RebalanceTimeoutMillis)
}

// supportsProtocols reports whether a member with these protocols may join
// g: any when g is Empty, else the same protocol type and at least one
// protocol every current member supports.
func (g *group) supportsProtocols(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if g.state == stateEmpty {
		return protocolType != "" && len(protocols) > 0
	}
	if g.protocolType != protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supported[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

// setProtocols replaces m's protocols (nil removes them) and keeps the
// group's support counts right.
func (g *group) setProtocols(m *member, protocols []kmsg.JoinGroupRequestProtocol) {
	for _, p := range m.protocols {
		if g.supported[p.Name]--; g.supported[p.Name] <= 0 {
			delete(g.supported, p.Name)
		}
	}
	if protocols == nil {
		m.protocols = nil
		return
	}
	m.protocols = cloneProtocols(protocols)
	for _, p := range m.protocols {
		g.supported[p.Name]++
	}
}

// validateMember checks a member ID and optional instance ID against the
// group, as Kafka's ClassicGroup.validateMember does.
func (g *group) validateMember(id string, instanceID *string) int16 {
	if instanceID != nil {
		known, ok := g.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if known != id {
			return kerr.FencedInstanceID.Code
		}
	}
	if _, ok := g.members[id]; !ok {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// selectProtocol picks the protocol all members support that most members
// prefer; ties go to the name that sorts first.
func (g *group) selectProtocol() string {
	votes := make(map[string]int)
	for _, m := range g.sortedMembers() {
		for _, p := range m.protocols {
			if g.supported[p.Name] == len(g.members) {
				votes[p.Name]++
				break
			}
		}
	}
	best, bestVotes := "", -1
	for name, v := range votes {
		if v > bestVotes || v == bestVotes && name < best {
			best, bestVotes = name, v
		}
	}
	return best
}

func (g *group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

func (g *group) hasAllMembersJoined() bool {
	return len(g.members) == g.awaitingJoin && len(g.pending) == 0
}

// joinResponse is the JoinGroup response for m in the current generation;
// the leader gets every member's metadata.
func (g *group) joinResponse(m *member, v int16) *kmsg.JoinGroupResponse {
	resp := newJoinResp(v)
	resp.Generation = g.generation
	if g.protocolType != "" {
		resp.ProtocolType = strPtr(g.protocolType)
	}
	if g.protocol != "" {
		resp.Protocol = strPtr(g.protocol)
	}
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	if m.id == g.leader {
		for _, o := range g.sortedMembers() {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			jm.InstanceID = cloneStrPtr(o.instanceID)
			jm.ProtocolMetadata = o.metadataFor(g.protocol)
			resp.Members = append(resp.Members, jm)
		}
	}
	return resp
}

func (c *Coordinator) maybePrepareRebalanceOrCompleteJoinLocked(g *group) {
	switch g.state {
	case stateStable, stateCompletingRebalance, stateEmpty:
		c.prepareRebalanceLocked(g)
	default:
		c.maybeCompleteJoinLocked(g)
	}
}

// prepareRebalanceLocked moves g to PreparingRebalance and arms the join
// phase deadline: the initial delay for a group that was Empty, else the
// largest member rebalance timeout.
func (c *Coordinator) prepareRebalanceLocked(g *group) {
	if g.state == stateCompletingRebalance {
		c.resetAndPropagateLocked(g, kerr.RebalanceInProgress.Code)
	}
	stopTimer(&g.syncTimer)
	initial := g.state == stateEmpty
	if initial {
		delay := c.cfg.InitialRebalanceDelay
		remaining := max(g.rebalanceTimeout()-delay, 0)
		g.newMemberAdded = false
		c.afterFuncLocked(g, &g.joinTimer, delay, func() { c.initialDelayLocked(g, delay, remaining) })
	} else {
		c.afterFuncLocked(g, &g.joinTimer, g.rebalanceTimeout(), func() { c.completeJoinLocked(g) })
	}
	c.log.Info("preparing rebalance", "group", g.name, "from", g.state, "generation", g.generation, "members", len(g.members))
	g.transition(statePreparingRebalance)
	if !initial {
		c.maybeCompleteJoinLocked(g)
	}
}

// initialDelayLocked ends an initial delay: if members arrived during it,
// wait again (no longer than the rebalance timeout overall), else complete
// the join phase.
func (c *Coordinator) initialDelayLocked(g *group, delay, remaining time.Duration) {
	if g.state != statePreparingRebalance {
		return
	}
	if g.newMemberAdded && remaining != 0 {
		g.newMemberAdded = false
		next := min(c.cfg.InitialRebalanceDelay, remaining)
		left := max(remaining-delay, 0)
		c.afterFuncLocked(g, &g.joinTimer, next, func() { c.initialDelayLocked(g, next, left) })
		return
	}
	c.completeJoinLocked(g)
}

func (c *Coordinator) maybeCompleteJoinLocked(g *group) {
	if g.state == statePreparingRebalance && g.hasAllMembersJoined() && g.prevState != stateEmpty {
		c.completeJoinLocked(g)
	}
}

// completeJoinLocked ends the join phase: members that did not rejoin are
// dropped (static ones are kept), a new generation starts, and every parked
// member gets its JoinGroup response.
func (c *Coordinator) completeJoinLocked(g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	for _, m := range g.sortedMembers() {
		if m.joinWait == nil && m.instanceID == nil {
			c.log.Info("member did not rejoin", "group", g.name, "member", m.id)
			c.removeMemberLocked(g, m)
		}
	}
	if !g.electJoinedLeader() && len(g.members) > 0 {
		// Only static members that have not come back remain: give them
		// another rebalance timeout.
		c.afterFuncLocked(g, &g.joinTimer, g.rebalanceTimeout(), func() { c.completeJoinLocked(g) })
		return
	}
	stopTimer(&g.joinTimer)
	g.generation++
	g.pendingSync = nil
	if len(g.members) == 0 {
		g.protocol = ""
		g.leader = ""
		g.transition(stateEmpty)
		g.computeSubscribed()
		c.log.Info("group is empty", "group", g.name, "generation", g.generation)
		if err := c.persistClassicLocked(g, nil); err != nil {
			c.log.Warn("storing empty group", "group", g.name, "err", err)
		}
		return
	}
	g.protocol = g.selectProtocol()
	g.transition(stateCompletingRebalance)
	g.computeSubscribed()
	g.pendingSync = make(map[string]struct{}, len(g.members))
	c.log.Info("join phase complete", "group", g.name, "generation", g.generation, "protocol", g.protocol, "leader", g.leader, "members", len(g.members))
	for _, m := range g.sortedMembers() {
		if m.joinWait != nil {
			m.joinWait <- g.joinResponse(m, m.joinVersion)
			m.joinWait = nil
			g.awaitingJoin--
		}
		c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
		m.isNew = false
		g.pendingSync[m.id] = struct{}{}
	}
	gen := g.generation
	c.afterFuncLocked(g, &g.syncTimer, g.rebalanceTimeout(), func() { c.expirePendingSyncLocked(g, gen) })
}

// electJoinedLeader keeps the leader if it rejoined, else picks the first
// member that did. It reports whether g has a leader that rejoined.
func (g *group) electJoinedLeader() bool {
	if l := g.members[g.leader]; l != nil && l.joinWait != nil {
		return true
	}
	for _, m := range g.sortedMembers() {
		if m.joinWait != nil {
			g.leader = m.id
			return true
		}
	}
	return false
}

// expirePendingSyncLocked removes the members that did not SyncGroup
// within the rebalance timeout of generation gen and rebalances.
func (c *Coordinator) expirePendingSyncLocked(g *group, gen int32) {
	if gen != g.generation || len(g.pendingSync) == 0 {
		return
	}
	if g.state != stateCompletingRebalance && g.state != stateStable {
		return
	}
	ids := make([]string, 0, len(g.pendingSync))
	for id := range g.pendingSync {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if m := g.members[id]; m != nil {
			c.log.Info("member did not sync", "group", g.name, "member", id, "generation", gen)
			c.removeMemberLocked(g, m)
		}
	}
	c.prepareRebalanceLocked(g)
}

func (c *Coordinator) scheduleHeartbeatLocked(g *group, m *member, d time.Duration) {
	c.afterFuncLocked(g, &m.hbTimer, d, func() { c.expireHeartbeatLocked(g, m) })
}

// expireHeartbeatLocked runs when m's session timed out.
func (c *Coordinator) expireHeartbeatLocked(g *group, m *member) {
	if g.members[m.id] != m {
		return
	}
	if !m.isNew && (m.joinWait != nil || m.syncWait != nil) {
		return // parked members are alive; the phase deadlines cover them
	}
	c.log.Info("member session expired", "group", g.name, "member", m.id, "generation", g.generation)
	c.removeMemberLocked(g, m)
	switch g.state {
	case stateStable, stateCompletingRebalance:
		c.prepareRebalanceLocked(g)
	case statePreparingRebalance:
		c.maybeCompleteJoinLocked(g)
	}
}

// removeMemberLocked drops m from g, answering its parked requests with
// UNKNOWN_MEMBER_ID. It does not rebalance.
func (c *Coordinator) removeMemberLocked(g *group, m *member) {
	stopTimer(&m.hbTimer)
	if m.joinWait != nil {
		m.joinWait <- joinError(m.joinVersion, kerr.UnknownMemberID.Code, "")
		m.joinWait = nil
		g.awaitingJoin--
	}
	if m.syncWait != nil {
		r := newSyncResp(m.syncVersion)
		r.ErrorCode = kerr.UnknownMemberID.Code
		m.syncWait <- r
		m.syncWait = nil
	}
	g.setProtocols(m, nil)
	delete(g.members, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
		if ms := g.sortedMembers(); len(ms) > 0 {
			g.leader = ms[0].id
		}
	}
	delete(g.pendingSync, m.id)
}

// resetAndPropagateLocked clears every assignment and answers parked
// SyncGroups with code.
func (c *Coordinator) resetAndPropagateLocked(g *group, code int16) {
	for _, m := range g.sortedMembers() {
		m.assignment = nil
		if m.syncWait != nil {
			c.completeSyncLocked(g, m, code)
		}
	}
}

func (c *Coordinator) completeSyncLocked(g *group, m *member, code int16) {
	r := newSyncResp(m.syncVersion)
	r.ErrorCode = code
	if g.protocolType != "" {
		r.ProtocolType = strPtr(g.protocolType)
	}
	if g.protocol != "" {
		r.Protocol = strPtr(g.protocol)
	}
	r.MemberAssignment = m.assignment
	m.syncWait <- r
	m.syncWait = nil
	c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
}

// SyncGroup handles a SyncGroup request. In CompletingRebalance it blocks
// until the leader's assignment is stored (or ctx is done, or the
// coordinator closes).
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := newSyncResp(req.Version)
	g, code := c.lockClassicMemberGroup(req.Group)
	if code != 0 {
		resp.ErrorCode = code
		return resp
	}
	wait, now := c.syncLocked(g, req)
	g.mu.Unlock()
	if now != nil {
		return now
	}
	select {
	case r := <-wait:
		return r
	case <-ctx.Done():
	case <-c.quit:
	}
	select {
	case r := <-wait:
		return r
	default:
	}
	resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
	return resp
}

func newSyncResp(v int16) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupResponse()
	r.Version = v
	return r
}

func (c *Coordinator) syncLocked(g *group, req *kmsg.SyncGroupRequest) (chan *kmsg.SyncGroupResponse, *kmsg.SyncGroupResponse) {
	resp := newSyncResp(req.Version)
	fail := func(code int16) (chan *kmsg.SyncGroupResponse, *kmsg.SyncGroupResponse) {
		resp.ErrorCode = code
		return nil, resp
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		return fail(code)
	}
	if req.Generation != g.generation {
		return fail(kerr.IllegalGeneration.Code)
	}
	if inconsistent(req.ProtocolType, g.protocolType) || inconsistent(req.Protocol, g.protocol) {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	m := g.members[req.MemberID]
	switch g.state {
	case statePreparingRebalance:
		return fail(kerr.RebalanceInProgress.Code)
	case stateCompletingRebalance:
		ch := make(chan *kmsg.SyncGroupResponse, 1)
		if m.syncWait != nil {
			r := newSyncResp(m.syncVersion)
			r.ErrorCode = kerr.RebalanceInProgress.Code
			m.syncWait <- r
		}
		m.syncWait, m.syncVersion = ch, req.Version
		delete(g.pendingSync, m.id)
		if m.id == g.leader {
			c.leaderSyncLocked(g, req)
		}
		return ch, nil
	case stateStable:
		delete(g.pendingSync, m.id)
		if g.protocolType != "" {
			resp.ProtocolType = strPtr(g.protocolType)
		}
		if g.protocol != "" {
			resp.Protocol = strPtr(g.protocol)
		}
		resp.MemberAssignment = m.assignment
		return nil, resp
	}
	return fail(kerr.UnknownMemberID.Code)
}

// leaderSyncLocked stores the leader's assignment and, once it is durable,
// hands every member its part and makes the group Stable.
func (c *Coordinator) leaderSyncLocked(g *group, req *kmsg.SyncGroupRequest) {
	assign := make(map[string][]byte, len(g.members))
	for _, a := range req.GroupAssignment {
		if _, ok := g.members[a.MemberID]; ok && len(a.MemberAssignment) > 0 {
			assign[a.MemberID] = a.MemberAssignment
		}
	}
	for id := range g.members {
		if _, ok := assign[id]; !ok {
			assign[id] = g.emptyAssignment()
		}
	}
	if err := c.persistClassicLocked(g, assign); err != nil {
		c.log.Warn("storing group assignment", "group", g.name, "generation", g.generation, "err", err)
		c.resetAndPropagateLocked(g, kerr.CoordinatorNotAvailable.Code)
		c.maybePrepareRebalanceOrCompleteJoinLocked(g)
		return
	}
	for _, m := range g.sortedMembers() {
		m.assignment = assign[m.id]
		if m.syncWait != nil {
			c.completeSyncLocked(g, m, 0)
		}
	}
	g.transition(stateStable)
	c.log.Info("group stable", "group", g.name, "generation", g.generation, "members", len(g.members))
}

// emptyAssignment is what a member the leader assigned nothing gets. Kafka
// sends zero bytes; for the consumer protocol we send a decodable empty
// ConsumerMemberAssignment instead, which every client accepts (some fail to
// decode zero bytes).
func (g *group) emptyAssignment() []byte {
	if g.protocolType != "consumer" {
		return []byte{}
	}
	var a kmsg.ConsumerMemberAssignment
	return a.AppendTo(nil)
}

func inconsistent(req *string, have string) bool {
	return req != nil && have != "" && *req != have
}

// lockClassicMemberGroup locks the group a member request (SyncGroup,
// Heartbeat, LeaveGroup) names, or returns the code Kafka answers when
// there is none to act on: INVALID_GROUP_ID for an empty id,
// COORDINATOR_NOT_AVAILABLE once closed, UNKNOWN_MEMBER_ID for a group that
// does not exist or speaks the KIP-848 protocol. The caller unlocks g.
func (c *Coordinator) lockClassicMemberGroup(name string) (*group, int16) {
	if name == "" {
		return nil, kerr.InvalidGroupID.Code
	}
	g, res := c.lockGroup(name, false)
	switch res {
	case lookupClosed:
		return nil, kerr.CoordinatorNotAvailable.Code
	case lookupMissing:
		return nil, kerr.UnknownMemberID.Code
	}
	if g.kind == kindConsumer {
		g.mu.Unlock()
		return nil, kerr.UnknownMemberID.Code
	}
	return g, 0
}

// Heartbeat handles a Heartbeat request.
func (c *Coordinator) Heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = req.Version
	g, code := c.lockClassicMemberGroup(req.Group)
	if code != 0 {
		resp.ErrorCode = code
		return resp
	}
	defer g.mu.Unlock()
	if code := g.validateMember(req.MemberID, req.InstanceID); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	if req.Generation != g.generation {
		resp.ErrorCode = kerr.IllegalGeneration.Code
		return resp
	}
	m := g.members[req.MemberID]
	switch g.state {
	case statePreparingRebalance:
		c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
	case stateCompletingRebalance, stateStable:
		c.scheduleHeartbeatLocked(g, m, m.sessionTimeout)
	default:
		resp.ErrorCode = kerr.UnknownMemberID.Code
	}
	return resp
}

// LeaveGroup handles a LeaveGroup request: one member before v3, a batch of
// members (by member ID, or by instance ID alone for admin removal) after.
func (c *Coordinator) LeaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = req.Version
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g, code := c.lockClassicMemberGroup(req.Group)
	if code != 0 {
		resp.ErrorCode = code
		return resp
	}
	defer g.mu.Unlock()
	left := 0
	for _, lm := range leaving {
		r := kmsg.NewLeaveGroupResponseMember()
		r.MemberID = lm.MemberID
		r.InstanceID = lm.InstanceID
		switch {
		case lm.MemberID == "":
			// Admin removal of a static member by instance ID.
			id, ok := "", false
			if lm.InstanceID != nil {
				id, ok = g.static[*lm.InstanceID]
			}
			if !ok {
				r.ErrorCode = kerr.UnknownMemberID.Code
				break
			}
			c.log.Info("member leaves", "group", g.name, "member", id, "instance", *lm.InstanceID)
			c.removeMemberLocked(g, g.members[id])
			left++
		case g.pending[lm.MemberID] != nil:
			p := g.pending[lm.MemberID]
			stopTimer(&p.timer)
			delete(g.pending, p.id)
			left++
		default:
			if code := g.validateMember(lm.MemberID, lm.InstanceID); code != 0 {
				r.ErrorCode = code
				break
			}
			c.log.Info("member leaves", "group", g.name, "member", lm.MemberID)
			c.removeMemberLocked(g, g.members[lm.MemberID])
			left++
		}
		resp.Members = append(resp.Members, r)
	}
	if left > 0 {
		switch g.state {
		case stateStable, stateCompletingRebalance:
			c.maybePrepareRebalanceOrCompleteJoinLocked(g)
		case statePreparingRebalance:
			c.maybeCompleteJoinLocked(g)
		}
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

// computeSubscribed records the topics the members subscribe to when the
// group uses the consumer protocol, or nil when that is unknown (Kafka's
// ClassicGroup.computeSubscribedTopics).
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != "consumer" {
		return
	}
	if len(g.members) == 0 {
		g.subscribed = map[string]bool{}
		return
	}
	if g.protocol == "" {
		return
	}
	subs := make(map[string]bool)
	for _, m := range g.members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.metadataFor(g.protocol)); err != nil {
			return
		}
		for _, t := range md.Topics {
			subs[t] = true
		}
	}
	g.subscribed = subs
}

// subscribedTo reports whether g actively consumes topic (Kafka's
// isSubscribedToTopic): offsets of such topics neither expire nor may be
// deleted with OffsetDelete.
func (g *group) subscribedTo(topic string, topics map[string]TopicInfo) bool {
	if g.kind == kindConsumer {
		return g.cg.subscribedTo(topic, topics)
	}
	if g.subscribed != nil {
		return g.subscribed[topic]
	}
	return g.protocolType == "consumer"
}
