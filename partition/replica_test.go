package partition

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEpochCacheEndOffset(t *testing.T) {
	c := &epochCache{dir: t.TempDir()}
	c.assign(1, 0)
	c.assign(3, 10)
	c.assign(4, 25)
	tests := []struct {
		ask       int32
		epoch     int32
		endOffset int64
	}{
		{4, 4, 40},  // the latest: the log end
		{3, 3, 25},  // ends where 4 began
		{2, 1, 10},  // never seen: the epoch below it, ended where 3 began
		{0, 0, 0},   // below the first: ends where the first began
		{5, -1, -1}, // newer than any
		{-1, -1, -1},
	}
	for _, tc := range tests {
		e, off := c.endOffsetFor(tc.ask, 40)
		if e != tc.epoch || off != tc.endOffset {
			t.Errorf("endOffsetFor(%d) = %d, %d; want %d, %d", tc.ask, e, off, tc.epoch, tc.endOffset)
		}
	}
	if !c.truncateFromEnd(25) || c.latest() != 3 {
		t.Fatalf("after truncating to 25 the latest epoch is %d", c.latest())
	}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	got, err := loadEpochs(c.dir)
	if err != nil || len(got.entries) != 2 || got.entries[1] != (epochEntry{3, 10}) {
		t.Fatalf("reloaded %v, %v", got.entries, err)
	}
}

// TestReplicaLeaderHighWatermark: the leader's high watermark is the
// smallest durable log end of the ISR; acks=all waits for it; a follower
// caught up is offered for the ISR; a lost leadership fails the waiters.
func TestReplicaLeaderHighWatermark(t *testing.T) {
	p := openP(t, t.TempDir(), Config{MinInsyncReplicas: 2})
	if err := p.BecomeLeader(0, 1, []int32{0, 1, 2}, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	var end int64
	for range 3 {
		res, err := p.Append(batch(bopt{n: 2}))
		if err != nil {
			t.Fatal(err)
		}
		end = res.NextOffset
	}
	if err := p.CheckMinISR(); err != nil {
		t.Fatal(err)
	}
	if hw := p.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d before any follower fetched", hw)
	}
	done := make(chan error, 1)
	go func() { done <- p.SyncReplicated(context.Background(), 1, end) }()
	if add, err := p.FollowerFetched(1, 1, end, time.Now()); err != nil || add {
		t.Fatal(add, err)
	}
	select {
	case err := <-done:
		t.Fatalf("acknowledged with one follower of two: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := p.FollowerFetched(2, 0, 2, time.Now()); !errors.Is(err, ErrFencedEpoch) {
		t.Fatalf("an older epoch: %v", err)
	}
	if _, err := p.FollowerFetched(2, 1, 2, time.Now()); err != nil {
		t.Fatal(err)
	}
	if hw := p.HighWatermark(); hw != 2 {
		t.Fatalf("high watermark %d, want 2 (follower 2's log end)", hw)
	}
	if _, err := p.FollowerFetched(2, 1, end, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Follower 2 leaves the ISR; min.insync.replicas=2 still holds.
	p.UpdateISR([]int32{0, 1}, []int32{0, 1, 2})
	if lag := p.LaggingReplicas(time.Now().Add(time.Hour), time.Second); len(lag) != 0 {
		t.Fatalf("lagging %v: every in-sync follower is caught up", lag)
	}
	if add, err := p.FollowerFetched(2, 1, end, time.Now()); err != nil || !add {
		t.Fatalf("a caught-up follower out of the ISR: add %v, %v", add, err)
	}
	p.UpdateISR([]int32{0}, []int32{0, 1, 2})
	if err := p.CheckMinISR(); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("ISR of one, min.insync.replicas 2: %v", err)
	}
	p.UpdateISR([]int32{0, 1}, []int32{0, 1, 2})
	res, err := p.Append(batch(bopt{}))
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- p.SyncReplicated(context.Background(), 1, res.NextOffset) }()
	time.Sleep(20 * time.Millisecond)
	if err := p.BecomeFollower(0, 2); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrNotLeader) {
		t.Fatalf("waiter after losing the leadership: %v", err)
	}
	if _, err := p.Append(batch(bopt{})); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append on a follower: %v", err)
	}
}

