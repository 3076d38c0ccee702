package server

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/share"
)

// ShareFetch, v0-v2 (KIP-932, KIP-1206, KIP-1222): acknowledges the
// records a member piggybacks, then acquires records of the partitions of
// its share session for it and sends the batches that hold them.
//
// Behavior:
//   - Share sessions: epoch 0 starts the member's session on this broker
//     with the request's partitions (acknowledgements are refused:
//     INVALID_REQUEST), replacing the one it had, whose records are
//     released; epoch N continues it, adding the request's partitions and
//     removing the forgotten ones (a wrong epoch, or a request while
//     another of the session is in progress, is
//     INVALID_SHARE_SESSION_EPOCH; no session is SHARE_SESSION_NOT_FOUND);
//     epoch -1 applies the acknowledgements, releases the member's records
//     on the session's partitions and ends the session, fetching nothing.
//     A session ends too when its connection closes (its records are
//     released) or its member leaves the group. At most
//     group.share.max.share.sessions exist (SHARE_SESSION_LIMIT_REACHED).
//   - Acknowledgements are durable before the response, whose
//     AcknowledgeErrorCode gives each partition's outcome; every
//     partition acknowledged appears in the response.
//   - Acquisition takes whole batches, up to MaxRecords (500 if absent)
//     across the session's partitions, starting one partition further at
//     each request for fairness, and stops once the record data reaches
//     MaxBytes (at least one partition is answered). ShareAcquireMode 1
//     (v2) never passes MaxRecords; BatchSize splits the acquired ranges.
//     The batches from the first acquired offset to the last are sent
//     as they are stored, from the mapped segments (writev, no copy); the
//     client keeps only the acquired records.
//   - Long poll: with nothing acquired the request waits up to
//     MaxWaitMillis for the high watermark of a session partition to
//     advance or for the engine to make records available (released,
//     lock expired, delay passed), then tries again. MinBytes is not
//     waited for beyond the first record, as in Kafka.
//   - Authorization (with an authorizer): READ on the group, else
//     GROUP_AUTHORIZATION_FAILED; READ on each topic of the session,
//     checked at every request: a partition of a topic without it is
//     TOPIC_AUTHORIZATION_FAILED, nothing of it is acquired or
//     acknowledged.
//   - IsRenewAck (v2) renews the locks of the acknowledged records and
//     fetches nothing; the fetch fields must then be 0 and every
//     partition must carry acknowledgements (INVALID_REQUEST otherwise).
//
// Version notes:
//   - v0 (Kafka 4.0 early access) has PartitionMaxBytes, ignored, and no
//     MaxRecords; v1 adds MaxRecords and BatchSize; v2 ShareAcquireMode
//     and IsRenewAck.

func init() { regKey(78, 0, 2, handleShareFetch) }

// defaultShareMaxRecords is ShareFetch's MaxRecords when it gives none.
const defaultShareMaxRecords = 500

// ackRelease is the acknowledge type that releases records.
const ackRelease = 2

// maxMemberIDLength bounds a share member ID, as Kafka does (a UUID).
const maxMemberIDLength = 36

type shareFetch struct {
	s      *Server
	r      *request
	req    *kmsg.ShareFetchRequest
	group  string
	member string
	sess   *shareSession // locked until the response is sent
	old    *shareSession // the session an epoch-0 request replaced
	final  bool          // epoch -1: acknowledge and close
	renew  bool
	acks   []share.PartitionAcks
	// denied holds the topics of the session and of the acknowledgements
	// the principal may not read (nil without an authorizer).
	denied map[[16]byte]bool

	maxRecords int
	strict     bool
	batchSize  int
	maxBytes   int

	// parts holds the response's partitions, in order; byTP indexes it.
	parts []shareFetchPart
	byTP  map[share.TopicPartition]int
	salt  [8]byte // of the response's placeholders
}

// shareFetchPart is one partition of the response.
type shareFetchPart struct {
	tp      share.TopicPartition
	errCode int16
	ackCode int16
	ranges  []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
	views   []partition.View // the batches holding ranges; the response's once sent
}

