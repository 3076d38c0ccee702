package share

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// In a cluster (Config.State) a share-partition is served by the leader of
// its data partition and stored by the leader of its __share_group_state
// partition, usually another broker, as Kafka splits the share-partition
// leader from the share coordinator:
//
//   - The data partition's leader keeps the in-flight state (acquired
//     records, locks, delays) in memory. It reads a share-partition's state
//     with ReadShareGroupState when it is first fetched or acknowledged
//     there, and writes every change as the same ShareSnapshot and
//     ShareUpdate records one broker writes, sent with
//     WriteShareGroupState to the state partition's leader, which answers
//     once they are on the partition's in-sync replicas. When it stops
//     leading the data partition it drops the state without writing
//     (StopServing): records acquired there come back available on the
//     next leader, with the delivery counts written behind.
//   - The state partition's leader appends what it is sent and applies it
//     to a view of every share-partition stored there (statePart.view,
//     built like a replay), from which it answers reads and writes its
//     snapshots, so a snapshot never drops a share-partition served
//     elsewhere.
//   - DescribeShareGroupOffsets is answered by the group's coordinator
//     from reads at leader epoch -1, which fence nobody, and the data
//     partition's high watermark, asked of its leader where this broker
//     does not lead it.
//   - Fencing: every record carries the data partition's leader epoch of
//     its writer. A read names the reader's leader epoch and, if it is
//     newer than the view's, stores it (an update with no batches) before
//     answering; from then on records of an older epoch are refused
//     (FENCED_LEADER_EPOCH), so an old leader that has not yet learned it
//     lost the partition cannot acknowledge a record the new leader may
//     have delivered again. Records built on an older state epoch than
//     the stored one are refused too (FENCED_STATE_EPOCH): the group's
//     coordinator reset or deleted the state since (remote_admin.go).
//
// The requests are Kafka's (keys 84 and 85), between brokers only. Kafka's
// fields are filled in, and Ferry's records travel whole in tagged fields
// of each partition, so that Ferry's extra state (delays, dead-letter
// reasons) survives: tag 100 holds the record value (absent: a tombstone),
// tag 101 the record key's type (0 ShareSnapshot, 1 ShareUpdate).

// Tags of Ferry's fields in ReadShareGroupState and WriteShareGroupState.
const (
	tagStateValue = 100
	tagStateType  = 101
)

var (
	// ErrNotStateLeader is returned by WriteShareGroupState and
	// ReadShareGroupState (as NOT_COORDINATOR) when this broker does not
	// serve the state partition.
	ErrNotStateLeader = errors.New("share: this broker does not lead the state partition")
	// ErrFenced marks a write or read of a share-partition from a leader
	// epoch older than one the state leader was read at
	// (FENCED_LEADER_EPOCH).
	ErrFenced = errors.New("share: fenced by a newer leader epoch")
	// ErrStateFenced marks a write of a share-partition's state built on
	// a state epoch older than the stored one: the state was reset or
	// deleted since it was read (FENCED_STATE_EPOCH). It matches ErrFenced
	// too: its writer drops what it holds and reads the state again.
	ErrStateFenced = fmt.Errorf("%w (a newer state epoch)", ErrFenced)
)

// StateClient reaches the leader of a __share_group_state partition, this
// broker or another (Config.State). Its methods are safe for concurrent
// use and are called with no coordinator lock held but a group's or a
// share-partition's being loaded; they return a transport error, or the
// answer with its error codes.
type StateClient interface {
	// WriteShareGroupState sends req, whose records all live in partition
	// p, to the leader of p.
	WriteShareGroupState(p int32, req *kmsg.WriteShareGroupStateRequest) (*kmsg.WriteShareGroupStateResponse, error)
	// ReadShareGroupState sends req, naming share-partitions of
	// partition p, to the leader of p.
	ReadShareGroupState(p int32, req *kmsg.ReadShareGroupStateRequest) (*kmsg.ReadShareGroupStateResponse, error)
	// ListOffset asks the leader of the data partition tp for an offset,
	// as ListOffsets does: timestamp -1 is the high watermark, -2 the log
	// start offset, any other the first offset of a record at or after
	// it (-1 if none). The group's coordinator initializes the
	// partitions it assigns with it.
	ListOffset(tp TopicPartition, timestamp int64) (int64, error)
}

