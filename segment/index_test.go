package segment

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferrymq/ferry/record"
)

var sealedCache sync.Map // batches -> [3][]byte

// sealedFiles builds a sealed segment of n batches and returns copies of
// its three files' contents.
func sealedFiles(t testing.TB, n int) (log, idx, tidx []byte) {
	if v, ok := sealedCache.Load(n); ok {
		f := v.([3][]byte)
		return bytes.Clone(f[0]), bytes.Clone(f[1]), bytes.Clone(f[2])
	}
	dir := t.TempDir()
	s, err := Create(dir, 0, Config{IndexIntervalBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, n, 2, 20)
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	read := func(ext string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, FileName(0, ext)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f := [3][]byte{read(".log"), read(".index"), read(".timeindex")}
	sealedCache.Store(n, f)
	return bytes.Clone(f[0]), bytes.Clone(f[1]), bytes.Clone(f[2])
}

// FuzzIndexLoad checks a segment's indexes, as written by a clean close
// and then damaged anywhere, against its log: checkIndexes never panics,
// accepts the undamaged files with the true offsets, and accepts nothing
// that breaks what reads rely on. Opening the damaged segment and reading
// every offset neither crashes nor serves a batch that is not whole.
func FuzzIndexLoad(f *testing.F) {
	f.Add(uint8(20), uint8(0), uint16(0), byte(0))
	f.Add(uint8(20), uint8(1), uint16(3), byte(0x80))
	f.Add(uint8(20), uint8(2), uint16(13), byte(1))
	f.Add(uint8(20), uint8(3), uint16(100), byte(0xff))
	f.Add(uint8(5), uint8(4), uint16(7), byte(0))
	f.Fuzz(func(t *testing.T, batches, which uint8, at uint16, x byte) {
		log, idx, tidx := sealedFiles(t, int(batches%40))
		want := Scan(log, 0, nil)
		var next int64
		Scan(log, 0, func(_ int64, h *record.Header) bool { next = h.NextOffset(); return true })
		damaged := which%6 != 0
		switch which % 6 {
		case 1:
			flipAt(idx, int(at), x)
		case 2:
			flipAt(tidx, int(at), x)
		case 3:
			flipAt(log, int(at), x)
		case 4:
			idx = idx[:min(len(idx), int(at))]
		case 5:
			tidx = append(tidx, x)
		}
		tail, err := checkIndexes(0, log, idx, tidx)
		if !damaged {
			if err != nil || tail.next != next || want != int64(len(log)) {
				t.Fatalf("undamaged indexes: %+v, %v; want next %d", tail, err, next)
			}
		}
		if err == nil {
			n, _, lastPos, err := checkOffsetEntries(idx, int64(len(log)))
			if err != nil {
				t.Fatalf("accepted an offset index that fails its own check: %v", err)
			}
			if n > 0 && int64(lastPos) >= int64(len(log)) {
				t.Fatal("accepted an entry past the log")
			}
			if len(tidx)%TimeIndexEntrySize != 0 || tail.next < 0 {
				t.Fatalf("accepted %d bytes of time index, next %d", len(tidx), tail.next)
			}
			if len(tidx) > 0 {
				ts := int64(binary.BigEndian.Uint64(tidx[len(tidx)-TimeIndexEntrySize:]))
				if ts != tail.maxTimestamp {
					t.Fatalf("max timestamp %d, last time entry %d", tail.maxTimestamp, ts)
				}
			}
		}
		// The whole open path on the damaged files.
		dir := t.TempDir()
		for ext, b := range map[string][]byte{".log": log, ".index": idx, ".timeindex": tidx} {
			if err := os.WriteFile(filepath.Join(dir, FileName(0, ext)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, 0, Config{IndexIntervalBytes: 64}, OpenOptions{})
		if err != nil {
			return
		}
		defer s.Close()
		// Every offset up to a bound, and each batch's first, last and
		// next: a damaged base offset can put the end two billion
		// offsets on, too many to read one by one.
		offs := map[int64]bool{max(s.NextOffset()-1, 0): true}
		for off := int64(0); off < min(s.NextOffset(), 4096); off++ {
			offs[off] = true
		}
		Scan(log, 0, func(_ int64, h *record.Header) bool {
			offs[h.BaseOffset], offs[h.LastOffset()], offs[h.NextOffset()] = true, true, true
			return true
		})
		for off := range offs {
			b, err := s.Read(off, math.MaxInt64, 1<<20, true)
			if err != nil {
				continue
			}
			for len(b) > 0 {
				sz, err := record.BatchSize(b)
				if err != nil || sz > len(b) {
					t.Fatalf("read at %d served a torn batch", off)
				}
				b = b[sz:]
			}
		}
		if !damaged && !bytes.Equal(log[:want], log) {
			t.Fatal("log changed")
		}
	})
}

func flipAt(b []byte, i int, x byte) {
	if len(b) > 0 {
		b[i%len(b)] ^= x | 1
	}
}
