package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/ferrymq/ferry/record"
)

// decompression is needed only off the hot path (exact timestamp lookups
// inside a compressed batch); produced batches are stored as they arrive.

var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxDecompressed))
})

// xerialMagic opens snappy data framed by the Java xerial library.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// maxDecompressed bounds what one batch may decompress to. Records are
// checked only by CRC when produced, so a small batch could claim
// gigabytes (a decompression bomb); past this the batch is treated as a
// whole.
const maxDecompressed = 64 << 20

var errTooLarge = fmt.Errorf("decompressed batch larger than %d bytes", maxDecompressed)

// readAllLimited reads r to the end, failing past maxDecompressed.
func readAllLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxDecompressed+1))
	if err == nil && len(b) > maxDecompressed {
		err = errTooLarge
	}
	return b, err
}

// s2Decode decodes one snappy block after checking its declared size.
func s2Decode(src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > maxDecompressed {
		return nil, errTooLarge
	}
	return s2.Decode(nil, src)
}

// decompress returns the records section of a batch, decompressed, or an
// error beyond maxDecompressed bytes.
func decompress(codec int, src []byte) ([]byte, error) {
	switch codec {
	case record.CodecNone:
		return src, nil
	case record.CodecGzip:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, err
		}
		return readAllLimited(r)
	case record.CodecSnappy:
		if bytes.HasPrefix(src, xerialMagic) && len(src) >= 16 {
			var out []byte
			for rest := src[16:]; len(rest) > 0; {
				if len(rest) < 4 {
					return nil, fmt.Errorf("snappy: truncated xerial block")
				}
				n := int(binary.BigEndian.Uint32(rest))
				rest = rest[4:]
				if n > len(rest) {
					return nil, fmt.Errorf("snappy: truncated xerial block")
				}
				d, err := s2Decode(rest[:n])
				if err != nil {
					return nil, err
				}
				if len(out)+len(d) > maxDecompressed {
					return nil, errTooLarge
				}
				out = append(out, d...)
				rest = rest[n:]
			}
			return out, nil
		}
		return s2Decode(src)
	case record.CodecLZ4:
		return readAllLimited(lz4.NewReader(bytes.NewReader(src)))
	case record.CodecZstd:
		d, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		return d.DecodeAll(src, nil)
	}
	return nil, fmt.Errorf("unknown codec %d", codec)
}

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
	recs, err := decompress(h.Codec(), batch[record.HeaderSize:h.Size()])
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
