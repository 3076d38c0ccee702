package share

import (
	"math"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// spKey names a share-partition: one topic partition as seen by one group.
type spKey struct {
	group string
	tp    TopicPartition
}

// sharePartition is the delivery state of one topic partition for one
// share group (Kafka's SharePartition): the share-partition start offset
// (SPSO), below which every record's delivery is complete, and the
// in-flight runs from there on.
//
// Offsets below end that no run covers hold no deliverable record (a gap
// between batches, a control batch, an aborted transaction); offsets at
// or after end that no run covers have not been read from the log yet.
// After a restart end equals start and the runs replayed from the store
// may lie beyond it; reading resumes at start and keeps what they say.
type sharePartition struct {
	key     spKey
	part    int32  // __share_group_state partition of its records
	snapKey []byte // ShareSnapshotKey; immutable
	updKey  []byte // ShareUpdateKey; immutable

	mu sync.Mutex
	// Everything below is guarded by mu.
	dead        bool  // deleted; its records are tombstoned
	start       int64 // share-partition start offset (SPSO)
	end         int64 // next offset to read from the log
	rs          runs
	stateEpoch  int32 // bumped by AlterShareGroupOffsets; see stateValue
	leaderEpoch int32
	createTime  int64 // ms, when the state was created (ShareSnapshotValue)
	// hint is an offset below which no run is available and due, so an
	// acquisition need not look there. math.MaxInt64: none known.
	hint int64
	// delayed counts the offsets of available runs held back by a delay
	// (notBefore != 0).
	delayed int64
	// lockDeadline is at or before the earliest lock expiry of an acquired
	// run (monotonic ns); delayDeadline at or before the earliest
	// notBefore of a delayed run (ms since the epoch). 0: none. They may
	// be early (the run was acknowledged since): the timer then finds
	// nothing and looks again.
	lockDeadline  int64
	delayDeadline int64

	// Scratch buffers for reads, reused so acquisition allocates nothing.
	batchBuf   []Batch
	timeBuf    []RecordTime
	abortedBuf []AbortedRange

	// Timer heap position, guarded by Coordinator.timers.mu.
	heapIndex int
	heapAt    int64
}

func newSharePartition(key spKey, partitions int32) *sharePartition {
	return &sharePartition{
		key:       key,
		part:      statePartitionFor(key, partitions),
		snapKey:   appendShareKey(nil, keyShareSnapshot, key.group, key.tp),
		updKey:    appendShareKey(nil, keyShareUpdate, key.group, key.tp),
		hint:      math.MaxInt64,
		heapIndex: -1,
	}
}

// resetLocked replaces the state with an empty one starting at start.
func (sp *sharePartition) resetLocked(start int64, epoch int32) {
	sp.start, sp.end = start, start
	sp.rs = sp.rs[:0]
	sp.stateEpoch = epoch
	sp.hint = math.MaxInt64
	sp.delayed = 0
	sp.lockDeadline, sp.delayDeadline = 0, 0
}

// advanceLocked moves the start offset over runs whose delivery is
// complete and over gaps the log has been read past, dropping those runs.
func (sp *sharePartition) advanceLocked() {
	n := 0
	for {
		if n < len(sp.rs) && sp.rs[n].first <= sp.start {
			r := &sp.rs[n]
			if !r.state.terminal() || r.pending {
				break
			}
			sp.start = r.last + 1
			n++
			continue
		}
		if sp.start >= sp.end {
			break
		}
		next := sp.end
		if n < len(sp.rs) && sp.rs[n].first < next {
			next = sp.rs[n].first
		}
		sp.start = next
	}
	sp.rs.dropFront(n)
	if sp.end < sp.start {
		sp.end = sp.start
	}
}

// dropBelowLocked forgets the records below the log start offset that
// retention deleted: available runs there are archived (no dead letter:
// the records are gone) so the start offset can move past them; acquired
// and archiving ones stay until they finish.
func (sp *sharePartition) dropBelowLocked(logStart int64) {
	if logStart <= sp.start {
		return
	}
	sp.rs.splitAt(logStart)
	for i := range sp.rs {
		r := &sp.rs[i]
		if r.first >= logStart {
			break
		}
		if r.state == stAvailable && !r.pending {
			if r.notBefore != 0 {
				sp.delayed -= r.len()
				r.notBefore = 0
			}
			r.state = stArchived
		}
	}
	if sp.end < logStart {
		sp.end = logStart
	}
	sp.advanceLocked()
}

// appendRange adds [first, last] with count to the acquired ranges of a
// ShareFetch response, extending the previous range when it continues it.
func appendRange(dst []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord, first, last int64, count int16) []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord {
	if n := len(dst); n > 0 && dst[n-1].LastOffset+1 == first && dst[n-1].DeliveryCount == count {
		dst[n-1].LastOffset = last
		return dst
	}
	return append(dst, kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{FirstOffset: first, LastOffset: last, DeliveryCount: count})
}

// acquireEnv carries what one acquisition needs besides the partition.
type acquireEnv struct {
	reader     Reader
	tp         TopicPartition
	member     string
	maxRecords int64 // records to acquire; a soft limit unless strict
	strict     bool  // never exceed maxRecords (ShareAcquireMode record_limit)
	nowMono    int64 // ns
	nowMs      int64 // ms since the epoch
	lockExp    int64 // lock deadline of what is acquired now (monotonic ns)
	limit      int64 // high watermark or last stable offset
	logStart   int64
	deliveries int16 // share.delivery.count.limit
	dlq        bool  // the group dead-letters what it gives up on
	readCommit bool
	topicDelay int64 // delivery.delay.ms
	maxLocks   int64 // group.share.partition.max.record.locks
	maxDelayed int64 // group.share.partition.max.delayed.records

	acquired int64    // records acquired so far
	jobs     []dlqJob // dead letters to write, from runs archived here
	err      error    // a reader error
	dst      []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
	newDelay bool // a delayed run was added (the timer must know)
}

// archiveLocked gives up on run i because it used up its deliveries.
func (sp *sharePartition) archiveLocked(i int, env *acquireEnv) {
	r := &sp.rs[i]
	if r.notBefore != 0 {
		sp.delayed -= r.len()
		r.notBefore = 0
	}
	r.member, r.expires, r.dirty = "", 0, false
	if env.dlq {
		r.state, r.reason = stArchiving, ReasonDeliveryCountExceeded
		env.jobs = append(env.jobs, dlqJob{key: sp.key, first: r.first, last: r.last, count: r.count, reason: r.reason, epoch: sp.stateEpoch})
		return
	}
	r.state = stArchived
}

// takeLocked acquires run i for env.member.
func (sp *sharePartition) takeLocked(i int, env *acquireEnv) int {
	r := &sp.rs[i]
	r.state = stAcquired
	r.member = env.member
	r.count++
	r.expires = env.lockExp
	r.dirty = true
	r.notBefore = 0
	env.acquired += r.len()
	env.dst = appendRange(env.dst, r.first, r.last, r.count)
	if sp.lockDeadline == 0 || env.lockExp < sp.lockDeadline {
		sp.lockDeadline = env.lockExp
	}
	return sp.rs.mergeAround(i)
}

// acquireLocked acquires up to env.maxRecords records for env.member:
// first runs already read that are available and due, then new batches
// read from the log, whole batches unless env.strict.
func (sp *sharePartition) acquireLocked(env *acquireEnv) {
	sp.dropBelowLocked(env.logStart)
	sp.acquireKnownLocked(env)
	if env.acquired < env.maxRecords && env.err == nil {
		sp.acquireNewLocked(env)
	}
	sp.advanceLocked()
}

// acquireKnownLocked acquires available, due runs from the hint on.
func (sp *sharePartition) acquireKnownLocked(env *acquireEnv) {
	if sp.hint == math.MaxInt64 {
		return
	}
	newHint := int64(math.MaxInt64)
	for i := sp.rs.find(sp.hint); i < len(sp.rs); i++ {
		r := &sp.rs[i]
		if r.state != stAvailable || r.pending {
			continue
		}
		if r.notBefore > env.nowMs {
			continue // the timer lowers the hint when it is due
		}
		if r.first >= env.limit || env.acquired >= env.maxRecords {
			newHint = min(newHint, r.first)
			if env.acquired >= env.maxRecords {
				break
			}
			continue
		}
		if r.last >= env.limit {
			sp.rs.splitAt(env.limit)
			r = &sp.rs[i]
			newHint = min(newHint, env.limit)
		}
		if r.notBefore != 0 {
			sp.delayed -= r.len()
			r.notBefore = 0
		}
		if r.count >= env.deliveries {
			sp.archiveLocked(i, env)
			continue
		}
		if take := env.maxRecords - env.acquired; take < r.len() {
			at := r.first + take
			sp.rs.splitAt(at)
			newHint = min(newHint, at)
		}
		i = sp.takeLocked(i, env)
	}
	sp.hint = newHint
}

// acquireNewLocked reads batches from sp.end on and adds their records,
// acquiring the due ones while the quota lasts.
func (sp *sharePartition) acquireNewLocked(env *acquireEnv) {
	if sp.end >= env.limit {
		return
	}
	inFlight := sp.end - sp.start - sp.delayed
	room := env.maxLocks - inFlight
	if room <= 0 || sp.delayed >= env.maxDelayed {
		return
	}
	want := min(env.maxRecords-env.acquired, room)
	batches, err := env.reader.ReadBatches(sp.batchBuf[:0], env.tp, sp.end, env.limit, int(max(want, 1)))
	sp.batchBuf = batches[:0]
	if err != nil {
		env.err = err
		return
	}
	var aborted []AbortedRange
	if env.readCommit && len(batches) > 0 {
		aborted, err = env.reader.AbortedTransactions(sp.abortedBuf[:0], env.tp, sp.end, batches[len(batches)-1].LastOffset+1)
		sp.abortedBuf = aborted[:0]
		if err != nil {
			env.err = err
			return
		}
	}
	for bi := range batches {
		b := &batches[bi]
		lo, hi := max(b.BaseOffset, sp.end), min(b.LastOffset, env.limit-1)
		if lo > hi {
			continue
		}
		if sp.end-sp.start-sp.delayed >= env.maxLocks || sp.delayed >= env.maxDelayed {
			break
		}
		sp.addBatchLocked(env, b, lo, hi, aborted)
		if env.err != nil {
			break // nothing of b was added: it is read again next time
		}
		sp.end = hi + 1
		if env.acquired >= env.maxRecords {
			break
		}
	}
}

// addBatchLocked adds the records of b in [lo, hi] that no run covers yet.
func (sp *sharePartition) addBatchLocked(env *acquireEnv, b *Batch, lo, hi int64, aborted []AbortedRange) {
	if b.Control {
		return // control records are never delivered: the offsets become a gap
	}
	if env.readCommit && b.Transactional {
		for _, a := range aborted {
			if a.ProducerID == b.ProducerID && a.FirstOffset <= b.LastOffset && a.LastOffset >= b.BaseOffset {
				return // aborted: a gap
			}
		}
	}
	notBefore := int64(0)
	if env.topicDelay > 0 {
		notBefore = b.MaxTimestamp + env.topicDelay
	}
	var times []RecordTime
	if b.MayDelay {
		var err error
		times, err = env.reader.DeliveryTimes(sp.timeBuf[:0], env.tp, b)
		sp.timeBuf = times[:0]
		if err != nil {
			env.err = err
			return
		}
	}
	// Soft limit: a batch started within the quota is acquired whole.
	allowance := int64(math.MaxInt64)
	if env.acquired >= env.maxRecords {
		allowance = 0
	} else if env.strict {
		allowance = env.maxRecords - env.acquired
	}
	ti := 0
	for cur := lo; cur <= hi; {
		// Runs merge with their neighbours as they are added, so look
		// the position up again each time.
		j := sp.rs.find(cur)
		if j < len(sp.rs) && sp.rs[j].first <= cur {
			cur = sp.rs[j].last + 1 // replayed state already covers it
			continue
		}
		segEnd := hi
		if j < len(sp.rs) && sp.rs[j].first <= hi {
			segEnd = sp.rs[j].first - 1
		}
		// Split the segment where the delivery time changes.
		for cur <= segEnd {
			j = sp.rs.find(cur)
			nb, to := notBefore, segEnd
			for ti < len(times) && times[ti].Offset < cur {
				ti++
			}
			if ti < len(times) && times[ti].Offset == cur {
				nb = max(nb, times[ti].DeliverAt)
				to = cur
				ti++
			} else if ti < len(times) && times[ti].Offset <= segEnd {
				to = times[ti].Offset - 1
			}
			due := nb <= env.nowMs
			if due && allowance > 0 {
				take := min(to-cur+1, allowance)
				sp.rs.insert(j, run{first: cur, last: cur + take - 1})
				if env.strict {
					allowance -= take
				}
				sp.takeLocked(j, env)
				cur += take
				continue
			}
			r := run{first: cur, last: to}
			if due {
				sp.hint = min(sp.hint, cur)
			} else {
				r.notBefore = nb
				sp.delayed += r.len()
				if sp.delayDeadline == 0 || nb < sp.delayDeadline {
					sp.delayDeadline = nb
				}
			}
			sp.rs.insert(j, r)
			sp.rs.mergeAround(j)
			cur = to + 1
		}
	}
}

// AckBatch is one acknowledgement batch of a ShareFetch or
// ShareAcknowledge request.
type AckBatch struct {
	FirstOffset int64
	LastOffset  int64
	// Types has one acknowledge type for the whole range, or one per
	// offset: 0 gap, 1 accept, 2 release, 3 reject, 4 renew (KIP-1222).
	Types []int8
}

// Acknowledge types.
const (
	ackGap     int8 = 0
	ackAccept  int8 = 1
	ackRelease int8 = 2
	ackReject  int8 = 3
	ackRenew   int8 = 4
)

// validateAckBatches checks the form of acknowledgement batches as Kafka
// does: ranges in order without overlap, one type or one per offset, known
// types (renew only when allowed).
func validateAckBatches(batches []AckBatch, renew bool) *kerr.Error {
	maxType := ackReject
	if renew {
		maxType = ackRenew
	}
	prev := int64(-1)
	for _, b := range batches {
		switch {
		case b.FirstOffset < 0 || b.FirstOffset > b.LastOffset || b.FirstOffset <= prev,
			len(b.Types) == 0,
			len(b.Types) > 1 && int64(len(b.Types)) != b.LastOffset-b.FirstOffset+1:
			return kerr.InvalidRequest
		}
		for _, t := range b.Types {
			if t < 0 || t > maxType {
				return kerr.InvalidRequest
			}
		}
		prev = b.LastOffset
	}
	return nil
}

// ackItem is one run whose acknowledgement is being made durable, with the
// state it takes when that succeeds.
type ackItem struct {
	first, last int64
	state       runState
	count       int16
	notBefore   int64
	reason      Reason
}

// validateAckLocked checks that every offset the batches acknowledge at or
// after the start offset is acquired by member and not pending.
func (sp *sharePartition) validateAckLocked(member string, batches []AckBatch) *kerr.Error {
	for _, b := range batches {
		cur := max(b.FirstOffset, sp.start)
		i := sp.rs.find(cur)
		for cur <= b.LastOffset {
			if i == len(sp.rs) || sp.rs[i].first > cur {
				if i == len(sp.rs) && cur >= sp.end {
					return kerr.InvalidRequest // past the records acquired
				}
				return kerr.InvalidRecordState // no record there
			}
			r := &sp.rs[i]
			if r.state != stAcquired || r.member != member || r.pending {
				return kerr.InvalidRecordState
			}
			cur = r.last + 1
			i++
		}
	}
	return nil
}

// ackEnv carries what applying acknowledgements needs.
type ackEnv struct {
	nowMs      int64
	lockExp    int64 // renewed lock deadline
	deliveries int16
	dlq        bool
	cfg        *groupConfig
	items      []ackItem
}

// applyAckLocked turns validated batches into pending runs and the items
// to commit once they are durable. Renewals take effect at once.
func (sp *sharePartition) applyAckLocked(batches []AckBatch, env *ackEnv) {
	for bi := range batches {
		b := &batches[bi]
		lo := max(b.FirstOffset, sp.start)
		for lo <= b.LastOffset {
			t := b.Types[0]
			hi := b.LastOffset
			if len(b.Types) > 1 {
				t = b.Types[lo-b.FirstOffset]
				hi = lo
				for hi < b.LastOffset && b.Types[hi+1-b.FirstOffset] == t {
					hi++
				}
			}
			i, j := sp.rs.isolate(lo, hi)
			for k := i; k < j; k++ {
				sp.ackRunLocked(k, t, env)
			}
			lo = hi + 1
		}
	}
}

func (sp *sharePartition) ackRunLocked(k int, t int8, env *ackEnv) {
	r := &sp.rs[k]
	it := ackItem{first: r.first, last: r.last, count: r.count}
	switch t {
	case ackRenew:
		r.expires = env.lockExp
		return
	case ackAccept:
		it.state = stAcked
	case ackGap:
		it.state = stArchived
	case ackReject:
		it.state, it.reason = stArchived, ReasonRejected
		if env.dlq {
			it.state = stArchiving
		}
	case ackRelease:
		it.state, it.notBefore, it.reason = releaseTarget(r.count, env.nowMs, env.deliveries, env.dlq, env.cfg)
	}
	if it.state != stArchiving {
		it.reason = 0
	}
	r.pending = true
	env.items = append(env.items, it)
}

// releaseTarget is the state a released record of delivery count count
// takes: available after its backoff, or, out of deliveries, given up on.
func releaseTarget(count int16, nowMs int64, deliveries int16, dlq bool, cfg *groupConfig) (runState, int64, Reason) {
	if count >= deliveries {
		if dlq {
			return stArchiving, 0, ReasonDeliveryCountExceeded
		}
		return stArchived, 0, 0
	}
	if d := cfg.backoffFor(count); d > 0 {
		return stAvailable, nowMs + d.Milliseconds(), 0
	}
	return stAvailable, 0, 0
}

// settleLocked gives run k the state of item it.
func (sp *sharePartition) settleLocked(k int, it *ackItem) int {
	r := &sp.rs[k]
	r.state, r.count, r.reason = it.state, it.count, it.reason
	r.member, r.expires, r.dirty, r.pending = "", 0, false, false
	r.notBefore = 0
	if r.state == stAvailable {
		sp.hint = min(sp.hint, r.first)
		if it.notBefore != 0 {
			r.notBefore = it.notBefore
			sp.delayed += r.len()
			if sp.delayDeadline == 0 || it.notBefore < sp.delayDeadline {
				sp.delayDeadline = it.notBefore
			}
		}
	}
	return sp.rs.mergeAround(k)
}

// commitAckLocked applies items whose record is durable. It returns the
// dead letters to write and whether records became available now.
func (sp *sharePartition) commitAckLocked(items []ackItem, nowMs int64, jobs []dlqJob) ([]dlqJob, bool) {
	available := false
	for i := range items {
		it := &items[i]
		k := sp.rs.find(it.first)
		if k == len(sp.rs) || sp.rs[k].first != it.first || !sp.rs[k].pending {
			continue // cannot happen: pending runs are frozen
		}
		sp.settleLocked(k, it)
		switch it.state {
		case stAvailable:
			available = available || it.notBefore <= nowMs
		case stArchiving:
			jobs = append(jobs, dlqJob{key: sp.key, first: it.first, last: it.last, count: it.count, reason: it.reason, epoch: sp.stateEpoch, durable: true})
		}
	}
	sp.advanceLocked()
	return jobs, available
}

// rollbackAckLocked unfreezes the runs of items whose record failed.
func (sp *sharePartition) rollbackAckLocked(items []ackItem) {
	for i := range items {
		k := sp.rs.find(items[i].first)
		if k == len(sp.rs) || !sp.rs[k].pending {
			continue
		}
		r := &sp.rs[k]
		r.pending = false
		if r.state == stAcquired && (sp.lockDeadline == 0 || r.expires < sp.lockDeadline) {
			sp.lockDeadline = r.expires
		}
		sp.rs.mergeAround(k)
	}
}

// releaseLocked releases the acquired runs that match: they become
// available (after their backoff) or, out of deliveries, are given up on.
// It appends the state batches to persist to sbs and the dead letters to
// jobs, and reports whether records became available now.
func (sp *sharePartition) releaseLocked(match func(*run) bool, nowMs int64, deliveries int16, dlq bool, cfg *groupConfig, sbs []stateBatch, jobs []dlqJob) ([]stateBatch, []dlqJob, bool) {
	available := false
	for k := 0; k < len(sp.rs); k++ {
		r := &sp.rs[k]
		if r.state != stAcquired || r.pending || !match(r) {
			continue
		}
		it := ackItem{first: r.first, last: r.last, count: r.count}
		it.state, it.notBefore, it.reason = releaseTarget(r.count, nowMs, deliveries, dlq, cfg)
		k = sp.settleLocked(k, &it)
		sbs = append(sbs, stateBatch{first: it.first, last: it.last, state: it.state.persisted(), count: it.count, notBefore: it.notBefore, reason: it.reason})
		switch it.state {
		case stAvailable:
			available = available || it.notBefore <= nowMs
		case stArchiving:
			jobs = append(jobs, dlqJob{key: sp.key, first: it.first, last: it.last, count: it.count, reason: it.reason, epoch: sp.stateEpoch})
		}
	}
	sp.advanceLocked()
	return sbs, jobs, available
}

// expireLocked releases runs whose lock expired and makes delayed runs
// whose time came due. It recomputes both deadlines.
func (sp *sharePartition) expireLocked(nowMono, nowMs int64, deliveries int16, dlq bool, cfg *groupConfig, sbs []stateBatch, jobs []dlqJob) ([]stateBatch, []dlqJob, bool) {
	available := false
	if sp.lockDeadline != 0 && sp.lockDeadline <= nowMono {
		sbs, jobs, available = sp.releaseLocked(func(r *run) bool { return r.expires <= nowMono }, nowMs, deliveries, dlq, cfg, sbs, jobs)
		// Pending runs are left out: their acknowledgement settles them,
		// or its rollback reschedules them.
		sp.lockDeadline = 0
		for i := range sp.rs {
			r := &sp.rs[i]
			if r.state == stAcquired && !r.pending && (sp.lockDeadline == 0 || r.expires < sp.lockDeadline) {
				sp.lockDeadline = r.expires
			}
		}
	}
	if sp.delayDeadline != 0 && sp.delayDeadline <= nowMs {
		sp.delayDeadline = 0
		for i := 0; i < len(sp.rs); i++ {
			r := &sp.rs[i]
			if r.state != stAvailable || r.notBefore == 0 {
				continue
			}
			if r.notBefore <= nowMs {
				sp.delayed -= r.len()
				r.notBefore = 0
				sp.hint = min(sp.hint, r.first)
				available = true
				i = sp.rs.mergeAround(i)
				continue
			}
			if sp.delayDeadline == 0 || r.notBefore < sp.delayDeadline {
				sp.delayDeadline = r.notBefore
			}
		}
	}
	return sbs, jobs, available
}

// dirtyLocked appends, as available batches with their delivery counts,
// the acquired runs whose count is not yet in the store, and marks them
// clean.
func (sp *sharePartition) dirtyLocked(sbs []stateBatch) []stateBatch {
	for i := range sp.rs {
		r := &sp.rs[i]
		if r.dirty && r.state == stAcquired && !r.pending {
			sbs = append(sbs, stateBatch{first: r.first, last: r.last, state: persistAvailable, count: r.count})
			r.dirty = false
		}
	}
	return sbs
}

// deliveryCompleteLocked counts the offsets at or after the start offset
// (and below limit) whose delivery is complete (KIP-1226).
func (sp *sharePartition) deliveryCompleteLocked(limit int64) int64 {
	var n int64
	for i := range sp.rs {
		r := &sp.rs[i]
		if r.first >= limit {
			break
		}
		if r.state.terminal() {
			n += min(r.last, limit-1) - r.first + 1
		}
	}
	return n
}

// snapshotValueLocked encodes the whole state as a ShareSnapshotValue.
func (sp *sharePartition) snapshotValueLocked(nowMs int64) []byte {
	v := stateValue{
		snapshotEpoch:    sp.stateEpoch,
		stateEpoch:       sp.stateEpoch,
		leaderEpoch:      sp.leaderEpoch,
		start:            sp.start,
		createTime:       sp.createTime,
		writeTime:        nowMs,
		deliveryComplete: int32(min(sp.deliveryCompleteLocked(math.MaxInt64), math.MaxInt32)),
	}
	v.batches = make([]stateBatch, 0, len(sp.rs))
	for i := range sp.rs {
		r := &sp.rs[i]
		sb := stateBatch{first: r.first, last: r.last, state: r.state.persisted(), count: r.count}
		switch r.state {
		case stAvailable:
			sb.notBefore = r.notBefore
		case stArchiving:
			sb.reason = r.reason
		case stAcquired:
			r.dirty = false
		}
		if n := len(v.batches); n > 0 {
			p := &v.batches[n-1]
			if p.last+1 == sb.first && p.state == sb.state && p.count == sb.count && p.notBefore == sb.notBefore && p.reason == sb.reason {
				p.last = sb.last
				continue
			}
		}
		v.batches = append(v.batches, sb)
	}
	return appendStateValue(nil, &v, true)
}

// updateValueLocked encodes an update record carrying sbs and the current
// start offset.
func (sp *sharePartition) updateValueLocked(sbs []stateBatch) []byte {
	v := stateValue{
		snapshotEpoch:    sp.stateEpoch,
		leaderEpoch:      sp.leaderEpoch,
		start:            sp.start,
		deliveryComplete: -1,
		batches:          sbs,
	}
	return appendStateValue(nil, &v, false)
}

// replaySnapshot replaces the state with a snapshot value's.
func (sp *sharePartition) replaySnapshot(v *stateValue) {
	sp.resetLocked(v.start, v.stateEpoch)
	sp.leaderEpoch = v.leaderEpoch
	sp.createTime = v.createTime
	for i := range v.batches {
		sp.replayBatch(&v.batches[i])
	}
	sp.advanceLocked()
}

// replayUpdate merges an update value into the state. The start offset
// only moves forward; a batch never lowers an offset's state (see rank),
// and among available states the higher delivery count wins. So updates
// written concurrently may land in any order.
func (sp *sharePartition) replayUpdate(v *stateValue) {
	sp.leaderEpoch = max(sp.leaderEpoch, v.leaderEpoch)
	if v.start > sp.start {
		sp.dropFrontTo(v.start)
	}
	for i := range v.batches {
		sp.replayBatch(&v.batches[i])
	}
	sp.advanceLocked()
}

// dropFrontTo moves the start offset to start, forgetting runs below it.
func (sp *sharePartition) dropFrontTo(start int64) {
	sp.rs.splitAt(start)
	sp.rs.dropFront(sp.rs.find(start))
	sp.start = start
	if sp.end < start {
		sp.end = start
	}
}

func (sp *sharePartition) replayBatch(sb *stateBatch) {
	lo := max(sb.first, sp.start)
	if lo > sb.last {
		return
	}
	nr := run{state: stateFromPersisted(sb.state), count: max(sb.count, 0)}
	switch nr.state {
	case stAvailable:
		nr.notBefore = max(sb.notBefore, 0)
	case stArchiving:
		nr.reason = sb.reason
		if nr.reason != ReasonRejected && nr.reason != ReasonDeliveryCountExceeded {
			nr.reason = ReasonDeliveryCountExceeded
		}
	}
	i, j := sp.rs.isolate(lo, sb.last)
	cur := lo
	for k := i; k <= j && cur <= sb.last; k++ {
		gapEnd := sb.last
		if k < j {
			gapEnd = sp.rs[k].first - 1
		}
		if cur <= gapEnd {
			r := nr
			r.first, r.last = cur, gapEnd
			sp.rs.insert(k, r)
			k++
			j++
		}
		if k < j {
			if r := &sp.rs[k]; replayWins(&nr, r) {
				first, last := r.first, r.last
				*r = nr
				r.first, r.last = first, last
			}
			cur = sp.rs[k].last + 1
		}
	}
}

// replayWins reports whether a replayed state n replaces o.
func replayWins(n, o *run) bool {
	switch {
	case n.state.rank() != o.state.rank():
		return n.state.rank() > o.state.rank()
	case n.state.terminal():
		return false
	case n.count != o.count:
		return n.count > o.count
	}
	return n.notBefore > o.notBefore
}

// finishReplayLocked settles the state after a replay: counters, merged
// runs, and the dead letters still to write.
func (sp *sharePartition) finishReplayLocked(jobs []dlqJob) []dlqJob {
	sp.end = sp.start
	sp.hint = math.MaxInt64
	sp.delayed = 0
	sp.delayDeadline = 0
	for i := 0; i < len(sp.rs); i++ {
		i = sp.rs.mergeAround(i)
	}
	for i := range sp.rs {
		r := &sp.rs[i]
		switch r.state {
		case stAvailable:
			if r.notBefore != 0 {
				sp.delayed += r.len()
				if sp.delayDeadline == 0 || r.notBefore < sp.delayDeadline {
					sp.delayDeadline = r.notBefore
				}
			} else {
				sp.hint = min(sp.hint, r.first)
			}
		case stArchiving:
			jobs = append(jobs, dlqJob{key: sp.key, first: r.first, last: r.last, count: r.count, reason: r.reason, epoch: sp.stateEpoch, durable: true, check: true})
		}
	}
	return jobs
}
