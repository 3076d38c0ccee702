package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is off the hot path: produced batches are stored as they
// arrive unless a topic's compression.type names a codec (Recompress).
// Decompress also serves exact timestamp lookups inside a batch, and both
// serve the conversion of message format v0/v1.

// MaxDecompressed bounds what one batch may decompress to. Records are
// checked only by CRC when produced, so a small batch could claim
// gigabytes (a decompression bomb).
const MaxDecompressed = 64 << 20

// ErrTooLarge is returned for data that decompresses past MaxDecompressed.
var ErrTooLarge = fmt.Errorf("record: decompresses to more than %d bytes", MaxDecompressed)

// ErrCodec means a codec this data may not use (zstd in message format v0
// or v1), or one that does not exist.
var ErrCodec = errors.New("record: unsupported compression codec")

var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
})

var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecompressed))
})

// xerialMagic opens snappy data framed by the Java xerial library.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// readAllLimited reads r to the end, failing past MaxDecompressed.
func readAllLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxDecompressed+1))
	if err == nil && len(b) > MaxDecompressed {
		err = ErrTooLarge
	}
	return b, err
}

// s2Decode decodes one snappy block after checking its declared size.
func s2Decode(src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, err
	}
	if n > MaxDecompressed {
		return nil, ErrTooLarge
	}
	return s2.Decode(nil, src)
}

// Decompress returns src decompressed with codec (snappy raw or in
// xerial framing), or an error past MaxDecompressed bytes. CodecNone
// returns src itself.
func Decompress(codec int, src []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return src, nil
	case CodecGzip:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, err
		}
		return readAllLimited(r)
	case CodecSnappy:
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
				if len(out)+len(d) > MaxDecompressed {
					return nil, ErrTooLarge
				}
				out = append(out, d...)
				rest = rest[n:]
			}
			return out, nil
		}
		return s2Decode(src)
	case CodecLZ4:
		return readAllLimited(lz4.NewReader(bytes.NewReader(src)))
	case CodecZstd:
		d, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		return d.DecodeAll(src, nil)
	}
	return nil, fmt.Errorf("%w %d", ErrCodec, codec)
}

// Compress appends src compressed with codec to dst: gzip, snappy (one
// raw block, as librdkafka and franz-go write it), lz4 (frame format) or
// zstd; CodecNone appends src as it is.
func Compress(dst []byte, codec int, src []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		return compressStream(dst, src, func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) })
	case CodecSnappy:
		return append(dst, s2.EncodeSnappy(nil, src)...), nil
	case CodecLZ4:
		return compressStream(dst, src, func(w io.Writer) io.WriteCloser { return lz4.NewWriter(w) })
	case CodecZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(src, dst), nil
	}
	return nil, fmt.Errorf("%w %d", ErrCodec, codec)
}

// compressStream appends src compressed by a streaming writer to dst.
func compressStream(dst, src []byte, newWriter func(io.Writer) io.WriteCloser) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	w := newWriter(buf)
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Recompress returns a copy of the batch b (validated) whose records are
// compressed with codec (CodecNone: not compressed) instead of the codec
// they came with. The header is kept (offsets, timestamps, producer
// fields, record count); the length, codec bits and CRC are set anew.
// Records that do not decompress are ErrCorrupt; more than
// MaxDecompressed bytes of them, or records that are not what the header
// says (CheckRecords), ErrInvalid.
func Recompress(b []byte, codec int) ([]byte, error) {
	var h Header
	if err := ParseInto(b, &h); err != nil {
		return nil, err
	}
	recs, err := Decompress(h.Codec(), b[HeaderSize:h.Size()])
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if err != nil {
		return nil, fmt.Errorf("%w: records do not decompress: %v", ErrCorrupt, err)
	}
	if err := checkRecords(recs, h.RecordCount); err != nil {
		return nil, err
	}
	out := make([]byte, HeaderSize, HeaderSize+len(recs)/2+64)
	copy(out, b)
	if out, err = Compress(out, codec, recs); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	be.PutUint32(out[PosBatchLength:], uint32(len(out)-LengthOverhead))
	be.PutUint16(out[PosAttributes:], be.Uint16(out[PosAttributes:])&^CodecMask|uint16(codec))
	be.PutUint32(out[PosCRC:], Checksum(out))
	return out, nil
}
