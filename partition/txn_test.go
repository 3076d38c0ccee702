package partition

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// txnBatch is a transactional batch of n records.
func txnBatch(pid int64, epoch int16, seq int32, n int) []byte {
	return batch(bopt{pid: pid, epoch: epoch, seq: seq, n: n, attrs: record.Transactional})
}

// appendTxn appends a transactional batch, verifying first as the server
// does once the coordinator agreed.
func appendTxn(t *testing.T, p *Partition, pid int64, epoch int16, seq int32, n int) Result {
	t.Helper()
	g := p.BeginVerification(pid, epoch)
	res, err := p.AppendVerified(txnBatch(pid, epoch, seq, n), g)
	if err != nil {
		t.Fatalf("producer %d epoch %d seq %d: %v", pid, epoch, seq, err)
	}
	return res
}

func marker(t *testing.T, p *Partition, pid int64, epoch int16, commit bool) int64 {
	t.Helper()
	off, err := p.WriteMarker(Marker{ProducerID: pid, ProducerEpoch: epoch, Commit: commit})
	if err != nil {
		t.Fatalf("marker of %d: %v", pid, err)
	}
	return off
}

func syncP(t *testing.T, p *Partition) {
	t.Helper()
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
}

func aborted(t *testing.T, p *Partition, from, to int64) []AbortedTxn {
	t.Helper()
	got, err := p.AbortedTxns(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTransactionLSO(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	if _, err := p.Append(batch(bopt{n: 3})); err != nil { // offsets 0-2
		t.Fatal(err)
	}
	// A transactional batch needs the coordinator's verification.
	if _, err := p.Append(txnBatch(7, 0, 0, 2)); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("unverified transactional batch: %v", err)
	}
	if _, err := p.AppendVerified(txnBatch(7, 0, 0, 2), p.BeginVerification(8, 0)); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("batch under another producer's guard: %v", err)
	}
	first := appendTxn(t, p, 7, 0, 0, 2).BaseOffset // 3-4
	if first != 3 {
		t.Fatalf("first offset %d", first)
	}
	// Open now: no verification needed for the next batches.
	if g := p.BeginVerification(7, 0); g != nil {
		t.Fatal("verification asked for a producer with a transaction open")
	}
	if _, err := p.Append(txnBatch(7, 0, 2, 1)); err != nil { // 5
		t.Fatal(err)
	}
	// A batch outside the transaction is refused.
	if _, err := p.Append(batch(bopt{pid: 7, epoch: 0, seq: 3})); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("non-transactional batch during a transaction: %v", err)
	}
	if _, err := p.Append(batch(bopt{n: 1})); err != nil { // 6
		t.Fatal(err)
	}
	syncP(t, p)
	if hw, lso := p.HighWatermark(), p.LastStableOffset(); hw != 7 || lso != 3 {
		t.Fatalf("high watermark %d, LSO %d; want 7, 3", hw, lso)
	}
	// The commit marker moves the LSO once it is durable (WriteMarker
	// returns then).
	off := marker(t, p, 7, 0, true) // 7
	if off != 7 || p.LastStableOffset() != 8 || p.HighWatermark() != 8 {
		t.Fatalf("marker at %d, LSO %d, high watermark %d", off, p.LastStableOffset(), p.HighWatermark())
	}
	if got := aborted(t, p, 0, 8); len(got) != 0 {
		t.Fatalf("a commit left aborted transactions: %v", got)
	}
	// The marker is a control batch in the log, served to every reader.
	v, err := p.Read(7, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	h, err := record.Parse(v.Data)
	v.Release()
	if err != nil || !h.IsControl() || h.ProducerID != 7 {
		t.Fatalf("read at the marker: %+v %v", h, err)
	}
	if got := ViewEnd(v.Data); got != 8 {
		t.Fatalf("ViewEnd %d", got)
	}
}

