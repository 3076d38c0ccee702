package shareio

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/share"
)

// deliverAtKey is the header name as it appears in an uncompressed
// record: a batch whose records do not contain it carries no delay.
var deliverAtKey = []byte(share.HeaderDeliverAt)

// Reader implements share.Reader over the partitions of a metadata store.
type Reader struct {
	meta *meta.Store
}

var _ share.Reader = (*Reader)(nil)

// NewReader returns a Reader over the partitions of st.
func NewReader(st *meta.Store) *Reader { return &Reader{meta: st} }

// partition returns the partition tp names, or an error wrapping
// share.ErrUnknownPartition when there is none (an offline partition is a
// storage error).
func (r *Reader) partition(tp share.TopicPartition) (*partition.Partition, error) {
	t := r.meta.TopicByID(tp.TopicID)
	if t == nil {
		return nil, fmt.Errorf("%w: topic %s", share.ErrUnknownPartition, meta.TopicIDString(tp.TopicID))
	}
	p, err := t.Partition(tp.Partition)
	if errors.Is(err, meta.ErrUnknownTopicOrPartition) {
		return nil, fmt.Errorf("%w: %s-%d", share.ErrUnknownPartition, t.Name(), tp.Partition)
	}
	return p, err
}

// Offsets returns the partition's log start offset, high watermark (the
// durable offset) and last stable offset (below the first offset of the
// oldest open transaction; the high watermark without one).
func (r *Reader) Offsets(tp share.TopicPartition) (share.PartitionOffsets, error) {
	p, err := r.partition(tp)
	if err != nil {
		return share.PartitionOffsets{}, err
	}
	// In a cluster only the leader serves the partition's share-partitions.
	leading, epoch := p.Leader()
	if !leading {
		return share.PartitionOffsets{}, fmt.Errorf("%w: %s-%d", share.ErrNotLeader, meta.TopicIDString(tp.TopicID), tp.Partition)
	}
	// The last stable offset first: it never passes the high watermark
	// read after it.
	lso := p.LastStableOffset()
	return share.PartitionOffsets{
		LogStart:      p.LogStartOffset(),
		HighWatermark: p.HighWatermark(),
		LastStable:    lso,
		LeaderEpoch:   epoch,
	}, nil
}

// OffsetForTime returns the first offset whose timestamp is at or after
// ms, or the high watermark.
func (r *Reader) OffsetForTime(tp share.TopicPartition, ms int64) (int64, error) {
	p, err := r.partition(tp)
	if err != nil {
		return 0, err
	}
	off, _, ok, err := p.OffsetForTimestamp(ms)
	if err != nil {
		return 0, err
	}
	if !ok {
		return p.HighWatermark(), nil
	}
	return off, nil
}

// ReadBatches appends the headers of the batches of tp from the one
// holding from, below limit, until they cover maxRecords offsets; see
// share.Reader.
func (r *Reader) ReadBatches(dst []share.Batch, tp share.TopicPartition, from, limit int64, maxRecords int) ([]share.Batch, error) {
	p, err := r.partition(tp)
	if err != nil {
		return dst, err
	}
	from = max(from, p.LogStartOffset())
	if from >= limit {
		return dst, nil
	}
	covered := int64(0)
	err = p.Walk(from, func(b []byte, h *record.Header) bool {
		if h.BaseOffset >= limit {
			return false
		}
		dst = append(dst, share.Batch{
			BaseOffset:    h.BaseOffset,
			LastOffset:    h.LastOffset(),
			MaxTimestamp:  h.MaxTimestamp,
			ProducerID:    h.ProducerID,
			Control:       h.IsControl(),
			Transactional: h.IsTransactional(),
			MayDelay:      mayDelay(b, h),
		})
		covered += h.LastOffset() - max(h.BaseOffset, from) + 1
		return covered < int64(maxRecords)
	})
	return dst, err
}

// mayDelay reports whether a record of the batch may carry the
// delivery-time header: a compressed batch may; an uncompressed one only
// if its records contain the header's name.
func mayDelay(b []byte, h *record.Header) bool {
	switch {
	case h.IsControl():
		return false
	case h.Codec() != record.CodecNone:
		return true
	}
	return bytes.Contains(b[record.HeaderSize:h.Size()], deliverAtKey)
}

// DeliveryTimes appends the delivery time of every record of b that has
// a valid ferry-deliver-at header, decompressing the batch if it must.
func (r *Reader) DeliveryTimes(dst []share.RecordTime, tp share.TopicPartition, b *share.Batch) ([]share.RecordTime, error) {
	p, err := r.partition(tp)
	if err != nil {
		return dst, err
	}
	v, err := p.ReadTo(b.BaseOffset, b.BaseOffset+1, 1, true)
	if err != nil {
		return dst, err
	}
	defer v.Release()
	if len(v.Data) == 0 {
		return dst, fmt.Errorf("shareio: batch at %d not found", b.BaseOffset)
	}
	h, err := record.Parse(v.Data)
	if err != nil {
		return dst, err
	}
	if h.BaseOffset != b.BaseOffset {
		return dst, fmt.Errorf("shareio: batch at %d not found (found %d)", b.BaseOffset, h.BaseOffset)
	}
	// Records that cannot be decoded carry no delay the broker can read:
	// they are delivered at once (the consumer sees what is wrong), never
	// held back for good.
	recs, err := record.Decompress(h.Codec(), v.Data[record.HeaderSize:h.Size()])
	if err != nil {
		return dst, nil
	}
	record.ForEachIn(recs, h.RecordCount, func(rec *record.Record) error {
		for _, hd := range rec.Headers {
			if hd.Key != share.HeaderDeliverAt {
				continue
			}
			if ms, err := strconv.ParseInt(string(hd.Value), 10, 64); err == nil {
				dst = append(dst, share.RecordTime{Offset: h.BaseOffset + int64(rec.OffsetDelta), DeliverAt: ms})
				break
			}
		}
		return nil
	})
	return dst, nil
}

// AbortedTransactions appends the aborted transactions of tp that
// overlap offsets [from, to), from the partition's aborted-transaction
// index, as a read_committed Fetch reports them.
func (r *Reader) AbortedTransactions(dst []share.AbortedRange, tp share.TopicPartition, from, to int64) ([]share.AbortedRange, error) {
	p, err := r.partition(tp)
	if err != nil {
		return dst, err
	}
	txns, err := p.AbortedTxns(from, to)
	if err != nil {
		return dst, err
	}
	for _, a := range txns {
		dst = append(dst, share.AbortedRange{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset, LastOffset: a.LastOffset})
	}
	return dst, nil
}
