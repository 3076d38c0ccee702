package meta

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkCreateTopic creates one topic of n partitions per iteration
// and reports the time per partition.
func BenchmarkCreateTopic(b *testing.B) {
	for _, n := range []int32{100, 1000} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			s, err := Open(Config{DataDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				if _, err := s.CreateTopic(NewTopic{Name: fmt.Sprint("t", i), Partitions: n, ReplicationFactor: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N)/float64(n), "µs/partition")
		})
	}
}
