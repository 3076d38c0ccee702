package record

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The log cleaner (package log) reads records without decoding their
// headers, decides which to keep, and writes batches holding only those
// (Retain). It works on records sections, decompressed.

// RawRecord is one record of a records section, as ForEachRaw finds it.
// Its slices alias the section.
type RawRecord struct {
	// Raw is the whole record, its length prefix included.
	Raw []byte
	// TimestampDelta and OffsetDelta are the record's deltas from its
	// batch's base timestamp and base offset.
	TimestampDelta int64
	OffsetDelta    int32
	// Key and Value are nil when null; a nil Value is a tombstone.
	Key, Value []byte
	// attributes is the record's attributes byte (unused by Kafka).
	attributes byte
	// tail is the record from its key length on: what Retain copies when
	// it writes the record with another timestamp delta.
	tail []byte
}

// ForEachRaw calls fn for each of the count records of the records
// section recs, in order, until fn returns false; see RawRecords, which it
// uses, for what it checks.
func ForEachRaw(recs []byte, count int32, fn func(r *RawRecord) bool) error {
	it := NewRawRecords(recs, count)
	for it.Next() {
		if !fn(&it.Record) {
			return nil
		}
	}
	return it.Err()
}

// RawRecords iterates over the records of a records section without
// decoding their headers:
//
//	it := record.NewRawRecords(recs, h.RecordCount)
//	for it.Next() {
//		use(&it.Record)
//	}
//	err := it.Err()
//
// It checks that each record's length, deltas, key and value lie inside
// it and, at the end, that the records fill the section; errors wrap
// ErrCorrupt. It allocates nothing.
type RawRecords struct {
	// Record is the current record, valid until the next call to Next.
	Record RawRecord
	recs   []byte
	count  int32
	i      int32
	pos    int
	err    error
}

// NewRawRecords returns an iterator over the count records of recs.
func NewRawRecords(recs []byte, count int32) RawRecords {
	return RawRecords{recs: recs, count: count}
}

// Next moves to the next record and reports whether there is one; at the
// end, or at a record that does not decode, it returns false.
func (it *RawRecords) Next() bool {
	if it.err != nil {
		return false
	}
	recs, pos, i := it.recs, it.pos, it.i
	if i >= it.count {
		if pos != len(recs) {
			it.err = fmt.Errorf("%w: %d bytes after the %d records the header says", ErrCorrupt, len(recs)-pos, it.count)
		}
		return false
	}
	size, p := varint32(recs, pos)
	if p < 0 || size < 1 || int64(p)+int64(size) > int64(len(recs)) {
		it.err = fmt.Errorf("%w: record %d: bad length at byte %d of the records", ErrCorrupt, i, pos)
		return false
	}
	end := p + int(size)
	r := &it.Record
	r.attributes = recs[p]
	if err := parseRaw(recs[:end], p+1, r); err != nil {
		it.err = fmt.Errorf("%w: record %d: %s", ErrCorrupt, i, err)
		return false
	}
	r.Raw = recs[pos:end:end]
	it.pos, it.i = end, i+1
	return true
}

// Err returns why Next stopped early, or nil.
func (it *RawRecords) Err() error { return it.err }

// parseRaw reads the fields of the record ending at the end of b whose
// timestamp delta starts at b[p] (after the attributes byte).
func parseRaw(b []byte, p int, r *RawRecord) error {
	var err error
	if r.TimestampDelta, p = varint64(b, p); p < 0 {
		return errBadVarint
	}
	if r.OffsetDelta, p = varint32(b, p); p < 0 {
		return errBadVarint
	}
	r.tail = b[p:len(b):len(b)]
	if r.Key, p, err = nullableBytes(b, p); err != nil {
		return err
	}
	if r.Value, _, err = nullableBytes(b, p); err != nil {
		return err
	}
	return nil
}

// nullableBytes reads the varint length at b[p] and that many bytes (nil
// for a negative length) and returns them and the position after them.
func nullableBytes(b []byte, p int) ([]byte, int, error) {
	l, p := varint32(b, p)
	if p < 0 {
		return nil, 0, errBadVarint
	}
	if l < 0 {
		return nil, p, nil
	}
	if int64(p)+int64(l) > int64(len(b)) {
		return nil, 0, errTruncated
	}
	return b[p : p+int(l) : p+int(l)], p + int(l), nil
}

// ErrNoKey is returned by CheckKeys for a record without a key.
var ErrNoKey = errors.New("record: record without a key")

