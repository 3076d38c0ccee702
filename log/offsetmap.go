package log

import (
	"hash/maphash"
	"math/bits"
)

// offsetMapSlotSize is the memory one slot of an offsetMap takes: a 128-bit
// hash of the key and an offset.
const offsetMapSlotSize = 24

// offsetMap maps the keys of the dirty part of a log to the offset of
// their newest record, in fixed memory, as Kafka's SkimpyOffsetMap does:
// it stores a 128-bit hash of each key instead of the key, in an open
// addressing table (double hashing, a power of two of slots). Two keys
// whose hashes collide would pass for one; at 128 bits, with a seed
// chosen at random for each map, that is as unlikely as in Kafka's MD5.
// Not safe for concurrent use: each cleaner thread has its own.
type offsetMap struct {
	// slots is the table in use, a power of two long; an offset of 0 in a
	// slot means empty (offsets are stored plus one).
	slots []offsetSlot
	// mem is the slots' backing array, as large as any pass needed so
	// far; slots is its prefix.
	mem []offsetSlot
	// maxSlots bounds len(mem): the dedupe buffer's share of this map.
	maxSlots int
	// loadFactor bounds the entries to this share of the slots.
	loadFactor float64
	// entries counts the keys put; limit is the most allowed.
	entries, limit int
	seed1, seed2   maphash.Seed
}

type offsetSlot struct {
	h1, h2 uint64
	off    int64 // offset+1; 0: empty
}

// newOffsetMap returns a map that may use memBytes of slots, filled to at
// most loadFactor of them (log.cleaner.dedupe.buffer.size divided among
// the cleaner threads, log.cleaner.io.buffer.load.factor).
func newOffsetMap(memBytes int64, loadFactor float64) *offsetMap {
	n := memBytes / offsetMapSlotSize
	if n < 2 {
		n = 2
	}
	// A power of two of slots, the largest that fits.
	maxSlots := 1 << (bits.Len64(uint64(n)) - 1)
	if loadFactor <= 0 || loadFactor > 1 {
		loadFactor = 0.9
	}
	return &offsetMap{maxSlots: maxSlots, loadFactor: loadFactor}
}

// maxEntries is the most keys the map can hold at its largest.
func (m *offsetMap) maxEntries() int {
	return min(max(int(float64(m.maxSlots)*m.loadFactor), 1), m.maxSlots-1)
}

// reset empties the map, sized for want keys (fewer if its memory does not
// allow), and picks new hash seeds.
func (m *offsetMap) reset(want int64) {
	n := 2
	for n < m.maxSlots && float64(n)*m.loadFactor < float64(want) {
		n *= 2
	}
	if len(m.mem) < n {
		m.mem = make([]offsetSlot, n)
	} else {
		clear(m.mem[:n])
	}
	m.slots = m.mem[:n]
	m.entries = 0
	// One slot stays empty whatever the load factor, so lookups end.
	m.limit = min(max(int(float64(n)*m.loadFactor), 1), n-1)
	m.seed1, m.seed2 = maphash.MakeSeed(), maphash.MakeSeed()
}

// room reports whether n more keys fit.
func (m *offsetMap) room(n int) bool { return m.entries+n <= m.limit }

// put records off as the newest offset of key. The caller checks room
// first; put on a full map is a bug.
func (m *offsetMap) put(key []byte, off int64) {
	h1, h2 := maphash.Bytes(m.seed1, key), maphash.Bytes(m.seed2, key)
	mask := uint64(len(m.slots) - 1)
	step := h2 | 1
	for i := h1 & mask; ; i = (i + step) & mask {
		s := &m.slots[i]
		if s.off == 0 {
			if m.entries >= m.limit {
				panic("log: offset map over its limit")
			}
			*s = offsetSlot{h1: h1, h2: h2, off: off + 1}
			m.entries++
			return
		}
		if s.h1 == h1 && s.h2 == h2 {
			s.off = off + 1
			return
		}
	}
}

// get returns the newest offset recorded for key, or -1.
func (m *offsetMap) get(key []byte) int64 {
	if m.entries == 0 {
		return -1
	}
	h1, h2 := maphash.Bytes(m.seed1, key), maphash.Bytes(m.seed2, key)
	mask := uint64(len(m.slots) - 1)
	step := h2 | 1
	for i := h1 & mask; ; i = (i + step) & mask {
		s := &m.slots[i]
		if s.off == 0 {
			return -1
		}
		if s.h1 == h1 && s.h2 == h2 {
			return s.off - 1
		}
	}
}
