package share

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"
)

// checkState verifies the invariants of a share-partition's state. sp.mu
// is held or sp is not shared.
func checkState(sp *sharePartition) error {
	var delayed int64
	for i := range sp.rs {
		r := &sp.rs[i]
		switch {
		case r.first > r.last:
			return fmt.Errorf("run %d: %d-%d", i, r.first, r.last)
		case r.first < sp.start:
			return fmt.Errorf("run %d-%d below the start offset %d", r.first, r.last, sp.start)
		case i > 0 && sp.rs[i-1].last >= r.first:
			return fmt.Errorf("runs %d-%d and %d-%d overlap or are out of order", sp.rs[i-1].first, sp.rs[i-1].last, r.first, r.last)
		case r.state > stArchived:
			return fmt.Errorf("run %d-%d in state %d", r.first, r.last, r.state)
		case r.count < 0:
			return fmt.Errorf("run %d-%d with delivery count %d", r.first, r.last, r.count)
		case r.state == stAcquired && r.member == "":
			return fmt.Errorf("acquired run %d-%d without a member", r.first, r.last)
		case r.state != stAcquired && r.member != "":
			return fmt.Errorf("%s run %d-%d with a member", r.state, r.first, r.last)
		case r.notBefore != 0 && r.state != stAvailable:
			return fmt.Errorf("%s run %d-%d with a delay", r.state, r.first, r.last)
		}
		if r.state == stAvailable && r.notBefore != 0 {
			delayed += r.len()
		}
	}
	if delayed != sp.delayed {
		return fmt.Errorf("delayed %d, runs say %d", sp.delayed, delayed)
	}
	if sp.end < sp.start {
		return fmt.Errorf("end %d below start %d", sp.end, sp.start)
	}
	if len(sp.rs) > 0 && sp.rs[0].first == sp.start && sp.rs[0].state.terminal() && !sp.rs[0].pending {
		return fmt.Errorf("a complete run %d-%d at the start offset", sp.rs[0].first, sp.rs[0].last)
	}
	return nil
}

// persistedState renders a share-partition as a snapshot would store it,
// without delays that are over (the timer clears them when it gets there).
func persistedState(sp *sharePartition) string {
	v, err := decodeStateValue(sp.snapshotValueLocked(0), true, nil)
	if err != nil {
		return "undecodable: " + err.Error()
	}
	now := time.Now().UnixMilli()
	for i := range v.batches {
		if v.batches[i].notBefore <= now {
			v.batches[i].notBefore = 0
		}
	}
	return fmt.Sprintf("start=%d epoch=%d batches=%v", v.start, v.stateEpoch, v.batches)
}

// encodeFuzzRecords lays records out as the fuzz input does: per record a
// uint16 key length, the key, a uint16 value length (0xffff: tombstone)
// and the value.
func encodeFuzzRecords(recs []Record) []byte {
	var b []byte
	for _, r := range recs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Key)))
		b = append(b, r.Key...)
		if r.Value == nil {
			b = binary.BigEndian.AppendUint16(b, 0xffff)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

func decodeFuzzRecords(b []byte) []Record {
	var recs []Record
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			break
		}
		r := Record{Key: b[:n]}
		b = b[n:]
		if len(b) < 2 {
			recs = append(recs, r)
			break
		}
		n = int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n != 0xffff {
			if n > len(b) {
				break
			}
			r.Value = b[:n]
			b = b[n:]
		}
		recs = append(recs, r)
	}
	return recs
}

// failingDLQ fails every call.
type failingDLQ struct{ *fakeDLQ }

func (failingDLQ) DeadLettersWritten(*DeadLetter) (int64, error) { return 0, errInjected }

