package record

import (
	"fmt"
	"math"
)

// The records of a batch v2, each one after the other (varints are
// zigzag-encoded, as in protobuf; Kafka reads all but the timestamp delta
// as 32-bit):
//
//	length          varint   (bytes of the record after this field)
//	attributes      int8     (unused)
//	timestampDelta  varlong  (from the batch's base timestamp)
//	offsetDelta     varint   (from the batch's base offset: 0, 1, 2, ...)
//	keyLength       varint   (-1: null key)
//	key             bytes
//	valueLength     varint   (-1: null value)
//	value           bytes
//	headerCount     varint
//	headers         headerKeyLength varint, headerKey bytes,
//	                headerValueLength varint (-1: null), headerValue bytes

// CheckRecords walks the records of a batch whose header h was checked by
// Check and reports whether they are what the header says, as Kafka's
// LogValidator requires of a produced batch: exactly h.RecordCount records
// fill the records section, each record's fields fill its length, and the
// offset deltas are 0, 1, 2, ... (so the last is h.LastOffsetDelta). b
// starts with the batch. Errors wrap ErrInvalid. It allocates nothing
// unless it fails.
//
// A compressed batch is not walked (nil): its records are checked where
// they are decompressed anyway (Recompress).
func CheckRecords(h *Header, b []byte) error {
	if h.Codec() != CodecNone {
		return nil
	}
	return checkRecords(b[HeaderSize:h.Size()], h.RecordCount)
}

// checkRecords is CheckRecords over an uncompressed records section recs
// that should hold count records. It reads each record's fields by
// position, with the varint decoders' one-byte case inlined: most fields
// are small.
func checkRecords(recs []byte, count int32) error {
	pos := 0
	for i := int32(0); i < count; i++ {
		size, p := varint32(recs, pos)
		if p < 0 || size < 0 {
			if pos == len(recs) {
				return fmt.Errorf("%w: %d records where the header says %d", ErrInvalid, i, count)
			}
			return fmt.Errorf("%w: record %d: bad length at byte %d of the records", ErrInvalid, i, pos)
		}
		end := p + int(size)
		if end > len(recs) {
			return fmt.Errorf("%w: record %d: %d bytes past the end of the batch", ErrInvalid, i, end-len(recs))
		}
		if err := checkRecord(recs[:end], p, i); err != nil {
			return fmt.Errorf("%w: record %d: %s", ErrInvalid, i, err)
		}
		pos = end
	}
	if pos != len(recs) {
		return fmt.Errorf("%w: %d bytes after the %d records the header says", ErrInvalid, len(recs)-pos, count)
	}
	return nil
}

// recordError is why one record does not decode. A constant string, so
// that returning it allocates nothing.
type recordError string

func (e recordError) Error() string { return string(e) }

const (
	errTruncated     recordError = "fields past the end of the record"
	errBadVarint     recordError = "bad varint"
	errOffsetDelta   recordError = "offset delta out of sequence"
	errHeaderCount   recordError = "negative header count"
	errHeaderKey     recordError = "negative header key length"
	errTrailingBytes recordError = "bytes left after its fields"
)

// checkRecord checks the fields of the record that starts at r[p] and
// ends at the end of r, and that its offset delta is want. One-byte
// varints, the common case, are decoded in line.
func checkRecord(r []byte, p int, want int32) error {
	if p >= len(r) {
		return errTruncated
	}
	p++                                        // attributes
	if uint(p) < uint(len(r)) && r[p] < 0x80 { // timestamp delta
		p++
	} else if _, p = varint64Slow(r, p); p < 0 {
		return errBadVarint
	}
	var delta int32
	if uint(p) < uint(len(r)) && r[p] < 0x80 {
		delta, p = zigzag(r[p]), p+1
	} else if delta, p = varint32Slow(r, p); p < 0 {
		return errBadVarint
	}
	if delta != want {
		return fmt.Errorf("%w: %d, want %d", errOffsetDelta, delta, want)
	}
	var err error
	if p, err = skipBytes(r, p); err != nil { // key
		return err
	}
	if p, err = skipBytes(r, p); err != nil { // value
		return err
	}
	var headers int32
	if uint(p) < uint(len(r)) && r[p] < 0x80 {
		headers, p = zigzag(r[p]), p+1
	} else if headers, p = varint32Slow(r, p); p < 0 {
		return errBadVarint
	}
	if headers < 0 {
		return errHeaderCount
	}
	for range headers {
		var k int32
		if k, p = varint32(r, p); p < 0 {
			return errBadVarint
		}
		if k < 0 {
			return errHeaderKey
		}
		if p += int(k); p > len(r) {
			return errTruncated
		}
		if p, err = skipBytes(r, p); err != nil { // header value
			return err
		}
	}
	if p != len(r) {
		return errTrailingBytes
	}
	return nil
}

// skipBytes skips the varint length at r[p] and that many bytes (none for
// a negative length: null, as Kafka reads it), and returns the position
// after them.
func skipBytes(r []byte, p int) (int, error) {
	var l int32
	if uint(p) < uint(len(r)) && r[p] < 0x80 {
		l, p = zigzag(r[p]), p+1
	} else if l, p = varint32Slow(r, p); p < 0 {
		return 0, errBadVarint
	}
	if l > 0 {
		if p += int(l); p > len(r) {
			return 0, errTruncated
		}
	}
	return p, nil
}

// zigzag decodes a one-byte varint.
func zigzag(b byte) int32 { return int32(b>>1) ^ -int32(b&1) }

// varint32 decodes the zigzag varint of at most 5 bytes (Kafka's varint)
// at b[i] and returns it and the position after it, or -1 as the position
// when b ends first or the varint is longer or larger than 32 bits.
func varint32(b []byte, i int) (int32, int) {
	if uint(i) < uint(len(b)) && b[i] < 0x80 { // the common case: one byte
		return int32(b[i]>>1) ^ -int32(b[i]&1), i + 1
	}
	return varint32Slow(b, i)
}

//go:noinline
func varint32Slow(b []byte, i int) (int32, int) {
	var u uint64
	for n := 0; n < 5 && i >= 0 && i < len(b); n, i = n+1, i+1 {
		u |= uint64(b[i]&0x7f) << (7 * n)
		if b[i] < 0x80 {
			if u > math.MaxUint32 {
				return 0, -1
			}
			return int32(uint32(u)>>1) ^ -int32(uint32(u)&1), i + 1
		}
	}
	return 0, -1
}

// varint64 decodes the zigzag varint of at most 10 bytes (Kafka's varlong)
// at b[i], as varint32 does.
func varint64(b []byte, i int) (int64, int) {
	if uint(i) < uint(len(b)) && b[i] < 0x80 {
		return int64(b[i]>>1) ^ -int64(b[i]&1), i + 1
	}
	return varint64Slow(b, i)
}

//go:noinline
func varint64Slow(b []byte, i int) (int64, int) {
	var u uint64
	for n := 0; n < 10 && i >= 0 && i < len(b); n, i = n+1, i+1 {
		if n == 9 && b[i] > 1 {
			return 0, -1 // past 64 bits
		}
		u |= uint64(b[i]&0x7f) << (7 * n)
		if b[i] < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i + 1
		}
	}
	return 0, -1
}
