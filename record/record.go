package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Sizes of a record batch v2 header.
const (
	// HeaderSize is the size of a batch header, up to and including the
	// record count.
	HeaderSize = 61
	// LengthOverhead is the number of bytes before the batch length counts:
	// baseOffset (8) and batchLength (4).
	LengthOverhead = 12
	// Magic is the only batch format Ferry stores.
	Magic = 2
)

// Byte positions of the header fields in a batch (see the package
// comment), for code that reads one field of a batch without parsing the
// whole header.
const (
	PosBaseOffset      = 0
	PosBatchLength     = 8
	PosLeaderEpoch     = 12
	PosMagic           = 16
	PosCRC             = 17
	PosAttributes      = 21
	PosLastOffsetDelta = 23
	PosBaseTimestamp   = 27
	PosMaxTimestamp    = 35
	PosProducerID      = 43
	PosProducerEpoch   = 51
	PosBaseSequence    = 53
	PosRecordCount     = 57
)

// Attribute bits.
const (
	// CodecMask selects the compression codec bits of the attributes.
	CodecMask = 0x07
	// TimestampLogAppend marks a batch whose timestamps were set by the broker.
	TimestampLogAppend = 0x08
	// Transactional marks a batch written inside a transaction.
	Transactional = 0x10
	// Control marks a control batch (transaction markers).
	Control = 0x20
	// DeleteHorizon marks a batch whose base timestamp is its delete
	// horizon (KIP-534): the log cleaner sets it on a batch holding
	// tombstones (or a transaction marker) it keeps, and removes them in a
	// cleaning after that time. Record timestamps stay base timestamp plus
	// delta, so the cleaner rewrites the deltas when it sets it.
	DeleteHorizon = 0x40
)

// Compression codecs as stored in the attribute bits.
const (
	CodecNone   = 0
	CodecGzip   = 1
	CodecSnappy = 2
	CodecLZ4    = 3
	CodecZstd   = 4
)

