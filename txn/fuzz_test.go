package txn

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"
)

// fuzzRecords splits data into records: each is a 2-byte key length, the
// key, a 2-byte value length (0xffff: a tombstone) and the value.
func fuzzRecords(data []byte) []Record {
	var recs []Record
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n > len(data) {
			n = len(data)
		}
		r := Record{Key: data[:n]}
		data = data[n:]
		if len(data) < 2 {
			recs = append(recs, r)
			break
		}
		n = int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if n != 0xffff {
			if n > len(data) {
				n = len(data)
			}
			r.Value = data[:n]
			data = data[n:]
		}
		recs = append(recs, r)
	}
	return recs
}

func appendFuzzRecord(b []byte, r Record) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Key)))
	b = append(b, r.Key...)
	if r.Value == nil {
		return binary.BigEndian.AppendUint16(b, 0xffff)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Value)))
	return append(b, r.Value...)
}

// FuzzReplay feeds arbitrary __transaction_state records to New. It must
// not panic, every id it loads must hold a state the coordinator can act
// on, re-encoding a loaded state must decode to the same state, and the
// store must keep every record a snapshot would need (nothing read is
// dropped from the live set unless a later record replaces it).
func FuzzReplay(f *testing.F) {
	now := time.Now().UnixMilli()
	seeds := []meta{
		{producerID: 1, prevProducerID: -1, nextProducerID: -1, epoch: 0, timeoutMs: 60000, state: stateEmpty, startMs: -1, updateMs: now},
		{producerID: 2, prevProducerID: -1, nextProducerID: -1, epoch: 3, timeoutMs: 60000, state: stateOngoing,
			partitions: []TopicPartition{{"t", 0}, {"t", 1}, {OffsetsTopic, 3}}, startMs: now, updateMs: now},
		{producerID: 3, prevProducerID: 2, nextProducerID: 9, epoch: 32767, timeoutMs: 60000, state: statePrepareCommit,
			partitions: []TopicPartition{{"u", 2}}, startMs: now, updateMs: now, clientTV: 2},
		{producerID: 4, prevProducerID: -1, nextProducerID: -1, epoch: 1, timeoutMs: 1, state: stateCompleteAbort, startMs: now, updateMs: now},
	}
	var all []byte
	for i, m := range seeds {
		r := Record{Key: recordKey(string(rune('a' + i))), Value: encodeValue(&m)}
		one := appendFuzzRecord(nil, r)
		f.Add(one)
		all = append(all, one...)
	}
	all = appendFuzzRecord(all, Record{Key: recordKey("a")})
	f.Add(all)
	f.Add([]byte{0, 3, 0, 0, 0, 0, 1, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		recs := fuzzRecords(data)
		// Every record whose key reads as a transactional id: decode, then
		// round-trip what decodes.
		for _, r := range recs {
			if r.Value == nil {
				continue
			}
			m, err := decodeValue(r.Value)
			if err != nil {
				continue
			}
			checkMeta(t, m)
			m2, err := decodeValue(encodeValue(&m))
			if err != nil {
				t.Fatalf("re-encoded state does not decode: %v", err)
			}
			if !metaEqual(m, m2) {
				t.Fatalf("round trip changed the state:\n%+v\n%+v", m, m2)
			}
		}

		store := newMemStore()
		for _, r := range recs {
			store.appendLocked(0, []Record{r})
		}
		markers := newFakeMarkers()
		c, err := New(Config{
			Store:                      store,
			Markers:                    markers,
			ProducerIDs:                func() (int64, error) { return 1 << 40, nil },
			GroupPartition:             func(string) int32 { return 0 },
			PartitionCount:             func(string) int32 { return 1 },
			TransactionTopicPartitions: 1,
			retryBackoff:               time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The live set keeps the last record of every key.
		last := make(map[string]Record)
		for _, r := range recs {
			if r.Value == nil {
				delete(last, string(r.Key))
			} else {
				last[string(r.Key)] = r
			}
		}
		part := c.parts[0]
		part.liveMu.Lock()
		if len(part.live) != len(last) {
			t.Errorf("live set has %d records, the log %d live keys", len(part.live), len(last))
		}
		part.liveMu.Unlock()
		for _, e := range c.entries() {
			e.mu.Lock()
			checkMeta(t, e.m)
			e.mu.Unlock()
		}
	})
}

// checkMeta checks what the coordinator relies on in a loaded state.
func checkMeta(t *testing.T, m meta) {
	t.Helper()
	if m.state < stateEmpty || m.state > stateCompleteAbort {
		t.Fatalf("loaded state %d", m.state)
	}
	if m.producerID < 0 || m.epoch < 0 {
		t.Fatalf("loaded producer id %d epoch %d", m.producerID, m.epoch)
	}
	if !slices.IsSortedFunc(m.partitions, compareTP) || len(slices.CompactFunc(slices.Clone(m.partitions), func(a, b TopicPartition) bool { return a == b })) != len(m.partitions) {
		t.Fatalf("partitions not sorted and unique: %v", m.partitions)
	}
	for _, tp := range m.partitions {
		if tp.Topic == "" || tp.Partition < 0 {
			t.Fatalf("bad partition %v", tp)
		}
	}
	if (m.state == stateEmpty || m.state == stateCompleteCommit || m.state == stateCompleteAbort) && len(m.partitions) > 0 {
		t.Fatalf("%s with partitions %v", m.state, m.partitions)
	}
}

func metaEqual(a, b meta) bool {
	return slices.Equal(a.partitions, b.partitions) &&
		a.producerID == b.producerID && a.prevProducerID == b.prevProducerID && a.nextProducerID == b.nextProducerID &&
		a.epoch == b.epoch && a.lastEpoch == b.lastEpoch && a.timeoutMs == b.timeoutMs && a.state == b.state &&
		a.startMs == b.startMs && a.updateMs == b.updateMs && a.clientTV == b.clientTV
}
