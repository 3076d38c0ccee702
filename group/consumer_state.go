package group

import (
	"bytes"
	"fmt"
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

func (g *group) toConsumer() {
	g.kind = kindConsumer
	g.cg = newConsumerGroup()
	g.cgSession = make(map[string]*timerSlot)
	g.cgRebalance = make(map[string]*timerSlot)
	g.cgPersisted = nil
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
