package log

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/segment"
)

var benchSizes = []int{1 << 10, 16 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// benchBatch is one valid batch of about size bytes.
func benchBatch(size int) ([]byte, record.Header) {
	return gen(0, 1, size-80, 0)
}

// BenchmarkAppend measures Append without sync and with group-commit Sync
// from 1, 8 and 64 appenders, next to the same bytes written to a plain
// file with write(2), and with write(2)+fdatasync every 1 MiB, in the same
// run. Compare the MB/s columns.
func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		batch, h := benchBatch(size)
		b.Run("size="+sizeName(size), func(b *testing.B) {
			b.Run("baseline=write", func(b *testing.B) { benchPlainWrite(b, batch, 0) })
			b.Run("baseline=write+fdatasync/1MiB", func(b *testing.B) { benchPlainWrite(b, batch, 1<<20) })
			b.Run("sync=none", func(b *testing.B) {
				l := benchLog(b)
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				hh := h
				for b.Loop() {
					if _, err := l.Append(batch, &hh); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, appenders := range []int{1, 8, 64} {
				b.Run(fmt.Sprintf("sync=group/appenders=%d", appenders), func(b *testing.B) {
					benchGroupCommit(b, batch, appenders)
				})
			}
		})
	}
}

func benchLog(b *testing.B) *Log {
	b.Helper()
	l, err := Open(b.TempDir(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func benchPlainWrite(b *testing.B, batch []byte, syncEvery int) {
	f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	written := 0
	for b.Loop() {
		if _, err := f.Write(batch); err != nil {
			b.Fatal(err)
		}
		written += len(batch)
		if syncEvery > 0 && written >= syncEvery {
			durable.SyncData(f)
			written = 0
		}
	}
}

func benchGroupCommit(b *testing.B, batch []byte, appenders int) {
	l := benchLog(b)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	var n atomic.Int64
	total := int64(b.N)
	done := make(chan struct{})
	b.ResetTimer()
	for w := 0; w < appenders; w++ {
		go func() {
			defer func() { done <- struct{}{} }()
			buf := append([]byte(nil), batch...)
			h, _ := record.Parse(buf)
			for n.Add(1) <= total {
				if _, err := l.Append(buf, &h); err != nil {
					b.Error(err)
					return
				}
				if err := l.Sync(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for w := 0; w < appenders; w++ {
		<-done
	}
}

// sealedLog fills a log with size bytes of 16 KiB batches in one sealed
// segment followed by an empty active one.
func sealedLog(b *testing.B, dir string, size int) *Log {
	l, err := Open(dir, Config{})
	if err != nil {
		b.Fatal(err)
	}
	batch, h := benchBatch(16 << 10)
	for l.Size() < int64(size) {
		if _, err := l.Append(batch, &h); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Roll(); err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRead fetches 1 MiB at a time, sequentially, through the index
// lookup, from a sealed 256 MiB segment. "view" only takes the zero-copy
// view, as a fetch handing mapped slices to writev does; "copy" also copies
// the bytes out, as a reader that must touch them would.
func BenchmarkRead(b *testing.B) {
	l := sealedLog(b, b.TempDir(), 256<<20)
	defer l.Close()
	sink := make([]byte, 2<<20)
	for _, mode := range []string{"view", "copy"} {
		b.Run("mode="+mode, func(b *testing.B) {
			b.SetBytes(1 << 20)
			b.ReportAllocs()
			off := int64(0)
			for b.Loop() {
				v, err := l.Read(off, l.NextOffset(), 1<<20, true)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "copy" {
					copy(sink, v.Data)
				}
				off = record.BaseOffset(v.Data[len(v.Data)-(16<<10):]) + 1
				if off >= l.NextOffset()-1 {
					off = 0
				}
				v.Release()
			}
		})
	}
}

// BenchmarkRecover measures the recovery scan of an unclean segment:
// length and CRC of every batch, index rebuild.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	l := sealedLog(b, dir, 256<<20)
	base := int64(0)
	size := l.Size()
	l.Close()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		s, err := segment.Open(dir, base, segment.Config{}, segment.OpenOptions{Recover: true})
		if err != nil {
			b.Fatal(err)
		}
		if s.Size() != size {
			b.Fatalf("recovered %d of %d bytes", s.Size(), size)
		}
		s.Close()
	}
}

// BenchmarkOpen measures Open: of a new log (an empty directory: a
// partition being created), and of a cleanly closed log of 100 segments
// followed by its Close (a broker's restart, per partition).
func BenchmarkOpen(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		dir := b.TempDir()
		var logs []*Log
		b.ReportAllocs()
		for b.Loop() {
			l, err := Open(filepath.Join(dir, fmt.Sprint(len(logs))), Config{})
			if err != nil {
				b.Fatal(err)
			}
			logs = append(logs, l)
		}
		for _, l := range logs {
			l.Close()
		}
	})
	b.Run("clean/segments=100", func(b *testing.B) {
		dir := b.TempDir()
		l, err := Open(dir, Config{})
		if err != nil {
			b.Fatal(err)
		}
		batch, h := benchBatch(1 << 10)
		for l.Segments() < 100 {
			for range 4 {
				if _, err := l.Append(batch, &h); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Roll(); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			l, err := Open(dir, Config{})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClean measures a cleaning pass over a log of 64 MiB of dirty
// records (1,000 keys, each overwritten many times, batches of 16
// records; values of 100 B and 1 KiB of random text, uncompressed and
// zstd), as MB/s of dirty log (b.SetBytes). Each iteration cleans a fresh
// copy.
func BenchmarkClean(b *testing.B) {
	for _, size := range []int{100, 1 << 10} {
		for _, codec := range []int{record.CodecNone, record.CodecZstd} {
			b.Run(fmt.Sprintf("value=%dB/codec=%d", size, codec), func(b *testing.B) {
				src := b.TempDir()
				cfg := Config{Compact: true, NoDelete: true, SegmentBytes: 16 << 20}
				l, err := Open(src, cfg)
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				text := make([]byte, 1<<16)
				for i := range text {
					text[i] = 'a' + byte(rng.IntN(26))
				}
				for i := 0; l.Size() < 64<<20; i++ {
					recs := make([]record.Record, 16)
					for j := range recs {
						at := rng.IntN(len(text) - size)
						recs[j] = record.Record{Key: fmt.Appendf(nil, "key-%d", (i*16+j)%1000), Value: text[at : at+size]}
					}
					batch := record.AppendBatch(nil, record.Batch{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
					if codec != record.CodecNone {
						if batch, err = record.Recompress(batch, codec); err != nil {
							b.Fatal(err)
						}
					}
					h, err := record.Validate(batch)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := l.Append(batch, &h); err != nil {
						b.Fatal(err)
					}
				}
				if err := l.Roll(); err != nil {
					b.Fatal(err)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
				m := newOffsetMap(128<<20, 0.9)
				var dirty int64
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					dir := filepath.Join(b.TempDir(), "copy")
					if err := os.Mkdir(dir, 0o755); err != nil {
						b.Fatal(err)
					}
					ents, _ := os.ReadDir(src)
					for _, e := range ents {
						data, err := os.ReadFile(filepath.Join(src, e.Name()))
						if err != nil {
							b.Fatal(err)
						}
						if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
							b.Fatal(err)
						}
					}
					l, err := Open(dir, cfg)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					c0 := processCPU()
					st, err := l.cleanOnce(context.Background(), time.Now(), m, newThrottle(0), true)
					if err != nil {
						b.Fatal(err)
					}
					cpu += processCPU() - c0
					b.StopTimer()
					dirty = st.mapBytes
					b.SetBytes(dirty)
					l.Close()
					b.StartTimer()
				}
				if cpu > 0 {
					// On a shared machine, what one pass costs in CPU.
					b.ReportMetric(float64(dirty)*float64(b.N)/1e6/cpu.Seconds(), "MB/cpu-s")
				}
			})
		}
	}
}
