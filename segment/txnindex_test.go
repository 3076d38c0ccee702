package segment

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestTxnIndexLayout checks an entry's bytes against Kafka's layout:
// version int16, producer id, first offset, last offset, last stable
// offset, int64 each, big-endian.
func TestTxnIndexLayout(t *testing.T) {
	e := AbortedTxn{ProducerID: 0x0102030405060708, FirstOffset: 10, LastOffset: 20, LastStableOffset: 21}
	b := appendTxnEntry(nil, &e)
	want := []byte{0, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	want = binary.BigEndian.AppendUint64(want, 10)
	want = binary.BigEndian.AppendUint64(want, 20)
	want = binary.BigEndian.AppendUint64(want, 21)
	if !slices.Equal(b, want) || len(b) != TxnIndexEntrySize {
		t.Fatalf("entry % x, want % x", b, want)
	}
	got, err := decodeTxnIndex(append(b, 0, 0, 1)) // a torn entry after it
	if err != nil || len(got) != 1 || got[0] != e {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	b[1] = 1
	if _, err := decodeTxnIndex(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 1 entry: %v", err)
	}
}

func TestTxnIndex(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{MaxBytes: 1 << 20}
	s, err := Create(dir, 100, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 10, 2, 10)
	if s.HasAbortedTxns() {
		t.Fatal("a new segment has aborted transactions")
	}
	entries := []AbortedTxn{
		{ProducerID: 1, FirstOffset: 90, LastOffset: 104, LastStableOffset: 100},
		{ProducerID: 2, FirstOffset: 102, LastOffset: 106, LastStableOffset: 105},
		{ProducerID: 3, FirstOffset: 108, LastOffset: 110, LastStableOffset: 111},
		{ProducerID: 4, FirstOffset: 112, LastOffset: 115, LastStableOffset: 116},
	}
	for _, e := range entries {
		if err := s.AppendAbortedTxn(e); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Segment) {
		t.Helper()
		for _, tc := range []struct {
			from, to int64
			want     []int64 // producer ids
			done     bool
		}{
			{0, 200, []int64{1, 2, 3, 4}, false},
			{105, 109, []int64{2, 3}, true}, // entry 3's last stable offset, 111, ends the search
			{107, 108, nil, true},
			{111, 113, []int64{4}, true},
			{116, 200, nil, false},
		} {
			got, done, err := s.AbortedTxns(tc.from, tc.to, nil)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ProducerID)
			}
			if !slices.Equal(ids, tc.want) || done != tc.done {
				t.Errorf("[%d, %d): %v done %v, want %v done %v", tc.from, tc.to, ids, done, tc.want, tc.done)
			}
		}
	}
	check(s)
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	m := s.Meta()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened from its Meta, told of the file: read when first needed.
	s, err = Open(dir, 100, cfg, OpenOptions{Meta: &m, TxnIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.HasAbortedTxns() {
		t.Fatal("no aborted transactions after reopening")
	}
	check(s)
	s.Close()

	// Recovery drops the file; its entries are rebuilt by the caller.
	s, err = Open(dir, 100, cfg, OpenOptions{Recover: true, TxnIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.HasAbortedTxns() {
		t.Fatal("recovered segment kept its aborted transactions")
	}
	if _, err := os.Stat(filepath.Join(dir, FileName(100, ".txnindex"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("txnindex after recovery: %v", err)
	}
	if err := s.AppendAbortedTxn(entries[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncTxnIndex(); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("files left after Remove: %v", left)
	}
}

// TestTxnIndexCorrupt checks that a damaged index is an error to its
// readers, never entries made up.
func TestTxnIndexCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(dir, 0, Config{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 2, 1, 10)
	if err := s.AppendAbortedTxn(AbortedTxn{ProducerID: 1, FirstOffset: 0, LastOffset: 1, LastStableOffset: 2}); err != nil {
		t.Fatal(err)
	}
	m := s.Meta()
	s.Close()
	p := filepath.Join(dir, FileName(0, ".txnindex"))
	b, _ := os.ReadFile(p)
	binary.BigEndian.PutUint64(b[10:], 5) // a first offset past the marker
	os.WriteFile(p, b, 0o644)
	s, err = Open(dir, 0, Config{MaxBytes: 1 << 20}, OpenOptions{Meta: &m, TxnIndex: true, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.AbortedTxns(0, 10, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("AbortedTxns of a corrupt index: %v", err)
	}
}

func FuzzTxnIndex(f *testing.F) {
	e := AbortedTxn{ProducerID: 1, FirstOffset: 5, LastOffset: 9, LastStableOffset: 10}
	f.Add(appendTxnEntry(nil, &e))
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeTxnIndex(b)
		if err != nil {
			return
		}
		if len(got) != len(b)/TxnIndexEntrySize {
			t.Fatalf("%d entries from %d bytes", len(got), len(b))
		}
		for _, e := range got {
			if e.FirstOffset < 0 || e.LastOffset < e.FirstOffset {
				t.Fatalf("accepted %+v", e)
			}
		}
	})
}