func handleShareFetch(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ShareFetchRequest)
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	fail := func(e *kerr.Error) kmsg.Response {
		resp.ErrorCode = e.Code
		return resp
	}
	f := &shareFetch{s: s, r: r, req: req, byTP: make(map[share.TopicPartition]int)}
	if req.GroupID != nil {
		f.group = *req.GroupID
	}
	if req.MemberID != nil {
		f.member = *req.MemberID
	}
	if f.group == "" || f.member == "" || len(f.member) > maxMemberIDLength {
		return fail(kerr.InvalidRequest)
	}
	if !r.allowed(auth.ResourceGroup, f.group, auth.OpRead) {
		return fail(kerr.GroupAuthorizationFailed)
	}
	f.renew = r.version >= 2 && req.IsRenewAck
	for i := range req.Topics {
		t := &req.Topics[i]
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if len(p.AcknowledgementBatches) == 0 {
				if f.renew {
					return fail(kerr.InvalidRequest)
				}
				continue
			}
			f.acks = append(f.acks, share.PartitionAcks{
				Partition: share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition},
				Batches:   share.AckBatchesFromFetch(nil, p.AcknowledgementBatches),
			})
		}
	}
	if f.renew && (req.MaxBytes != 0 || req.MinBytes != 0 || req.MaxRecords != 0 || req.MaxWaitMillis != 0) {
		return fail(kerr.InvalidRequest)
	}
	f.maxRecords = int(req.MaxRecords)
	if r.version < 1 || f.maxRecords <= 0 {
		f.maxRecords = defaultShareMaxRecords
	}
	f.strict = r.version >= 2 && req.ShareAcquireMode == 1
	if r.version >= 1 && req.BatchSize > 0 && !f.strict {
		f.batchSize = int(req.BatchSize)
	}
	f.maxBytes = min(int(max(req.MaxBytes, 1)), int(s.settings().int64("fetch.max.bytes")))

	key := shareSessionKey{f.group, f.member}
	switch epoch := req.ShareSessionEpoch; {
	case epoch == -1:
		ss := s.shareSessions.get(key, r.c)
		if ss == nil {
			return fail(kerr.ShareSessionNotFound)
		}
		if !ss.mu.TryLock() {
			return fail(kerr.InvalidShareSessionEpoch)
		}
		s.shareSessions.remove(ss)
		f.sess, f.final = ss, true
	case epoch == 0:
		if len(f.acks) > 0 {
			return fail(kerr.InvalidRequest)
		}
		ss, old := s.shareSessions.create(key, r.c)
		f.old = old
		if ss == nil {
			if old != nil {
				r.await(func() kmsg.Response {
					f.releaseOld()
					return fail(kerr.ShareSessionLimitReached)
				})
				return nil
			}
			return fail(kerr.ShareSessionLimitReached)
		}
		ss.mu.Lock() // new: nobody else has it
		f.sess = ss
	default:
		ss := s.shareSessions.get(key, r.c)
		if ss == nil {
			return fail(kerr.ShareSessionNotFound)
		}
		if !ss.mu.TryLock() {
			return fail(kerr.InvalidShareSessionEpoch)
		}
		if ss.epoch != epoch {
			ss.mu.Unlock()
			return fail(kerr.InvalidShareSessionEpoch)
		}
		f.sess = ss
	}
	if !f.final {
		for i := range req.Topics {
			t := &req.Topics[i]
			for _, p := range t.Partitions {
				f.sess.add(share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition})
			}
		}
		for _, ft := range req.ForgottenTopicsData {
			for _, p := range ft.Partitions {
				f.sess.forget(share.TopicPartition{TopicID: ft.TopicID, Partition: p})
			}
		}
	}
	r.await(f.run)
	return nil
}

// releaseOld releases the records of the session an epoch-0 request
// replaced, unless a request of it is still in progress (its locks then
// expire).
func (f *shareFetch) releaseOld() {
	if f.old != nil && f.old.mu.TryLock() {
		f.s.releaseSession(f.old, true)
		f.old.mu.Unlock()
	}
}