// TestReplicaFollowerTruncate: a follower appends the leader's batches
// with their offsets and epochs, truncates a divergent tail, and rebuilds
// its producer state.
func TestReplicaFollowerTruncate(t *testing.T) {
	leader := openP(t, t.TempDir(), Config{})
	if err := leader.BecomeLeader(0, 3, []int32{0}, []int32{0}); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := leader.Append(batch(bopt{pid: 7, epoch: 0, seq: int32(i), n: 1})); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.Sync(); err != nil {
		t.Fatal(err)
	}
	v, err := leader.ReadTo(0, leader.LogEndOffset(), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte(nil), v.Data...)
	v.Release()

	f := openP(t, t.TempDir(), Config{})
	if err := f.BecomeFollower(1, 3); err != nil {
		t.Fatal(err)
	}
	end, err := f.AppendReplica(3, data)
	if err != nil || end != 4 {
		t.Fatal(end, err)
	}
	// Appending the same batches again changes nothing.
	if end, err := f.AppendReplica(3, data); err != nil || end != 4 {
		t.Fatal(end, err)
	}
	if e := f.LatestEpoch(); e != 3 {
		t.Fatalf("follower's latest epoch %d, want 3", e)
	}
	if e, off, _ := f.EndOffsetForEpoch(3); e != 3 || off != 4 {
		t.Fatalf("end of epoch 3: %d, %d", e, off)
	}
	if got, err := f.TruncateTo(3, 2); err != nil || got != 2 {
		t.Fatal(got, err)
	}
	// As leader at a new epoch the producer continues at sequence 2:
	// its state was rebuilt from what is left.
	if err := f.BecomeLeader(1, 4, []int32{1}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Append(batch(bopt{pid: 7, epoch: 0, seq: 3, n: 1})); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("sequence 3 after truncation to 2 batches: %v", err)
	}
	res, err := f.Append(batch(bopt{pid: 7, epoch: 0, seq: 2, n: 1}))
	if err != nil || res.BaseOffset != 2 || res.LeaderEpoch != 4 {
		t.Fatal(res, err)
	}
	if e, off, _ := f.EndOffsetForEpoch(3); e != 3 || off != 2 {
		t.Fatalf("end of epoch 3 after the new epoch began at 2: %d, %d", e, off)
	}
	// A late answer of the old leader (epoch 3) touches nothing now that
	// the replica leads: its log holds what it acknowledged.
	end = f.LogEndOffset()
	if _, err := f.TruncateTo(3, 1); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("truncating a leader for an old epoch's fetch: %v", err)
	}
	if _, err := f.AppendReplica(3, data); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("appending a late fetch to a leader: %v", err)
	}
	if err := f.TruncateFullyAndStartAt(4, 100); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("emptying a leader: %v", err)
	}
	if got := f.LogEndOffset(); got != end {
		t.Fatalf("the leader's log end moved from %d to %d", end, got)
	}
	if err := f.BecomeFollower(1, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := f.TruncateTo(4, 1); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("truncating a follower of epoch 5 for a fetch of epoch 4: %v", err)
	}
	if err := f.TruncateFullyAndStartAt(5, 100); err != nil {
		t.Fatal(err)
	}
	if f.LogStartOffset() != 100 || f.LogEndOffset() != 100 {
		t.Fatalf("start %d end %d", f.LogStartOffset(), f.LogEndOffset())
	}
}