// remote reports whether share-partitions are stored through Config.State.
func (c *Coordinator) remote() bool { return c.cfg.State != nil }

// lockPart and unlockPart hold p for an append and the in-memory commit
// after it, so a snapshot of p sees both or neither. With Config.State
// the snapshot is the state leader's, taken from its view, and the
// append may reach this very broker's WriteShareGroupState, which takes
// the lock itself: nothing is held here.
func (c *Coordinator) lockPart(p *statePart) {
	if !c.remote() {
		p.mu.RLock()
	}
}

func (c *Coordinator) unlockPart(p *statePart) {
	if !c.remote() {
		p.mu.RUnlock()
	}
}

// appendState durably appends share-partition state records to partition
// p: to the store on one broker, through the state partition's leader
// with Config.State.
func (c *Coordinator) appendState(p *statePart, recs []Record) error {
	if !c.remote() {
		_, err := c.store.Append(p.id, recs)
		return err
	}
	req, err := writeStateRequest(recs)
	if err != nil {
		return err
	}
	resp, err := c.cfg.State.WriteShareGroupState(p.id, req)
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, pr := range t.Partitions {
			if pr.ErrorCode != 0 {
				return stateError(pr.ErrorCode)
			}
		}
	}
	return nil
}

// stateError turns an error code of a state request into an error.
func stateError(code int16) error {
	switch code {
	case kerr.FencedLeaderEpoch.Code:
		return ErrFenced
	case kerr.FencedStateEpoch.Code:
		return ErrStateFenced
	case kerr.NotCoordinator.Code:
		return ErrNotStateLeader
	}
	return kerr.ErrorForCode(code)
}

// stateCode is the error code of err in a state response.
func stateCode(err error) int16 {
	var ke *kerr.Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrStateFenced):
		return kerr.FencedStateEpoch.Code
	case errors.Is(err, ErrFenced):
		return kerr.FencedLeaderEpoch.Code
	case errors.Is(err, ErrNotStateLeader):
		return kerr.NotCoordinator.Code
	case errors.Is(err, ErrCorrupt):
		return kerr.InvalidRequest.Code
	case errors.As(err, &ke):
		return ke.Code
	}
	return kerr.KafkaStorageError.Code
}

// writeStateRequest carries recs, state records of one group, in a
// WriteShareGroupState request.
func writeStateRequest(recs []Record) (*kmsg.WriteShareGroupStateRequest, error) {
	req := kmsg.NewPtrWriteShareGroupStateRequest()
	for i, rec := range recs {
		k, err := decodeKey(rec.Key)
		if err != nil {
			return nil, err
		}
		if k.version != keyShareSnapshot && k.version != keyShareUpdate {
			return nil, fmt.Errorf("%w: key type %d is not share-partition state", ErrCorrupt, k.version)
		}
		if i == 0 {
			req.GroupID = k.group
		} else if k.group != req.GroupID {
			return nil, fmt.Errorf("%w: state records of two groups in one write", ErrCorrupt)
		}
		n := len(req.Topics)
		if n == 0 || req.Topics[n-1].TopicID != k.tp.TopicID {
			t := kmsg.NewWriteShareGroupStateRequestTopic()
			t.TopicID = k.tp.TopicID
			req.Topics = append(req.Topics, t)
			n++
		}
		pr := kmsg.NewWriteShareGroupStateRequestTopicPartition()
		pr.Partition = k.tp.Partition
		pr.UnknownTags.Set(tagStateType, []byte{byte(k.version)})
		if rec.Value != nil {
			v, err := decodeStateValue(rec.Value, k.version == keyShareSnapshot, nil)
			if err != nil {
				return nil, err
			}
			pr.StateEpoch, pr.LeaderEpoch, pr.StartOffset = v.snapshotEpoch, v.leaderEpoch, v.start
			for _, b := range v.batches {
				sb := kmsg.NewWriteShareGroupStateRequestTopicPartitionStateBatch()
				sb.FirstOffset, sb.LastOffset, sb.DeliveryState, sb.DeliveryCount = b.first, b.last, b.state, b.count
				pr.StateBatches = append(pr.StateBatches, sb)
			}
			pr.UnknownTags.Set(tagStateValue, rec.Value)
		}
		req.Topics[n-1].Partitions = append(req.Topics[n-1].Partitions, pr)
	}
	return req, nil
}

