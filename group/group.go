package group

import (
	"bytes"
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupKind is the protocol a group uses; a group uses one at a time.
type groupKind int8

const (
	kindClassic  groupKind = iota // JoinGroup/SyncGroup (and simple groups that only commit)
	kindConsumer                  // KIP-848 ConsumerGroupHeartbeat
)

func (k groupKind) String() string {
	if k == kindConsumer {
		return "consumer"
	}
	return "classic"
}

// classicState is the state of a classic group, named as Kafka names it.
type classicState int8

const (
	stateEmpty classicState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

func (s classicState) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	}
	return "Dead"
}

// offsetEntry is one committed offset.
type offsetEntry struct {
	offset      int64
	leaderEpoch int32  // -1 if none
	metadata    string // "" if none
	commitTime  int64  // unix ms
	expireTime  int64  // unix ms; -1 unless the commit carried a retention time (v2-v4)
}

// group is one consumer group: its committed offsets plus the state of the
// protocol it uses. Every field after mu is guarded by mu, and every method
// of group expects mu to be held.
type group struct {
	name      string
	partition int32 // __consumer_offsets partition

	mu        sync.Mutex
	dead      bool      // deleted; lockGroup looks the name up again
	kind      groupKind // which protocol state below is live
	persisted bool      // a group (not offset) record of this group is live in the store

	offsets map[string]map[int32]offsetEntry // topic → partition → commit
	// txnOffsets holds, per producer id, the offsets committed by its
	// open transaction (txn.go); nil when there are none.
	txnOffsets map[int64]*pendingTxn

	// Classic protocol state (kind == kindClassic).
	state          classicState
	prevState      classicState
	stateTime      time.Time // when state last changed (Kafka's currentStateTimestamp)
	protocolType   string    // "" until the first member joins; "" for simple groups
	protocol       string    // selected protocol; "" when Empty
	generation     int32
	leader         string
	members        map[string]*member
	static         map[string]string // group.instance.id → member ID
	pending        map[string]*pendingMember
	supported      map[string]int // protocol name → members supporting it
	awaitingJoin   int
	pendingSync    map[string]struct{} // members yet to SyncGroup this generation
	newMemberAdded bool                // a member joined during the initial delay
	joinTimer      *time.Timer         // rebalance timeout or initial delay
	syncTimer      *time.Timer         // pending-sync expiry
	subscribed     map[string]bool     // topics the consumer-protocol members subscribe to; nil if unknown
	seq            uint64              // member insertion counter

	// KIP-848 state (kind == kindConsumer).
	cg          *consumerGroup
	cgSession   map[string]*timerSlot // member ID → session timeout
	cgRebalance map[string]*timerSlot // member ID → revocation (rebalance) timeout
}

// timerSlot gives a map-held timer a stable address for afterFuncLocked.
type timerSlot struct{ t *time.Timer }

// member is a member of a classic group.
type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol // in preference order; owned copies
	assignment       []byte
	isNew            bool   // has not completed a join yet
	seq              uint64 // insertion order; the first member is leader candidate

	joinWait    chan *kmsg.JoinGroupResponse // non-nil while parked in JoinGroup
	joinVersion int16
	syncWait    chan *kmsg.SyncGroupResponse // non-nil while parked in SyncGroup
	syncVersion int16
	hbTimer     *time.Timer // session (heartbeat) expiry
}

// pendingMember is a member ID handed out with MEMBER_ID_REQUIRED that has
// not joined with it yet.
type pendingMember struct {
	id    string
	timer *time.Timer
}

func newGroup(name string, partition int32) *group {
	return &group{
		name:      name,
		partition: partition,
		offsets:   make(map[string]map[int32]offsetEntry),
		stateTime: time.Now(),
		members:   make(map[string]*member),
		static:    make(map[string]string),
		pending:   make(map[string]*pendingMember),
		supported: make(map[string]int),
	}
}

// vacuous reports whether g holds nothing worth keeping.
func (g *group) vacuous() bool {
	if g.persisted || g.offsetCount() > 0 || len(g.txnOffsets) > 0 {
		return false
	}
	if g.kind == kindConsumer {
		return len(g.cg.members) == 0 && g.cg.epoch == 0
	}
	return g.state == stateEmpty && g.generation == 0 && len(g.members) == 0 && len(g.pending) == 0
}

// isEmpty reports whether g has no members (Kafka's Group.isEmpty).
func (g *group) isEmpty() bool {
	if g.kind == kindConsumer {
		return len(g.cg.members) == 0
	}
	return g.state == stateEmpty
}

func (g *group) offsetCount() int {
	n := 0
	for _, ps := range g.offsets {
		n += len(ps)
	}
	return n
}

// stopTimersLocked stops every timer of g.
func (g *group) stopTimersLocked() {
	stopTimer(&g.joinTimer)
	stopTimer(&g.syncTimer)
	for _, m := range g.members {
		stopTimer(&m.hbTimer)
	}
	for _, p := range g.pending {
		stopTimer(&p.timer)
	}
	for _, s := range g.cgSession {
		stopTimer(&s.t)
	}
	for _, s := range g.cgRebalance {
		stopTimer(&s.t)
	}
}

// resetClassic clears the classic state to a fresh Empty group with no
// protocol, keeping offsets.
func (g *group) resetClassic() {
	g.stopTimersLocked()
	g.kind = kindClassic
	g.state, g.prevState = stateEmpty, stateEmpty
	g.stateTime = time.Now()
	g.protocolType, g.protocol, g.leader = "", "", ""
	g.generation = 0
	g.members = make(map[string]*member)
	g.static = make(map[string]string)
	g.pending = make(map[string]*pendingMember)
	g.supported = make(map[string]int)
	g.awaitingJoin = 0
	g.pendingSync = nil
	g.newMemberAdded = false
	g.subscribed = nil
	g.cg, g.cgSession, g.cgRebalance = nil, nil, nil
}

func (g *group) transition(s classicState) {
	g.prevState = g.state
	g.state = s
	g.stateTime = time.Now()
}

// sortedMembers returns the classic members in insertion order.
func (g *group) sortedMembers() []*member {
	ms := make([]*member, 0, len(g.members))
	for _, m := range g.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *member) int { return cmp.Compare(a.seq, b.seq) })
	return ms
}

func (m *member) metadataFor(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// matches reports whether protocols equal the member's, in order and with
// equal metadata.
func (m *member) matches(protocols []kmsg.JoinGroupRequestProtocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i := range protocols {
		if protocols[i].Name != m.protocols[i].Name || !bytes.Equal(protocols[i].Metadata, m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = kmsg.JoinGroupRequestProtocol{Name: p.Name, Metadata: bytes.Clone(p.Metadata)}
	}
	return out
}