// TestReplicaTransactions: a follower replicating a leader's
// transactional batches and markers keeps the same transaction state: the
// aborted-transaction index, the open transaction holding its last stable
// offset, and, once it leads, the markers that end what it saw open. A
// truncation that cuts a marker reopens its transaction; the index of the
// cut segment is rebuilt.
func TestReplicaTransactions(t *testing.T) {
	leader := openP(t, t.TempDir(), Config{})
	if err := leader.BecomeLeader(0, 1, []int32{0}, []int32{0}); err != nil {
		t.Fatal(err)
	}
	appendTxn(t, leader, 5, 0, 0, 2) // 0-1: aborted
	appendTxn(t, leader, 6, 0, 0, 1) // 2: committed
	abortAt := marker(t, leader, 5, 0, false)
	commitAt := marker(t, leader, 6, 0, true)
	appendTxn(t, leader, 7, 0, 0, 1) // open
	syncP(t, leader)
	v, err := leader.ReadTo(0, leader.LogEndOffset(), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte(nil), v.Data...)
	v.Release()

	f := openP(t, t.TempDir(), Config{})
	if err := f.BecomeFollower(1, 1); err != nil {
		t.Fatal(err)
	}
	end, err := f.AppendReplica(1, data)
	if err != nil || end != leader.LogEndOffset() {
		t.Fatal(end, err)
	}
	syncP(t, f)
	f.SetFollowerHW(1, end)
	want := aborted(t, leader, 0, end)
	if got := aborted(t, f, 0, end); len(want) != 1 || !slices.Equal(got, want) {
		t.Fatalf("follower's aborted transactions %+v, the leader's %+v", got, want)
	}
	if got, w := f.LastStableOffset(), leader.LastStableOffset(); got != w || got != commitAt+1 {
		t.Fatalf("follower's last stable offset %d, the leader's %d, want %d", got, w, commitAt+1)
	}
	// The cut removes the commit marker: producer 6's transaction is
	// open again; the abort marker's entry is rebuilt.
	if got, err := f.TruncateTo(1, commitAt); err != nil || got != commitAt {
		t.Fatal(got, err)
	}
	if got := aborted(t, f, 0, commitAt); len(got) != 1 || got[0].LastOffset != abortAt {
		t.Fatalf("aborted transactions after the truncation: %+v", got)
	}
	// Leading now, it ends the transaction it sees open.
	if err := f.BecomeLeader(1, 2, []int32{1}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if lso := f.LastStableOffset(); lso != 2 {
		t.Fatalf("last stable offset %d with producer 6's transaction open at 2", lso)
	}
	marker(t, f, 6, 0, true)
	if lso := f.LastStableOffset(); lso != f.LogEndOffset() {
		t.Fatalf("last stable offset %d after the commit, log end %d", lso, f.LogEndOffset())
	}
	// A follower refuses markers.
	if err := f.BecomeFollower(1, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteMarker(Marker{ProducerID: 6, ProducerEpoch: 0, Commit: true}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("marker on a follower: %v", err)
	}
}

// TestReplicaCoordinatorEpoch: a follower takes the coordinator epochs of
// the markers it replicates, so that once it leads it refuses a marker of
// a coordinator its leader had already seen replaced.
func TestReplicaCoordinatorEpoch(t *testing.T) {
	leader := openP(t, t.TempDir(), Config{})
	if err := leader.BecomeLeader(0, 1, []int32{0}, []int32{0}); err != nil {
		t.Fatal(err)
	}
	appendTxn(t, leader, 5, 0, 0, 1)
	if _, err := leader.WriteMarker(Marker{ProducerID: 5, Commit: true, CoordinatorEpoch: 3}); err != nil {
		t.Fatal(err)
	}
	appendTxn(t, leader, 5, 0, 1, 1) // open
	syncP(t, leader)
	v, err := leader.ReadTo(0, leader.LogEndOffset(), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte(nil), v.Data...)
	v.Release()

	f := openP(t, t.TempDir(), Config{})
	if err := f.BecomeFollower(1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AppendReplica(1, data); err != nil {
		t.Fatal(err)
	}
	syncP(t, f)
	if err := f.BecomeLeader(1, 2, []int32{1}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	end := f.LogEndOffset()
	if _, err := f.WriteMarker(Marker{ProducerID: 5, Commit: true, CoordinatorEpoch: 2}); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("marker of coordinator epoch 2 on the new leader: %v", err)
	}
	if f.LogEndOffset() != end {
		t.Fatalf("fenced marker: log end %d, was %d", f.LogEndOffset(), end)
	}
	if _, err := f.WriteMarker(Marker{ProducerID: 5, Commit: true, CoordinatorEpoch: 3}); err != nil {
		t.Fatalf("marker of coordinator epoch 3 on the new leader: %v", err)
	}
}

// TestReplicaWithoutRole: a replica of a cluster, opened again (a node
// that restarted), takes no produce and serves nothing until the metadata
// gives it a role, even where it led before: another may lead now.
func TestReplicaWithoutRole(t *testing.T) {
	dir := t.TempDir()
	p := openP(t, dir, Config{Replica: true})
	if _, err := p.Append(batch(bopt{n: 1})); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append before a role: %v", err)
	}
	if leader, epoch := p.Leader(); leader || epoch != -1 {
		t.Fatalf("Leader() = %v, %d before a role", leader, epoch)
	}
	if err := p.BecomeLeader(1, 0, []int32{1}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(batch(bopt{n: 3})); err != nil {
		t.Fatal(err)
	}
	syncP(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q := openP(t, dir, Config{Replica: true})
	if _, err := q.Append(batch(bopt{n: 1})); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append after a restart, before a role: %v", err)
	}
	if hw := q.HighWatermark(); hw != 0 {
		t.Fatalf("high watermark %d before a role", hw)
	}
	if err := q.BecomeFollower(1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(batch(bopt{n: 1})); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append on a follower: %v", err)
	}
}

// TestReplicaStopWaiting checks that a stopping broker's leader gives up
// its waits for followers: a Sync and an acks=all wait in progress fail
// with ErrStopping (a retriable ErrNotLeader), as does every later one,
// while what is below the high watermark is still answered.
func TestReplicaStopWaiting(t *testing.T) {
	p := openP(t, t.TempDir(), Config{})
	if err := p.BecomeLeader(0, 1, []int32{0, 1}, []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	res, err := p.Append(batch(bopt{n: 2}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.FollowerFetched(1, 1, res.NextOffset, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := p.SyncReplicated(context.Background(), 1, res.NextOffset); err != nil {
		t.Fatalf("replicated records: %v", err)
	}
	if _, err := p.Append(batch(bopt{n: 2})); err != nil {
		t.Fatal(err)
	}
	waits := make(chan error, 2)
	go func() { waits <- p.Sync() }()
	go func() { waits <- p.WaitReplicated(context.Background(), p.LogEndOffset()) }()
	for range 2 {
		select {
		case err := <-waits:
			t.Fatalf("a wait ended with no follower: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.StopWaiting()
	for range 2 {
		if err := <-waits; !errors.Is(err, ErrStopping) || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("a wait at StopWaiting: %v", err)
		}
	}
	if err := p.Sync(); !errors.Is(err, ErrStopping) {
		t.Fatalf("a Sync after StopWaiting: %v", err)
	}
	if err := p.WaitReplicated(context.Background(), res.NextOffset); err != nil {
		t.Fatalf("a wait for replicated records after StopWaiting: %v", err)
	}
}

// TestEpochCacheSaveRetried: a leader epoch whose save failed (here a
// directory stands where the temporary file goes; on a full disk the
// write fails) is saved by the retried BecomeLeader, and one a
// follower's fetch failed to save by its next fetch; a restart then
// finds it, so the replica's divergence check asks about the right
// epoch.
func TestEpochCacheSaveRetried(t *testing.T) {
	dir := t.TempDir()
	block := filepath.Join(dir, epochFile+".tmp")
	p := openP(t, dir, Config{})
	if err := os.Mkdir(block, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.BecomeLeader(0, 3, []int32{0}, []int32{0}); err == nil {
		t.Fatal("BecomeLeader succeeded without saving its epoch")
	}
	if e := p.LatestEpoch(); e != -1 {
		t.Fatalf("a BecomeLeader that failed left epoch %d in the cache", e)
	}
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	if err := p.BecomeLeader(0, 3, []int32{0}, []int32{0}); err != nil {
		t.Fatal(err)
	}
	if c, err := loadEpochs(dir); err != nil {
		t.Fatal(err)
	} else if c.latest() != 3 {
		t.Fatalf("after the retried BecomeLeader the file's latest epoch is %d, want 3", c.latest())
	}
	if _, err := p.Append(batch(bopt{n: 2})); err != nil {
		t.Fatal(err)
	}
	syncP(t, p)
	v, err := p.ReadTo(0, p.LogEndOffset(), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte(nil), v.Data...)
	v.Release()

	fdir := t.TempDir()
	f := openP(t, fdir, Config{})
	if err := f.BecomeFollower(1, 3); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(fdir, epochFile+".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AppendReplica(3, data); err == nil {
		t.Fatal("AppendReplica succeeded without saving the epoch")
	}
	if err := os.Remove(filepath.Join(fdir, epochFile+".tmp")); err != nil {
		t.Fatal(err)
	}
	if end, err := f.AppendReplica(3, data); err != nil || end != 2 {
		t.Fatal(end, err) // the batch is held: only the epoch is saved
	}
	if c, err := loadEpochs(fdir); err != nil {
		t.Fatal(err)
	} else if c.latest() != 3 || c.entries[0].StartOffset != 0 {
		t.Fatalf("after the next fetch the follower's file holds %v, want epoch 3 from 0", c.entries)
	}
}
