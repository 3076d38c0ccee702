// Package metric holds the counting types of the storage stack and the
// server: a fixed-bucket histogram whose Observe is an atomic add, with no
// lock and no allocation, read by a Snapshot at scrape time. It knows
// nothing of Prometheus: the packages that count (log, server) stay free
// of it, and the broker's collector (package server) turns snapshots into
// Prometheus histograms. It imports only the standard library.
//
// Concurrency: every method is safe for concurrent use. A Snapshot taken
// while observations are being made may count an observation in its
// bucket but not yet in its sum (or the reverse); bucket counts are read
// one by one, so the count is always the sum of the buckets and never
// goes down from one snapshot to the next.
//
// Usage:
//
//	h := metric.NewHistogram(metric.LatencyBounds)
//	start := time.Now()
//	...
//	h.Observe(int64(time.Since(start)))
//	s := h.Snapshot() // s.Buckets[i] counts observations <= s.Bounds[i]
package metric
