package partition

import (
	"fmt"

	"github.com/ferrymq/ferry/record"
)

// findInBatch returns the offset and timestamp of the first record of the
// batch whose timestamp is at or above ts (max: the first record holding
// the batch's max timestamp). With LogAppendTime every record has the
// batch's max timestamp.
func findInBatch(batch []byte, ts int64, max bool) (int64, int64, error) {
	h, err := record.Parse(batch)
	if err != nil {
		return 0, 0, err
	}
	if max {
		ts = h.MaxTimestamp
	}
	if h.LogAppendTime() {
		return h.BaseOffset, h.MaxTimestamp, nil
	}
	recs, err := record.Decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
	if err != nil {
		// Cannot look inside: the batch as a whole qualifies.
		return h.BaseOffset, h.MaxTimestamp, nil
	}
	off, found := h.BaseOffset, h.MaxTimestamp
	done := fmt.Errorf("found")
	err = record.ForEachIn(recs, h.RecordCount, func(r *record.Record) error {
		if t := h.BaseTimestamp + r.TimestampDelta; t >= ts {
			off, found = h.BaseOffset+int64(r.OffsetDelta), t
			return done
		}
		return nil
	})
	if err != nil && err != done {
		return h.BaseOffset, h.MaxTimestamp, nil
	}
	return off, found, nil
}

// OffsetForTimestamp returns the offset and timestamp of the first record
// whose timestamp is at or above ts. ok is false when there is none.
func (p *Partition) OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool, err error) {
	v, ok, err := p.log.FindTimestamp(ts)
	if err != nil || !ok {
		return 0, 0, false, err
	}
	defer v.Release()
	offset, timestamp, err = findInBatch(v.Data, ts, false)
	return offset, timestamp, err == nil, err
}

// MaxTimestamp returns the offset and timestamp of the record with the
// largest timestamp (KIP-734). ok is false for an empty log.
func (p *Partition) MaxTimestamp() (offset, timestamp int64, ok bool, err error) {
	v, ok, err := p.log.MaxTimestamp()
	if err != nil || !ok {
		return 0, 0, false, err
	}
	defer v.Release()
	offset, timestamp, err = findInBatch(v.Data, 0, true)
	return offset, timestamp, err == nil, err
}
