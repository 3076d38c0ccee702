package partition

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"testing"
)

// sampleProducers is a state with producers of 0 to 5 batches.
func sampleProducers() map[int64]*producer {
	m := map[int64]*producer{}
	for id := int64(0); id <= producerBatches; id++ {
		st := newProducer(int16(id))
		if id%2 == 1 {
			st.txnFirst = 100 * id
		}
		if id%3 != 0 {
			st.coordEpoch = int32(id) - 2
		}
		for j := int64(0); j < id; j++ {
			st.push(batchMeta{firstSeq: int32(10 * j), lastSeq: int32(10*j + 9), base: 100*id + 10*j, last: 100*id + 10*j + 9})
		}
		m[id*1000-1] = st
	}
	m[math.MaxInt64] = newProducer(math.MaxInt16)
	return m
}

// sameProducers compares the persisted part of two states.
func sameProducers(a, b map[int64]*producer) bool {
	if len(a) != len(b) {
		return false
	}
	for id, x := range a {
		y := b[id]
		if y == nil || x.epoch != y.epoch || x.n != y.n || x.batches != y.batches || x.txnFirst != y.txnFirst || x.coordEpoch != y.coordEpoch {
			return false
		}
	}
	return true
}

// withCRC appends the checksum a snapshot ends with.
func withCRC(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

func TestProducerSnapshotDecode(t *testing.T) {
	m := sampleProducers()
	good := encodeProducerSnapshot(4096, m)
	at, got, err := decodeProducerSnapshot(good)
	if err != nil || at != 4096 || !sameProducers(got, m) {
		t.Fatalf("round trip: at %d, %v", at, err)
	}
	body := good[:len(good)-4]
	empty := withCRC([]byte{snapshotVersion, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0})
	if at, got, err := decodeProducerSnapshot(empty); err != nil || at != 7 || len(got) != 0 {
		t.Fatalf("empty snapshot: %d %v %v", at, got, err)
	}
	setCount := func(b []byte, n uint32) []byte {
		b = append([]byte(nil), b...)
		binary.BigEndian.PutUint32(b[9:], n)
		return b
	}
	oneEntry := func(id int64, n byte) []byte {
		e := binary.BigEndian.AppendUint64(nil, uint64(id))
		e = append(e, 0, 1)
		e = binary.BigEndian.AppendUint64(e, math.MaxUint64) // no transaction open
		e = binary.BigEndian.AppendUint32(e, math.MaxUint32) // no coordinator epoch
		e = append(e, n)
		for range n {
			e = append(e, make([]byte, 24)...)
		}
		return e
	}
	head := func(count uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{snapshotVersion, 0, 0, 0, 0, 0, 0, 0, 1}, count)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty file", nil},
		{"bad checksum", append(append([]byte(nil), body...), 0, 0, 0, 0)},
		{"truncated", withCRC(body[:len(body)-3])},
		{"bad version", withCRC(append([]byte{9}, body[1:]...))},
		{"bytes after the producers", withCRC(append(append([]byte(nil), body...), 0))},
		{"count above the entries", withCRC(setCount(body, uint32(len(m)+1)))},
		{"count below the entries", withCRC(setCount(body, uint32(len(m)-1)))},
		{"count of 2^32-1", withCRC(setCount(body, math.MaxUint32))},
		{"six batches", withCRC(append(head(1), oneEntry(5, 6)...))},
		{"batches past the end", withCRC(append(head(1), oneEntry(5, 3)[:44]...))},
		{"a producer twice", withCRC(append(append(head(2), oneEntry(5, 1)...), oneEntry(5, 2)...))},
		{"a transaction past the snapshot", withCRC(append(append(head(1), binary.BigEndian.AppendUint64(append(binary.BigEndian.AppendUint64(nil, 5), 0, 1), 2)...), 255, 255, 255, 255, 0))},
	} {
		if _, _, err := decodeProducerSnapshot(tc.b); !errors.Is(err, errSnapshot) {
			t.Errorf("%s: %v, want errSnapshot", tc.name, err)
		}
	}
	// Version 1, written before transactions were stored: no open
	// transaction.
	v1 := binary.BigEndian.AppendUint32([]byte{snapshotVersionV1, 0, 0, 0, 0, 0, 0, 0, 9}, 1)
	v1 = binary.BigEndian.AppendUint64(v1, 77)
	v1 = append(v1, 0, 3, 1)
	v1 = binary.BigEndian.AppendUint32(v1, 0)
	v1 = binary.BigEndian.AppendUint32(v1, 4)
	v1 = binary.BigEndian.AppendUint64(v1, 3)
	v1 = binary.BigEndian.AppendUint64(v1, 7)
	at, got, err = decodeProducerSnapshot(withCRC(v1))
	if err != nil || at != 9 || len(got) != 1 || got[77].epoch != 3 || got[77].txnFirst != -1 || got[77].last().lastSeq != 4 {
		t.Fatalf("version 1: at %d %+v %v", at, got[77], err)
	}
	// Version 2, written before coordinator epochs were stored: none.
	v2 := binary.BigEndian.AppendUint32([]byte{snapshotVersionV2, 0, 0, 0, 0, 0, 0, 0, 9}, 1)
	v2 = binary.BigEndian.AppendUint64(v2, 77)
	v2 = append(v2, 0, 3)
	v2 = binary.BigEndian.AppendUint64(v2, 8)
	v2 = append(v2, 0)
	at, got, err = decodeProducerSnapshot(withCRC(v2))
	if err != nil || at != 9 || len(got) != 1 || got[77].epoch != 3 || got[77].txnFirst != 8 || got[77].coordEpoch != -1 || got[77].n != 0 {
		t.Fatalf("version 2: at %d %+v %v", at, got[77], err)
	}
	// A file must hold the state at the offset of its name.
	dir := t.TempDir()
	if err := os.WriteFile(snapshotPath(dir, 5), good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readProducerSnapshot(snapshotPath(dir, 5), 5); !errors.Is(err, errSnapshot) {
		t.Fatalf("snapshot of 4096 named 5: %v, want errSnapshot", err)
	}
}

// FuzzProducerSnapshot decodes arbitrary snapshots, as found on disk and
// with a checksum that matches (so that the fuzzer reaches the entries).
// Decoding never panics or allocates beyond the input's size, what decodes
// holds at most producerBatches batches per producer, and it encodes to a
// snapshot that decodes to the same state.
func FuzzProducerSnapshot(f *testing.F) {
	f.Add(encodeProducerSnapshot(4096, sampleProducers()), false)
	f.Add(encodeProducerSnapshot(0, nil), false)
	b := encodeProducerSnapshot(1, sampleProducers())
	f.Add(b[:len(b)-4], true)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC {
			b = withCRC(b)
		}
		at, m, err := decodeProducerSnapshot(b)
		if err != nil {
			if !errors.Is(err, errSnapshot) {
				t.Fatalf("error %v is not errSnapshot", err)
			}
			return
		}
		if len(m)*(8+2+1) > len(b) {
			t.Fatalf("%d producers from %d bytes", len(m), len(b))
		}
		for id, st := range m {
			if st.n < 0 || st.n > producerBatches {
				t.Fatalf("producer %d with %d batches", id, st.n)
			}
		}
		at2, m2, err := decodeProducerSnapshot(encodeProducerSnapshot(at, m))
		if err != nil || at2 != at || !sameProducers(m, m2) {
			t.Fatalf("re-encoded snapshot: at %d (was %d), same %v, %v", at2, at, sameProducers(m, m2), err)
		}
	})
}