func TestAbortedTransactions(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	appendTxn(t, p, 1, 0, 0, 2)     // 0-1
	appendTxn(t, p, 2, 0, 0, 1)     // 2
	appendTxn(t, p, 1, 0, 2, 1)     // 3
	a1 := marker(t, p, 1, 0, false) // 4: aborts 0-3 of producer 1
	if lso := p.LastStableOffset(); lso != 2 {
		t.Fatalf("LSO %d with producer 2 open at 2", lso)
	}
	c2 := marker(t, p, 2, 0, true)  // 5
	appendTxn(t, p, 3, 4, 0, 1)     // 6
	a3 := marker(t, p, 3, 4, false) // 7
	want := []AbortedTxn{
		{ProducerID: 1, FirstOffset: 0, LastOffset: a1, LastStableOffset: 2},
		{ProducerID: 3, FirstOffset: 6, LastOffset: a3, LastStableOffset: a3 + 1},
	}
	if got := aborted(t, p, 0, p.LastStableOffset()); !slices.Equal(got, want) {
		t.Fatalf("aborted %+v, want %+v", got, want)
	}
	if got := aborted(t, p, c2, c2+1); len(got) != 0 {
		t.Fatalf("aborted at the commit marker: %+v", got)
	}
	if got := aborted(t, p, 5, 7); !slices.Equal(got, want[1:]) {
		t.Fatalf("aborted in [5,7): %+v", got)
	}
}

// TestVerificationGuard checks that a batch verified before its
// transaction ended is refused after the marker, so an aborted
// transaction never gets a batch appended after its abort.
func TestVerificationGuard(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	g := p.BeginVerification(5, 0)
	if g2 := p.BeginVerification(5, 0); g2 != g {
		t.Fatal("a concurrent verification of the same producer got another guard")
	}
	// The coordinator said yes, then the transaction was aborted (the
	// marker lands before the batch).
	marker(t, p, 5, 0, false)
	if _, err := p.AppendVerified(txnBatch(5, 0, 0, 1), g); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("batch verified before the abort: %v", err)
	}
	if p.LogEndOffset() != 1 {
		t.Fatalf("log end %d: only the marker belongs there", p.LogEndOffset())
	}
}

// TestMarkerEpochs: a transaction version 2 marker bumps the producer's
// epoch, fencing the batches of the old one; an older marker is refused;
// a repeated one is appended and changes nothing.
func TestMarkerEpochs(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	appendTxn(t, p, 9, 3, 0, 1)
	marker(t, p, 9, 4, true) // the epoch after the bump
	if _, err := p.AppendVerified(txnBatch(9, 3, 1, 1), p.BeginVerification(9, 3)); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("a batch of the ended epoch: %v", err)
	}
	// The next transaction starts again at sequence 0.
	appendTxn(t, p, 9, 4, 0, 1)
	if _, err := p.WriteMarker(Marker{ProducerID: 9, ProducerEpoch: 3, Commit: true}); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("marker of an older epoch: %v", err)
	}
	marker(t, p, 9, 5, false)
	end := p.LogEndOffset()
	marker(t, p, 9, 5, false) // repeated after a coordinator restart
	if p.LogEndOffset() != end+1 || p.LastStableOffset() != end+1 {
		t.Fatalf("repeated marker: end %d, LSO %d", p.LogEndOffset(), p.LastStableOffset())
	}
	if got := aborted(t, p, 0, end+1); len(got) != 1 {
		t.Fatalf("aborted %+v; the repeated marker ended no transaction", got)
	}
	ps := p.Producers()
	if len(ps) != 1 || ps[0].ProducerEpoch != 5 || ps[0].TxnStartOffset != -1 {
		t.Fatalf("producers %+v", ps)
	}
}

func TestLSOAtLogStart(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	appendTxn(t, p, 1, 0, 0, 1) // 0, left open
	if _, err := p.Append(batch(bopt{n: 4})); err != nil {
		t.Fatal(err)
	}
	syncP(t, p)
	if _, err := p.DeleteRecords(3); err != nil {
		t.Fatal(err)
	}
	if lso := p.LastStableOffset(); lso != 3 {
		t.Fatalf("LSO %d below the log start 3", lso)
	}
	// Producers with a transaction open are not expired.
	if n := p.ExpireProducers(time.Now().Add(48 * time.Hour)); n != 0 {
		t.Fatalf("expired %d producers", n)
	}
	ps := p.Producers()
	if len(ps) != 1 || ps[0].TxnStartOffset != 0 || ps[0].LastSequence != 0 {
		t.Fatalf("producers %+v", ps)
	}
}

