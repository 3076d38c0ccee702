package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// Fetch, v4-v18 (record batch v2 only; v13+ names topics by id).
//
// Only durable records are served: the high watermark is the offset below
// which everything is fdatasynced. Long poll: if less than MinBytes is
// ready the request waits, without a goroutine sleeping, for the high
// watermark of any of its partitions to advance (Watch), for
// MaxWaitMillis, or for the connection to close. Per-partition and
// per-response byte limits apply, except that the first batch of the
// response is returned whole even when larger (KIP-74). v7+ fetch
// sessions (KIP-227) are in fetch_session.go. Record data is not copied:
// the response is encoded with a placeholder per partition and written
// with writev as [encoded bytes, mapped segment bytes, encoded bytes, ...].
//
// Behavior:
//   - The response's byte limit is MaxBytes capped by the broker's
//     fetch.max.bytes (55 MiB), as in Kafka; MinBytes is capped by it too.
//     MaxBytes or a partition's max bytes of 0 or less give the first
//     batch found and nothing more.
//   - A response never passes int32 sizes: partitions whose data would
//     take the frame past maxResponseSize are answered without data
//     (the client fetches them again).
//   - The mapped segment bytes a fetch holds are released however it ends:
//     written, abandoned, or a handler panic.
//   - isolation_level read_committed (1) reads up to the partition's last
//     stable offset, not past a transaction still open, and carries the
//     aborted transactions that overlap the records returned, so the
//     client drops their records; read_uncommitted reads up to the high
//     watermark. Both get the last stable offset and the control batches
//     (markers) in the data, as from Kafka.
//   - Consumers may read from followers (KIP-392), v11+ (the versions
//     that carry the client's rack): a follower answers up to its own
//     high watermark (the leader's, as last fetched, capped by what it
//     holds durably) or last stable offset, so never a record the
//     leader has not committed; an offset past its log end is
//     OFFSET_NOT_AVAILABLE (it is behind; the consumer retries), below
//     its log start OFFSET_OUT_OF_RANGE (the client goes back to the
//     leader). Older versions read from the leader only
//     (NOT_LEADER_OR_FOLLOWER elsewhere, as on a broker that holds no
//     replica). A follower out of the ISR still serves.
//   - With replica.selector.class RackAwareReplicaSelector, the leader
//     answers a consumer that names its rack (v11+ Rack) and is not in
//     the leader's rack with PreferredReadReplica, no data and no wait,
//     when an in-sync follower in that rack holds the fetch offset (the
//     one whose log reaches furthest); the consumer then fetches there.
//     Followers always answer PreferredReadReplica -1.

func init() { regKey(1, 4, 18, handleFetch) }

// maxResponseSize bounds the size field of a fetch response frame (an
// int32).
var maxResponseSize int64 = math.MaxInt32

// fetchRespondHook, when set (by tests, before the server starts), runs
// once a response holds its views and before it is sent.
var fetchRespondHook func(*kmsg.FetchRequest)

type fetchPart struct {
	key      sessionKey
	sp       *sessionPart // nil when sessionless
	offset   int64
	maxBytes int32
	epoch    int32 // CurrentLeaderEpoch, -1 when not given
}

type fetchResult struct {
	part         *partition.Partition // nil when not found
	errCode      int16
	hw, logStart int64
	lso          int64 // last stable offset
	view         partition.View
	aborted      []partition.AbortedTxn // read_committed: overlapping the view
	placeholder  bool                   // the encoded response holds a placeholder for view
	tooLarge     bool                   // left out: the response would pass maxResponseSize
	// preferred is the replica the consumer is sent to read from
	// instead (KIP-392), -1 for none.
	preferred int32
}

type fetch struct {
	s           *Server
	r           *request
	req         *kmsg.FetchRequest
	sess        *fetchSession // locked for the duration of the fetch
	newSession  bool
	incremental bool
	parts       []fetchPart
	watched     []*partition.Partition
	unlocked    bool // the session lock was released
	// maxBytes and minBytes are the request's limits, capped by
	// fetch.max.bytes.
	maxBytes, minBytes int
	// results of the read in progress; the views in it are this fetch's
	// until respond hands them to the response.
	results []fetchResult
	// replica is the broker id of a follower's fetch (ReplicaID or
	// ReplicaState), -1 for a consumer's. A follower reads up to the log
	// end; a consumer up to the high watermark, from the leader only.
	replica int32
	// recorded: the follower's fetch offsets were given to the leader.
	recorded bool
	// allowed caches, with an authorizer, whether the principal may read
	// each topic (a follower: whether it has CLUSTER_ACTION).
	allowed map[string]bool
	// racks caches, for a rack-aware consumer's fetch, the rack of each
	// live broker.
	racks map[int32]string
}

