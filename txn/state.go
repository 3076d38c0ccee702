package txn

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// state is a transaction's state, numbered as in __transaction_state
// (kmsg.TransactionState).
type state int8

const (
	stateEmpty state = iota
	stateOngoing
	statePrepareCommit
	statePrepareAbort
	stateCompleteCommit
	stateCompleteAbort
	stateDead              // Kafka's transient state while expiring; never stored by Ferry
	statePrepareEpochFence // Kafka's transient state while fencing; never stored
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String returns the state's name as DescribeTransactions and
// ListTransactions show it.
func (s state) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

func parseState(name string) (state, bool) {
	i := slices.Index(stateNames[:], name)
	return state(i), i >= 0
}

func (s state) prepared() bool { return s == statePrepareCommit || s == statePrepareAbort }

// expirable reports whether a transactional id in this state may be
// forgotten after transactional.id.expiration.ms.
func (s state) expirable() bool {
	return s == stateEmpty || s == stateCompleteCommit || s == stateCompleteAbort
}

const (
	noProducerID    int64 = -1
	noProducerEpoch int16 = -1
)

// epochExhausted reports whether no epoch may follow e for a client: the
// coordinator keeps math.MaxInt16 for itself, to fence.
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }

func compareTP(a, b TopicPartition) int {
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// sortedUnique sorts tps and drops duplicates, in place.
func sortedUnique(tps []TopicPartition) []TopicPartition {
	slices.SortFunc(tps, compareTP)
	return slices.Compact(tps)
}

// meta is what __transaction_state stores for one transactional id, plus
// lastEpoch (Kafka's lastProducerEpoch, kept in memory only). A transition
// builds the next meta from the current one; it replaces the current one
// only once its record is durable. The transition methods mirror Kafka's
// TransactionMetadata.prepare* and set prevProducerID to the producer id
// they start from, as Kafka's prepareTransitionTo does.
type meta struct {
	producerID     int64
	prevProducerID int64 // the producer id before the last transition
	nextProducerID int64 // set while a transaction version 2 commit or abort rotates the id
	epoch          int16
	lastEpoch      int16 // the epoch before the last bump; -1 after a restart or a fence
	timeoutMs      int32
	state          state
	partitions     []TopicPartition // sorted, no duplicates; empty unless Ongoing or Prepare*
	startMs        int64            // when the transaction started; -1 in Empty
	updateMs       int64            // last transition; drives expiry
	clientTV       int16            // transaction version of the client's last transition
}

// clone returns a copy of m that shares nothing with it.
func (m meta) clone() meta {
	m.partitions = slices.Clone(m.partitions)
	return m
}

func (m *meta) hasPartition(tp TopicPartition) bool {
	_, ok := slices.BinarySearchFunc(m.partitions, tp, compareTP)
	return ok
}

// hasAll reports whether every partition of tps is in the transaction.
func (m *meta) hasAll(tps []TopicPartition) bool {
	for _, tp := range tps {
		if !m.hasPartition(tp) {
			return false
		}
	}
	return true
}

func (m meta) next(s state, now int64) meta {
	n := m.clone()
	n.state = s
	n.prevProducerID = m.producerID
	n.updateMs = now
	return n
}

// initBump is Kafka's prepareIncrementProducerEpoch: the Empty state with
// the epoch bumped, for InitProducerID. expected is the epoch the producer
// sent (KIP-360), or nil. It returns false when the producer is fenced.
func (m meta) initBump(timeoutMs int32, expected *int16, now int64) (meta, bool) {
	n := m.next(stateEmpty, now)
	switch {
	case expected == nil:
		n.epoch, n.lastEpoch = m.epoch+1, noProducerEpoch
	case m.epoch == noProducerEpoch || *expected == m.epoch:
		n.epoch, n.lastEpoch = m.epoch+1, m.epoch
	case *expected == m.lastEpoch:
		// A retry of a bump whose answer the producer lost.
	default:
		return m, false
	}
	n.timeoutMs = timeoutMs
	n.partitions = nil
	n.startMs = -1
	return n, true
}

// rotate is Kafka's prepareProducerIdRotation: a new producer id at epoch
// 0, for InitProducerID once the epochs of the current one are exhausted.
func (m meta) rotate(producerID int64, timeoutMs int32, keepLastEpoch bool, now int64) meta {
	n := m.next(stateEmpty, now)
	n.producerID = producerID
	n.epoch = 0
	n.lastEpoch = noProducerEpoch
	if keepLastEpoch {
		n.lastEpoch = m.epoch
	}
	n.timeoutMs = timeoutMs
	n.partitions = nil
	n.startMs = -1
	return n
}

// addPartitions is Kafka's prepareAddPartitions: Ongoing with tps added. A
// transaction starts (its start time is now) when it was not Ongoing.
func (m meta) addPartitions(tps []TopicPartition, tv int16, now int64) meta {
	n := m.next(stateOngoing, now)
	if m.state != stateOngoing {
		n.startMs = now
		n.partitions = nil
	}
	n.partitions = sortedUnique(append(n.partitions, tps...))
	n.clientTV = tv
	return n
}

// prepareEnd is Kafka's prepareAbortOrCommit. With transaction version 2
// the epoch is bumped (KIP-890), except at math.MaxInt16, which only a
// fence reaches (a client never gets it); nextProducerID is the id a commit or abort
// at an exhausted epoch rotates to, or -1. An abort of a transaction that
// added no partition (transaction version 2 allows it) starts now.
func (m meta) prepareEnd(s state, tv int16, nextProducerID int64, noPartitionAdded bool, now int64) meta {
	n := m.next(s, now)
	if tv >= 2 {
		if m.epoch < math.MaxInt16 {
			n.epoch = m.epoch + 1
		}
		n.lastEpoch = m.epoch
	}
	if noPartitionAdded {
		n.startMs = now
		n.partitions = nil
	}
	n.nextProducerID = nextProducerID
	n.clientTV = tv
	return n
}

// fencedAbort is the PrepareAbort a coordinator-initiated abort writes:
// Kafka's prepareFenceProducerEpoch followed by prepareAbortOrCommit at
// the coordinator's transaction version. fenced is the bumped epoch.
func (m meta) fencedAbort(fenced, tv int16, now int64) meta {
	base := m.clone()
	base.epoch, base.lastEpoch = fenced, noProducerEpoch
	return base.prepareEnd(statePrepareAbort, tv, noProducerID, false, now)
}

// complete is Kafka's prepareComplete: CompleteCommit or CompleteAbort
// after every marker is written, moving to nextProducerID at epoch 0 when
// the prepare rotated it.
func (m meta) complete(now int64) meta {
	s := stateCompleteCommit
	if m.state == statePrepareAbort {
		s = stateCompleteAbort
	}
	n := m.next(s, now)
	if m.clientTV >= 2 && m.nextProducerID != noProducerID {
		n.producerID, n.epoch = m.nextProducerID, 0
	}
	n.nextProducerID = noProducerID
	n.partitions = nil
	return n
}

// identityAfter returns the producer id and epoch the producer uses once a
// prepared transaction completes: what EndTxn v5+ answers.
func (m *meta) identityAfter() (int64, int16) {
	if m.clientTV >= 2 && m.nextProducerID != noProducerID {
		return m.nextProducerID, 0
	}
	return m.producerID, m.epoch
}

// entry is one transactional id: Kafka's TransactionMetadata with its lock.
type entry struct {
	id        string
	partition int32     // of __transaction_state
	load      *partLoad // the load of the partition the entry belongs to

	mu         sync.Mutex
	m          meta        // guarded by mu; durable, unless the id was just created
	completion *completion // guarded by mu; set while the markers of a prepared transaction are written
	dead       bool        // guarded by mu; expired and removed from the coordinator
}

// goneLocked reports whether e is no longer the coordinator's: its id
// expired, or its partition was unloaded (or the coordinator closed). e.mu
// is held.
func (e *entry) goneLocked() bool { return e.dead || e.load.ctx.Err() != nil }

// completion tracks the writing of one prepared transaction's markers and
// of its Complete record.
type completion struct {
	firstRound chan struct{} // closed after the first attempt at every marker (and the Complete record)
	done       chan struct{} // closed once the Complete record is durable
}