// copyDir copies the files of a partition directory, as a crash would
// leave them.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(from, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a temporary file renamed meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return to
}

// TestTransactionHoldsLSOOnceAppended: a batch that opens a transaction
// holds the last stable offset from the moment it is in the log, before
// Append returns: a sync that makes it durable right then (a group commit
// of another producer's batch) must not let a read_committed fetch read
// it.
func TestTransactionHoldsLSOOnceAppended(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	if _, err := p.Append(batch(bopt{n: 2})); err != nil {
		t.Fatal(err)
	}
	checked := 0
	testHookAppended = func(q *Partition, base int64) {
		if q != p {
			return
		}
		if err := q.log.Sync(); err != nil {
			t.Error(err)
		}
		if hw, lso := q.HighWatermark(), q.LastStableOffset(); hw <= base || lso > base {
			t.Errorf("batch at %d durable: high watermark %d, last stable offset %d", base, hw, lso)
		}
		checked++
	}
	defer func() { testHookAppended = nil }()
	g := p.BeginVerification(7, 0)
	if _, err := p.AppendVerified(txnBatch(7, 0, 0, 1), g); err != nil {
		t.Fatal(err)
	}
	testHookAppended = nil
	if checked != 1 {
		t.Fatalf("the hook ran %d times", checked)
	}
	if lso := p.LastStableOffset(); lso != 2 {
		t.Fatalf("last stable offset %d with the transaction open at 2", lso)
	}
	marker(t, p, 7, 0, false)
	if lso, end := p.LastStableOffset(), p.LogEndOffset(); lso != end {
		t.Fatalf("last stable offset %d after the abort, log end %d", lso, end)
	}
}

// TestTransactionRecovery checks that open transactions, the LSO and the
// aborted-transaction index come back after a clean close and after a
// crash, whose recovery rebuilds the index of the segments it scans from
// producer state older than them.
func TestTransactionRecovery(t *testing.T) {
	cfg := Config{Log: log.Config{SegmentBytes: 600}}
	dir := t.TempDir()
	p, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var want []AbortedTxn
	var seq [4]int32
	// Producer 1 opens a transaction that stays open; producers 2 and 3
	// abort theirs, each spanning segments.
	appendTxn(t, p, 1, 0, 0, 1)
	for round := 0; round < 6; round++ {
		for pid := int64(2); pid <= 3; pid++ {
			first := appendTxn(t, p, pid, 0, seq[pid], 2).BaseOffset
			seq[pid] += 2
			for i := 0; i < 3; i++ {
				if _, err := p.Append(batch(bopt{n: 3})); err != nil {
					t.Fatal(err)
				}
				if _, err := p.Append(txnBatch(pid, 0, seq[pid], 1)); err != nil {
					t.Fatal(err)
				}
				seq[pid]++
			}
			off := marker(t, p, pid, 0, pid == 2 && round%2 == 0)
			if pid == 3 || round%2 == 1 {
				want = append(want, AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: off, LastStableOffset: 0})
			}
		}
	}
	if p.log.Segments() < 5 {
		t.Fatalf("only %d segments", p.log.Segments())
	}
	lso, end := p.LastStableOffset(), p.LogEndOffset()
	if lso != 0 {
		t.Fatalf("LSO %d with producer 1 open at 0", lso)
	}
	check := func(name string, q *Partition) {
		t.Helper()
		if q.LastStableOffset() != lso || q.LogEndOffset() != end {
			t.Fatalf("%s: LSO %d end %d, want %d %d", name, q.LastStableOffset(), q.LogEndOffset(), lso, end)
		}
		if got := aborted(t, q, 0, math.MaxInt64); !slices.Equal(got, want) {
			t.Fatalf("%s: aborted\n%+v\nwant\n%+v", name, got, want)
		}
		// Producer 1's transaction is still open: its next batch needs no
		// verification, and its commit frees the LSO.
		if _, err := q.Append(txnBatch(1, 0, 1, 1)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		marker(t, q, 1, 0, true)
		if q.LastStableOffset() != q.LogEndOffset() {
			t.Fatalf("%s: LSO %d after the commit, end %d", name, q.LastStableOffset(), q.LogEndOffset())
		}
	}
	// A crash image: the files as they are while p runs.
	crashed := copyDir(t, dir)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Recovery scans from the recovery point: make it scan everything
	// too, with no checkpoint at all.
	crashedAll := copyDir(t, crashed)
	os.Remove(filepath.Join(crashedAll, "log.checkpoint"))
	check("clean", openP(t, dir, cfg))
	check("crash", openP(t, crashed, cfg))
	check("crash, no checkpoint", openP(t, crashedAll, cfg))
}

