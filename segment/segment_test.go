package segment

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/record"
)

var update = flag.Bool("update", false, "rewrite golden files")

// mkBatch builds a valid batch of n records of valueSize bytes at base
// offset off with base timestamp ts.
func mkBatch(off int64, n, valueSize int, ts int64) ([]byte, record.Header) {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Key: []byte(fmt.Sprintf("k%d", off+int64(i))), Value: bytes.Repeat([]byte{byte('a' + i%26)}, valueSize), TimestampDelta: int64(i)}
	}
	b := record.AppendBatch(nil, record.Batch{BaseOffset: off, BaseTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
	h, err := record.Validate(b)
	if err != nil {
		panic(err)
	}
	return b, h
}

type appended struct {
	off   int64
	pos   int64
	ts    int64
	batch []byte
}

// fill appends count batches of n records each and returns what it wrote.
func fill(t testing.TB, s *Segment, count, n, valueSize int) []appended {
	t.Helper()
	var out []appended
	off := s.NextOffset()
	for i := 0; i < count; i++ {
		b, h := mkBatch(off, n, valueSize, 1000+int64(i)*10)
		pos := s.Size()
		if err := s.Append(b, &h); err != nil {
			t.Fatal(err)
		}
		out = append(out, appended{off: off, pos: pos, ts: h.MaxTimestamp, batch: b})
		off = h.NextOffset()
	}
	return out
}

func newSeg(t testing.TB, base int64, cfg Config) *Segment {
	t.Helper()
	s, err := Create(t.TempDir(), base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLookup(t *testing.T) {
	s := newSeg(t, 100, Config{IndexIntervalBytes: 256, MaxBytes: 1 << 20})
	w := fill(t, s, 40, 3, 50)
	if n, _ := s.indexCounts(); n < 5 {
		t.Fatalf("only %d index entries", n)
	}
	last := w[len(w)-1]
	tests := []struct {
		name    string
		off     int64
		wantPos int64
	}{
		{"before base", 50, 0},
		{"base", 100, 0},
		{"inside first batch", 102, 0},
		{"second batch", w[1].off, w[1].pos},
		{"between entries", w[17].off + 1, w[17].pos},
		{"last batch", last.off, last.pos},
		{"last record", last.off + 2, last.pos},
		{"past end", last.off + 3, s.Size()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pos, err := s.position(tt.off, s.Size())
			if err != nil || pos != tt.wantPos {
				t.Fatalf("Position(%d) = %d, %v; want %d", tt.off, pos, err, tt.wantPos)
			}
		})
	}
	// Read returns whole batches starting at the right one.
	got, err := s.Read(w[5].off+1, 1<<62, 3*len(w[5].batch), true)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Join([][]byte{w[5].batch, w[6].batch, w[7].batch}, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("Read returned %d bytes, want the 3 batches (%d)", len(got), len(want))
	}
	// maxBytes smaller than one batch: one batch with minOne, none without.
	if got, _ := s.Read(w[5].off, 1<<62, 10, true); !bytes.Equal(got, w[5].batch) {
		t.Fatalf("minOne read = %d bytes", len(got))
	}
	if got, _ := s.Read(w[5].off, 1<<62, 10, false); len(got) != 0 {
		t.Fatalf("read without minOne = %d bytes", len(got))
	}
	// maxOffset stops before the batch at that offset.
	if got, _ := s.Read(w[5].off, w[7].off, 1<<30, true); !bytes.Equal(got, want[:len(w[5].batch)+len(w[6].batch)]) {
		t.Fatalf("maxOffset read = %d bytes", len(got))
	}
	if got, _ := s.Read(last.off+3, 1<<62, 1<<20, true); got != nil {
		t.Fatal("read past the end returned data")
	}
}

func TestFindTimestamp(t *testing.T) {
	s := newSeg(t, 0, Config{IndexIntervalBytes: 200, MaxBytes: 1 << 20})
	w := fill(t, s, 30, 2, 40) // batch i has timestamps 1000+10i .. 1000+10i+1
	tests := []struct {
		ts   int64
		want int64 // batch index, -1 for none
	}{
		{0, 0}, {1000, 0}, {1001, 0}, {1002, 1}, {1010, 1}, {1155, 16}, {1291, 29}, {1292, -1},
	}
	for _, tt := range tests {
		pos, base, ok, err := s.FindTimestamp(tt.ts)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want < 0 {
			if ok {
				t.Errorf("FindTimestamp(%d) found %d, want none", tt.ts, base)
			}
			continue
		}
		if !ok || base != w[tt.want].off || pos != w[tt.want].pos {
			t.Errorf("FindTimestamp(%d) = pos %d base %d ok %v; want batch %d (base %d)", tt.ts, pos, base, ok, tt.want, w[tt.want].off)
		}
	}
}

func TestSealReopenIsCheap(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(dir, 0, Config{IndexIntervalBytes: 128, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w := fill(t, s, 50, 2, 30)
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	wantIdx, wantTime := s.indexCounts()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, FileName(0, ".index")))
	if fi.Size() != wantIdx*IndexEntrySize {
		t.Fatalf("index not trimmed: %d bytes for %d entries", fi.Size(), wantIdx)
	}
	r, err := Open(dir, 0, Config{IndexIntervalBytes: 128}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if gi, gt := r.indexCounts(); gi != wantIdx || gt != wantTime {
		t.Fatalf("reopened with %d/%d entries, want %d/%d", gi, gt, wantIdx, wantTime)
	}
	if r.NextOffset() != w[len(w)-1].off+2 || r.MaxTimestamp() != w[len(w)-1].ts {
		t.Fatalf("reopened next %d max ts %d", r.NextOffset(), r.MaxTimestamp())
	}
	for _, a := range w {
		got, err := r.Read(a.off, 1<<62, 1, true)
		if err != nil || !bytes.Equal(got, a.batch) {
			t.Fatalf("read %d after reopen: %v", a.off, err)
		}
	}
	if err := r.Append(w[0].batch, &record.Header{BaseOffset: 1 << 20}); !errors.Is(err, ErrSealed) {
		t.Fatalf("append to sealed = %v", err)
	}
}

// TestRecovery tears, flips and truncates the tail of a segment and checks
// that recovery keeps exactly the valid prefix and rebuilds indexes.
func TestRecovery(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, dir string, w []appended)
		keep    int // batches that must survive
		idxGone bool
	}{
		{"clean", func(*testing.T, string, []appended) {}, 20, false},
		{"torn last batch", func(t *testing.T, dir string, w []appended) {
			truncate(t, dir, w[19].pos+int64(len(w[19].batch))-7)
		}, 19, false},
		{"torn header", func(t *testing.T, dir string, w []appended) { truncate(t, dir, w[19].pos+5) }, 19, false},
		{"flipped byte in batch 15", func(t *testing.T, dir string, w []appended) {
			flip(t, dir, w[15].pos+70)
		}, 15, false},
		{"garbage appended", func(t *testing.T, dir string, w []appended) {
			f, _ := os.OpenFile(filepath.Join(dir, FileName(0, ".log")), os.O_WRONLY|os.O_APPEND, 0)
			f.Write(bytes.Repeat([]byte{0xff}, 100))
			f.Close()
		}, 20, false},
		{"zeros appended", func(t *testing.T, dir string, w []appended) {
			f, _ := os.OpenFile(filepath.Join(dir, FileName(0, ".log")), os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 4096))
			f.Close()
		}, 20, false},
		{"index deleted", func(t *testing.T, dir string, w []appended) {
			os.Remove(filepath.Join(dir, FileName(0, ".index")))
			os.Remove(filepath.Join(dir, FileName(0, ".timeindex")))
		}, 20, true},
	}
	for _, tc := range cases {
		for _, recovery := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/recover=%v", tc.name, recovery), func(t *testing.T) {
				if !recovery && tc.name != "clean" && tc.name != "index deleted" {
					t.Skip("damage to the log is only repaired by a recovery open")
				}
				dir := t.TempDir()
				s, err := Create(dir, 0, Config{IndexIntervalBytes: 100, MaxBytes: 1 << 20})
				if err != nil {
					t.Fatal(err)
				}
				w := fill(t, s, 20, 2, 20)
				wantIdx, _ := s.indexCounts()
				s.Close()
				tc.damage(t, dir, w)
				r, err := Open(dir, 0, Config{IndexIntervalBytes: 100, MaxBytes: 1 << 20}, OpenOptions{Recover: recovery, Active: true})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				keep := w[:tc.keep]
				wantNext := int64(0)
				if len(keep) > 0 {
					wantNext = keep[len(keep)-1].off + 2
				}
				if r.NextOffset() != wantNext {
					t.Fatalf("next offset %d, want %d", r.NextOffset(), wantNext)
				}
				all, err := r.Read(0, 1<<62, 1<<30, true)
				if err != nil {
					t.Fatal(err)
				}
				var want []byte
				for _, a := range keep {
					want = append(want, a.batch...)
				}
				if !bytes.Equal(all, want) {
					t.Fatalf("recovered %d bytes, want %d", len(all), len(want))
				}
				if tc.keep == 20 && !tc.idxGone {
					if gi, _ := r.indexCounts(); gi != wantIdx {
						t.Fatalf("index entries %d, want %d", gi, wantIdx)
					}
				}
				// Appends continue right after the valid prefix.
				b, h := mkBatch(wantNext, 1, 10, 5000)
				if err := r.Append(b, &h); err != nil {
					t.Fatal(err)
				}
				got, _ := r.Read(wantNext, 1<<62, 1<<20, true)
				if !bytes.Equal(got, b) {
					t.Fatal("append after recovery not readable")
				}
			})
		}
	}
}

