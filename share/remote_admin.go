package share

import (
	"errors"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// What the group's coordinator does to share-partition state in a cluster
// (Config.State), where the state lives on the leaders of the
// __share_group_state partitions and the in-flight state on the leaders
// of the data partitions:
//
//   - AlterShareGroupOffsets reads each partition's state epoch from its
//     state leader and writes a ShareSnapshot at the next state epoch,
//     marked administrative (adminLeaderEpoch) so that the state leader
//     gives it the leader epoch it fences at. DeleteShareGroupOffsets and
//     DeleteGroups read which partitions have state and tombstone them.
//   - A data partition's leader that still holds the old state learns of
//     the change at the next share session a member starts there
//     (Revalidate: its state epoch is read again), or at its next write,
//     refused with FENCED_STATE_EPOCH. Either way it drops what it holds
//     and reads the new state at the next ShareFetch. Both APIs need a
//     group without members, so nothing in flight is lost.
//   - A share-partition is initialized when a member is first assigned it
//     (initializeRemoteLocked): its start offset from
//     share.auto.offset.reset, read from the data partition's leader,
//     written as an administrative snapshot that loses to a state written
//     meanwhile by that leader.

// remoteState is what a state leader answered for one share-partition.
type remoteState struct {
	val   []byte // ShareSnapshot value; nil: no state
	epoch int32  // its state epoch, or the last one it had (-1: never)
	err   *kerr.Error
}

// readStates reads the state of tps for group from the leaders of their
// state partitions without fencing anyone (leader epoch -1), one request
// per state partition.
func (c *Coordinator) readStates(group string, tps []TopicPartition) map[TopicPartition]remoteState {
	out := make(map[TopicPartition]remoteState, len(tps))
	byPart := make(map[int32][]TopicPartition)
	for _, tp := range tps {
		p := statePartitionFor(spKey{group, tp}, c.cfg.StatePartitions)
		byPart[p] = append(byPart[p], tp)
	}
	for p, tps := range byPart {
		req := kmsg.NewPtrReadShareGroupStateRequest()
		req.GroupID = group
		for _, tp := range tps {
			n := len(req.Topics)
			if n == 0 || req.Topics[n-1].TopicID != tp.TopicID {
				rt := kmsg.NewReadShareGroupStateRequestTopic()
				rt.TopicID = tp.TopicID
				req.Topics = append(req.Topics, rt)
				n++
			}
			rp := kmsg.NewReadShareGroupStateRequestTopicPartition()
			rp.Partition, rp.LeaderEpoch = tp.Partition, -1
			req.Topics[n-1].Partitions = append(req.Topics[n-1].Partitions, rp)
		}
		for _, tp := range tps {
			out[tp] = remoteState{epoch: -1, err: kerr.CoordinatorNotAvailable}
		}
		resp, err := c.cfg.State.ReadShareGroupState(p, req)
		if err != nil {
			c.log.Warn("reading share-partition state", "group", group, "state_partition", p, "err", err)
			continue
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				tp := TopicPartition{TopicID: rt.TopicID, Partition: rp.Partition}
				if _, asked := out[tp]; !asked {
					continue
				}
				if rp.ErrorCode != 0 {
					out[tp] = remoteState{epoch: -1, err: kerr.ErrorForCode(rp.ErrorCode).(*kerr.Error)}
					continue
				}
				st := remoteState{epoch: rp.StateEpoch}
				rp.UnknownTags.Each(func(tag uint32, data []byte) {
					if tag == tagStateValue {
						st.val = data
					}
				})
				out[tp] = st
			}
		}
	}
	return out
}

