package partition

import (
	"cmp"
	"errors"
	"slices"

	"github.com/ferrymq/ferry/record"
)

// TimestampMatch answers one timestamp lookup: the offset and timestamp of
// the first record whose timestamp is at or above the one looked up. OK is
// false when there is none.
type TimestampMatch struct {
	Offset    int64
	Timestamp int64
	OK        bool
}

// batchRecords is a batch whose records are being searched: its header
// and its records section, decompressed.
type batchRecords struct {
	h    record.Header
	recs []byte // nil when the records could not be decompressed
}

// decode parses batch and decompresses its records. The result aliases
// batch when the batch is not compressed.
func decode(batch []byte) (*batchRecords, error) {
	b := &batchRecords{}
	var err error
	if b.h, err = record.Parse(batch); err != nil {
		return nil, err
	}
	if b.h.LogAppendTime() {
		return b, nil // every record has the batch's max timestamp
	}
	// Not decompressible (or too large): the batch as a whole qualifies.
	b.recs, _ = record.Decompress(b.h.Codec(), batch[record.HeaderSize:b.h.Size()])
	return b, nil
}

var errFound = errors.New("found")

// find returns the offset and timestamp of the first record of the batch
// whose timestamp is at or above ts. With LogAppendTime every record has
// the batch's max timestamp; a batch whose records cannot be read answers
// as a whole.
func (b *batchRecords) find(ts int64) (int64, int64) {
	h := &b.h
	if h.LogAppendTime() || b.recs == nil {
		return h.BaseOffset, h.MaxTimestamp
	}
	off, found := h.BaseOffset, h.MaxTimestamp
	err := record.ForEachIn(b.recs, h.RecordCount, func(r *record.Record) error {
		if t := h.BaseTimestamp + r.TimestampDelta; t >= ts {
			off, found = h.BaseOffset+int64(r.OffsetDelta), t
			return errFound
		}
		return nil
	})
	if err != nil && err != errFound {
		return h.BaseOffset, h.MaxTimestamp
	}
	return off, found
}

// OffsetForTimestamp returns the offset and timestamp of the first record
// whose timestamp is at or above ts. ok is false when there is none.
func (p *Partition) OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool, err error) {
	m, err := p.OffsetsForTimestamps([]int64{ts})
	if err != nil {
		return 0, 0, false, err
	}
	return m[0].Offset, m[0].Timestamp, m[0].OK, nil
}

// OffsetsForTimestamps is OffsetForTimestamp for several timestamps at
// once: the i-th match answers ts[i]. Each batch is decompressed at most
// once, however many of the timestamps fall in it, so one request naming a
// partition many times costs one decompression per batch it reaches.
func (p *Partition) OffsetsForTimestamps(ts []int64) ([]TimestampMatch, error) {
	out := make([]TimestampMatch, len(ts))
	// In increasing order of timestamp the batches found never go back,
	// so keeping the last one decoded is enough.
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ts[a], ts[b]) })
	var last *batchRecords
	for _, i := range order {
		v, ok, err := p.log.FindTimestamp(ts[i])
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // nor for any later timestamp
		}
		b := last
		if b == nil || b.h.BaseOffset != record.BaseOffset(v.Data) {
			if b, err = decode(v.Data); err != nil {
				v.Release()
				return nil, err
			}
			// Keep it for the next lookup unless its records alias the
			// mapping, released below (nothing to decompress then).
			last = nil
			if b.h.Codec() != record.CodecNone {
				last = b
			}
		}
		out[i].Offset, out[i].Timestamp = b.find(ts[i])
		out[i].OK = true
		v.Release()
	}
	return out, nil
}

// MaxTimestamp returns the offset and timestamp of the record with the
// largest timestamp (KIP-734). ok is false for an empty log.
func (p *Partition) MaxTimestamp() (offset, timestamp int64, ok bool, err error) {
	v, ok, err := p.log.MaxTimestamp()
	if err != nil || !ok {
		return 0, 0, false, err
	}
	defer v.Release()
	b, err := decode(v.Data)
	if err != nil {
		return 0, 0, false, err
	}
	offset, timestamp = b.find(b.h.MaxTimestamp)
	return offset, timestamp, true, nil
}