// run acknowledges, acquires (waiting if there is nothing), and responds.
// The session is unlocked before the response goes out: the client's
// next request may arrive as soon as it is read.
func (f *shareFetch) run() kmsg.Response {
	locked := true
	defer func() {
		if locked {
			f.sess.mu.Unlock()
		}
		// Views not handed to the response (a panic on the way).
		for i := range f.parts {
			for j := range f.parts[i].views {
				f.parts[i].views[j].Release()
			}
		}
	}()
	f.releaseOld()
	f.authorize()
	if err := f.s.ensureShareState(); err != nil {
		resp := f.req.ResponseKind().(*kmsg.ShareFetchResponse)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		locked = false
		f.sess.mu.Unlock()
		f.r.respond(resp)
		return nil
	}
	// The acknowledgements are made durable while records are acquired:
	// the answer waits for the longer of the two, not for both in turn.
	// Records being acknowledged are the member's, so no acquisition
	// depends on them. (Closing the session releases what is left, so it
	// waits for them first.)
	var acked chan any
	if len(f.acks) > 0 {
		acked = make(chan any, 1)
		go func() {
			defer func() { acked <- recover() }()
			f.s.shares.AcknowledgeAll(f.group, f.member, f.acks, f.renew)
		}()
		if f.final || f.renew {
			f.joinAcks(acked)
			acked = nil
		}
	}
	if f.req.ShareSessionEpoch == 0 {
		// A new session: what this broker holds of its partitions may
		// predate a reset of their state by the group's coordinator.
		f.s.shares.Revalidate(f.group, f.sess.order)
	}
	switch {
	case f.final:
		f.s.releaseSession(f.sess, true)
	case f.renew:
		f.sess.bump()
	default:
		if !f.try() && f.req.MaxWaitMillis > 0 && f.readable() {
			f.wait()
		}
		f.sess.bump()
	}
	if acked != nil {
		f.joinAcks(acked)
	}
	resp, groups := f.build()
	locked = false
	f.sess.mu.Unlock()
	f.send(resp, groups)
	return nil
}

// authorize checks READ on the topics of the session and of the
// acknowledgements: the partitions of a topic the principal may not read
// answer TOPIC_AUTHORIZATION_FAILED, their acknowledgements are dropped
// and nothing of them is acquired. The session is locked.
func (f *shareFetch) authorize() {
	if f.s.authz == nil {
		return
	}
	check := func(id [16]byte) bool {
		denied, seen := f.denied[id]
		if !seen {
			denied = !f.r.topicAllowed(id, auth.OpRead)
			if f.denied == nil {
				f.denied = make(map[[16]byte]bool)
			}
			f.denied[id] = denied
		}
		return denied
	}
	code := kerr.TopicAuthorizationFailed.Code
	kept := f.acks[:0]
	for _, a := range f.acks {
		if check(a.Partition.TopicID) {
			f.part(a.Partition).ackCode = code
			continue
		}
		kept = append(kept, a)
	}
	f.acks = kept
	if !f.final && !f.renew {
		for _, tp := range f.sess.order {
			if check(tp.TopicID) {
				f.part(tp).errCode = code
			}
		}
	}
	for id, denied := range f.denied {
		if !denied {
			delete(f.denied, id)
		}
	}
}

// readable reports whether the session has a partition the principal
// may read.
func (f *shareFetch) readable() bool {
	for _, tp := range f.sess.order {
		if !f.denied[tp.TopicID] {
			return true
		}
	}
	return false
}

// joinAcks waits for the acknowledgements to be durable and puts their
// outcomes in the response.
func (f *shareFetch) joinAcks(acked chan any) {
	if v := <-acked; v != nil {
		panic(v)
	}
	for _, a := range f.acks {
		p := f.part(a.Partition)
		if a.Err != nil {
			p.ackCode = a.Err.Code
		}
	}
}

// part returns the response partition of tp, adding it.
func (f *shareFetch) part(tp share.TopicPartition) *shareFetchPart {
	if i, ok := f.byTP[tp]; ok {
		return &f.parts[i]
	}
	f.byTP[tp] = len(f.parts)
	f.parts = append(f.parts, shareFetchPart{tp: tp})
	return &f.parts[len(f.parts)-1]
}

