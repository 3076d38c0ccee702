package group

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// memStore is an in-memory Store for unit tests. Append and Snapshot can be
// made to fail.
type memStore struct {
	mu           sync.Mutex
	parts        map[int32]*memPart
	failAppend   error
	failSnapshot error
	snapshots    int
}

type memPart struct {
	start int64 // log start offset
	next  int64 // next offset
	recs  []memRec
}

type memRec struct {
	off int64
	r   Record
}

var errInjected = errors.New("injected store failure")

func newMemStore() *memStore { return &memStore{parts: make(map[int32]*memPart)} }

func (s *memStore) part(p int32) *memPart {
	mp := s.parts[p]
	if mp == nil {
		mp = &memPart{}
		s.parts[p] = mp
	}
	return mp
}

func (s *memStore) appendLocked(p int32, recs []Record) int64 {
	mp := s.part(p)
	first := mp.next
	for _, r := range recs {
		c := Record{Key: bytes.Clone(r.Key)}
		if r.Value != nil {
			c.Value = bytes.Clone(r.Value)
		}
		mp.recs = append(mp.recs, memRec{mp.next, c})
		mp.next++
	}
	return first
}

func (s *memStore) Append(p int32, recs []Record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAppend != nil {
		return 0, s.failAppend
	}
	return s.appendLocked(p, recs), nil
}

func (s *memStore) Replay(p int32, fn func(int64, Record) error) error {
	s.mu.Lock()
	recs := slices.Clone(s.part(p).recs)
	s.mu.Unlock()
	for _, r := range recs {
		if err := fn(r.off, r.r); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Snapshot(p int32, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSnapshot != nil {
		return s.failSnapshot
	}
	mp := s.part(p)
	first := s.appendLocked(p, recs)
	i := 0
	for i < len(mp.recs) && mp.recs[i].off < first {
		i++
	}
	mp.recs = slices.Clone(mp.recs[i:])
	mp.start = first
	s.snapshots++
	return nil
}

// summary describes every non-empty partition: log start, end and record
// count.
func (s *memStore) summary() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(s.parts)) {
		mp := s.parts[p]
		out = append(out, fmt.Sprintf("partition %d: start=%d end=%d records=%d", p, mp.start, mp.next, len(mp.recs)))
	}
	return out
}

// TestCanonicalKey: a key names what it updates, whatever its version
// and whatever follows its fields (replay reads past those): a
// tombstone under any spelling deletes the record under another. Keys
// as this broker writes them are kept as they are.
func TestCanonicalKey(t *testing.T) {
	offset, group := offsetKey("g", "t", 3), groupMetadataKey("g")
	v0 := kmsg.OffsetCommitKey{Version: keyOffsetCommitV0, Group: "g", Topic: "t", Partition: 3}
	for _, c := range []struct {
		name      string
		key, want []byte
	}{
		{"offset key", offset, offset},
		{"offset key of version 0", v0.AppendTo(nil), offset},
		{"offset key with bytes after it", append(bytes.Clone(offset), '0'), offset},
		{"group key", group, group},
		{"group key with bytes after it", append(bytes.Clone(group), 1, 2), group},
		{"KIP-848 key", consumerGroupKey(keyConsumerGroupMetadata, "g"), consumerGroupKey(keyConsumerGroupMetadata, "g")},
		{"short key", []byte{0, 1, 0}, []byte{0, 1, 0}},
	} {
		k, key := canonicalKey(c.key)
		if !bytes.Equal(key, c.want) || k != string(c.want) {
			t.Errorf("%s: canonicalKey(%x) = %x, want %x", c.name, c.key, key, c.want)
		}
	}
}