// CheckKeys reports whether every record of a batch (checked by Check)
// has a key, as Kafka requires of a batch produced to a compacted topic;
// a compressed batch is decompressed to see. A record without a key is
// ErrNoKey (which wraps ErrInvalid); records past MaxDecompressed are
// ErrInvalid, records that do not decompress or decode ErrCorrupt.
func CheckKeys(h *Header, b []byte) error {
	recs, err := Decompress(h.Codec(), b[HeaderSize:h.Size()])
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if err != nil {
		return fmt.Errorf("%w: records do not decompress: %v", ErrCorrupt, err)
	}
	missing := int32(-1)
	err = ForEachRaw(recs, h.RecordCount, func(r *RawRecord) bool {
		if r.Key == nil {
			missing = r.OffsetDelta
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	if missing >= 0 {
		return fmt.Errorf("%w: %w at offset delta %d", ErrInvalid, ErrNoKey, missing)
	}
	return nil
}

// Retain appends to dst the batch that holds only some records of the
// batch whose header is h, as Kafka's log cleaner writes it: kept holds n
// whole records of that batch (RawRecord.Raw, back to back, in offset
// order), taken from its decompressed records section.
//
// The new batch keeps h's base offset, last offset delta (so the last
// sequence number of an idempotent producer survives), partition leader
// epoch, producer fields and attributes, and compresses its records with
// h's codec. Its record count, max timestamp (the largest record
// timestamp, or h's for LogAppendTime), length and CRC are set anew.
//
// horizon >= 0 gives the batch that delete horizon (DeleteHorizon): its
// base timestamp becomes horizon and each record's timestamp delta is
// rewritten so that its timestamp stays what it was. horizon < 0 keeps
// h's base timestamp (and h's horizon, if it has one).
//
// With n = 0 the batch is empty, as Kafka keeps the last batch of a
// producer whose records are all gone: no records, no compression, base
// and max timestamp -1 and no delete horizon.
func Retain(dst []byte, h *Header, kept []byte, n int32, horizon int64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	attrs := uint16(h.Attributes)
	base, maxTS := h.BaseTimestamp, int64(-1)
	if n == 0 {
		attrs &^= CodecMask | DeleteHorizon
		base = -1
	} else {
		if horizon >= 0 {
			attrs |= DeleteHorizon
			base = horizon
		}
		recs := kept
		if base != h.BaseTimestamp {
			recs = make([]byte, 0, len(kept)+int(n)*4)
		}
		err := ForEachRaw(kept, n, func(r *RawRecord) bool {
			ts := h.BaseTimestamp + r.TimestampDelta
			maxTS = max(maxTS, ts)
			if base != h.BaseTimestamp {
				recs = appendRetimed(recs, r, ts-base)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		if h.LogAppendTime() {
			maxTS = h.MaxTimestamp
		}
		if dst, err = Compress(dst, h.Codec(), recs); err != nil {
			return nil, err
		}
	}
	b := dst[start:]
	be := binary.BigEndian
	be.PutUint64(b[PosBaseOffset:], uint64(h.BaseOffset))
	be.PutUint32(b[PosBatchLength:], uint32(len(b)-LengthOverhead))
	be.PutUint32(b[PosLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[PosMagic] = Magic
	be.PutUint16(b[PosAttributes:], attrs)
	be.PutUint32(b[PosLastOffsetDelta:], uint32(h.LastOffsetDelta))
	be.PutUint64(b[PosBaseTimestamp:], uint64(base))
	be.PutUint64(b[PosMaxTimestamp:], uint64(maxTS))
	be.PutUint64(b[PosProducerID:], uint64(h.ProducerID))
	be.PutUint16(b[PosProducerEpoch:], uint16(h.ProducerEpoch))
	be.PutUint32(b[PosBaseSequence:], uint32(h.BaseSequence))
	be.PutUint32(b[PosRecordCount:], uint32(n))
	be.PutUint32(b[PosCRC:], Checksum(b))
	return dst, nil
}

// appendRetimed appends the record r with timestamp delta tsDelta.
func appendRetimed(dst []byte, r *RawRecord, tsDelta int64) []byte {
	var body [1 + 2*binary.MaxVarintLen64]byte
	body[0] = r.attributes
	n := 1
	n += binary.PutVarint(body[n:], tsDelta)
	n += binary.PutVarint(body[n:], int64(r.OffsetDelta))
	dst = binary.AppendVarint(dst, int64(n+len(r.tail)))
	dst = append(dst, body[:n]...)
	return append(dst, r.tail...)
}
