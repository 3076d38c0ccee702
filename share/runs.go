package share

import (
	"math"
	"sort"
)

// runState is the delivery state of a run of records (Kafka's RecordState
// plus Archiving from KIP-1191).
type runState uint8

const (
	stAvailable runState = iota // may be acquired (once due)
	stAcquired                  // locked to a member until expires
	stAcked                     // accepted: delivery complete
	stArchiving                 // given up on; its dead letter is being written
	stArchived                  // given up on (rejected, gap, or out of deliveries): delivery complete
)

func (s runState) String() string {
	switch s {
	case stAvailable:
		return "available"
	case stAcquired:
		return "acquired"
	case stAcked:
		return "acked"
	case stArchiving:
		return "archiving"
	case stArchived:
		return "archived"
	}
	return "unknown"
}

// terminal reports whether delivery of the run is complete.
func (s runState) terminal() bool { return s == stAcked || s == stArchived }

// persisted is the DeliveryState written for s.
func (s runState) persisted() int8 {
	switch s {
	case stAcked:
		return persistAcked
	case stArchiving:
		return persistArchiving
	case stArchived:
		return persistArchived
	}
	return persistAvailable // available, and acquired (what it becomes after a restart)
}

func stateFromPersisted(s int8) runState {
	switch s {
	case persistAcked:
		return stAcked
	case persistArchiving:
		return stArchiving
	case persistArchived:
		return stArchived
	}
	return stAvailable
}

// rank orders persisted states for replay: a record never moves an offset
// to a lower rank, so records may reach the log in any order (see replay).
func (s runState) rank() int {
	switch s {
	case stAcked, stArchived:
		return 2
	case stArchiving:
		return 1
	}
	return 0
}

// run is a range of consecutive offsets in one state. A share-partition
// holds its in-flight records as sorted, non-overlapping runs; a whole
// batch acquired and acknowledged together stays one run, and runs split
// only where acknowledgements differ.
type run struct {
	first, last int64
	// expires is the lock deadline of an acquired run, in nanoseconds on
	// the coordinator's monotonic clock.
	expires int64
	// notBefore is, for an available run, the time (ms since the epoch)
	// before which it is not delivered: a delay or a backoff. 0: due.
	notBefore int64
	member    string // owner of an acquired run
	count     int16  // delivery count
	state     runState
	reason    Reason // why an archiving run is given up on
	// pending marks a run whose acknowledgement is being made durable: it
	// is frozen (not acquired, released, acknowledged or merged) until the
	// append commits or rolls back.
	pending bool
	// dirty marks an acquired run whose delivery count is not yet in the
	// store; the next record written for the partition carries it.
	dirty bool
}

func (r *run) len() int64 { return r.last - r.first + 1 }

// mergeable reports whether b can extend a (b right after a, same state).
func mergeable(a, b *run) bool {
	return a.last+1 == b.first && !a.pending && !b.pending &&
		a.state == b.state && a.count == b.count && a.member == b.member &&
		a.expires == b.expires && a.notBefore == b.notBefore &&
		a.reason == b.reason && a.dirty == b.dirty
}

// runs is the in-flight state of a share-partition.
type runs []run

// find returns the index of the first run whose last offset is at or after
// off (len(rs) if none).
func (rs runs) find(off int64) int {
	return sort.Search(len(rs), func(i int) bool { return rs[i].last >= off })
}

// splitAt makes a run start at off if off falls inside one (not at its
// first offset).
func (rs *runs) splitAt(off int64) {
	i := rs.find(off)
	if i == len(*rs) || (*rs)[i].first >= off {
		return
	}
	r := (*rs)[i]
	left, right := r, r
	left.last = off - 1
	right.first = off
	*rs = append(*rs, run{})
	copy((*rs)[i+2:], (*rs)[i+1:])
	(*rs)[i] = left
	(*rs)[i+1] = right
}

// isolate splits runs at first and last+1 and returns the index range
// [i, j) of the runs inside [first, last].
func (rs *runs) isolate(first, last int64) (int, int) {
	rs.splitAt(first)
	if last < math.MaxInt64 {
		rs.splitAt(last + 1)
	}
	i := rs.find(first)
	j := i
	for j < len(*rs) && (*rs)[j].first <= last {
		j++
	}
	return i, j
}

// insert puts r at index i.
func (rs *runs) insert(i int, r run) {
	*rs = append(*rs, run{})
	copy((*rs)[i+1:], (*rs)[i:])
	(*rs)[i] = r
}

// mergeAround merges the run at i with its neighbours where they are
// mergeable and returns the index of the run that now holds i's offsets.
func (rs *runs) mergeAround(i int) int {
	s := *rs
	if i+1 < len(s) && mergeable(&s[i], &s[i+1]) {
		s[i].last = s[i+1].last
		copy(s[i+1:], s[i+2:])
		s = s[:len(s)-1]
	}
	if i > 0 && mergeable(&s[i-1], &s[i]) {
		s[i-1].last = s[i].last
		copy(s[i:], s[i+1:])
		s = s[:len(s)-1]
		i--
	}
	*rs = s
	return i
}

// dropFront removes the first n runs, compacting the backing array once
// the dropped space dominates so that it does not grow without bound.
func (rs *runs) dropFront(n int) {
	if n == 0 {
		return
	}
	s := *rs
	if n >= len(s) {
		*rs = s[:0]
		return
	}
	if rest := len(s) - n; rest <= 64 || n >= rest {
		m := copy(s, s[n:])
		*rs = s[:m]
		return
	}
	*rs = s[n:]
}