// FuzzReplay replays arbitrary __share_group_state records: a coordinator
// must start (skipping what it cannot decode), never panic, hold states
// that keep their invariants, and come back with the same states from a
// snapshot of them.
func FuzzReplay(f *testing.F) {
	tp := TopicPartition{topicID("t"), 0}
	key := func(v int16) []byte { return appendShareKey(nil, v, "g", tp) }
	snap := func(start int64, sbs ...stateBatch) []byte {
		return appendStateValue(nil, &stateValue{start: start, deliveryComplete: 3, batches: sbs}, true)
	}
	upd := func(start int64, sbs ...stateBatch) []byte {
		return appendStateValue(nil, &stateValue{start: start, deliveryComplete: -1, batches: sbs}, false)
	}
	m := &member{id: "m", clientID: "c", topics: []string{"t"}, epoch: 3, prevEpoch: 2, assigned: assignment{tp.TopicID: {0}}}
	g := &group{name: "g", epoch: 3}
	f.Add(encodeFuzzRecords([]Record{
		{Key: key(keyShareSnapshot), Value: snap(5, stateBatch{first: 5, last: 9, state: persistAvailable, count: 1}, stateBatch{first: 12, last: 12, state: persistAcked, count: 2})},
		{Key: key(keyShareUpdate), Value: upd(-1, stateBatch{first: 5, last: 6, state: persistAcked, count: 1}, stateBatch{first: 7, last: 7, state: persistArchiving, count: 5, reason: ReasonRejected})},
		{Key: key(keyShareUpdate), Value: upd(6, stateBatch{first: 8, last: 9, state: persistAvailable, count: 2, notBefore: 1 << 40})},
		memberRecord("g", m), groupRecord(g), assignmentRecord("g", m),
	}))
	f.Add(encodeFuzzRecords([]Record{
		{Key: key(keyShareSnapshot), Value: snap(0)},
		{Key: key(keyShareSnapshot)},
		{Key: key(keyShareUpdate), Value: upd(3, stateBatch{first: 0, last: 100, state: persistArchived})},
		{Key: appendMemberKey(nil, keyMemberMetadata, "g", "m")},
	}))
	f.Add([]byte{0, 2, 0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		store := newMemStore()
		store.appendLocked(0, decodeFuzzRecords(data))
		reader := newFakeReader()
		reader.produce(tp, 10, 0, false, false, -1, nil)
		// A dead-letter writer that always fails keeps archiving runs
		// as they are while the test looks.
		dlq := newFakeDLQ()
		dlq.fail = errInjected
		cfg := Config{
			Store:           store,
			Reader:          reader,
			DLQ:             failingDLQ{dlq},
			GroupConfigs:    func(string) map[string]string { return map[string]string{GroupDLQTopic: "dlq.t"} },
			Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
			StatePartitions: 1,
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		states := func(c *Coordinator) map[string]string {
			out := make(map[string]string)
			for _, g := range c.groupsSnapshot() {
				for _, sp := range g.spsSorted() {
					sp.mu.Lock()
					if err := checkState(sp); err != nil {
						sp.mu.Unlock()
						t.Fatalf("%s %v: %v", g.name, sp.key.tp, err)
					}
					out[fmt.Sprintf("%q/%x/%d", g.name, sp.key.tp.TopicID, sp.key.tp.Partition)] = persistedState(sp)
					sp.mu.Unlock()
				}
			}
			return out
		}
		before := states(c)
		// Acquiring and acknowledging a replayed state must work too.
		if _, sp, e := c.sharePartition("g", tp, false); e == nil {
			got, _ := c.Acquire(AcquireOptions{Group: "g", Member: "x", Partition: tp, MaxRecords: math.MaxInt32}, nil)
			for _, r := range got {
				c.Acknowledge("g", "x", tp, []AckBatch{{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: []int8{ackRelease}}}, false)
			}
			sp.mu.Lock()
			if err := checkState(sp); err != nil {
				t.Fatalf("after acquiring and releasing: %v", err)
			}
			sp.mu.Unlock()
			before = states(c)
		}
		if err := c.snapshotPartition(c.parts[0], true); err != nil {
			t.Fatal(err)
		}
		c.Close()
		c, err = New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		after := states(c)
		for k := range before {
			if before[k] != after[k] {
				t.Fatalf("%s: %s before a snapshot, %s after", k, before[k], after[k])
			}
		}
		if len(after) != len(before) {
			t.Fatalf("%d states before a snapshot, %d after", len(before), len(after))
		}
	})
}
