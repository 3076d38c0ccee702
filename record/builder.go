package record

import (
	"encoding/binary"
	"fmt"
)

// Header of one record (key/value pair attached to a record).
type RecordHeader struct {
	Key   string
	Value []byte
}

// Record is one record of an uncompressed batch. Key and Value may be nil
// (a nil value is a tombstone on a compacted topic).
type Record struct {
	Key     []byte
	Value   []byte
	Headers []RecordHeader
	// TimestampDelta is added to the batch's base timestamp.
	TimestampDelta int64
	// OffsetDelta is the record's offset relative to the batch base offset.
	OffsetDelta int32
}

// Batch describes an uncompressed batch to build with AppendBatch.
type Batch struct {
	BaseOffset    int64
	BaseTimestamp int64
	Attributes    int16
	ProducerID    int64 // -1 when not idempotent
	ProducerEpoch int16 // -1 when not idempotent
	BaseSequence  int32 // -1 when not idempotent
	Records       []Record
}

// AppendBatch encodes b as an uncompressed record batch v2 appended to dst,
// with a correct CRC. Record offset deltas are taken as their index in
// b.Records; timestamps as BaseTimestamp+TimestampDelta.
func AppendBatch(dst []byte, b Batch) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	maxTS := b.BaseTimestamp
	for i := range b.Records {
		r := &b.Records[i]
		if ts := b.BaseTimestamp + r.TimestampDelta; ts > maxTS {
			maxTS = ts
		}
		dst = appendRecord(dst, r, int32(i))
	}
	putHeader(dst[start:], &b, int32(len(b.Records)), maxTS)
	return dst
}

// putHeader fills in the header of batch h, whose records (count of
// them) follow it uncompressed, and its CRC.
func putHeader(h []byte, b *Batch, count int32, maxTS int64) {
	be := binary.BigEndian
	be.PutUint64(h[PosBaseOffset:], uint64(b.BaseOffset))
	be.PutUint32(h[PosBatchLength:], uint32(len(h)-LengthOverhead))
	be.PutUint32(h[PosLeaderEpoch:], 0)
	h[PosMagic] = Magic
	be.PutUint16(h[PosAttributes:], uint16(b.Attributes&^CodecMask))
	be.PutUint32(h[PosLastOffsetDelta:], uint32(max(count-1, 0)))
	be.PutUint64(h[PosBaseTimestamp:], uint64(b.BaseTimestamp))
	be.PutUint64(h[PosMaxTimestamp:], uint64(maxTS))
	be.PutUint64(h[PosProducerID:], uint64(b.ProducerID))
	be.PutUint16(h[PosProducerEpoch:], uint16(b.ProducerEpoch))
	be.PutUint32(h[PosBaseSequence:], uint32(b.BaseSequence))
	be.PutUint32(h[PosRecordCount:], uint32(count))
	be.PutUint32(h[PosCRC:], Checksum(h))
}

func appendRecord(dst []byte, r *Record, offsetDelta int32) []byte {
	var body [64]byte
	n := 0
	body[n] = 0 // attributes
	n++
	n += binary.PutVarint(body[n:], r.TimestampDelta)
	n += binary.PutVarint(body[n:], int64(offsetDelta))
	size := n + varBytesLen(r.Key) + varBytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		size += varintLen(int64(len(h.Key))) + len(h.Key) + varBytesLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(size))
	dst = append(dst, body[:n]...)
	dst = appendVarBytes(dst, r.Key)
	dst = appendVarBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendVarBytes(dst, h.Value)
	}
	return dst
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

func varBytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func appendVarBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// ForEach calls fn for every record of an uncompressed batch, in order. The
// slices in the Record passed to fn alias batch and the Headers slice is
// reused between calls: copy what you keep. It returns ErrInvalid for a
// compressed batch and ErrCorrupt when the records do not decode.
func ForEach(batch []byte, fn func(r *Record) error) error {
	h, err := Parse(batch)
	if err != nil {
		return err
	}
	if h.Codec() != CodecNone {
		return fmt.Errorf("%w: compressed batch (codec %d)", ErrInvalid, h.Codec())
	}
	return ForEachIn(batch[HeaderSize:h.Size()], h.RecordCount, fn)
}

// ForEachIn is ForEach over the (decompressed) records section of a batch
// holding count records.
func ForEachIn(b []byte, count int32, fn func(r *Record) error) error {
	var r Record
	for i := int32(0); i < count; i++ {
		length, n := binary.Varint(b)
		if n <= 0 || length < 0 || int64(len(b)-n) < length {
			return fmt.Errorf("%w: record %d length", ErrCorrupt, i)
		}
		rec := b[n : n+int(length)]
		b = b[n+int(length):]
		if err := decodeRecord(rec, &r); err != nil {
			return fmt.Errorf("%w: record %d: %v", ErrCorrupt, i, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.varint()
	if d.err != nil || n < 0 {
		return nil
	}
	if n > int64(len(d.b)) {
		d.err = fmt.Errorf("field of %d bytes past the end", n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func decodeRecord(b []byte, r *Record) error {
	if len(b) < 1 {
		return fmt.Errorf("empty record")
	}
	d := decoder{b: b[1:]}
	r.TimestampDelta = d.varint()
	r.OffsetDelta = int32(d.varint())
	r.Key = d.bytes()
	r.Value = d.bytes()
	nh := d.varint()
	r.Headers = r.Headers[:0]
	for i := int64(0); i < nh && d.err == nil; i++ {
		k := d.bytes()
		v := d.bytes()
		r.Headers = append(r.Headers, RecordHeader{Key: string(k), Value: v})
	}
	return d.err
}