func handleFetch(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.FetchRequest)
	f := &fetch{s: s, r: r, req: req, replica: req.ReplicaID}
	if r.version >= 15 {
		f.replica = req.ReplicaState.ID
	}
	if f.replica >= 0 && s.cluster == nil {
		f.replica = -1 // no followers on a single broker: read as a consumer
	}
	limit := int(s.settings().int64("fetch.max.bytes"))
	f.maxBytes = max(0, min(int(req.MaxBytes), limit))
	f.minBytes = min(int(req.MinBytes), f.maxBytes)
	if code := f.plan(); code != 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = code
		resp.SessionID = req.SessionID
		return resp
	}
	if s.quotas.enabled.Load() {
		if ms := s.quotas.throttle(quotaFetch, r.user, r.clientID, time.Now()); ms > 0 {
			// Over quota already: no data now, as Kafka answers (the
			// session, if any, has moved to its next epoch).
			r.throttleAtLeast(ms)
			resp := req.ResponseKind().(*kmsg.FetchResponse)
			if f.sess != nil {
				resp.SessionID = f.sess.id
				f.unlockSession()
			}
			return resp
		}
	}
	r.deferred = true // answered by try, inline or from wait
	if f.try(req.MaxWaitMillis <= 0) {
		return nil
	}
	r.await(f.wait)
	return nil
}

// plan resolves the fetch session and the list of partitions to read. It
// returns a top-level error code, or 0.
func (f *fetch) plan() int16 {
	req := f.req
	byID := f.r.version >= 13
	key := func(t *kmsg.FetchRequestTopic, p int32) sessionKey {
		if byID {
			return sessionKey{topicID: t.TopicID, partition: p}
		}
		return sessionKey{topic: t.Topic, partition: p}
	}
	full := func() {
		for i := range req.Topics {
			t := &req.Topics[i]
			for _, p := range t.Partitions {
				f.parts = append(f.parts, fetchPart{key: key(t, p.Partition), offset: p.FetchOffset, maxBytes: p.PartitionMaxBytes, epoch: epochOf(f.r.version, p.CurrentLeaderEpoch)})
			}
		}
	}
	if f.r.version < 7 || (req.SessionID == 0 && req.SessionEpoch == -1) {
		full()
		return 0
	}
	switch {
	case req.SessionEpoch == -1: // close the session, fetch in full
		f.s.sessions.remove(req.SessionID)
		full()
		return 0
	case req.SessionEpoch == 0: // new session, replacing SessionID if set
		if req.SessionID != 0 {
			f.s.sessions.remove(req.SessionID)
		}
		full()
		fs := f.s.sessions.create()
		if fs == nil {
			return 0
		}
		fs.mu.Lock()
		f.sess, f.newSession = fs, true
		for _, fp := range f.parts {
			fs.upsert(fp.key, fp.offset, fp.maxBytes)
		}
		f.bindSession()
		return 0
	case req.SessionID == 0:
		// An incremental epoch without a session id names no session.
		return kerr.FetchSessionIDNotFound.Code
	}
	fs := f.s.sessions.get(req.SessionID)
	if fs == nil {
		return kerr.FetchSessionIDNotFound.Code
	}
	// A session serves one fetch at a time; one still in progress has
	// taken this epoch already. (Never wait here: this is the reader.)
	if !fs.mu.TryLock() {
		return kerr.InvalidFetchSessionEpoch.Code
	}
	if fs.epoch != req.SessionEpoch {
		fs.mu.Unlock()
		return kerr.InvalidFetchSessionEpoch.Code
	}
	for i := range req.Topics {
		t := &req.Topics[i]
		for _, p := range t.Partitions {
			fs.upsert(key(t, p.Partition), p.FetchOffset, p.PartitionMaxBytes)
		}
	}
	for _, ft := range req.ForgottenTopics {
		for _, p := range ft.Partitions {
			if byID {
				fs.forget(sessionKey{topicID: ft.TopicID, partition: p})
			} else {
				fs.forget(sessionKey{topic: ft.Topic, partition: p})
			}
		}
	}
	f.sess, f.incremental = fs, true
	f.bindSession()
	return 0
}