// TestMarkerCoordinatorFenced: a marker whose coordinator epoch is lower
// than that of its producer's last marker is refused and writes nothing;
// an equal or higher one is taken. The coordinator epoch outlives a clean
// close (the producer snapshot) and an unclean stop (the log's markers).
func TestMarkerCoordinatorFenced(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := "unclean"
		if clean {
			name = "clean"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := Open(dir, Config{})
			if err != nil {
				t.Fatal(err)
			}
			write := func(p *Partition, commit bool, coordEpoch int32) error {
				_, err := p.WriteMarker(Marker{ProducerID: 9, ProducerEpoch: 0, Commit: commit, CoordinatorEpoch: coordEpoch})
				return err
			}
			appendTxn(t, p, 9, 0, 0, 1)
			if err := write(p, true, 5); err != nil {
				t.Fatal(err)
			}
			// The producer's next transaction, at the same epoch
			// (transaction version 1), then a duplicate of the first
			// commit from an older coordinator.
			first := appendTxn(t, p, 9, 0, 1, 1).BaseOffset
			end := p.LogEndOffset()
			if err := write(p, true, 4); !errors.Is(err, ErrCoordinatorFenced) {
				t.Fatalf("marker of coordinator epoch 4 after 5: %v", err)
			}
			if p.LogEndOffset() != end || p.LastStableOffset() != first {
				t.Fatalf("fenced marker: log end %d (was %d), LSO %d (the open transaction is at %d)", p.LogEndOffset(), end, p.LastStableOffset(), first)
			}
			if ps := p.Producers(); len(ps) != 1 || ps[0].TxnStartOffset != first || ps[0].CoordinatorEpoch != 5 {
				t.Fatalf("producers after a fenced marker: %+v", ps)
			}
			if err := write(p, false, 5); err != nil {
				t.Fatalf("marker of the same coordinator epoch: %v", err)
			}
			if err := write(p, false, 7); err != nil {
				t.Fatalf("marker of a newer coordinator epoch: %v", err)
			}
			if ps := p.Producers(); len(ps) != 1 || ps[0].TxnStartOffset != -1 || ps[0].CoordinatorEpoch != 7 {
				t.Fatalf("producers: %+v", ps)
			}
			if clean {
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				// No roll and no close: no snapshot, the log is walked.
				syncP(t, p)
				t.Cleanup(func() { p.Close() })
				if n := len(snapshotOffsets(dir)); n != 0 {
					t.Fatalf("%d snapshots without a roll or a close", n)
				}
			}
			p2 := openP(t, dir, Config{})
			end = p2.LogEndOffset()
			if err := write(p2, true, 6); !errors.Is(err, ErrCoordinatorFenced) {
				t.Fatalf("marker of coordinator epoch 6 after 7, reopened: %v", err)
			}
			if p2.LogEndOffset() != end {
				t.Fatalf("fenced marker after reopening: log end %d, was %d", p2.LogEndOffset(), end)
			}
			if err := write(p2, true, 7); err != nil {
				t.Fatalf("marker of coordinator epoch 7, reopened: %v", err)
			}
		})
	}
}
