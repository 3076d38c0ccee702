package group

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file holds KIP-848: ConsumerGroupHeartbeat (v0-v1) and
// ConsumerGroupDescribe (v0-v1), after Kafka's GroupMetadataManager and
// CurrentAssignmentBuilder. The group epoch is bumped whenever membership,
// a subscription or the subscribed partitions change; the target assignment
// is then recomputed by the server-side assignor. Each member converges to
// its target one heartbeat at a time: partitions it must give up are revoked
// first (its epoch stays), and a partition is handed to its new owner only
// once no other member holds it, i.e. once the previous owner stopped
// reporting it.

// Member epochs with a meaning.
const (
	epochLeave       = -1 // the member leaves
	epochStaticLeave = -2 // a static member leaves for now and keeps its assignment
)

// Consumer member reconciliation states (Kafka's MemberState).
type memberState int8

const (
	memberStable               memberState = iota // at its target
	memberUnrevokedPartitions                     // waiting for the member to release partitions
	memberUnreleasedPartitions                    // waiting for other members to release partitions
)

// assignment maps topic ID to sorted partitions.
type assignment map[[16]byte][]int32

func (a assignment) clone() assignment {
	out := make(assignment, len(a))
	for id, ps := range a {
		out[id] = slices.Clone(ps)
	}
	return out
}

func (a assignment) equal(b assignment) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

func (a assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) has(id [16]byte, p int32) bool {
	_, ok := slices.BinarySearch(a[id], p)
	return ok
}

func (a assignment) add(id [16]byte, p int32) {
	ps := a[id]
	if i, ok := slices.BinarySearch(ps, p); !ok {
		a[id] = slices.Insert(ps, i, p)
	}
}

func (a assignment) sortedIDs() [][16]byte {
	ids := slices.Collect(maps.Keys(a))
	slices.SortFunc(ids, func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	return ids
}

type tpKey struct {
	id [16]byte
	p  int32
}

// cmember is a member of a KIP-848 group.
type cmember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	rebalanceTimeout int32 // ms
	serverAssignor   string
	topicNames       []string // sorted, deduplicated
	regex            *string
	re               *regexp.Regexp // compiled regex; not persisted

	epoch         int32
	prevEpoch     int32
	state         memberState
	assigned      assignment // what the member was told it owns
	pendingRevoke assignment // what it was told to give up and may still hold
	target        assignment // what the assignor wants it to own

	// assignedAt holds, for every partition the member holds (assigned or
	// pending revocation), the member epoch at which it got it (KIP-1251),
	// to validate commits. Not persisted: after a load it is 0.
	assignedAt map[tpKey]int32
}

// stampAssigned updates assignedAt after the member's partitions changed:
// partitions it keeps keep their epoch, new ones get the current epoch.
func (m *cmember) stampAssigned() {
	at := make(map[tpKey]int32, m.assigned.count()+m.pendingRevoke.count())
	for _, a := range []assignment{m.assigned, m.pendingRevoke} {
		for id, ps := range a {
			for _, p := range ps {
				k := tpKey{id, p}
				if e, ok := m.assignedAt[k]; ok {
					at[k] = e
				} else {
					at[k] = m.epoch
				}
			}
		}
	}
	m.assignedAt = at
}

func (m *cmember) clone() *cmember {
	n := *m
	n.topicNames = slices.Clone(m.topicNames)
	n.assigned = m.assigned.clone()
	n.pendingRevoke = m.pendingRevoke.clone()
	n.target = m.target.clone()
	n.assignedAt = maps.Clone(m.assignedAt)
	return &n
}

// consumerGroup is the KIP-848 state of a group.
type consumerGroup struct {
	epoch           int32
	assignmentEpoch int32
	subMeta         string // the subscribed partitions as of the last epoch bump
	metaChecked     time.Time
	members         map[string]*cmember
	static          map[string]string // instance ID → member ID
	owners          map[tpKey]string  // partition → member holding it (assigned or pending revocation)
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		members: make(map[string]*cmember),
		static:  make(map[string]string),
		owners:  make(map[tpKey]string),
	}
}