// bindSession makes the session's partitions the ones to read, and
// advances its epoch.
func (f *fetch) bindSession() {
	fs := f.sess
	f.parts = f.parts[:0]
	for _, sp := range fs.order {
		f.parts = append(f.parts, fetchPart{key: sp.key, sp: sp, offset: sp.fetchOffset, maxBytes: sp.maxBytes, epoch: -1})
	}
	fs.epoch++
	if fs.epoch < 0 {
		fs.epoch = 1
	}
}

func (f *fetch) lookup(k sessionKey) (*meta.Topic, *partition.Partition, int16) {
	var t *meta.Topic
	if f.r.version >= 13 {
		t = f.s.meta.TopicByID(k.topicID)
		if t == nil {
			return nil, nil, kerr.UnknownTopicID.Code
		}
	} else {
		t = f.s.meta.Topic(k.topic)
	}
	if f.s.authz != nil && !f.readAllowed(k.topic, t) {
		return t, nil, kerr.TopicAuthorizationFailed.Code
	}
	p, err := t.Partition(k.partition)
	if err != nil {
		return t, nil, codeOf(err)
	}
	return t, p, 0
}

// readAllowed reports whether the principal may read the topic (named
// name, or t when named by id): READ on the topic, or CLUSTER_ACTION for
// a follower's fetch, as Kafka checks them.
func (f *fetch) readAllowed(name string, t *meta.Topic) bool {
	if t != nil {
		name = t.Name()
	}
	if ok, seen := f.allowed[name]; seen {
		return ok
	}
	var ok bool
	if f.req.ReplicaID >= 0 || f.req.ReplicaState.ID >= 0 {
		ok = f.r.allowedCluster(auth.OpClusterAction)
	} else {
		ok = f.r.allowed(auth.ResourceTopic, name, auth.OpRead)
	}
	if f.allowed == nil {
		f.allowed = map[string]bool{}
	}
	f.allowed[name] = ok
	return ok
}

// read reads every partition once, within the byte limits, into
// f.results. now reports an answer to send without waiting: an error,
// or a consumer sent to another replica.
func (f *fetch) read() (total int, now bool) {
	if cap(f.results) < len(f.parts) {
		f.results = make([]fetchResult, len(f.parts))
	}
	f.results = f.results[:len(f.parts)]
	clear(f.results)
	remaining := f.maxBytes
	for i := range f.parts {
		fp := &f.parts[i]
		res := &f.results[i]
		res.hw, res.logStart, res.lso, res.preferred = -1, -1, -1, -1
		t, p, code := f.lookup(fp.key)
		if code != 0 {
			res.errCode, now = code, true
			continue
		}
		following, code := f.checkLeader(fp, p)
		if code != 0 {
			res.errCode, now = code, true
			continue
		}
		res.part = p
		res.hw, res.logStart, res.lso = p.HighWatermark(), p.LogStartOffset(), p.LastStableOffset()
		if !following {
			if res.preferred = f.preferredReplica(p, fp.offset); res.preferred >= 0 {
				now = true // no data: the consumer reads there
				continue
			}
		}
		// The last stable offset, read after the high watermark, is at
		// most it.
		bound := res.hw
		if f.req.IsolationLevel == 1 {
			bound = res.lso
		}
		// Past the high watermark but not the log end (an acks=1
		// batch not yet durable) is in range, with nothing to return
		// yet, as in Kafka.
		if fp.offset < res.logStart || fp.offset > p.LogEndOffset() {
			res.errCode, now = kerr.OffsetOutOfRange.Code, true
			if following && fp.offset > p.LogEndOffset() {
				// A follower behind its leader (KIP-392): the offset
				// the consumer has is the leader's.
				res.errCode = kerr.OffsetNotAvailable.Code
			}
			continue
		}
		if f.replica >= 0 {
			bound = p.LogEndOffset() // a follower replicates what is not committed yet
		}
		if fp.offset >= bound || (remaining <= 0 && total > 0) {
			continue
		}
		limit := min(int(fp.maxBytes), remaining)
		v, err := p.ReadTo(fp.offset, bound, limit, total == 0)
		if err != nil {
			code := codeOf(err)
			if !errors.Is(err, partition.ErrOffsetOutOfRange) {
				f.s.logger.Error("fetch read failed", "topic", t.Name(), "partition", fp.key.partition, "err", err)
			}
			res.errCode, now = code, true
			continue
		}
		if f.req.IsolationLevel == 1 && len(v.Data) > 0 {
			if res.aborted, err = p.AbortedTxns(fp.offset, partition.ViewEnd(v.Data)); err != nil {
				v.Release()
				f.s.logger.Error("fetch: reading the aborted transactions failed", "topic", t.Name(), "partition", fp.key.partition, "err", err)
				res.errCode, now = codeOf(err), true
				continue
			}
		}
		res.view = v
		total += len(v.Data)
		remaining -= len(v.Data)
	}
	return total, now
}