// try acquires records across the session's partitions once. It reports
// whether the request is done: records acquired or a partition failed.
func (f *shareFetch) try() bool {
	ss := f.sess
	n := len(ss.order)
	if n == 0 {
		return false
	}
	start := ss.next % n
	ss.next = start + 1
	records, size := 0, 0
	done := false
	for i := range n {
		if records >= f.maxRecords || size >= f.maxBytes {
			break
		}
		tp := ss.order[(start+i)%n]
		if f.denied[tp.TopicID] {
			continue
		}
		ranges, e := f.s.shares.Acquire(share.AcquireOptions{
			Group:      f.group,
			Member:     f.member,
			Partition:  tp,
			MaxRecords: f.maxRecords - records,
			Strict:     f.strict,
			BatchSize:  f.batchSize,
		}, nil)
		if e != nil {
			if e == kerr.UnknownTopicOrPartition && f.s.meta.TopicByID(tp.TopicID) == nil {
				e = kerr.UnknownTopicID
			}
			f.part(tp).errCode = e.Code
			done = true
			continue
		}
		if len(ranges) == 0 {
			continue
		}
		views, err := f.read(tp, ranges[0].FirstOffset, ranges[len(ranges)-1].LastOffset)
		if err == nil {
			for _, v := range views {
				size += len(v.Data)
			}
		}
		if err != nil || int64(size) > maxResponseSize/2 {
			// Unreadable, or more than a response can hold: give the
			// records back for another try.
			for i := range views {
				views[i].Release()
			}
			f.s.logger.Warn("share fetch could not send acquired records; releasing them", "group", f.group, "partition", tp.Partition, "err", err, "bytes", size)
			batches := make([]share.AckBatch, len(ranges))
			for i, r := range ranges {
				batches[i] = share.AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: []int8{ackRelease}}
			}
			f.s.shares.Acknowledge(f.group, f.member, tp, batches, false)
			if err != nil {
				f.part(tp).errCode = codeOf(err)
			}
			return true
		}
		p := f.part(tp)
		p.ranges, p.views = ranges, views
		for _, r := range ranges {
			records += int(r.LastOffset - r.FirstOffset + 1)
		}
		done = true
	}
	return done
}

// read returns views of the batches of tp that hold offsets first to
// last, from one or more segments.
func (f *shareFetch) read(tp share.TopicPartition, first, last int64) ([]partition.View, error) {
	p, err := f.s.meta.TopicByID(tp.TopicID).Partition(tp.Partition)
	if err != nil {
		return nil, err
	}
	var views []partition.View
	for off := first; off <= last; {
		v, err := p.ReadTo(off, last+1, math.MaxInt32, true)
		if err != nil {
			for i := range views {
				views[i].Release()
			}
			return nil, err
		}
		if len(v.Data) == 0 {
			v.Release()
			break
		}
		views = append(views, v)
		off = nextOffset(v.Data)
	}
	return views, nil
}

// nextOffset is the offset after the last batch of data (whole batches).
func nextOffset(data []byte) int64 {
	var last []byte
	for len(data) >= record.HeaderSize {
		n, err := record.BatchSize(data)
		if err != nil || n > len(data) {
			break
		}
		last, data = data[:n], data[n:]
	}
	if last == nil {
		return math.MaxInt64
	}
	return int64(binary.BigEndian.Uint64(last[record.PosBaseOffset:])) + int64(int32(binary.BigEndian.Uint32(last[record.PosLastOffsetDelta:]))) + 1
}

// wait parks the request until a session partition may have records for
// the member, then tries again, until something is acquired, MaxWait
// passes or the connection goes away.
func (f *shareFetch) wait() {
	ch := make(chan struct{}, 1)
	keys := make([]shareWaitKey, 0, len(f.sess.order))
	var watched []*partition.Partition
	for _, tp := range f.sess.order {
		if f.denied[tp.TopicID] {
			continue
		}
		keys = append(keys, shareWaitKey{f.group, tp})
		if p, err := f.s.meta.TopicByID(tp.TopicID).Partition(tp.Partition); err == nil {
			p.Watch(ch)
			watched = append(watched, p)
		}
	}
	f.s.shareWaiters.add(keys, ch)
	defer func() {
		f.s.shareWaiters.remove(keys, ch)
		for _, p := range watched {
			p.Unwatch(ch)
		}
	}()
	timer := time.NewTimer(time.Duration(f.req.MaxWaitMillis) * time.Millisecond)
	defer timer.Stop()
	for !f.try() {
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-f.r.c.ctx.Done():
			return
		}
	}
}

