package coordstate

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ferrymq/ferry/partition"
)

type rec struct{ Key, Value []byte }

func openParts(t *testing.T, dir string, n int) []*partition.Partition {
	t.Helper()
	ps := make([]*partition.Partition, n)
	for i := range ps {
		p, err := partition.Open(filepath.Join(dir, fmt.Sprintf("state-%d", i)), partition.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	return ps
}

func lookup(ps []*partition.Partition) func(int32) (*partition.Partition, error) {
	return func(p int32) (*partition.Partition, error) {
		if p < 0 || int(p) >= len(ps) {
			return nil, fmt.Errorf("no partition %d", p)
		}
		return ps[p], nil
	}
}

func replay(t *testing.T, st *Store[rec], p int32) []string {
	t.Helper()
	var got []string
	err := st.Replay(p, func(off int64, r rec) error {
		got = append(got, fmt.Sprintf("%d:%s=%s", off, r.Key, r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestAppendReplaySnapshot appends, replays across a reopen, snapshots and
// replays again: the snapshot's records, and only them, remain.
func TestAppendReplaySnapshot(t *testing.T) {
	dir := t.TempDir()
	ps := openParts(t, dir, 2)
	st := New[rec]("__state", lookup(ps))
	off, err := st.Append(1, []rec{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("2")}})
	if err != nil || off != 0 {
		t.Fatalf("Append = %d, %v", off, err)
	}
	if off, err = st.Append(1, []rec{{[]byte("a"), nil}}); err != nil || off != 2 {
		t.Fatalf("Append = %d, %v", off, err)
	}
	if _, err := st.Append(2, []rec{{[]byte("x"), nil}}); err == nil {
		t.Fatal("Append to a partition that does not exist succeeded")
	}
	for _, p := range ps {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ps = openParts(t, dir, 2)
	st = New[rec]("__state", lookup(ps))
	if got, want := fmt.Sprint(replay(t, st, 1)), "[0:a=1 1:b=2 2:a=]"; got != want {
		t.Fatalf("replay = %s, want %s", got, want)
	}
	if got := replay(t, st, 0); len(got) != 0 {
		t.Fatalf("replay of an empty partition = %v", got)
	}
	if err := st.Snapshot(1, []rec{{[]byte("b"), []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(replay(t, st, 1)), "[3:b=2]"; got != want {
		t.Fatalf("replay after snapshot = %s, want %s", got, want)
	}
	if err := st.Snapshot(1, nil); err != nil {
		t.Fatal(err)
	}
	if got := replay(t, st, 1); len(got) != 0 {
		t.Fatalf("replay after an empty snapshot = %v", got)
	}
	for _, p := range ps {
		p.Close()
	}
}

// TestSnapshotBatches writes a snapshot larger than one batch may hold.
func TestSnapshotBatches(t *testing.T) {
	ps := openParts(t, t.TempDir(), 1)
	defer ps[0].Close()
	st := New[rec]("__state", lookup(ps))
	val := make([]byte, 300<<10)
	var live []rec
	for i := range 8 {
		live = append(live, rec{[]byte(fmt.Sprint(i)), val})
	}
	if _, err := st.Append(0, live[:1]); err != nil {
		t.Fatal(err)
	}
	if err := st.Snapshot(0, live); err != nil {
		t.Fatal(err)
	}
	got := replay(t, st, 0)
	if len(got) != len(live) {
		t.Fatalf("replayed %d records, want %d", len(got), len(live))
	}
}

// TestAppendMinISR: on a leader whose ISR is smaller than
// min.insync.replicas, Append refuses before writing (nothing reaches the
// log, so no state the coordinator did not adopt can surface later).
func TestAppendMinISR(t *testing.T) {
	p, err := partition.Open(filepath.Join(t.TempDir(), "state-0"), partition.Config{MinInsyncReplicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BecomeLeader(0, 1, []int32{0}, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	st := New[rec]("__state", lookup([]*partition.Partition{p}))
	if _, err := st.Append(0, []rec{{[]byte("a"), []byte("1")}}); !errors.Is(err, partition.ErrNotEnoughReplicas) {
		t.Fatalf("Append with 1 of 2 in sync: %v", err)
	}
	if end := p.LogEndOffset(); end != 0 {
		t.Fatalf("log end %d after a refused append", end)
	}
}

// TestReplaySkipsMarkers: a transaction marker appended to a partition
// (as __consumer_offsets gets them in a cluster) is not replayed as a
// coordinator record.
func TestReplaySkipsMarkers(t *testing.T) {
	ps := openParts(t, t.TempDir(), 1)
	defer ps[0].Close()
	st := New[rec]("__state", lookup(ps))
	if _, err := st.Append(0, []rec{{[]byte("a"), []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps[0].WriteMarker(partition.Marker{ProducerID: 7, Commit: true, CoordinatorEpoch: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(0, []rec{{[]byte("b"), []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(replay(t, st, 0)); got != "[0:a=1 2:b=2]" {
		t.Fatalf("replayed %s", got)
	}
}