// resetRemoteLocked gives tp a fresh state for g (whose lock is held)
// starting at start, at the state epoch after the stored one, through the
// state partition's leader; the share-partition this broker may serve is
// dropped, to be read again.
func (c *Coordinator) resetRemoteLocked(g *group, tp TopicPartition, start, nowMs int64) *kerr.Error {
	st := c.readStates(g.name, []TopicPartition{tp})[tp]
	if st.err != nil {
		return st.err
	}
	key := spKey{group: g.name, tp: tp}
	c.noteEpoch(key, st.epoch)
	fresh := newSharePartition(key, c.cfg.StatePartitions)
	fresh.createTime = nowMs
	fresh.leaderEpoch = adminLeaderEpoch
	fresh.resetLocked(start, c.nextEpoch(key))
	recs := []Record{{Key: fresh.snapKey, Value: fresh.snapshotValueLocked(nowMs)}}
	if err := c.appendState(c.parts[fresh.part], recs); err != nil {
		c.log.Warn("resetting share-partition state", "group", g.name, "err", err)
		if errors.Is(err, ErrStateFenced) {
			return kerr.FencedStateEpoch
		}
		return kerr.CoordinatorNotAvailable
	}
	if old := g.sps[tp]; old != nil {
		c.dropSPLocked(g, old)
	}
	c.log.Info("share-partition start offset altered", "group", g.name, "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition, "start_offset", start, "state_epoch", fresh.stateEpoch)
	return nil
}

// deleteRemoteLocked deletes the state of those of tps that have one, for
// g (whose lock is held), through their state partitions' leaders; the
// share-partitions this broker serves are dropped. The first failure is
// returned; the others are still tried.
func (c *Coordinator) deleteRemoteLocked(g *group, tps []TopicPartition) *kerr.Error {
	var first *kerr.Error
	byPart := make(map[int32][]Record)
	for tp, st := range c.readStates(g.name, tps) {
		if st.err != nil {
			first = cmpOr(first, st.err)
			continue
		}
		if st.val == nil {
			continue
		}
		key := spKey{group: g.name, tp: tp}
		p := statePartitionFor(key, c.cfg.StatePartitions)
		byPart[p] = append(byPart[p],
			Record{Key: appendShareKey(nil, keyShareSnapshot, g.name, tp)},
			Record{Key: appendShareKey(nil, keyShareUpdate, g.name, tp)})
		c.noteEpoch(key, st.epoch)
	}
	for p, recs := range byPart {
		if err := c.appendState(c.parts[p], recs); err != nil {
			c.log.Warn("deleting share-partition state", "group", g.name, "err", err)
			first = cmpOr(first, kerr.CoordinatorNotAvailable)
		}
	}
	for _, tp := range tps {
		if sp := g.sps[tp]; sp != nil {
			c.dropSPLocked(g, sp)
		}
		delete(g.checked, tp)
	}
	return first
}

func cmpOr(a, b *kerr.Error) *kerr.Error {
	if a != nil {
		return a
	}
	return b
}

// allPartitions returns every partition of the topics a share group may
// consume (Kafka's internal topics, named "__...", left out), sorted.
func allPartitions(topics map[string]TopicInfo) []TopicPartition {
	var tps []TopicPartition
	for name, info := range topics {
		if strings.HasPrefix(name, "__") {
			continue
		}
		for p := range info.Partitions {
			tps = append(tps, TopicPartition{TopicID: info.ID, Partition: p})
		}
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if c := strings.Compare(string(a.TopicID[:]), string(b.TopicID[:])); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return tps
}

// Revalidate checks the share-partitions of group this broker serves
// among tps against their stored state (Config.State): one whose state
// was reset or deleted since it was read (a different state epoch, or
// none) is dropped, to be read again. The server calls it when a member
// starts a share session here, before acquiring for it, so a member of a
// group whose offsets were altered reads the new state. Without
// Config.State it does nothing.
func (c *Coordinator) Revalidate(group string, tps []TopicPartition) {
	if !c.remote() {
		return
	}
	held := make(map[TopicPartition]*sharePartition)
	var ask []TopicPartition
	for _, tp := range tps {
		if _, sp := c.lookup(spKey{group, tp}); sp != nil {
			held[tp] = sp
			ask = append(ask, tp)
		}
	}
	if len(ask) == 0 {
		return
	}
	for tp, st := range c.readStates(group, ask) {
		if st.err != nil {
			continue // kept: its writes are fenced if it is stale
		}
		sp := held[tp]
		sp.mu.Lock()
		stale := st.val == nil || st.epoch != sp.stateEpoch
		sp.mu.Unlock()
		if stale {
			c.log.Info("share-partition state changed by its coordinator: read again", "group", group, "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition)
			c.drop(sp)
		}
	}
}

// ReleaseMember releases at once every record memberID holds on the
// share-partitions of group served here: its group's coordinator, on
// another broker, removed it (its session timed out, or it left).
func (c *Coordinator) ReleaseMember(group, memberID string) {
	g := c.findGroup(group)
	if g == nil {
		return
	}
	g.mu.Lock()
	sps := g.spsSorted()
	g.mu.Unlock()
	gc := c.groupConfig(g)
	var n notes
	for _, sp := range sps {
		c.releaseWhere(sp, gc, func(r *run) bool { return r.member == memberID }, &n)
	}
	c.fire(&n)
}

// initializeRemoteLocked initializes, with Config.State, the state of the
// partitions g's members are assigned (g's lock is held) that have none
// yet: the start offset from share.auto.offset.reset, read from the data
// partition's leader, written as an administrative snapshot, which the
// state leader refuses if the share-partition's leader initialized it
// meanwhile. Partitions found with state are not looked at again.
// Failures are logged; such a partition is initialized by its leader at
// its first ShareFetch.
func (c *Coordinator) initializeRemoteLocked(g *group, tps []TopicPartition) {
	var ask []TopicPartition
	for _, tp := range tps {
		if !g.checked[tp] {
			ask = append(ask, tp)
		}
	}
	if len(ask) == 0 {
		return
	}
	gc := c.groupConfig(g)
	_, nowMs := c.now()
	byPart := make(map[int32][]Record)
	done := make(map[int32][]TopicPartition)
	for tp, st := range c.readStates(g.name, ask) {
		switch {
		case st.err != nil:
			continue
		case st.val != nil:
			g.checked[tp] = true
			continue
		}
		start, err := c.resetOffset(gc, tp, nowMs)
		if err != nil {
			c.log.Warn("initializing share-partition state at assignment", "group", g.name, "partition", tp.Partition, "err", err)
			continue
		}
		key := spKey{group: g.name, tp: tp}
		c.noteEpoch(key, st.epoch)
		fresh := newSharePartition(key, c.cfg.StatePartitions)
		fresh.createTime = nowMs
		fresh.leaderEpoch = adminLeaderEpoch
		fresh.resetLocked(start, c.nextEpoch(key))
		byPart[fresh.part] = append(byPart[fresh.part], Record{Key: fresh.snapKey, Value: fresh.snapshotValueLocked(nowMs)})
		done[fresh.part] = append(done[fresh.part], tp)
		c.log.Info("share-partition initialized at assignment", "group", g.name, "topic_id", kafkaUUID(tp.TopicID), "partition", tp.Partition, "start_offset", start)
	}
	for p, recs := range byPart {
		err := c.appendState(c.parts[p], recs)
		if err != nil && !errors.Is(err, ErrStateFenced) {
			c.log.Warn("initializing share-partition state at assignment", "group", g.name, "err", err)
			continue
		}
		// Fenced: its leader initialized it first.
		for _, tp := range done[p] {
			g.checked[tp] = true
		}
	}
}

// resetOffset returns the start offset share.auto.offset.reset gives tp
// now: from this broker's log when it leads tp, else asked of its leader
// (StateClient.ListOffset).
func (c *Coordinator) resetOffset(gc *groupConfig, tp TopicPartition, nowMs int64) (int64, error) {
	ts := int64(-1) // latest
	switch gc.reset {
	case resetEarliest:
		ts = -2
	case resetByDuration:
		ts = nowMs - gc.resetDuration.Milliseconds()
	}
	offs, err := c.cfg.Reader.Offsets(tp)
	switch {
	case errors.Is(err, ErrNotLeader):
		o, err := c.cfg.State.ListOffset(tp, ts)
		if err == nil && o < 0 && ts >= 0 {
			return c.cfg.State.ListOffset(tp, -1) // no record that late: the end
		}
		return o, err
	case err != nil:
		return 0, err
	case ts == -1:
		return offs.HighWatermark, nil
	case ts == -2:
		return offs.LogStart, nil
	}
	return c.cfg.Reader.OffsetForTime(tp, ts)
}
