package segment

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/record"
)

// thinned rewrites a batch of mkBatch keeping the records whose offset
// delta keep accepts (possibly none), as the log cleaner does.
func thinned(t testing.TB, b []byte, keep func(d int32) bool) ([]byte, record.Header) {
	t.Helper()
	h, err := record.Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	n := int32(0)
	record.ForEachRaw(b[record.HeaderSize:h.Size()], h.RecordCount, func(r *record.RawRecord) bool {
		if keep(r.OffsetDelta) {
			kept = append(kept, r.Raw...)
			n++
		}
		return true
	})
	out, err := record.Retain(nil, &h, kept, n, -1)
	if err != nil {
		t.Fatal(err)
	}
	var oh record.Header
	if err := record.ValidateStored(out, &oh); err != nil {
		t.Fatal(err)
	}
	return out, oh
}

// renameInto renames a finished Builder's files into place.
func renameInto(t testing.TB, dir string, base int64) {
	t.Helper()
	for _, ext := range Extensions {
		p := filepath.Join(dir, FileName(base, ext))
		if err := os.Rename(p+CleanedSuffix, p); err != nil && (ext != ".txnindex" || !errors.Is(err, os.ErrNotExist)) {
			t.Fatal(err)
		}
	}
}

// TestBuilderGaps writes a segment of thinned and empty batches (gaps
// between and inside batches) with a Builder, renames it into place and
// opens it from its Meta, from a check of its indexes and from a recovery
// scan: all agree, and reads find the batch holding an offset, or the
// first one after it.
func TestBuilderGaps(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{IndexIntervalBytes: 200, MaxBytes: 1 << 20}
	bl, err := NewBuilder(dir, 1000, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	off := int64(1000)
	for i := range 60 {
		b, _ := mkBatch(off, 5, 40, 5000+int64(i))
		var out []byte
		var h record.Header
		switch i % 4 {
		case 0: // whole
			out, h = b, mustValidate(t, b)
		case 1: // every other record
			out, h = thinned(t, b, func(d int32) bool { return d%2 == 1 })
		case 2: // none: an empty batch
			out, h = thinned(t, b, func(int32) bool { return false })
		case 3: // dropped altogether
			off += 5
			continue
		}
		if err := bl.Append(out, &h); err != nil {
			t.Fatal(err)
		}
		want = append(want, out)
		off += 5
	}
	if _, err := os.Stat(filepath.Join(dir, FileName(1000, ".log")+CleanedSuffix)); err != nil {
		t.Fatalf("the builder writes under the temporary name: %v", err)
	}
	m, err := bl.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if m.Base != 1000 || m.Size != int64(len(bytes.Join(want, nil))) || m.NextOffset != off-5 {
		t.Fatalf("meta %+v (want next %d)", m, off-5)
	}
	renameInto(t, dir, 1000)
	for name, opts := range map[string]OpenOptions{"meta": {Meta: &m}, "files": {}, "recover": {Recover: true}} {
		s, err := Open(dir, 1000, cfg, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := s.Meta(); opts.Meta == nil && got != m {
			t.Fatalf("%s: meta %+v, builder said %+v", name, got, m)
		}
		s.Acquire()
		all, err := s.Read(1000, 1<<62, 1<<30, true)
		if err != nil || !bytes.Equal(all, bytes.Join(want, nil)) {
			t.Fatalf("%s: read all: %v", name, err)
		}
		// Each offset finds the batch holding it or the next.
		for o := int64(1000); o < off; o++ {
			b, err := s.Read(o, 1<<62, 1, true)
			if err != nil {
				t.Fatal(err)
			}
			var first []byte
			for _, w := range want {
				h, _ := record.Parse(w)
				if h.LastOffset() >= o {
					first = w
					break
				}
			}
			if !bytes.Equal(b, first) {
				t.Fatalf("%s: read at %d: got %d bytes", name, o, len(b))
			}
		}
		wantBase := int64(-1)
		for _, w := range want {
			if h, _ := record.Parse(w); h.MaxTimestamp >= 5030 {
				wantBase = h.BaseOffset
				break
			}
		}
		if _, base, ok, err := s.FindTimestamp(5030); err != nil || !ok || base != wantBase {
			t.Fatalf("%s: find timestamp: base %d (want %d) ok %v err %v", name, base, wantBase, ok, err)
		}
		s.Release()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func mustValidate(t testing.TB, b []byte) record.Header {
	t.Helper()
	h, err := record.Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestBuilderEmptyAndAbort: a builder may finish empty, and Abort removes
// its files before or after Finish.
func TestBuilderEmptyAndAbort(t *testing.T) {
	dir := t.TempDir()
	bl, err := NewBuilder(dir, 7, Config{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bl.Finish()
	if err != nil || m != (Meta{Base: 7, NextOffset: 7, MaxTimestamp: -1, FirstTimestamp: -1}) {
		t.Fatalf("empty: %+v %v", m, err)
	}
	if err := bl.Abort(); err != nil {
		t.Fatal(err)
	}
	bl, err = NewBuilder(dir, 7, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, h := mkBatch(7, 2, 10, 1)
	if err := bl.Append(b, &h); err != nil {
		t.Fatal(err)
	}
	if err := bl.Abort(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// TestRetireKeepsReaders: once retired, a segment's readers, those
// holding it and those taking it before the owner lets go, read the bytes
// it held even after its files are replaced by others of the same name,
// and it never opens the new files.
func TestRetireKeepsReaders(t *testing.T) {
	c := NewFileCache(1, 1)
	dir := t.TempDir()
	s, err := Create(dir, 0, Config{Files: c, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w := fill(t, s, 10, 2, 40)
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Join(func() (b [][]byte) {
		for _, a := range w {
			b = append(b, a.batch)
		}
		return
	}(), nil)
	if !s.Acquire() {
		t.Fatal("acquire")
	}
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	// Another segment of the same base takes the file names, renamed
	// over them as the log cleaner does.
	bl, err := NewBuilder(dir, 0, Config{Files: c})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b, h := mkBatch(int64(i), 1, 99, 1)
		if err := bl.Append(b, &h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bl.Finish(); err != nil {
		t.Fatal(err)
	}
	renameInto(t, dir, 0)
	// Pressure on the cache does not take the mapping away.
	for range 3 {
		o2, err := Open(dir, 0, Config{Files: c}, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o2.Acquire()
		if _, err := o2.Read(0, 1<<62, 1<<20, true); err != nil {
			t.Fatal(err)
		}
		o2.Release()
		o2.Close()
	}
	// A sync (the log's flusher may hold it from before its seal) has
	// nothing to do: it does not open the files, which are another
	// segment's now, nor fail.
	if err := s.Sync(); err != nil {
		t.Fatalf("sync of a retired segment: %v", err)
	}
	// A reader that takes it now still reads the old bytes.
	if !s.Acquire() {
		t.Fatal("acquire after retire")
	}
	got, err := s.Read(0, 1<<62, 1<<30, true)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("read after the files were replaced: %v", err)
	}
	s.Release() // the owner
	got2, err := s.Read(w[5].off, 1<<62, 1<<30, true)
	if err != nil || !bytes.Equal(got2, orig[w[5].pos:]) {
		t.Fatalf("indexed read after the owner let go: %v", err)
	}
	s.Release()
	s.Release()
	if s.Acquire() {
		t.Fatal("acquired a destroyed segment")
	}
}

// TestRemovedSegmentKeepsReaderMapping: a removed segment that a reader
// still holds is not evicted by the FileCache when another reader's
// Release leaves it with one reference: that reference is a reader's, not
// the owner's.
func TestRemovedSegmentKeepsReaderMapping(t *testing.T) {
	c := NewFileCache(1, 1)
	var segs []*Segment
	for i := range 2 {
		s, err := Create(t.TempDir(), int64(i*100), Config{Files: c, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s, 5, 1, 30)
		if err := s.Seal(); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, s)
	}
	t.Cleanup(func() { segs[1].Close() })
	a, b := segs[0], segs[1]
	// Two readers on a, one on b: both mapped, over the limit.
	a.Acquire()
	a.Acquire()
	held, err := a.Read(0, 1<<62, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(held)
	b.Acquire()
	if _, err := b.Read(100, 1<<62, 1<<20, true); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(); err != nil { // the owner's reference goes
		t.Fatal(err)
	}
	a.Release() // one reader left: the cache sweeps
	a.mu.RLock()
	mapped := a.logMap != nil
	a.mu.RUnlock()
	if !mapped {
		t.Fatal("the cache unmapped a removed segment under its last reader")
	}
	if !bytes.Equal(held, want) {
		t.Fatal("held bytes changed")
	}
	a.Release()
	b.Release()
	if _, err := os.Stat(filepath.Join(a.dir, FileName(0, ".log"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed file: %v", err)
	}
}

// heldFile holds its first Sync until release is closed.
type heldFile struct {
	*os.File
	calls   atomic.Int64
	held    chan struct{}
	release chan struct{}
}

func (f *heldFile) Sync() error {
	if f.calls.Add(1) == 1 {
		close(f.held)
		<-f.release
	}
	return f.File.Sync()
}

// TestSealWaitsForSync: Seal does not close the file under an fdatasync
// in flight (a background flush of a segment being sealed), which would
// fail with "use of closed file" and stop the log.
func TestSealWaitsForSync(t *testing.T) {
	hf := &heldFile{held: make(chan struct{}), release: make(chan struct{})}
	s, err := Create(t.TempDir(), 0, Config{MaxBytes: 1 << 20, WrapFile: func(f *os.File) File { hf.File = f; return hf }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fill(t, s, 3, 1, 10)
	synced := make(chan error, 1)
	go func() { synced <- s.Sync() }()
	<-hf.held
	sealed := make(chan error, 1)
	go func() { sealed <- s.Seal() }()
	time.Sleep(50 * time.Millisecond) // Seal reaches the close
	close(hf.release)
	if err := <-synced; err != nil {
		t.Fatalf("a sync in flight during Seal: %v", err)
	}
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
}

// TestBuilderAbortedTxns: a Builder writes the aborted transactions it is
// given to its temporary .txnindex, synced by Finish, which the segment
// renamed into place and opened with OpenOptions.TxnIndex serves; a
// retired segment keeps serving its own after its .txnindex is removed.
func TestBuilderAbortedTxns(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{MaxBytes: 1 << 20}
	old, err := Create(dir, 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, old, 0, 2, 10)
	e := AbortedTxn{ProducerID: 7, FirstOffset: 2, LastOffset: 8, LastStableOffset: 9}
	if err := old.AppendAbortedTxn(e); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	// Opened again, it has not read its .txnindex yet.
	if old, err = Open(dir, 0, cfg, OpenOptions{TxnIndex: true}); err != nil {
		t.Fatal(err)
	}
	bl, err := NewBuilder(dir, 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		b, h := mkBatch(int64(2*i), 2, 10, 1)
		if err := bl.Append(b, &h); err != nil {
			t.Fatal(err)
		}
	}
	if bl.HasAbortedTxns() {
		t.Fatal("a new builder has aborted transactions")
	}
	if err := bl.AppendAbortedTxn(e); err != nil {
		t.Fatal(err)
	}
	if !bl.HasAbortedTxns() {
		t.Fatal("HasAbortedTxns false after AppendAbortedTxn")
	}
	if _, err := os.Stat(filepath.Join(dir, FileName(0, ".txnindex")+CleanedSuffix)); err != nil {
		t.Fatalf("the builder writes .txnindex under the temporary name: %v", err)
	}
	m, err := bl.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// The old segment is retired, then its files are replaced.
	if err := old.Retire(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, FileName(0, ".txnindex"))); err != nil {
		t.Fatal(err)
	}
	if got, _, err := old.AbortedTxns(0, 100, nil); err != nil || len(got) != 1 || got[0] != e {
		t.Fatalf("retired segment: %v %v", got, err)
	}
	old.Release()
	renameInto(t, dir, 0)
	s, err := Open(dir, 0, cfg, OpenOptions{Meta: &m, TxnIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _, err := s.AbortedTxns(0, 100, nil); err != nil || len(got) != 1 || got[0] != e {
		t.Fatalf("cleaned segment: %v %v", got, err)
	}
}