func truncate(t *testing.T, dir string, n int64) {
	t.Helper()
	if err := os.Truncate(filepath.Join(dir, FileName(0, ".log")), n); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, dir string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, FileName(0, ".log")), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	f.ReadAt(b[:], pos)
	b[0] ^= 0x40
	f.WriteAt(b[:], pos)
}

func TestDamagedIndexRebuilt(t *testing.T) {
	dir := t.TempDir()
	s, _ := Create(dir, 0, Config{IndexIntervalBytes: 100})
	w := fill(t, s, 20, 2, 20)
	s.Close()
	// An index entry pointing past the log must not be trusted.
	f, _ := os.OpenFile(filepath.Join(dir, FileName(0, ".index")), os.O_RDWR, 0)
	f.WriteAt([]byte{0, 0, 0, 9, 0x7f, 0, 0, 0}, 0)
	f.Close()
	r, err := Open(dir, 0, Config{IndexIntervalBytes: 100}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, a := range w {
		got, err := r.Read(a.off, 1<<62, 1, true)
		if err != nil || !bytes.Equal(got, a.batch) {
			t.Fatalf("offset %d unreadable after index repair: %v", a.off, err)
		}
	}
}

// TestGolden pins the byte layout of a small segment and its indexes.
func TestGolden(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(dir, 0, Config{IndexIntervalBytes: 150})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 6, 2, 16)
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, ext := range []string{".log", ".index", ".timeindex"} {
		got, err := os.ReadFile(filepath.Join(dir, FileName(0, ext)))
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "golden"+ext)
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./segment -run Golden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n got %x\nwant %x", ext, golden, got, want)
		}
	}
}