// build builds the response, with a placeholder for the record data of
// each partition that has some; groups holds that data, in the order of
// the placeholders. The session is locked.
func (f *shareFetch) build() (*kmsg.ShareFetchResponse, [][]partition.View) {
	resp := f.req.ResponseKind().(*kmsg.ShareFetchResponse)
	resp.SetVersion(f.r.version)
	resp.AcquisitionLockTimeoutMillis = f.s.shares.LockDuration(f.group)
	if !f.final && !f.renew {
		// Partitions new to the session appear once even without data.
		for _, tp := range f.sess.order {
			if f.sess.parts[tp] {
				f.part(tp)
			}
		}
		for i := range f.parts {
			if _, ok := f.sess.parts[f.parts[i].tp]; ok {
				f.sess.parts[f.parts[i].tp] = false
			}
		}
	}
	binary.BigEndian.PutUint64(f.salt[:], rand.Uint64())
	var groups [][]partition.View
	topicIdx := make(map[[16]byte]int)
	for i := range f.parts {
		p := &f.parts[i]
		ti, ok := topicIdx[p.tp.TopicID]
		if !ok {
			ti = len(resp.Topics)
			topicIdx[p.tp.TopicID] = ti
			t := kmsg.NewShareFetchResponseTopic()
			t.TopicID = p.tp.TopicID
			resp.Topics = append(resp.Topics, t)
		}
		rp := kmsg.NewShareFetchResponseTopicPartition()
		rp.Partition = p.tp.Partition
		rp.ErrorCode = p.errCode
		rp.AcknowledgeErrorCode = p.ackCode
		rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = -1, -1
		rp.AcquiredRecords = p.ranges
		if len(p.views) > 0 {
			ph := sentinel(f.salt, len(groups))
			rp.Records = ph[:]
			groups = append(groups, p.views)
			p.views = nil // the response's now
		}
		resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
	}
	return resp, groups
}

// send encodes the response and sends it, splicing the mapped record data
// in without copying it; the views are released once it is written.
func (f *shareFetch) send(resp *kmsg.ShareFetchResponse, groups [][]partition.View) {
	sent := false
	defer func() {
		if !sent {
			releaseGroups(groups)
		}
	}()
	f.r.countErrors(resp)
	salt := f.salt
	buf := getBuf()
	*buf = appendResponse((*buf)[:0], f.r.corr, resp)
	if len(groups) == 0 {
		f.r.send(&response{buf: buf})
		return
	}
	bufs, ok := spliceGroups(*buf, salt, groups)
	if !ok {
		// The placeholders could not be found (never expected): encode
		// again with the data copied in.
		f.s.logger.Warn("share fetch splice failed; copying record data")
		for ti := range resp.Topics {
			for pi := range resp.Topics[ti].Partitions {
				rp := &resp.Topics[ti].Partitions[pi]
				if len(rp.Records) == sentinelSize && bytes.Equal(rp.Records[:8], salt[:]) {
					var data []byte
					for _, v := range groups[binary.BigEndian.Uint64(rp.Records[8:])] {
						data = append(data, v.Data...)
					}
					rp.Records = data
				}
			}
		}
		*buf = appendResponse((*buf)[:0], f.r.corr, resp)
		f.r.send(&response{buf: buf})
		return
	}
	sent = true
	f.r.send(&response{bufs: bufs, buf: buf, release: func() { releaseGroups(groups) }})
}

func releaseGroups(groups [][]partition.View) {
	for _, g := range groups {
		for i := range g {
			g[i].Release()
		}
	}
}

// spliceGroups cuts the encoded frame (a flexible response) at each
// placeholder and puts there the record data of its group of views, one
// after the other, with their total length, then fixes the frame size.
func spliceGroups(frame []byte, salt [8]byte, groups [][]partition.View) ([][]byte, bool) {
	out := make([][]byte, 0, 3*len(groups)+1)
	prefixes := make([]byte, 0, 5*len(groups))
	want := binary.AppendUvarint(nil, sentinelSize+1)
	plen := len(want)
	pos, total := 0, 0
	for i, g := range groups {
		s := sentinel(salt, i)
		at := bytes.Index(frame[pos:], s[:])
		if at < 0 {
			return nil, false
		}
		at += pos
		if at-plen < pos || !bytes.Equal(frame[at-plen:at], want) {
			return nil, false
		}
		n := 0
		for _, v := range g {
			n += len(v.Data)
		}
		start := len(prefixes)
		prefixes = binary.AppendUvarint(prefixes, uint64(n+1))
		out = append(out, frame[pos:at-plen], prefixes[start:len(prefixes):len(prefixes)])
		for _, v := range g {
			out = append(out, v.Data)
		}
		total += at - plen - pos + len(prefixes) - start + n
		pos = at + sentinelSize
	}
	out = append(out, frame[pos:])
	total += len(frame) - pos
	binary.BigEndian.PutUint32(frame[0:4], uint32(total-4))
	return out, true
}
