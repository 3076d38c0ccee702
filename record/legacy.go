package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// Message format v0 and v1 ("message sets") is what Produce v0-v2 carry.
// Ferry stores only batches v2, so ConvertLegacy turns a message set into
// one batch v2 before it is appended, as Kafka does for such producers
// when its log format is v2. A message set is a sequence of
//
//	offset      int64   (ignored: the broker assigns offsets)
//	size        int32   (bytes of the message that follows)
//	crc         uint32  (CRC32, IEEE, of magic through value)
//	magic       int8    (0 or 1)
//	attributes  int8    (bits 0-2 codec, bit 3 timestamp type in v1)
//	timestamp   int64   (v1 only)
//	key         int32 length, then bytes (-1: null)
//	value       int32 length, then bytes (-1: null)
//
// A compressed message ("wrapper") holds in its value a whole message set,
// compressed with the codec of its attributes, whose messages carry the
// records; in v1 their offsets are relative and, when the wrapper says
// LogAppendTime, the wrapper's timestamp is every record's.

const (
	legacyLogOverhead = 12 // offset, size
	legacyMinMessage  = 14 // crc, magic, attributes, key length, value length
)

// ConvertLegacy returns one record batch v2 holding the records of set, a
// message set of format v0 or v1: keys and values as sent, v1 timestamps
// as sent (records inside a wrapper marked LogAppendTime take the
// wrapper's; v0 has none: -1), compressed with the codec the producer used
// (gzip, snappy or lz4). The batch is CreateTime, its base offset is 0
// and it carries no producer id. As Kafka does, an incomplete message at
// the end of a set is ignored; a set with no complete message gives nil
// and no error: nothing to append.
//
// Errors wrap ErrCorrupt (a bad CRC or magic, a length past the end of its
// message, data that does not decompress), ErrInvalid (nested compression,
// wrappers decompressing to more than MaxDecompressed bytes in all, or
// more than that of records) or ErrCodec (zstd,
// which format v0/v1 cannot carry).
func ConvertLegacy(set []byte) ([]byte, error) {
	// Records are encoded as they are read, so memory stays near the
	// size of the output.
	out := make([]byte, HeaderSize, HeaderSize+len(set))
	var count int32
	var baseTS, maxTS int64
	add := func(ts int64, key, value []byte) error {
		if count == 0 {
			baseTS, maxTS = ts, ts
		}
		maxTS = max(maxTS, ts)
		r := Record{Key: key, Value: value, TimestampDelta: ts - baseTS}
		out = appendRecord(out, &r, count)
		count++
		if len(out) > MaxDecompressed {
			return fmt.Errorf("%w: %w", ErrInvalid, ErrTooLarge)
		}
		return nil
	}
	codec := CodecNone
	decompressed := 0 // over all wrappers, bounded by MaxDecompressed
	err := walkLegacy(set, func(magic, attrs int8, ts int64, key, value []byte) error {
		c := int(attrs & CodecMask)
		if c == CodecNone {
			return add(ts, key, value)
		}
		switch {
		case c > CodecLZ4:
			return fmt.Errorf("%w %d in message format v%d", ErrCodec, c, magic)
		case value == nil:
			return fmt.Errorf("%w: compressed message without a value", ErrInvalid)
		}
		if codec == CodecNone {
			codec = c
		}
		if c == CodecLZ4 && magic == 0 {
			value = fixLZ4HeaderChecksum(value)
		}
		inner, err := Decompress(c, value)
		if err == nil {
			if decompressed += len(inner); decompressed > MaxDecompressed {
				err = ErrTooLarge
			}
		}
		if errors.Is(err, ErrTooLarge) {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		} else if err != nil {
			return fmt.Errorf("%w: compressed message set: %v", ErrCorrupt, err)
		}
		wrapperLAT := magic == 1 && attrs&TimestampLogAppend != 0
		return walkLegacy(inner, func(imagic, iattrs int8, its int64, ikey, ivalue []byte) error {
			switch {
			case iattrs&CodecMask != 0:
				return fmt.Errorf("%w: compressed message inside a compressed message", ErrInvalid)
			case imagic != magic:
				return fmt.Errorf("%w: inner message of magic %d in a wrapper of magic %d", ErrInvalid, imagic, magic)
			}
			if wrapperLAT {
				its = ts
			}
			return add(its, ikey, ivalue)
		})
	})
	if err != nil || count == 0 {
		return nil, err
	}
	putHeader(out, &Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: baseTS}, count, maxTS)
	if codec == CodecNone {
		return out, nil
	}
	return Recompress(out, codec)
}