func (cg *consumerGroup) clone() *consumerGroup {
	n := &consumerGroup{
		epoch:           cg.epoch,
		assignmentEpoch: cg.assignmentEpoch,
		subMeta:         cg.subMeta,
		metaChecked:     cg.metaChecked,
		members:         make(map[string]*cmember, len(cg.members)),
		static:          maps.Clone(cg.static),
		owners:          maps.Clone(cg.owners),
	}
	for id, m := range cg.members {
		n.members[id] = m.clone()
	}
	return n
}

func (cg *consumerGroup) sortedMembers() []*cmember {
	ms := slices.Collect(maps.Values(cg.members))
	slices.SortFunc(ms, func(a, b *cmember) int { return strings.Compare(a.id, b.id) })
	return ms
}

// state is the group state as Kafka names it for consumer groups.
func (cg *consumerGroup) state() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.epoch > cg.assignmentEpoch:
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.state != memberStable || m.epoch != cg.assignmentEpoch {
			return "Reconciling"
		}
	}
	return "Stable"
}

// rebuildOwners recomputes owners from the members' assignments.
func (cg *consumerGroup) rebuildOwners() {
	cg.owners = make(map[tpKey]string)
	for _, m := range cg.sortedMembers() {
		cg.claim(m, m.assigned)
		cg.claim(m, m.pendingRevoke)
	}
}

func (cg *consumerGroup) claim(m *cmember, a assignment) {
	for id, ps := range a {
		for _, p := range ps {
			k := tpKey{id, p}
			if o, ok := cg.owners[k]; ok && o != m.id {
				continue // never steal: the invariant is one owner per partition
			}
			cg.owners[k] = m.id
		}
	}
}

func (cg *consumerGroup) release(m *cmember, a assignment) {
	for id, ps := range a {
		for _, p := range ps {
			k := tpKey{id, p}
			if cg.owners[k] == m.id {
				delete(cg.owners, k)
			}
		}
	}
}

// internalTopics never match a subscription regex.
var internalTopics = map[string]bool{
	"__consumer_offsets":  true,
	"__transaction_state": true,
	"__share_group_state": true,
}

// compileSubscriptionRegex compiles a KIP-848 subscription regex. Kafka
// matches it against the whole topic name (RE2J, whose syntax is Go's).
func compileSubscriptionRegex(s string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + s + ")$")
}

// subscribed returns the existing topics m subscribes to.
func (m *cmember) subscribed(topics map[string]TopicInfo) map[string]bool {
	subs := make(map[string]bool)
	for _, t := range m.topicNames {
		if _, ok := topics[t]; ok {
			subs[t] = true
		}
	}
	if m.regex != nil {
		if m.re == nil {
			m.re, _ = compileSubscriptionRegex(*m.regex)
		}
		if m.re != nil {
			for t := range topics {
				if !internalTopics[t] && m.re.MatchString(t) {
					subs[t] = true
				}
			}
		}
	}
	return subs
}

func (cg *consumerGroup) subscribedTo(topic string, topics map[string]TopicInfo) bool {
	for _, m := range cg.members {
		if slices.Contains(m.topicNames, topic) {
			return true
		}
		if m.regex != nil {
			if m.re == nil {
				m.re, _ = compileSubscriptionRegex(*m.regex)
			}
			if m.re != nil && !internalTopics[topic] && m.re.MatchString(topic) {
				return true
			}
		}
	}
	return false
}

// subscriptionMetadata describes the partitions the group subscribes to;
// when it changes the group epoch is bumped.
func (cg *consumerGroup) subscriptionMetadata(topics map[string]TopicInfo) string {
	all := make(map[string]bool)
	for _, m := range cg.members {
		for t := range m.subscribed(topics) {
			all[t] = true
		}
	}
	names := slices.Sorted(maps.Keys(all))
	var b strings.Builder
	for _, t := range names {
		info := topics[t]
		fmt.Fprintf(&b, "%s/%x/%d;", t, info.ID, info.Partitions)
	}
	return b.String()
}

