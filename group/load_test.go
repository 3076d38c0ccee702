package group

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLoadOnLead: with LoadOnLead nothing is coordinated until its
// partition is loaded; a loaded partition serves what its store holds,
// including what another broker wrote while it led; an unloaded one
// answers COORDINATOR_NOT_AVAILABLE again.
func TestLoadOnLead(t *testing.T) {
	store := newMemStore()
	// Another coordinator (the previous leader) commits an offset.
	prev, _ := newTestCoordinator(t, func(c *Config) { c.Store = store })
	commit := func(c *Coordinator, offset int64) int16 {
		req := &kmsg.OffsetCommitRequest{Version: 8, Group: "g", Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
			{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: offset}}},
		}}
		return c.OffsetCommit(context.Background(), req).Topics[0].Partitions[0].ErrorCode
	}
	fetch := func(c *Coordinator) (int64, int16) {
		req := &kmsg.OffsetFetchRequest{Version: 7, Group: "g", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t1", Partitions: []int32{0}}}}
		resp := c.OffsetFetch(context.Background(), req)
		if resp.ErrorCode != 0 {
			return -1, resp.ErrorCode
		}
		return resp.Topics[0].Partitions[0].Offset, resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(prev, 42); code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	prev.Close()

	c, _ := newTestCoordinator(t, func(c *Config) { c.Store = store; c.LoadOnLead = true })
	p := c.Partition("g")
	if _, code := fetch(c); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("before Load: %v", kerr.ErrorForCode(code))
	}
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if off, code := fetch(c); code != 0 || off != 42 {
		t.Fatalf("after Load: offset %d, %v", off, kerr.ErrorForCode(code))
	}
	if code := commit(c, 43); code != 0 {
		t.Fatalf("commit after Load: %v", kerr.ErrorForCode(code))
	}
	c.Unload(p)
	if _, code := fetch(c); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("after Unload: %v", kerr.ErrorForCode(code))
	}
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if off, code := fetch(c); code != 0 || off != 43 {
		t.Fatalf("loaded again: offset %d, %v", off, kerr.ErrorForCode(code))
	}
}

// TestLoadPendingTxnOffsets: offsets a transaction committed through the
// previous leader are pending in the loaded partition, and the
// transaction's marker, written to the new leader, resolves them; a
// marker for a partition not loaded is refused (ErrNotLoaded), so its
// sender retries where the partition is led.
func TestLoadPendingTxnOffsets(t *testing.T) {
	store := newMemStore()
	prev, _ := newTestCoordinator(t, func(c *Config) { c.Store = store })
	allCodes(t, txnCommit(t, prev, txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 10})), 0)
	prev.Close()

	c, _ := newTestCoordinator(t, func(c *Config) { c.Store = store; c.LoadOnLead = true })
	p := c.Partition("g")
	if err := c.WriteTxnMarker(context.Background(), p, 7, 0, true); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("marker before Load: %v", err)
	}
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if got := fetchOffsets(t, c, "g", true); got[0] != unstable {
		t.Fatalf("pending offset after Load: %v", got)
	}
	if err := c.WriteTxnMarker(context.Background(), p, 7, 0, true); err != nil {
		t.Fatal(err)
	}
	if got := fetchOffsets(t, c, "g", true); got[0] != 10 {
		t.Fatalf("after the commit marker: %v, want offset 10", got)
	}
}
