package segment

import (
	"bytes"
	"testing"
)

// TestFileCacheEvictsIdleOnly: with room for one file and one mapping, a
// segment a reader holds keeps its mapping while others are read (its
// bytes stay valid), an idle one is unmapped and closed, and reading it
// again maps it again.
func TestFileCacheEvictsIdleOnly(t *testing.T) {
	c := NewFileCache(1, 1)
	var segs []*Segment
	var data [][]appended
	for i := range 3 {
		s, err := Create(t.TempDir(), int64(i*100), Config{Files: c, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		data = append(data, fill(t, s, 5, 1, 30))
		if err := s.Seal(); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, s)
	}
	if f, m := c.Held(); f > 1 || m > 1 {
		t.Fatalf("idle segments hold %d files and %d mappings, limit 1 and 1", f, m)
	}
	// A reader holds segment 0's bytes while the others are read.
	if !segs[0].Acquire() {
		t.Fatal("acquire")
	}
	held, err := segs[0].Read(0, 1<<62, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for i, s := range segs[1:] {
			if !s.Acquire() {
				t.Fatal("acquire")
			}
			b, err := s.Read(s.Base(), 1<<62, 1<<20, true)
			if err != nil || !bytes.HasPrefix(b, data[i+1][0].batch) {
				t.Fatalf("round %d: segment %d read %v", round, i+1, err)
			}
			s.Release()
		}
	}
	if !bytes.HasPrefix(held, data[0][0].batch) {
		t.Fatal("a held mapping changed")
	}
	segs[0].mu.RLock()
	mapped := segs[0].logMap != nil
	segs[0].mu.RUnlock()
	if !mapped {
		t.Fatal("a segment held by a reader was unmapped")
	}
	segs[0].Release()
	// Now idle, segment 0 gives way to the next reads.
	for _, s := range segs[1:] {
		s.Acquire()
		if _, err := s.Read(s.Base(), 1<<62, 1<<20, true); err != nil {
			t.Fatal(err)
		}
		s.Release()
	}
	segs[0].mu.RLock()
	mapped = segs[0].logMap != nil || segs[0].indexMapped
	segs[0].mu.RUnlock()
	if mapped {
		t.Fatal("an idle segment kept its mappings over the limit")
	}
	if f, m := c.Held(); f > 1 || m > 1 {
		t.Fatalf("idle segments hold %d files and %d mappings, limit 1 and 1", f, m)
	}
	if st := c.Stats(); st.Evictions == 0 || st.MaxFiles != 1 || st.MaxMaps != 1 || st.Files > 1 || st.Maps > 1 {
		t.Fatalf("stats after evictions: %+v", st)
	}
	// And it reads again.
	segs[0].Acquire()
	b, err := segs[0].Read(0, 1<<62, 1<<20, true)
	if err != nil || !bytes.HasPrefix(b, data[0][0].batch) {
		t.Fatalf("read after eviction: %v", err)
	}
	segs[0].Release()
}
