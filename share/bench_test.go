package share

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// nullStore keeps nothing: the benchmarks measure the engine, not a disk.
type nullStore struct{ appends atomic.Int64 }

func (s *nullStore) Append(int32, []Record) (int64, error) {
	return s.appends.Add(1), nil
}
func (*nullStore) Replay(int32, func(int64, Record) error) error { return nil }
func (*nullStore) Snapshot(int32, []Record) error                { return nil }

// endlessReader is a partition log that never ends: batches of batchLen
// records, every offset present, computed rather than stored.
type endlessReader struct{ batchLen int64 }

func (r endlessReader) Offsets(TopicPartition) (PartitionOffsets, error) {
	return PartitionOffsets{HighWatermark: 1 << 50, LastStable: 1 << 50}, nil
}
func (r endlessReader) OffsetForTime(TopicPartition, int64) (int64, error) { return 0, nil }
func (r endlessReader) ReadBatches(dst []Batch, _ TopicPartition, from, limit int64, maxRecords int) ([]Batch, error) {
	base := from - from%r.batchLen
	for covered := int64(0); covered < int64(maxRecords) && base < limit; base += r.batchLen {
		dst = append(dst, Batch{BaseOffset: base, LastOffset: base + r.batchLen - 1, ProducerID: -1})
		covered += base + r.batchLen - max(base, from)
	}
	return dst, nil
}
func (endlessReader) DeliveryTimes(dst []RecordTime, _ TopicPartition, _ *Batch) ([]RecordTime, error) {
	return dst, nil
}
func (endlessReader) AbortedTransactions(dst []AbortedRange, _ TopicPartition, _, _ int64) ([]AbortedRange, error) {
	return dst, nil
}

func earliest(string) map[string]string {
	return map[string]string{GroupAutoOffsetReset: "earliest"}
}

// BenchmarkAcquireAccept measures the engine's share of a consume loop:
// members acquire up to 500 records (batches of 10) of one partition and
// accept them all, each from its own goroutine. One op is one record.
func BenchmarkAcquireAccept(b *testing.B) {
	for _, members := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			tp := TopicPartition{topicID("t"), 0}
			topics := map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}}
			c, err := New(Config{
				Store:           &nullStore{},
				Reader:          endlessReader{batchLen: 10},
				Topics:          func() map[string]TopicInfo { return topics },
				StatePartitions: 1,
				GroupConfigs:    earliest,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			const perFetch = 500
			var done atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for m := range members {
				wg.Go(func() {
					member := fmt.Sprintf("m%d", m)
					dst := make([]acquiredRange, 0, 64)
					batches := make([]AckBatch, 0, 64)
					types := []int8{ackAccept}
					for done.Load() < int64(b.N) {
						got, e := c.Acquire(AcquireOptions{Group: "g", Member: member, Partition: tp, MaxRecords: perFetch}, dst[:0])
						if e != nil {
							b.Error(e)
							return
						}
						if len(got) == 0 {
							// The in-flight window is full of others'
							// records; a ShareFetch would wait.
							runtime.Gosched()
							continue
						}
						batches = batches[:0]
						n := int64(0)
						for _, r := range got {
							batches = append(batches, AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: types})
							n += r.LastOffset - r.FirstOffset + 1
						}
						if e := c.Acknowledge("g", member, tp, batches, false); e != nil {
							b.Error(e)
							return
						}
						done.Add(n)
						dst = got
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(done.Load())/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// TestAcquireAcceptAllocs checks that a whole-batch acquire and accept
// allocates nothing per record: the allocations of one round do not grow
// with the records in it.
func TestAcquireAcceptAllocs(t *testing.T) {
	tp := TopicPartition{topicID("t"), 0}
	topics := map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}}
	c, err := New(Config{
		Store:           &nullStore{},
		Reader:          endlessReader{batchLen: 10},
		Topics:          func() map[string]TopicInfo { return topics },
		StatePartitions: 1,
		GroupConfigs:    earliest,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	round := func(records int) float64 {
		dst := make([]acquiredRange, 0, 64)
		batches := make([]AckBatch, 0, 64)
		types := []int8{ackAccept}
		return testing.AllocsPerRun(50, func() {
			got, e := c.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: records}, dst[:0])
			if e != nil || len(got) == 0 {
				t.Fatal("nothing acquired", e)
			}
			batches = batches[:0]
			for _, r := range got {
				batches = append(batches, AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset, Types: types})
			}
			if e := c.Acknowledge("g", "m", tp, batches, false); e != nil {
				t.Fatal(e)
			}
		})
	}
	small, large := round(10), round(1000)
	t.Logf("allocations per round: %v with 10 records, %v with 1000", small, large)
	if large > small {
		t.Errorf("a round of 1000 records allocates %v times, one of 10 %v: allocations grow with records", large, small)
	}
}

// BenchmarkRedeliver measures how long records held by a member take to
// reach another once the first is gone: a releases the 1,000 records it
// holds (as when its session ends; the release is written behind) and b
// acquires them. One op is the 1,000 records.
func BenchmarkRedeliver(b *testing.B) {
	tp := TopicPartition{topicID("t"), 0}
	topics := map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}}
	c, err := New(Config{
		Store:           &nullStore{},
		Reader:          endlessReader{batchLen: 10},
		Topics:          func() map[string]TopicInfo { return topics },
		StatePartitions: 1,
		GroupConfigs:    earliest,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	dst := make([]acquiredRange, 0, 64)
	ack := []AckBatch{{Types: []int8{ackAccept}}}
	tps := []TopicPartition{tp}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		got, _ := c.Acquire(AcquireOptions{Group: "g", Member: "a", Partition: tp, MaxRecords: 1000}, dst[:0])
		if len(got) == 0 {
			b.Fatal("nothing acquired")
		}
		b.StartTimer()
		c.ReleaseSession("g", "a", tps)
		got, _ = c.Acquire(AcquireOptions{Group: "g", Member: "b", Partition: tp, MaxRecords: 1000}, dst[:0])
		b.StopTimer()
		if len(got) != 1 || got[0].LastOffset-got[0].FirstOffset != 999 {
			b.Fatalf("b acquired %s", formatRanges(got))
		}
		ack[0].FirstOffset, ack[0].LastOffset = got[0].FirstOffset, got[0].LastOffset
		if e := c.Acknowledge("g", "b", tp, ack, false); e != nil {
			b.Fatal(e)
		}
		b.StartTimer()
	}
}