// epochOf is a partition's CurrentLeaderEpoch, -1 before v9.
func epochOf(version int16, e int32) int32 {
	if version < 9 {
		return -1
	}
	return e
}

// checkLeader answers the error code for reading fp from p here, or 0,
// and whether a consumer reads from a follower: consumers read from the
// leader, or from a follower from v11 (KIP-392), at the replica's epoch
// (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, as
// Kafka answers them); a follower's fetch also tells the leader how far
// the follower has replicated.
func (f *fetch) checkLeader(fp *fetchPart, p *partition.Partition) (following bool, code int16) {
	if f.replica >= 0 {
		if f.recorded {
			return false, 0
		}
		add, err := p.FollowerFetched(f.replica, fp.epoch, fp.offset, time.Now())
		if err != nil {
			return false, codeOf(err)
		}
		if add {
			f.s.cluster.FollowerCaughtUp(fp.key.topic, fp.key.partition, p, f.replica)
		}
		return false, 0
	}
	leader, epoch := p.Leader()
	switch {
	case !leader && f.r.version < 11:
		return false, kerr.NotLeaderForPartition.Code
	case fp.epoch >= 0 && fp.epoch < epoch:
		return !leader, kerr.FencedLeaderEpoch.Code
	case fp.epoch > epoch:
		return !leader, kerr.UnknownLeaderEpoch.Code
	}
	return !leader, 0
}

// preferredReplica is the replica the leader sends a consumer's fetch of
// p at offset to (KIP-392), or -1 to read here: with
// replica.selector.class RackAwareReplicaSelector, as Kafka's, an in-sync
// follower in the consumer's rack whose log holds offset (the one that
// reaches furthest), unless the leader is in that rack.
func (f *fetch) preferredReplica(p *partition.Partition, offset int64) int32 {
	if f.replica >= 0 || f.r.version < 11 || f.req.Rack == "" || f.s.cluster == nil {
		return -1
	}
	if f.racks == nil {
		// Once per fetch: the selector, this broker's rack and the
		// live brokers' racks (empty: nobody to send the consumer to).
		f.racks = map[int32]string{}
		if v, _ := f.s.settings().Get("replica.selector.class"); v == meta.RackAwareSelector && f.s.meta.Rack() != f.req.Rack {
			for _, b := range f.s.meta.Brokers() {
				if !b.Fenced && b.Host != "" {
					f.racks[b.ID] = b.Rack
				}
			}
		}
	}
	if len(f.racks) == 0 {
		return -1
	}
	best, bestEnd := int32(-1), int64(-1)
	for _, r := range p.ReadReplicas(offset) {
		if rack, live := f.racks[r.ID]; live && rack == f.req.Rack && r.LogEnd > bestEnd {
			best, bestEnd = r.ID, r.LogEnd
		}
	}
	return best
}

// releaseResults releases the views still held in f.results.
func (f *fetch) releaseResults() {
	for i := range f.results {
		f.results[i].view.Release()
	}
}

// unlockSession releases the fetch session, once.
func (f *fetch) unlockSession() {
	if f.sess != nil && !f.unlocked {
		f.unlocked = true
		f.sess.mu.Unlock()
	}
}

// try reads once and, if the fetch is satisfied (or final), responds and
// returns true. Otherwise it releases what it read and returns false.
func (f *fetch) try(final bool) bool {
	defer func() {
		if v := recover(); v != nil {
			// A panic must not leave the session locked, nor the
			// segments read referenced.
			f.unlockSession()
			f.releaseResults()
			panic(v)
		}
	}()
	total, now := f.read()
	f.recorded = true
	if !final && total < f.minBytes && !now {
		f.releaseResults()
		return false
	}
	f.respond()
	return true
}

