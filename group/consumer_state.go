package group

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// This file holds the state of a KIP-848 group: its members, their
// subscriptions and assignments, which member holds which partition, and
// the group epoch that a change of membership, subscription or subscribed
// partitions bumps.

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

// memberMeta is what a KIP-848 member tells about itself, stored in its
// ConsumerGroupMemberMetadata record.
type memberMeta struct {
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	rebalanceTimeout int32 // ms
	serverAssignor   string
	topicNames       []string // sorted, deduplicated
	regex            *string
}

func (a *memberMeta) equal(b *memberMeta) bool {
	return sameStr(a.instanceID, b.instanceID) && sameStr(a.rackID, b.rackID) &&
		a.clientID == b.clientID && a.clientHost == b.clientHost &&
		a.rebalanceTimeout == b.rebalanceTimeout && a.serverAssignor == b.serverAssignor &&
		slices.Equal(a.topicNames, b.topicNames) && sameStr(a.regex, b.regex)
}

// memberRecords holds the values of a member's three records as last
// stored (nil: none), so that only a record whose value changed is
// written again.
type memberRecords struct {
	meta, target, current []byte
}

// cmember is a member of a KIP-848 group.
type cmember struct {
	id string
	memberMeta
	re *regexp.Regexp // compiled regex; not persisted

	epoch         int32
	prevEpoch     int32
	state         memberState
	assigned      assignment // what the member was told it owns
	pendingRevoke assignment // what it was told to give up and may still hold
	target        assignment // what the assignor wants it to own

	// assignedAt holds, for every partition the member holds (assigned or
	// pending revocation), the member epoch at which it got it (KIP-1251),
	// to validate commits. Stored as the AssignmentEpochs of the
	// current-assignment record.
	assignedAt map[tpKey]int32

	stored memberRecords // the member's records as durable in the store
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
	subTopics       []subTopic // the subscribed topics as of the last epoch bump, by name
	metaChecked     time.Time
	members         map[string]*cmember
	static          map[string]string // instance ID → member ID
	owners          map[tpKey]string  // partition → member holding it (assigned or pending revocation)

	// stored is the group-level state as durable in the store; with the
	// members' stored records and dirty it is what persistConsumerLocked
	// compares against to write only what changed, and what a failed write
	// rolls back to.
	stored groupRecords
	// dirty holds every member changed since its records were last stored,
	// mapped to a copy of the member as stored (nil: it was not a member).
	// A change calls touch before it modifies a member.
	dirty map[string]*cmember
	// legacy is set while the group is stored only as the single record
	// older Ferry versions wrote (key version 1000).
	legacy bool
}

// groupRecords is the group-level state a KIP-848 group stores in its
// ConsumerGroupMetadata, PartitionMetadata and TargetAssignmentMetadata
// records.
type groupRecords struct {
	written         bool // the three records are live in the store
	epoch           int32
	assignmentEpoch int32
	subTopics       []subTopic
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		members: make(map[string]*cmember),
		static:  make(map[string]string),
		owners:  make(map[tpKey]string),
		dirty:   make(map[string]*cmember),
	}
}

// touch records that m is about to change, keeping a copy of it as stored
// the first time.
func (cg *consumerGroup) touch(m *cmember) {
	if _, ok := cg.dirty[m.id]; !ok {
		cg.dirty[m.id] = m.clone()
	}
}

// touchNew records that a member with this ID is about to be added.
func (cg *consumerGroup) touchNew(id string) {
	if _, ok := cg.dirty[id]; !ok {
		cg.dirty[id] = nil
	}
}

// rollback returns the group to its stored state after a failed write:
// the group-level fields and every dirty member, with the owner and
// static-member indexes that follow from them.
func (cg *consumerGroup) rollback() {
	cg.epoch = cg.stored.epoch
	cg.assignmentEpoch = cg.stored.assignmentEpoch
	cg.subTopics = cg.stored.subTopics
	for id := range cg.dirty {
		if m := cg.members[id]; m != nil {
			cg.release(m, m.assigned)
			cg.release(m, m.pendingRevoke)
			if m.instanceID != nil && cg.static[*m.instanceID] == id {
				delete(cg.static, *m.instanceID)
			}
		}
	}
	for id, old := range cg.dirty {
		if old == nil {
			delete(cg.members, id)
			continue
		}
		cg.members[id] = old
	}
	for id, old := range cg.dirty {
		if old == nil {
			continue
		}
		cg.claim(old, old.assigned)
		cg.claim(old, old.pendingRevoke)
		if old.instanceID != nil {
			cg.static[*old.instanceID] = id
		}
	}
	clear(cg.dirty)
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

// compileSubscriptionRegex compiles a KIP-848 subscription regex. Kafka
// matches it against the whole topic name (RE2J, whose syntax is Go's),
// internal topics included: a regex naming __consumer_offsets resolves it.
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
				if m.re.MatchString(t) {
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
			if m.re != nil && m.re.MatchString(topic) {
				return true
			}
		}
	}
	return false
}

// subscriptionMetadata lists the topics the group subscribes to, by name,
// with their IDs and partition counts; when it changes the group epoch is
// bumped.
func (cg *consumerGroup) subscriptionMetadata(topics map[string]TopicInfo) []subTopic {
	all := make(map[string]bool)
	for _, m := range cg.members {
		for t := range m.subscribed(topics) {
			all[t] = true
		}
	}
	ts := make([]subTopic, 0, len(all))
	for _, t := range slices.Sorted(maps.Keys(all)) {
		info := topics[t]
		ts = append(ts, subTopic{name: t, id: info.ID, partitions: info.Partitions})
	}
	return ts
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

func (g *group) toConsumer() {
	g.kind = kindConsumer
	g.cg = newConsumerGroup()
	g.cgSession = make(map[string]*timerSlot)
	g.cgRebalance = make(map[string]*timerSlot)
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
	if !force && slices.Equal(meta, cg.subTopics) {
		return false
	}
	cg.subTopics = meta
	cg.epoch++
	c.computeTargetLocked(g, topics)
	c.log.Info("consumer group epoch bumped", "group", g.name, "epoch", cg.epoch, "members", len(cg.members))
	return true
}