// walkLegacy calls fn for each complete message of a message set, after
// checking its magic, CRC and lengths.
func walkLegacy(set []byte, fn func(magic, attrs int8, ts int64, key, value []byte) error) error {
	be := binary.BigEndian
	for len(set) > 0 {
		if len(set) < legacyLogOverhead {
			return nil // an incomplete message at the end: ignored
		}
		size := int64(int32(be.Uint32(set[8:])))
		if size < legacyMinMessage {
			return fmt.Errorf("%w: message size %d", ErrCorrupt, size)
		}
		if size > int64(len(set)-legacyLogOverhead) {
			return nil // an incomplete message at the end: ignored
		}
		m := set[legacyLogOverhead : legacyLogOverhead+size]
		set = set[legacyLogOverhead+size:]
		magic, attrs := int8(m[4]), int8(m[5])
		if magic < 0 || magic > 1 {
			return fmt.Errorf("%w: message magic %d in a message set", ErrCorrupt, magic)
		}
		if crc32.ChecksumIEEE(m[4:]) != be.Uint32(m) {
			return fmt.Errorf("%w: message CRC mismatch", ErrCorrupt)
		}
		rest := m[6:]
		ts := int64(-1)
		if magic == 1 {
			if len(rest) < 8+8 {
				return fmt.Errorf("%w: message too short for its timestamp", ErrCorrupt)
			}
			ts = int64(be.Uint64(rest))
			rest = rest[8:]
		}
		key, rest, ok := legacyBytes(rest)
		if !ok {
			return fmt.Errorf("%w: message key past its end", ErrCorrupt)
		}
		value, rest, ok := legacyBytes(rest)
		if !ok || len(rest) != 0 {
			return fmt.Errorf("%w: message value does not fill the message", ErrCorrupt)
		}
		if err := fn(magic, attrs, ts, key, value); err != nil {
			return err
		}
	}
	return nil
}

// legacyBytes reads an int32-length-prefixed byte string (-1: nil).
func legacyBytes(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := int64(int32(binary.BigEndian.Uint32(b)))
	b = b[4:]
	switch {
	case n == -1:
		return nil, b, true
	case n < 0 || n > int64(len(b)):
		return nil, nil, false
	}
	return b[:n:n], b[n:], true
}

// fixLZ4HeaderChecksum returns an LZ4 frame with its frame descriptor
// checksum recomputed. Kafka's Java client computed it over the frame
// magic too when writing message format v0 (KAFKA-3160), and Kafka
// brokers do not check it for v0; neither does Ferry. Frames too short to
// hold a descriptor are returned as they are, for the decoder to reject.
func fixLZ4HeaderChecksum(frame []byte) []byte {
	const magicLen = 4
	if len(frame) < magicLen+3 || binary.LittleEndian.Uint32(frame) != 0x184D2204 {
		return frame
	}
	flg := frame[magicLen]
	n := 2 // FLG, BD
	if flg&0x08 != 0 {
		n += 8 // content size
	}
	if flg&0x01 != 0 {
		n += 4 // dictionary id
	}
	if len(frame) < magicLen+n+1 {
		return frame
	}
	hc := byte(xxh32(frame[magicLen:magicLen+n]) >> 8)
	if frame[magicLen+n] == hc {
		return frame
	}
	fixed := bytes.Clone(frame)
	fixed[magicLen+n] = hc
	return fixed
}

// xxh32 is XXH32 with seed 0 of a short input (under 16 bytes: an LZ4
// frame descriptor).
func xxh32(b []byte) uint32 {
	const (
		p1 = 2654435761
		p2 = 2246822519
		p3 = 3266489917
		p4 = 668265263
		p5 = 374761393
	)
	h := uint32(p5) + uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		h += binary.LittleEndian.Uint32(b) * p3
		h = bits.RotateLeft32(h, 17) * p4
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = bits.RotateLeft32(h, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}