// wait is the long poll: it re-reads each time the high watermark of a
// watched partition advances until the fetch is satisfied, the wait is
// over or the connection goes away.
func (f *fetch) wait() kmsg.Response {
	ch := make(chan struct{}, 1)
	for _, fp := range f.parts {
		if _, p, code := f.lookup(fp.key); code == 0 {
			p.Watch(ch)
			f.watched = append(f.watched, p)
		}
	}
	defer func() {
		for _, p := range f.watched {
			p.Unwatch(ch)
		}
	}()
	timer := time.NewTimer(time.Duration(f.req.MaxWaitMillis) * time.Millisecond)
	defer timer.Stop()
	for {
		if f.try(false) {
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			f.try(true)
			return nil
		case <-f.r.c.ctx.Done():
			f.try(true)
			return nil
		}
	}
}

// respond builds the response from f.results and sends it, splicing the
// mapped record data in without copying it. The views pass from
// f.results to the response, which releases them once written; until
// then they are f.results', released by try if anything panics.
func (f *fetch) respond() {
	r := f.r
	if f.sess != nil {
		defer f.unlockSession()
	}
	var salt [8]byte
	binary.BigEndian.PutUint64(salt[:], rand.Uint64())
	if f.s.quotas.enabled.Load() {
		n := 0
		for i := range f.results {
			n += len(f.results[i].view.Data)
		}
		r.throttleAtLeast(f.s.quotas.record(quotaFetch, r.user, r.clientID, float64(n), time.Now()))
	}
	for {
		resp := f.build(salt)
		if ms := r.throttle.Load(); ms > 0 {
			resp.ThrottleMillis = ms
			r.c.mute(ms)
		}
		var views []partition.View
		for i := range f.results {
			if f.results[i].placeholder {
				views = append(views, f.results[i].view)
			}
		}
		if fetchRespondHook != nil {
			fetchRespondHook(f.req)
		}
		buf := getBuf()
		*buf = appendResponse((*buf)[:0], r.corr, resp)
		if len(views) == 0 {
			f.count(resp)
			r.send(&response{buf: buf})
			return
		}
		bufs, size, ok := splice(*buf, salt, views, resp.IsFlexible())
		if ok && size-4 > maxResponseSize {
			// Past int32 sizes: answer the last partition holding data
			// without it, and build again.
			putBuf(buf)
			for i := len(f.results) - 1; i >= 0; i-- {
				if res := &f.results[i]; res.placeholder {
					f.s.logger.Warn("fetch response too large; a partition is answered without data", "partition", f.parts[i].key.partition, "bytes", len(res.view.Data), "response_bytes", size)
					res.view.Release()
					res.view, res.tooLarge = partition.View{}, true
					break
				}
			}
			continue
		}
		f.count(resp)
		if !ok {
			// The placeholders could not be found (never expected): encode
			// again with the data copied in.
			f.s.logger.Warn("fetch splice failed; copying record data")
			for ti := range resp.Topics {
				for pi := range resp.Topics[ti].Partitions {
					rp := &resp.Topics[ti].Partitions[pi]
					if len(rp.RecordBatches) == sentinelSize && bytes.Equal(rp.RecordBatches[:8], salt[:]) {
						rp.RecordBatches = views[binary.BigEndian.Uint64(rp.RecordBatches[8:])].Data
					}
				}
			}
			*buf = appendResponse((*buf)[:0], r.corr, resp)
			f.releaseResults()
			r.send(&response{buf: buf})
			return
		}
		for i := range f.results {
			f.results[i].view = partition.View{} // the response's now
		}
		r.send(&response{bufs: bufs, buf: buf, release: func() {
			for i := range views {
				views[i].Release()
			}
		}})
		return
	}
}

// count counts the error codes of the response about to be sent and,
// per partition, the record bytes and records it sends.
func (f *fetch) count(resp *kmsg.FetchResponse) {
	f.r.countErrors(resp)
	for i := range f.results {
		if res := &f.results[i]; res.placeholder && res.part != nil {
			res.part.CountFetched(int64(len(res.view.Data)), fetchedRecords(res.view.Data, f.parts[i].offset))
		}
	}
}

// fetchedRecords is how many records from offset from on the whole
// batches in data hold: the offsets the consumer moves past (a first
// batch holding offsets below from is sent whole, as Kafka does, and
// those are not counted).
func fetchedRecords(data []byte, from int64) int64 {
	first, last := int64(-1), int64(-1)
	for pos := 0; len(data)-pos >= record.HeaderSize; {
		n, err := record.BatchSize(data[pos:])
		if err != nil || n > len(data)-pos {
			break
		}
		base := int64(binary.BigEndian.Uint64(data[pos:]))
		if first < 0 {
			first = base
		}
		last = base + int64(int32(binary.BigEndian.Uint32(data[pos+record.PosLastOffsetDelta:])))
		pos += n
	}
	if last < 0 {
		return 0
	}
	return max(0, last+1-max(from, first))
}

