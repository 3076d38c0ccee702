package metric

import "sync/atomic"

// LatencyBounds are bucket bounds for durations in nanoseconds, from
// 100µs to 10s in steps of about 2.5x: request latencies and fsyncs.
var LatencyBounds = []int64{
	100e3, 250e3, 500e3,
	1e6, 2.5e6, 5e6,
	10e6, 25e6, 50e6,
	100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9,
}

// SizeBounds are bucket bounds for sizes in bytes, powers of 4 from 1 KiB
// to 256 MiB: bytes written per fsync.
var SizeBounds = []int64{
	1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10,
	1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20,
}

// CountBounds are bucket bounds for small counts, powers of 2 from 1 to
// 1024: callers served by one group-committed fsync.
var CountBounds = []int64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// Histogram counts observations of int64 values in buckets with fixed,
// inclusive upper bounds, plus one for values above the last bound. Its
// zero value is not usable: make one with NewHistogram.
type Histogram struct {
	// bounds are the buckets' upper bounds, ascending; shared, never
	// changed.
	bounds []int64
	// counts[i] counts observations v with bounds[i-1] < v <= bounds[i];
	// the last one those above every bound.
	counts []atomic.Uint64
	// sum is the sum of every value observed.
	sum atomic.Int64
}

// NewHistogram returns a histogram with the given bucket upper bounds,
// which must be ascending. The slice is kept, not copied.
func NewHistogram(bounds []int64) *Histogram {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("metric: histogram bounds not ascending")
		}
	}
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts one value: two atomic adds, no lock, no allocation.
func (h *Histogram) Observe(v int64) {
	// Binary search for the first bound at or above v.
	lo, hi := 0, len(h.bounds)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.bounds[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h.counts[lo].Add(1)
	h.sum.Add(v)
}

// Snapshot is a histogram's counts at one moment.
type Snapshot struct {
	// Bounds are the buckets' upper bounds (shared: do not modify).
	Bounds []int64
	// Cumulative[i] counts the observations at or below Bounds[i].
	Cumulative []uint64
	// Count counts every observation, those above the last bound too.
	Count uint64
	// Sum is the sum of the values observed.
	Sum int64
}

// Snapshot reads the histogram's counts.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds))}
	var n uint64
	for i := range h.bounds {
		n += h.counts[i].Load()
		s.Cumulative[i] = n
	}
	s.Count = n + h.counts[len(h.bounds)].Load()
	s.Sum = h.sum.Load()
	return s
}