// preferredAssignor is the assignor most members ask for, else def.
func (cg *consumerGroup) preferredAssignor(def string) string {
	votes := make(map[string]int)
	for _, m := range cg.members {
		if m.serverAssignor != "" {
			votes[m.serverAssignor]++
		}
	}
	best, n := def, 0
	for _, a := range slices.Sorted(maps.Keys(votes)) {
		if votes[a] > n {
			best, n = a, votes[a]
		}
	}
	return best
}

// metadataRefreshInterval bounds how long a KIP-848 group may go without
// re-checking the partitions it subscribes to when no TopicsChanged call
// arrives (Kafka refreshes on a deadline too).
const metadataRefreshInterval = 10 * time.Second

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
	before := g.cg.clone()
	restore := func() {
		g.cg = before
		c.syncConsumerTimersLocked(g)
		if converted {
			g.resetClassic()
			g.persisted = len(extra) > 0
		}
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
		restore()
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

func (g *group) toConsumer() {
	g.kind = kindConsumer
	g.cg = newConsumerGroup()
	g.cgSession = make(map[string]*timerSlot)
	g.cgRebalance = make(map[string]*timerSlot)
	g.cgPersisted = nil
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

	// Find the member, or decide how it joins.
	var m *cmember
	var replace *cmember // a static member that left (-2) and is replaced
	fresh := false       // a new member, or a known one rejoining from scratch
	if req.InstanceID == nil {
		m = cg.members[id]
		switch {
		case m == nil && !join:
			return kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", id, g.name)
		case m == nil || join:
			fresh = true
		default:
			if e, msg := checkMemberEpoch(m, req); e != nil {
				return e, msg
			}
		}
	} else {
		var existing *cmember
		if sid, ok := cg.static[*req.InstanceID]; ok {
			existing = cg.members[sid]
		}
		if join {
			fresh = true
			switch {
			case existing == nil:
				m = cg.members[id]
			case existing.id == id:
				m = existing
			case existing.epoch != epochStaticLeave:
				return kerr.UnreleasedInstanceID, fmt.Sprintf("Static member %s with instance id %s cannot join the group because the instance id is owned by %s member.", id, *req.InstanceID, existing.id)
			default:
				replace = existing
			}
		} else {
			switch {
			case existing == nil:
				return kerr.UnknownMemberID, fmt.Sprintf("Instance id %s is unknown.", *req.InstanceID)
			case existing.id != id:
				return kerr.FencedInstanceID, fmt.Sprintf("Static member %s with instance id %s is fenced by existing member %s.", id, *req.InstanceID, existing.id)
			}
			if e, msg := checkMemberEpoch(existing, req); e != nil {
				return e, msg
			}
			m = existing
		}
	}

	// From here on nothing fails.
	subChanged := false
	switch {
	case replace != nil:
		// The new incarnation inherits the old one's assignment.
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
		m.stampAssigned()
		c.log.Info("static consumer member replaced", "group", g.name, "instance", *req.InstanceID, "old", replace.id, "new", id)
	case m == nil:
		m = &cmember{id: id, assigned: assignment{}, pendingRevoke: assignment{}, target: assignment{}}
		cg.members[id] = m
		subChanged = true
		c.log.Info("consumer member joins", "group", g.name, "member", id)
	case fresh:
		// A known member rejoins with epoch 0: it owns nothing now.
		cg.release(m, m.assigned)
		cg.release(m, m.pendingRevoke)
		m.assigned, m.pendingRevoke = assignment{}, assignment{}
		m.assignedAt = nil
		m.epoch, m.prevEpoch, m.state = 0, 0, memberStable
		c.cancelRebalanceTimeoutLocked(g, m.id)
		c.log.Info("consumer member rejoins", "group", g.name, "member", id)
	}
	if req.InstanceID != nil && !sameStr(m.instanceID, req.InstanceID) {
		if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
			delete(cg.static, *m.instanceID)
		}
		m.instanceID = cloneStrPtr(req.InstanceID)
		subChanged = true
	}
	if m.instanceID != nil {
		cg.static[*m.instanceID] = m.id
	}
	if req.RackID != nil && !sameStr(m.rackID, req.RackID) {
		m.rackID = cloneStrPtr(req.RackID)
		subChanged = true
	}
	if req.RebalanceTimeoutMillis != -1 {
		m.rebalanceTimeout = req.RebalanceTimeoutMillis
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.serverAssignor {
		m.serverAssignor = *req.ServerAssignor
		subChanged = true
	}
	if req.SubscribedTopicNames != nil {
		names := slices.Compact(slices.Sorted(slices.Values(req.SubscribedTopicNames)))
		if !slices.Equal(names, m.topicNames) {
			subChanged = true
		}
		m.topicNames = names
	}
	if req.SubscribedTopicRegex != nil && !sameStr(m.regex, req.SubscribedTopicRegex) {
		m.regex = cloneStrPtr(req.SubscribedTopicRegex)
		m.re, _ = compileSubscriptionRegex(*m.regex)
		subChanged = true
	}
	m.clientID, m.clientHost = ci.ClientID, ci.Host

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

// checkMemberEpoch fences a member whose epoch is neither its current one
// nor its previous one with a subset of its assignment (the response that
// carried the new epoch may have been lost).
func checkMemberEpoch(m *cmember, req *kmsg.ConsumerGroupHeartbeatRequest) (*kerr.Error, string) {
	switch {
	case req.MemberEpoch > m.epoch:
		return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
	case req.MemberEpoch < m.epoch:
		if req.MemberEpoch != m.prevEpoch || !ownedSubset(req.Topics, m.assigned) {
			return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", req.MemberEpoch, m.epoch)
		}
	}
	return nil, ""
}

func ownedSubset(owned []kmsg.ConsumerGroupHeartbeatRequestTopic, a assignment) bool {
	if owned == nil {
		return false
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if !a.has(t.TopicID, p) {
				return false
			}
		}
	}
	return true
}

// ownsAny reports whether the member still reports any partition of a.
// Without a Topics field (a lightweight heartbeat) it is assumed to.
func ownsAny(a assignment, owned []kmsg.ConsumerGroupHeartbeatRequestTopic) bool {
	if owned == nil {
		return true
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if a.has(t.TopicID, p) {
				return true
			}
		}
	}
	return false
}

