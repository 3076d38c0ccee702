package log

import "github.com/ferrymq/ferry/internal/metric"

// Stats counts the group-committed fsyncs of every log of a broker: one
// Stats is shared by all of them (Config.Stats) and read by the broker's
// metrics collector. Counting is an atomic add per fsync, outside every
// lock; appends only add to plain fields under the append lock they
// already hold.
type Stats struct {
	// FsyncLatency observes the nanoseconds of each fsync round of Sync
	// (the active segment, and rolled segments still being sealed).
	FsyncLatency *metric.Histogram
	// FsyncBytes observes the bytes each fsync round made durable: those
	// appended since the round before.
	FsyncBytes *metric.Histogram
	// GroupCommit observes the batches each fsync round made durable:
	// how many appends (produce requests, for one partition) shared one
	// fsync.
	GroupCommit *metric.Histogram
}

// NewStats returns empty fsync counters.
func NewStats() *Stats {
	return &Stats{
		FsyncLatency: metric.NewHistogram(metric.LatencyBounds),
		FsyncBytes:   metric.NewHistogram(metric.SizeBounds),
		GroupCommit:  metric.NewHistogram(metric.CountBounds),
	}
}