func TestSegmentFull(t *testing.T) {
	s := newSeg(t, 0, Config{MaxBytes: 4096, MaxIndexBytes: 96})
	b, h := mkBatch(0, 1, 100, 0)
	if !s.Fits(len(b), 4096) {
		t.Fatal("empty segment says a small batch does not fit")
	}
	big, bh := mkBatch(0, 1, 5000, 0)
	if err := s.Append(big, &bh); !errors.Is(err, ErrFull) {
		t.Fatalf("oversized append = %v", err)
	}
	if err := s.Append(b, &h); err != nil {
		t.Fatal(err)
	}
	if s.Fits(4096, 4096) {
		t.Fatal("Fits ignores the size bound")
	}
	if err := s.Append(b, &h); !errors.Is(err, ErrOffset) {
		t.Fatalf("append of an old offset = %v", err)
	}
}

// failFile fails writes after a budget of bytes, like a full disk.
type failFile struct {
	*os.File
	budget int64
}

func (f *failFile) WriteAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.budget {
		n := max(0, int(f.budget-off))
		f.File.WriteAt(b[:n], off) // a partial write reaches the file
		return n, fmt.Errorf("write: %w", os.ErrInvalid)
	}
	return f.File.WriteAt(b, off)
}
func (f *failFile) Sync() error { return durable.SyncData(f.File) }

func TestWriteErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	ff := &failFile{budget: 1000}
	s, err := Create(dir, 0, Config{WrapFile: func(f *os.File) File { ff.File = f; return ff }})
	if err != nil {
		t.Fatal(err)
	}
	var ok []appended
	var werr error
	for i := 0; i < 20 && werr == nil; i++ {
		b, h := mkBatch(s.NextOffset(), 1, 100, 0)
		pos := s.Size()
		if werr = s.Append(b, &h); werr == nil {
			ok = append(ok, appended{off: h.BaseOffset, pos: pos, batch: b})
		}
	}
	if werr == nil {
		t.Fatal("no write error")
	}
	b, h := mkBatch(s.NextOffset(), 1, 1, 0)
	if err := s.Append(b, &h); err == nil || err.Error() != werr.Error() {
		t.Fatalf("second append = %v, want sticky %v", err, werr)
	}
	if err := s.Sync(); err == nil {
		t.Fatal("sync after a write error succeeded")
	}
	// What was written before stays readable, and the file holds no torn tail.
	all, _ := s.Read(0, 1<<62, 1<<20, true)
	if len(all) != int(s.Size()) || int(s.Size()) != len(ok)*len(ok[0].batch) {
		t.Fatalf("readable %d, size %d, appended ok %d", len(all), s.Size(), len(ok))
	}
	s.Close()
	fi, _ := os.Stat(filepath.Join(dir, FileName(0, ".log")))
	if fi.Size() != int64(len(ok)*len(ok[0].batch)) {
		t.Fatalf("file has %d bytes, want the %d of whole batches", fi.Size(), len(ok)*len(ok[0].batch))
	}
}

func TestReaderKeepsDeletedSegment(t *testing.T) {
	s, err := Create(t.TempDir(), 0, Config{})
	if err != nil {
		t.Fatal(err)
	}
	w := fill(t, s, 3, 1, 10)
	if !s.Acquire() {
		t.Fatal("acquire failed")
	}
	b, _ := s.Read(0, 1<<62, 1<<20, true)
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if s.Acquire() {
		// Still referenced by us, so a new Acquire may succeed; that is fine.
		s.Release()
	}
	if !bytes.Equal(b[:len(w[0].batch)], w[0].batch) {
		t.Fatal("mapping changed while held")
	}
	s.Release()
	if s.Acquire() {
		t.Fatal("acquire after the last release succeeded")
	}
}

func FuzzScan(f *testing.F) {
	var seed []byte
	for i := 0; i < 4; i++ {
		b, _ := mkBatch(int64(i*2), 2, 10, 0)
		seed = append(seed, b...)
	}
	f.Add(seed, uint16(0))
	f.Add(seed[:len(seed)-3], uint16(5))
	f.Add([]byte{0, 0, 0}, uint16(1))
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte, flipAt uint16) {
	{
		data = bytes.Clone(data)
		if len(data) > 0 && int(flipAt) < len(data) && flipAt%3 == 1 {
			data[flipAt] ^= 0x01
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName(0, ".log")), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, 0, Config{IndexIntervalBytes: 64, MaxBytes: 1 << 16, MaxIndexBytes: 1024}, OpenOptions{Recover: true, Active: true})
		if err != nil {
			return
		}
		defer s.Close()
		valid := Scan(data, 0, nil)
		if s.Size() != valid {
			t.Fatalf("recovered size %d, scan says %d", s.Size(), valid)
		}
		// Every batch served is valid.
		all, err := s.Read(0, 1<<62, 1<<30, true)
		if err != nil {
			t.Fatal(err)
		}
		for len(all) > 0 {
			h, err := record.Validate(all)
			if err != nil {
				t.Fatalf("served a bad batch: %v", err)
			}
			all = all[h.Size():]
		}
	}
}