func responseAssignment(a assignment) *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	out := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
	for _, id := range a.sortedIDs() {
		t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		t.TopicID = id
		t.Partitions = slices.Clone(a[id])
		out.Topics = append(out.Topics, t)
	}
	return &out
}

func sameStr(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// refreshConsumerMetadataLocked bumps the group epoch and recomputes the
// target assignment if force is set or the subscribed partitions changed
// since the last bump. topics nil means fetch them. It reports whether the
// epoch was bumped.
func (c *Coordinator) refreshConsumerMetadataLocked(g *group, topics map[string]TopicInfo, force bool) bool {
	cg := g.cg
	now := time.Now()
	if !force && topics == nil && now.Sub(cg.metaChecked) < metadataRefreshInterval {
		return false
	}
	if topics == nil {
		topics = c.cfg.Topics()
	}
	cg.metaChecked = now
	meta := cg.subscriptionMetadata(topics)
	if !force && meta == cg.subMeta {
		return false
	}
	cg.subMeta = meta
	cg.epoch++
	c.computeTargetLocked(g, topics)
	c.log.Info("consumer group epoch bumped", "group", g.name, "epoch", cg.epoch, "members", len(cg.members))
	return true
}

// computeTargetLocked runs the assignor over every member and makes the
// result the target of the current group epoch.
func (c *Coordinator) computeTargetLocked(g *group, topics map[string]TopicInfo) {
	cg := g.cg
	members := cg.sortedMembers()
	in := assignInput{subs: make(map[string]map[string]bool, len(members)), prev: make(map[string]assignment, len(members))}
	all := make(map[string]bool)
	for _, m := range members {
		in.members = append(in.members, m.id)
		s := m.subscribed(topics)
		in.subs[m.id] = s
		in.prev[m.id] = m.target
		for t := range s {
			all[t] = true
		}
	}
	for _, t := range slices.Sorted(maps.Keys(all)) {
		info := topics[t]
		for p := int32(0); p < info.Partitions; p++ {
			in.parts = append(in.parts, topicPartition{topic: t, id: info.ID, p: p})
		}
	}
	var out map[string]assignment
	if cg.preferredAssignor(c.cfg.ConsumerAssignors[0]) == AssignorRange {
		out = assignRange(in)
	} else {
		out = assignUniform(in)
	}
	for _, m := range members {
		m.target = out[m.id]
		if m.target == nil {
			m.target = assignment{}
		}
	}
	cg.assignmentEpoch = cg.epoch
}

// reconcileLocked moves m one step towards its target assignment (Kafka's
// CurrentAssignmentBuilder). owned is what the member reports it holds (nil
// if it did not say).
func (c *Coordinator) reconcileLocked(g *group, m *cmember, owned []kmsg.ConsumerGroupHeartbeatRequestTopic) {
	cg := g.cg
	if m.epoch == epochStaticLeave {
		return
	}
	if m.state == memberStable && m.epoch == cg.assignmentEpoch {
		return
	}
	if m.state == memberUnrevokedPartitions && ownsAny(m.pendingRevoke, owned) {
		return // still waiting for the member to let go
	}

	keep, revoke, add := assignment{}, assignment{}, assignment{}
	unreleased := false
	ids := make(map[[16]byte]bool)
	for id := range m.target {
		ids[id] = true
	}
	for id := range m.assigned {
		ids[id] = true
	}
	for id := range ids {
		for _, p := range m.assigned[id] {
			if m.target.has(id, p) {
				keep.add(id, p)
			} else {
				revoke.add(id, p)
			}
		}
		for _, p := range m.target[id] {
			if keep.has(id, p) {
				continue
			}
			if o, ok := cg.owners[tpKey{id, p}]; ok && o != m.id {
				unreleased = true // another member still holds it
				continue
			}
			add.add(id, p)
		}
	}

	oldAssigned, oldPending, oldState := m.assigned, m.pendingRevoke, m.state
	switch {
	case len(revoke) > 0 && ownsAny(revoke, owned):
		// Revoke first; the epoch stays until the member confirms.
		m.state = memberUnrevokedPartitions
		m.prevEpoch = m.epoch
		m.assigned, m.pendingRevoke = keep, revoke
	default:
		for id, ps := range add {
			for _, p := range ps {
				keep.add(id, p)
			}
		}
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.prevEpoch, m.epoch = m.epoch, cg.assignmentEpoch
		m.assigned, m.pendingRevoke = keep, assignment{}
	}
	cg.release(m, oldAssigned)
	cg.release(m, oldPending)
	cg.claim(m, m.assigned)
	cg.claim(m, m.pendingRevoke)
	m.stampAssigned()

	if m.state == memberUnrevokedPartitions {
		if oldState != memberUnrevokedPartitions || !oldPending.equal(m.pendingRevoke) {
			c.scheduleRebalanceTimeoutLocked(g, m)
		}
	} else {
		c.cancelRebalanceTimeoutLocked(g, m.id)
	}
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

// persistConsumerLocked appends extra and the group's record if the group
// changed since it was last stored.
func (c *Coordinator) persistConsumerLocked(g *group, extra []Record) error {
	val := encodeConsumerGroup(g.cg)
	if bytes.Equal(val, g.cgPersisted) && len(extra) == 0 {
		return nil
	}
	recs := append(extra, Record{Key: consumerGroupKey(g.name), Value: val})
	if err := c.appendLocked(g, recs); err != nil {
		return err
	}
	g.cgPersisted = val
	g.persisted = true
	return nil
}

// convertToClassicLocked turns an empty consumer group into a classic one,
// deleting its consumer group record first.
func (c *Coordinator) convertToClassicLocked(g *group) error {
	if g.persisted {
		if err := c.appendLocked(g, []Record{{Key: consumerGroupKey(g.name)}}); err != nil {
			return err
		}
	}
	g.resetClassic()
	g.persisted = false
	return nil
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