// stateRecords returns the records a WriteShareGroupState request carries.
func stateRecords(req *kmsg.WriteShareGroupStateRequest) ([]Record, error) {
	var recs []Record
	for _, t := range req.Topics {
		for _, pr := range t.Partitions {
			var typ []byte
			var val []byte
			pr.UnknownTags.Each(func(tag uint32, data []byte) {
				switch tag {
				case tagStateType:
					typ = data
				case tagStateValue:
					val = data
				}
			})
			if len(typ) != 1 || (int16(typ[0]) != keyShareSnapshot && int16(typ[0]) != keyShareUpdate) {
				return nil, fmt.Errorf("%w: WriteShareGroupState without Ferry's record type", ErrCorrupt)
			}
			tp := TopicPartition{TopicID: t.TopicID, Partition: pr.Partition}
			recs = append(recs, Record{Key: appendShareKey(nil, int16(typ[0]), req.GroupID, tp), Value: val})
		}
	}
	return recs, nil
}

// WriteShareGroupState answers WriteShareGroupState on the leader of the
// state partition its records live in (Config.State): the records are
// checked against the leader epochs the view knows, appended (durable on
// the partition's in-sync replicas) and applied to the view. Every
// partition of the answer carries the one outcome: NOT_COORDINATOR when
// this broker does not serve the partition, FENCED_LEADER_EPOCH,
// INVALID_REQUEST for records that do not decode or live in different
// partitions, KAFKA_STORAGE_ERROR when the append failed.
func (c *Coordinator) WriteShareGroupState(req *kmsg.WriteShareGroupStateRequest) *kmsg.WriteShareGroupStateResponse {
	err := c.writeState(req)
	resp := req.ResponseKind().(*kmsg.WriteShareGroupStateResponse)
	code := stateCode(err)
	for _, t := range req.Topics {
		rt := kmsg.NewWriteShareGroupStateResponseTopic()
		rt.TopicID = t.TopicID
		for _, pr := range t.Partitions {
			rp := kmsg.NewWriteShareGroupStateResponseTopicPartition()
			rp.Partition, rp.ErrorCode = pr.Partition, code
			if err != nil {
				rp.ErrorMessage = strPtr(err.Error())
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (c *Coordinator) writeState(req *kmsg.WriteShareGroupStateRequest) error {
	if !c.remote() {
		return ErrNotStateLeader
	}
	recs, err := stateRecords(req)
	if err != nil || len(recs) == 0 {
		return err
	}
	type check struct {
		i    int // of the record in recs
		key  spKey
		snap bool
		v    stateValue
	}
	checks := make([]check, 0, len(recs))
	id := int32(-1)
	for i, rec := range recs {
		k, err := decodeKey(rec.Key)
		if err != nil {
			return err
		}
		key := spKey{group: k.group, tp: k.tp}
		p := statePartitionFor(key, c.cfg.StatePartitions)
		if id >= 0 && p != id {
			return fmt.Errorf("%w: state records of two partitions in one write", ErrCorrupt)
		}
		id = p
		if rec.Value == nil {
			continue
		}
		snap := k.version == keyShareSnapshot
		v, err := decodeStateValue(rec.Value, snap, nil)
		if err != nil {
			return err
		}
		if !snap && v.leaderEpoch == adminLeaderEpoch {
			return fmt.Errorf("%w: an update without a leader epoch", ErrCorrupt)
		}
		checks = append(checks, check{i, key, snap, v})
	}
	part := c.parts[id]
	part.mu.RLock()
	defer part.mu.RUnlock()
	if !c.Loaded(id) {
		return ErrNotStateLeader
	}
	part.liveMu.Lock()
	for _, ck := range checks {
		if err := checkWriteLocked(part, ck.key, ck.snap, &ck.v); err != nil {
			part.liveMu.Unlock()
			return err
		}
		if ck.v.leaderEpoch != adminLeaderEpoch {
			continue
		}
		// An administrative snapshot takes the leader epoch the state is
		// fenced at: it fences nobody, and nobody is fenced by it.
		ck.v.leaderEpoch = 0
		if at, ok := part.readAt[ck.key]; ok {
			ck.v.leaderEpoch = max(at, 0)
		}
		if sp := part.view[ck.key]; sp != nil {
			ck.v.leaderEpoch = max(sp.leaderEpoch, 0)
		}
		recs[ck.i].Value = appendStateValue(nil, &ck.v, true)
	}
	part.liveMu.Unlock()
	if _, err := c.store.Append(id, recs); err != nil {
		return err
	}
	c.applyView(part, recs)
	return nil
}

// adminLeaderEpoch is the leader epoch of a snapshot written by the
// group's coordinator rather than by the share-partition's leader
// (AlterShareGroupOffsets, an initialization at assignment): the state
// leader gives it the leader epoch the state is fenced at.
const adminLeaderEpoch = -1

// checkWriteLocked refuses a record of key that a newer writer fenced:
// FENCED_LEADER_EPOCH for a leader epoch older than the one the state was
// read at, FENCED_STATE_EPOCH for a state epoch older than the state's
// (it was reset or deleted since its writer read it; an administrative
// snapshot must be newer than every epoch the state had, so it never
// replaces a state it did not see). part.liveMu is held.
func checkWriteLocked(part *statePart, key spKey, snap bool, v *stateValue) error {
	sp := part.view[key]
	last, had := part.viewEpochs[key]
	epoch := v.snapshotEpoch
	if snap {
		epoch = v.stateEpoch
	}
	if v.leaderEpoch == adminLeaderEpoch {
		if had && epoch <= last {
			return fmt.Errorf("%w: state epoch %d, the state is at %d", ErrStateFenced, epoch, last)
		}
		return nil
	}
	at, ok := part.readAt[key]
	if sp != nil {
		at, ok = sp.leaderEpoch, true
	}
	switch {
	case ok && v.leaderEpoch < at:
		return fmt.Errorf("%w: leader epoch %d, the state was read at %d", ErrFenced, v.leaderEpoch, at)
	case sp != nil && epoch < sp.stateEpoch, sp == nil && had && epoch <= last:
		return fmt.Errorf("%w: state epoch %d, the state is at %d", ErrStateFenced, epoch, last)
	}
	return nil
}

// applyView applies records appended to part to its view and kicks a
// snapshot if one is due.
func (c *Coordinator) applyView(part *statePart, recs []Record) {
	part.liveMu.Lock()
	r := &replayer{c: c, states: part.view, epochs: part.viewEpochs}
	for _, rec := range recs {
		r.record(part, -1, rec)
	}
	kick := part.needsSnapshotLocked(c.cfg.SnapshotSlack)
	part.liveMu.Unlock()
	if kick {
		c.kickCompaction()
	}
}

// ReadShareGroupState answers ReadShareGroupState on the leader of the
// state partition of its one share-partition (Config.State): the state as
// a ShareSnapshot value in tag 100, with Kafka's fields filled in, or no
// value and StartOffset -1 when it has none (StateEpoch is then the last
// epoch it had, or -1). A read at a leader epoch newer than the state's is
// stored before the answer, fencing writers of older epochs; an older one
// is refused with FENCED_LEADER_EPOCH.
func (c *Coordinator) ReadShareGroupState(req *kmsg.ReadShareGroupStateRequest) *kmsg.ReadShareGroupStateResponse {
	resp := req.ResponseKind().(*kmsg.ReadShareGroupStateResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewReadShareGroupStateResponseTopic()
		rt.TopicID = t.TopicID
		for _, pr := range t.Partitions {
			rp := kmsg.NewReadShareGroupStateResponseTopicPartition()
			rp.Partition = pr.Partition
			key := spKey{group: req.GroupID, tp: TopicPartition{TopicID: t.TopicID, Partition: pr.Partition}}
			val, epoch, err := c.readState(key, pr.LeaderEpoch)
			if rp.ErrorCode = stateCode(err); err != nil {
				rp.ErrorMessage = strPtr(err.Error())
			}
			rp.StateEpoch, rp.StartOffset = epoch, -1
			if val != nil {
				if v, err := decodeStateValue(val, true, nil); err == nil {
					rp.StartOffset = v.start
					for _, b := range v.batches {
						sb := kmsg.NewReadShareGroupStateResponseTopicPartitionStateBatch()
						sb.FirstOffset, sb.LastOffset, sb.DeliveryState, sb.DeliveryCount = b.first, b.last, b.state, b.count
						rp.StateBatches = append(rp.StateBatches, sb)
					}
				}
				rp.UnknownTags.Set(tagStateValue, val)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// readState returns the snapshot value of key's state and its state
// epoch, or a nil value and the last epoch it had (-1: none). A negative
// leaderEpoch reads without fencing anyone.
func (c *Coordinator) readState(key spKey, leaderEpoch int32) ([]byte, int32, error) {
	if !c.remote() {
		return nil, -1, ErrNotStateLeader
	}
	id := statePartitionFor(key, c.cfg.StatePartitions)
	part := c.parts[id]
	// Exclusive: no write passes the fence check while the epoch moves.
	part.mu.Lock()
	defer part.mu.Unlock()
	if !c.Loaded(id) {
		return nil, -1, ErrNotStateLeader
	}
	part.liveMu.Lock()
	sp := part.view[key]
	if leaderEpoch < 0 {
		// A description (DescribeShareGroupOffsets): no fencing.
		defer part.liveMu.Unlock()
		if sp == nil {
			return nil, -1, nil
		}
		_, nowMs := c.now()
		return sp.snapshotValueLocked(nowMs), sp.stateEpoch, nil
	}
	if sp == nil {
		if at, ok := part.readAt[key]; ok && leaderEpoch < at {
			part.liveMu.Unlock()
			return nil, -1, fmt.Errorf("%w: leader epoch %d, the state was read at %d", ErrFenced, leaderEpoch, at)
		}
		part.readAt[key] = leaderEpoch
		e, ok := part.viewEpochs[key]
		part.liveMu.Unlock()
		if !ok {
			e = -1
		}
		return nil, e, nil
	}
	switch {
	case leaderEpoch < sp.leaderEpoch:
		part.liveMu.Unlock()
		return nil, -1, fmt.Errorf("%w: leader epoch %d, the state was read at %d", ErrFenced, leaderEpoch, sp.leaderEpoch)
	case leaderEpoch > sp.leaderEpoch:
		v := stateValue{snapshotEpoch: sp.stateEpoch, leaderEpoch: leaderEpoch, start: sp.start, deliveryComplete: -1}
		recs := []Record{{Key: sp.updKey, Value: appendStateValue(nil, &v, false)}}
		part.liveMu.Unlock()
		if _, err := c.store.Append(id, recs); err != nil {
			return nil, -1, err
		}
		c.applyView(part, recs)
		part.liveMu.Lock()
		if sp = part.view[key]; sp == nil {
			part.liveMu.Unlock()
			return nil, -1, fmt.Errorf("%w: state of %s vanished", ErrCorrupt, key.group)
		}
	}
	_, nowMs := c.now()
	val, epoch := sp.snapshotValueLocked(nowMs), sp.stateEpoch
	part.liveMu.Unlock()
	return val, epoch, nil
}

// loadRemoteLocked reads the state of tp for g (whose lock is held) from
// its state partition's leader and serves it here, or initializes it
// when it has none and create is set. It returns the share-partition, or
// nil and an error code.
func (c *Coordinator) loadRemoteLocked(g *group, tp TopicPartition, create bool) (*sharePartition, *kerr.Error) {
	if _, info, ok := c.topic(tp.TopicID); !ok || tp.Partition < 0 || tp.Partition >= info.Partitions {
		return nil, kerr.UnknownTopicOrPartition
	}
	offs, err := c.cfg.Reader.Offsets(tp)
	if err != nil {
		return nil, readerError(err)
	}
	key := spKey{group: g.name, tp: tp}
	part := statePartitionFor(key, c.cfg.StatePartitions)
	req := kmsg.NewPtrReadShareGroupStateRequest()
	req.GroupID = g.name
	rt := kmsg.NewReadShareGroupStateRequestTopic()
	rt.TopicID = tp.TopicID
	rp := kmsg.NewReadShareGroupStateRequestTopicPartition()
	rp.Partition, rp.LeaderEpoch = tp.Partition, max(offs.LeaderEpoch, 0)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.cfg.State.ReadShareGroupState(part, req)
	if err != nil {
		c.log.Warn("reading share-partition state", "group", g.name, "partition", tp.Partition, "err", err)
		return nil, kerr.CoordinatorNotAvailable
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return nil, kerr.CoordinatorNotAvailable
	}
	got := &resp.Topics[0].Partitions[0]
	if got.ErrorCode != 0 {
		if errors.Is(stateError(got.ErrorCode), ErrFenced) {
			return nil, kerr.NotLeaderForPartition
		}
		return nil, kerr.CoordinatorNotAvailable
	}
	if got.StateEpoch >= 0 {
		c.noteEpoch(key, got.StateEpoch)
	}
	var val []byte
	got.UnknownTags.Each(func(tag uint32, data []byte) {
		if tag == tagStateValue {
			val = data
		}
	})
	if val == nil {
		if !create {
			return nil, kerr.InvalidRecordState
		}
		if e := c.initializeLocked(g, []TopicPartition{tp}); e != nil {
			return nil, e
		}
		if sp := g.sps[tp]; sp != nil {
			return sp, nil
		}
		return nil, kerr.UnknownTopicOrPartition
	}
	v, err := decodeStateValue(val, true, nil)
	if err != nil {
		c.log.Warn("reading share-partition state", "group", g.name, "partition", tp.Partition, "err", err)
		return nil, kerr.CoordinatorNotAvailable
	}
	sp := newSharePartition(key, c.cfg.StatePartitions)
	sp.mu.Lock()
	sp.replaySnapshot(&v)
	sp.leaderEpoch = max(v.leaderEpoch, rp.LeaderEpoch)
	jobs := sp.finishReplayLocked(nil)
	c.scheduleLocked(sp)
	sp.mu.Unlock()
	c.addSPLocked(g, sp)
	c.dlq.push(jobs...)
	c.log.Info("share-partition state read", "group", g.name, "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition, "start_offset", sp.start, "leader_epoch", sp.leaderEpoch)
	return sp, nil
}

// StopServing drops the share-partitions of tp, of every group, without
// writing anything: this broker no longer leads tp (Config.State). Records
// acquired here come back available on the next leader, which reads the
// state again; acknowledgements still being written fail.
func (c *Coordinator) StopServing(tp TopicPartition) {
	if !c.remote() {
		return
	}
	c.mu.Lock()
	var sps []*sharePartition
	for k, sp := range c.mu.sps {
		if k.tp == tp {
			sps = append(sps, sp)
		}
	}
	c.mu.Unlock()
	c.dropSPs(sps)
	if len(sps) > 0 {
		c.log.Info("share-partitions no longer served", "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition, "groups", len(sps))
	}
}

// viewSnapshotLocked returns the records of a snapshot of part's view:
// its live membership records, then a ShareSnapshot per share-partition.
// part.mu is held for writing and part.liveMu held.
func (c *Coordinator) viewSnapshotLocked(part *statePart, nowMs int64) []Record {
	recs := make([]Record, 0, len(part.live)+len(part.view))
	for _, k := range slices.Sorted(maps.Keys(part.live)) {
		recs = append(recs, part.live[k])
	}
	sps := slices.Collect(maps.Values(part.view))
	slices.SortFunc(sps, func(a, b *sharePartition) int { return bytes.Compare(a.snapKey, b.snapKey) })
	for _, sp := range sps {
		recs = append(recs, Record{Key: sp.snapKey, Value: sp.snapshotValueLocked(nowMs)})
	}
	return recs
}

// sharePartitionRemote returns the group and the state of tp for it with
// Config.State, reading the state from its state partition's leader if
// this broker does not serve it yet.
func (c *Coordinator) sharePartitionRemote(name string, tp TopicPartition, create bool) (*group, *sharePartition, *kerr.Error) {
	g, res := c.lockGroup(name, true)
	switch res {
	case lookupClosed:
		return nil, nil, kerr.CoordinatorNotAvailable
	case lookupOther:
		return nil, nil, kerr.GroupIDNotFound
	}
	defer g.mu.Unlock()
	defer c.maybeDropLocked(g)
	if sp := g.sps[tp]; sp != nil {
		return g, sp, nil
	}
	sp, e := c.loadRemoteLocked(g, tp, create)
	if e != nil {
		return nil, nil, e
	}
	return g, sp, nil
}

// staleLeader reports whether sp was read at a leader epoch older than
// the partition's (this broker lost and regained its leadership since),
// and if so drops it, so that it is read again.
func (c *Coordinator) staleLeader(sp *sharePartition, leaderEpoch int32) bool {
	if !c.remote() {
		return false
	}
	sp.mu.Lock()
	stale := leaderEpoch > sp.leaderEpoch
	sp.mu.Unlock()
	if !stale {
		return false
	}
	c.drop(sp)
	return true
}

// drop forgets sp, if it is still served, without writing anything.
func (c *Coordinator) drop(sp *sharePartition) {
	if g := c.findGroup(sp.key.group); g != nil {
		g.mu.Lock()
		if g.sps[sp.key.tp] == sp {
			c.dropSPLocked(g, sp)
		}
		c.maybeDropLocked(g)
		g.mu.Unlock()
	}
}

// describeRemote fills op from st, the state of tp read from its state
// partition's leader (Config.State). The lag needs the partition's high
// watermark: this broker's where it leads tp, else asked of tp's leader
// (ListOffset); -1 if neither answers.
func (c *Coordinator) describeRemote(tp TopicPartition, st remoteState, op *kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition) {
	if st.err != nil {
		op.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return
	}
	if st.val == nil {
		return
	}
	v, err := decodeStateValue(st.val, true, nil)
	if err != nil {
		return
	}
	op.StartOffset = v.start
	hw := int64(-1)
	offs, err := c.cfg.Reader.Offsets(tp)
	switch {
	case err == nil:
		op.LeaderEpoch, hw = offs.LeaderEpoch, offs.HighWatermark
	case errors.Is(err, ErrNotLeader):
		if o, err := c.cfg.State.ListOffset(tp, -1); err == nil {
			hw = o
		}
	}
	if hw < 0 {
		return
	}
	complete := int64(0)
	for _, b := range v.batches {
		if b.state != persistAcked && b.state != persistArchived {
			continue
		}
		lo, hi := max(b.first, v.start), min(b.last, hw-1)
		if hi >= lo {
			complete += hi - lo + 1
		}
	}
	op.Lag = max(0, hw-v.start-complete)
}
