package partition

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// BenchmarkAppend measures Partition.Append (validation with the record
// walk, the log append into the page cache and the traffic counters) of
// one produced batch, without fsync: the per-batch work of a produce.
func BenchmarkAppend(b *testing.B) {
	for _, shape := range []struct{ records, size int }{{100, 14}, {16, 1024}} {
		recs := make([]record.Record, shape.records)
		for i := range recs {
			recs[i] = record.Record{Value: bytes.Repeat([]byte("v"), shape.size), TimestampDelta: int64(i), OffsetDelta: int32(i)}
		}
		data := record.AppendBatch(nil, record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
		b.Run(fmt.Sprintf("records=%d/size=%d", shape.records, shape.size), func(b *testing.B) {
			p, err := Open(b.TempDir(), Config{Log: log.Config{Stats: NewStorageStats(), FlushMaxDelayMs: math.MaxInt64}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Append(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
