package coordstate

import (
	"fmt"
	"time"

	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// keyValue is the shape of a coordinator's record.
type keyValue = struct{ Key, Value []byte }

// Store keeps coordinator records of type R in the partitions of one
// internal topic. See the package comment.
type Store[R ~struct{ Key, Value []byte }] struct {
	// topic names the internal topic, for errors.
	topic string
	// partition returns partition p of the topic, or why it cannot.
	partition func(p int32) (*partition.Partition, error)
}

// New returns a store over the partitions of topic, found with partition
// (a meta.Topic's Partition method).
func New[R ~struct{ Key, Value []byte }](topic string, partition func(p int32) (*partition.Partition, error)) *Store[R] {
	return &Store[R]{topic: topic, partition: partition}
}

func (s *Store[R]) get(p int32) (*partition.Partition, error) {
	part, err := s.partition(p)
	if err != nil {
		return nil, fmt.Errorf("coordstate: %s partition %d: %w", s.topic, p, err)
	}
	return part, nil
}

// Append writes recs as one batch to partition p (all or nothing) and
// fsyncs it; on the leader of a replicated partition it is an acks=all
// append: refused before it is written when the ISR is smaller than
// min.insync.replicas, answered once every in-sync replica has it. It
// returns the offset of the first record.
func (s *Store[R]) Append(p int32, recs []R) (int64, error) {
	if part, err := s.get(p); err != nil {
		return 0, err
	} else if err := part.CheckMinISR(); err != nil {
		return 0, err
	}
	off, err := s.AppendNoSync(p, recs)
	if err != nil || len(recs) == 0 {
		return off, err
	}
	part, err := s.get(p)
	if err != nil {
		return 0, err
	}
	return off, part.Sync()
}

// AppendNoSync is Append without waiting for durability: the batch is in
// the partition's log (read by a replay after a process restart) and
// becomes durable with the next Append or Snapshot of the partition, or
// the log's background flush. For records whose loss to a power cut the
// coordinator recovers from (the transaction coordinator's Complete
// records).
func (s *Store[R]) AppendNoSync(p int32, recs []R) (int64, error) {
	part, err := s.get(p)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return part.HighWatermark(), nil
	}
	res, err := part.Append(batch(recs))
	if err != nil {
		return 0, err
	}
	return res.BaseOffset, nil
}

// batch encodes recs as one uncompressed record batch.
func batch[R ~struct{ Key, Value []byte }](recs []R) []byte {
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		kv := keyValue(r)
		rs[i] = record.Record{Key: kv.Key, Value: kv.Value}
	}
	return record.AppendBatch(nil, record.Batch{
		BaseTimestamp: time.Now().UnixMilli(),
		ProducerID:    -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: rs,
	})
}

// Replay calls fn for every record of partition p from its log start, in
// order, but those of control batches (transaction markers written to
// __consumer_offsets in a cluster, which only the partition's producer
// state reads). r's slices alias the log and are valid only during the
// call. An error from fn stops the replay and is returned.
func (s *Store[R]) Replay(p int32, fn func(offset int64, r R) error) error {
	part, err := s.get(p)
	if err != nil {
		return err
	}
	start := part.LogStartOffset()
	var ferr error
	err = part.Walk(start, func(b []byte, h *record.Header) bool {
		if h.IsControl() {
			return true
		}
		ferr = record.ForEach(b, func(r *record.Record) error {
			off := h.BaseOffset + int64(r.OffsetDelta)
			if off < start {
				return nil
			}
			return fn(off, R(keyValue{Key: r.Key, Value: r.Value}))
		})
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// maxSnapshotBatch bounds each batch of a snapshot, which may hold every
// live record of a partition and is written in as many batches as needed.
const maxSnapshotBatch = 1 << 20

// Snapshot compacts partition p: it appends recs (the live state) durably
// and then moves the log start offset to the first of them, so everything
// older may be deleted; with no recs the log start moves to the log end.
func (s *Store[R]) Snapshot(p int32, recs []R) error {
	part, err := s.get(p)
	if err != nil {
		return err
	}
	start := int64(-1)
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) {
			kv := keyValue(recs[n])
			sz := len(kv.Key) + len(kv.Value) + 32
			if n > 0 && size+sz >= maxSnapshotBatch {
				break
			}
			size += sz
			n++
		}
		res, err := part.Append(batch(recs[:n]))
		if err != nil {
			return err
		}
		if start < 0 {
			start = res.BaseOffset
		}
		recs = recs[n:]
	}
	if err := part.Sync(); err != nil {
		return err
	}
	if start < 0 {
		start = part.HighWatermark()
	}
	_, err = part.DeleteRecords(start)
	return err
}