var (
	// ErrShort means the slice is too short to hold what its header says.
	ErrShort = errors.New("record: batch truncated")
	// ErrMagic means the batch is not magic 2.
	ErrMagic = errors.New("record: unsupported magic")
	// ErrCorrupt means a length, count or checksum does not hold. Storage
	// layers wrap it so one errors.Is test finds corruption anywhere.
	ErrCorrupt = errors.New("record: corrupt batch")
	// ErrInvalid means the batch is well formed but not acceptable as sent
	// (for example a bad record count or codec).
	ErrInvalid = errors.New("record: invalid batch")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the parsed header of one record batch.
type Header struct {
	BaseOffset           int64
	BatchLength          int32 // bytes after the length field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Size is the number of bytes the whole batch occupies.
func (h *Header) Size() int { return int(h.BatchLength) + LengthOverhead }

// LastOffset is the offset of the last record of the batch.
func (h *Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// NextOffset is the offset following the batch.
func (h *Header) NextOffset() int64 { return h.LastOffset() + 1 }

// Codec returns the compression codec bits.
func (h *Header) Codec() int { return int(h.Attributes & CodecMask) }

// IsTransactional reports whether the batch belongs to a transaction.
func (h *Header) IsTransactional() bool { return h.Attributes&Transactional != 0 }

// IsControl reports whether the batch is a control batch.
func (h *Header) IsControl() bool { return h.Attributes&Control != 0 }

// DeleteHorizonMs returns the batch's delete horizon (Unix ms), and
// whether it has one (DeleteHorizon).
func (h *Header) DeleteHorizonMs() (int64, bool) {
	if h.Attributes&DeleteHorizon == 0 {
		return 0, false
	}
	return h.BaseTimestamp, true
}

// LogAppendTime reports whether the timestamps were assigned by the broker.
func (h *Header) LogAppendTime() bool { return h.Attributes&TimestampLogAppend != 0 }

// LastSequence is the sequence number of the last record of the batch, with
// Kafka's wrap-around at MaxInt32.
func (h *Header) LastSequence() int32 {
	if h.BaseSequence < 0 {
		return h.BaseSequence
	}
	s := int64(h.BaseSequence) + int64(h.LastOffsetDelta)
	if s > 1<<31-1 {
		s -= 1 << 31
	}
	return int32(s)
}

// BatchSize reads only the first 12 bytes of b and returns the size of the
// whole batch that starts there. It checks the length against the minimum
// header size but not against len(b).
func BatchSize(b []byte) (int, error) {
	if len(b) < LengthOverhead {
		return 0, ErrShort
	}
	n := int32(binary.BigEndian.Uint32(b[PosBatchLength:]))
	if n < HeaderSize-LengthOverhead {
		return 0, fmt.Errorf("%w: batch length %d below header size", ErrCorrupt, n)
	}
	return int(n) + LengthOverhead, nil
}

// Parse decodes the header at the start of b. It checks that b holds the
// whole batch and that the batch is magic 2; it does not check the CRC.
func Parse(b []byte) (Header, error) {
	var h Header
	err := ParseInto(b, &h)
	return h, err
}

// ParseInto is Parse writing into h, for callers that reuse a Header.
func ParseInto(b []byte, h *Header) error {
	size, err := BatchSize(b)
	if err != nil {
		return err
	}
	if len(b) < size {
		return fmt.Errorf("%w: have %d of %d bytes", ErrShort, len(b), size)
	}
	if m := int8(b[PosMagic]); m != Magic {
		return fmt.Errorf("%w %d", ErrMagic, m)
	}
	be := binary.BigEndian
	*h = Header{
		BaseOffset:           int64(be.Uint64(b[PosBaseOffset:])),
		BatchLength:          int32(be.Uint32(b[PosBatchLength:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[PosLeaderEpoch:])),
		Magic:                int8(b[PosMagic]),
		CRC:                  be.Uint32(b[PosCRC:]),
		Attributes:           int16(be.Uint16(b[PosAttributes:])),
		LastOffsetDelta:      int32(be.Uint32(b[PosLastOffsetDelta:])),
		BaseTimestamp:        int64(be.Uint64(b[PosBaseTimestamp:])),
		MaxTimestamp:         int64(be.Uint64(b[PosMaxTimestamp:])),
		ProducerID:           int64(be.Uint64(b[PosProducerID:])),
		ProducerEpoch:        int16(be.Uint16(b[PosProducerEpoch:])),
		BaseSequence:         int32(be.Uint32(b[PosBaseSequence:])),
		RecordCount:          int32(be.Uint32(b[PosRecordCount:])),
	}
	return nil
}

// Checksum computes the CRC32C a batch should carry.
func Checksum(b []byte) uint32 { return crc32.Checksum(b[PosAttributes:], castagnoli) }

// Validate parses the batch at the start of b and checks what a broker must
// before storing it or serving it from disk: the whole batch present,
// magic 2, the CRC, a non-negative last offset delta, a record count that
// matches it, and a known codec. Trailing bytes after the batch are
// ignored. A batch from a client is also walked by CheckRecords; data read
// back from disk is not, so that stored batches stay readable whatever
// the rules they were accepted under.
func Validate(b []byte) (Header, error) {
	var h Header
	err := ValidateInto(b, &h)
	return h, err
}

// ValidateInto is Validate writing into h, for callers that reuse a Header.
func ValidateInto(b []byte, h *Header) error {
	if err := ParseInto(b, h); err != nil {
		return err
	}
	return Check(h, b)
}

// Check is the second half of Validate, for a header already parsed from
// the start of b by ParseInto: CRC, offset delta, record count and codec.
// It reads the header and the checksum only; CheckRecords walks the
// records themselves.
func Check(h *Header, b []byte) error {
	b = b[:h.Size()]
	if got := Checksum(b); got != h.CRC {
		return fmt.Errorf("%w: crc %08x, header says %08x", ErrCorrupt, got, h.CRC)
	}
	if h.LastOffsetDelta < 0 {
		return fmt.Errorf("%w: last offset delta %d", ErrInvalid, h.LastOffsetDelta)
	}
	if h.RecordCount <= 0 || int64(h.RecordCount) != int64(h.LastOffsetDelta)+1 {
		return fmt.Errorf("%w: %d records with last offset delta %d", ErrInvalid, h.RecordCount, h.LastOffsetDelta)
	}
	if h.Codec() > CodecZstd {
		return fmt.Errorf("%w: unknown codec %d", ErrInvalid, h.Codec())
	}
	return nil
}

// ValidateStored is Validate for a batch read back from the log, which
// CheckStored checks instead of Check.
func ValidateStored(b []byte, h *Header) error {
	if err := ParseInto(b, h); err != nil {
		return err
	}
	return CheckStored(h, b)
}

// CheckStored is Check for a batch read back from the log rather than
// produced: the log cleaner stores batches that hold fewer records than
// their offsets span (it keeps the last offset delta of a batch some of
// whose records it removed, as Kafka does) and empty ones (kept for the
// producer sequence their header carries), so the record count may be
// anything from 0 to lastOffsetDelta+1.
func CheckStored(h *Header, b []byte) error {
	b = b[:h.Size()]
	if got := Checksum(b); got != h.CRC {
		return fmt.Errorf("%w: crc %08x, header says %08x", ErrCorrupt, got, h.CRC)
	}
	if h.LastOffsetDelta < 0 {
		return fmt.Errorf("%w: last offset delta %d", ErrInvalid, h.LastOffsetDelta)
	}
	if h.RecordCount < 0 || int64(h.RecordCount) > int64(h.LastOffsetDelta)+1 {
		return fmt.Errorf("%w: %d records with last offset delta %d", ErrInvalid, h.RecordCount, h.LastOffsetDelta)
	}
	if h.Codec() > CodecZstd {
		return fmt.Errorf("%w: unknown codec %d", ErrInvalid, h.Codec())
	}
	return nil
}

// SetBaseOffset writes off as the batch's base offset. The CRC is unaffected.
// b must hold at least a batch header.
func SetBaseOffset(b []byte, off int64) {
	binary.BigEndian.PutUint64(b[PosBaseOffset:], uint64(off))
}

// SetLeaderEpoch writes the partition leader epoch. The CRC is unaffected.
func SetLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[PosLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime marks the batch as timestamped by the broker at ts, as
// Kafka does for message.timestamp.type=LogAppendTime: the timestamp type
// bit is set and the max timestamp (and base timestamp) become ts. These
// fields are covered by the CRC, so it is recomputed. b must hold the whole
// batch.
func SetLogAppendTime(b []byte, ts int64) {
	be := binary.BigEndian
	attrs := be.Uint16(b[PosAttributes:]) | TimestampLogAppend
	be.PutUint16(b[PosAttributes:], attrs)
	be.PutUint64(b[PosBaseTimestamp:], uint64(ts))
	be.PutUint64(b[PosMaxTimestamp:], uint64(ts))
	be.PutUint32(b[PosCRC:], Checksum(b))
}

// BaseOffset reads the base offset of the batch at the start of b, which
// must hold at least 8 bytes.
func BaseOffset(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[PosBaseOffset:])) }
