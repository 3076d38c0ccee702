package partition

import (
	"sync/atomic"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/segment"
)

// counters count a partition's traffic with atomic adds, read by the
// broker's metrics collector at scrape time.
type counters struct {
	// bytesIn and recordsIn count the batches appended (retries answered
	// from the producer state are not).
	bytesIn, recordsIn atomic.Int64
	// bytesOut and recordsOut count what fetches sent (CountFetched).
	bytesOut, recordsOut atomic.Int64
}

// Stats is a partition's traffic and size at one moment.
type Stats struct {
	// BytesIn and RecordsIn count the record batches appended since the
	// partition was opened: their bytes as stored and their records.
	BytesIn, RecordsIn int64
	// BytesOut and RecordsOut count what fetches sent to clients since
	// the partition was opened (see CountFetched).
	BytesOut, RecordsOut int64
	// Size is the bytes of its segments; Segments their number.
	Size     int64
	Segments int
	// LogStartOffset, HighWatermark and LogEndOffset are the partition's
	// offsets.
	LogStartOffset, HighWatermark, LogEndOffset int64
	// Failed is set when a write or fsync failed: the partition refuses
	// appends until the broker restarts.
	Failed bool
}

// Stats returns the partition's traffic counters, size and offsets. It
// takes the log's segment lock briefly (for the size), never the append
// lock.
func (p *Partition) Stats() Stats {
	return Stats{
		BytesIn:        p.counters.bytesIn.Load(),
		RecordsIn:      p.counters.recordsIn.Load(),
		BytesOut:       p.counters.bytesOut.Load(),
		RecordsOut:     p.counters.recordsOut.Load(),
		Size:           p.log.Size(),
		Segments:       p.log.Segments(),
		LogStartOffset: p.LogStartOffset(),
		HighWatermark:  p.HighWatermark(),
		LogEndOffset:   p.LogEndOffset(),
		Failed:         p.log.Err() != nil,
	}
}

// CountFetched counts bytes and records a fetch sent to a client from
// this partition. The server calls it once a response holding them is
// built, so reads that a long poll discards are not counted.
func (p *Partition) CountFetched(bytes, records int64) {
	p.counters.bytesOut.Add(bytes)
	p.counters.recordsOut.Add(records)
}

// StorageStats counts the fsyncs of every partition of a broker (see
// log.Stats): give one to every partition in Config.Log.Stats.
type StorageStats = log.Stats

// NewStorageStats returns empty fsync counters.
func NewStorageStats() *StorageStats { return log.NewStats() }

// FileCacheStats describes the broker-wide cache of segment files and
// mappings (see segment.FileCache).
type FileCacheStats = segment.CacheStats

// FileCache returns what the process-wide segment file cache (the one
// partitions use unless their log config names another) holds.
func FileCache() FileCacheStats { return segment.DefaultFileCache().Stats() }