// build encodes the response for f.results, with a placeholder in place of
// each partition's record data (marked placeholder in its result).
func (f *fetch) build(salt [8]byte) *kmsg.FetchResponse {
	req := f.req
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.SetVersion(f.r.version)
	if f.sess != nil {
		resp.SessionID = f.sess.id
	}
	// Partitions of one topic are grouped only while they are adjacent, as
	// Kafka does: the placeholders must appear in the encoded response in
	// the order of the views.
	prevTopic, ti := sessionKey{}, -1
	n := 0
	for i := range f.parts {
		fp, res := &f.parts[i], &f.results[i]
		res.placeholder = false
		if fp.sp != nil {
			changed := len(res.view.Data) > 0 || res.tooLarge || res.errCode != 0 || res.preferred >= 0 || res.hw != fp.sp.hw || res.logStart != fp.sp.logStart || res.lso != fp.sp.lso
			fp.sp.hw, fp.sp.logStart, fp.sp.lso, fp.sp.errCode = res.hw, res.logStart, res.lso, res.errCode
			if f.incremental && !changed {
				continue
			}
		}
		tk := sessionKey{topic: fp.key.topic, topicID: fp.key.topicID}
		if ti < 0 || tk != prevTopic {
			prevTopic, ti = tk, len(resp.Topics)
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = fp.key.topic, fp.key.topicID
			resp.Topics = append(resp.Topics, rt)
		}
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = fp.key.partition
		rp.ErrorCode = res.errCode
		rp.HighWatermark = res.hw
		rp.LastStableOffset = res.lso
		rp.LogStartOffset = res.logStart
		rp.PreferredReadReplica = res.preferred
		if req.IsolationLevel == 1 {
			rp.AbortedTransactions = make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, len(res.aborted))
			for j, a := range res.aborted {
				rp.AbortedTransactions[j] = kmsg.FetchResponseTopicPartitionAbortedTransaction{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset}
			}
		}
		// Empty, never null: librdkafka rejects a null record set.
		rp.RecordBatches = []byte{}
		if len(res.view.Data) > 0 {
			ph := sentinel(salt, n)
			rp.RecordBatches = ph[:]
			res.placeholder = true
			n++
		}
		resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
	}
	return resp
}

const sentinelSize = 16

// sentinel is the placeholder for the i-th partition's record data.
func sentinel(salt [8]byte, i int) [sentinelSize]byte {
	var b [sentinelSize]byte
	copy(b[:], salt[:])
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	return b
}

// splice cuts the encoded frame at each placeholder and puts the mapped
// record data there, with its real length prefix, then fixes the frame
// size. It returns the buffers and the size of the whole frame, or false
// if a placeholder is missing. A size past int32 leaves the frame's size
// field wrong: the caller must not send it.
func splice(frame []byte, salt [8]byte, views []partition.View, flexible bool) ([][]byte, int64, bool) {
	out := make([][]byte, 0, 3*len(views)+1)
	prefixes := make([]byte, 0, 5*len(views))
	pos := 0
	total := 0
	// The placeholder's own length prefix, as kmsg encoded it.
	var want []byte
	if flexible {
		want = binary.AppendUvarint(nil, sentinelSize+1)
	} else {
		want = binary.BigEndian.AppendUint32(nil, sentinelSize)
	}
	plen := len(want)
	for i := range views {
		s := sentinel(salt, i)
		at := bytes.Index(frame[pos:], s[:])
		if at < 0 {
			return nil, 0, false
		}
		at += pos
		if at-plen < pos || !bytes.Equal(frame[at-plen:at], want) {
			return nil, 0, false
		}
		n := len(views[i].Data)
		start := len(prefixes)
		if flexible {
			prefixes = binary.AppendUvarint(prefixes, uint64(n+1))
		} else {
			prefixes = binary.BigEndian.AppendUint32(prefixes, uint32(n))
		}
		out = append(out, frame[pos:at-plen], prefixes[start:len(prefixes):len(prefixes)], views[i].Data)
		total += at - plen - pos + len(prefixes) - start + n
		pos = at + sentinelSize
	}
	out = append(out, frame[pos:])
	total += len(frame) - pos
	binary.BigEndian.PutUint32(frame[0:4], uint32(total-4))
	return out, int64(total), true
}
