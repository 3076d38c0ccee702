package group

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func txnCommitReq(v int16, group string, pid int64, epoch int16, offsets map[int32]int64) *kmsg.TxnOffsetCommitRequest {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = v
	req.TransactionalID = "tx"
	req.Group = group
	req.ProducerID, req.ProducerEpoch = pid, epoch
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = "t1", topicID("t1")
	for p := int32(0); p < 4; p++ {
		if off, ok := offsets[p]; ok {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = p, off
			rt.Partitions = append(rt.Partitions, rp)
		}
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// txnCommit makes a TxnOffsetCommit as the server does, the coordinator
// having verified it, and returns the error of each partition.
func txnCommit(t *testing.T, c *Coordinator, req *kmsg.TxnOffsetCommitRequest) []int16 {
	t.Helper()
	g := c.BeginTxnOffsetCommit(req.Group, req.ProducerID)
	resp := c.TxnOffsetCommit(context.Background(), req, g)
	var codes []int16
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			codes = append(codes, p.ErrorCode)
		}
	}
	return codes
}

func allCodes(t *testing.T, codes []int16, want int16) {
	t.Helper()
	for _, c := range codes {
		if c != want {
			t.Fatalf("codes %v, want all %v", codes, kerr.ErrorForCode(want))
		}
	}
}

// fetchOffsets returns the committed offset (or error code, negated minus
// one) of partitions 0-3 of t1.
func fetchOffsets(t *testing.T, c *Coordinator, group string, requireStable bool) [4]int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 9
	req.RequireStable = requireStable
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rg.MemberEpoch = -1
	rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t1", Partitions: []int32{0, 1, 2, 3}}}
	req.Groups = append(req.Groups, rg)
	resp := c.OffsetFetch(context.Background(), req)
	var out [4]int64
	for _, p := range resp.Groups[0].Topics[0].Partitions {
		out[p.Partition] = p.Offset
		if p.ErrorCode != 0 {
			out[p.Partition] = -1 - int64(p.ErrorCode)
		}
	}
	return out
}

var unstable = -1 - int64(kerr.UnstableOffsetCommit.Code)

func TestTxnOffsetCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, store := newTestCoordinator(t, nil)
		ctx := context.Background()
		part := c.Partition("g")
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 10, 1: 11})), 0)
		if got := fetchOffsets(t, c, "g", false); got != [4]int64{-1, -1, -1, -1} {
			t.Fatalf("pending offsets visible: %v", got)
		}
		if got := fetchOffsets(t, c, "g", true); got != [4]int64{unstable, unstable, -1, -1} {
			t.Fatalf("require_stable: %v", got)
		}
		// A marker of another producer, or of another partition, changes
		// nothing.
		if err := c.WriteTxnMarker(ctx, part, 8, 0, true); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteTxnMarker(ctx, (part+1)%4, 7, 0, true); err != nil {
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "g", true); got[0] != unstable {
			t.Fatalf("after unrelated markers: %v", got)
		}
		if err := c.WriteTxnMarker(ctx, part, 7, 1, true); err != nil { // the bumped epoch of transaction version 2
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "g", true); got != [4]int64{10, 11, -1, -1} {
			t.Fatalf("after the commit: %v", got)
		}
		// A repeated marker finds nothing left.
		if err := c.WriteTxnMarker(ctx, part, 7, 1, true); err != nil {
			t.Fatal(err)
		}
		// The next transaction aborts: its offsets are dropped.
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "g", 7, 1, map[int32]int64{0: 20, 2: 22})), 0)
		if err := c.WriteTxnMarker(ctx, part, 7, 2, false); err != nil {
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "g", true); got != [4]int64{10, 11, -1, -1} {
			t.Fatalf("after the abort: %v", got)
		}
		// Both survive a restart, as the records say.
		c2, err := New(Config{Store: store, Topics: c.cfg.Topics, OffsetsTopicPartitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if got := fetchOffsets(t, c2, "g", true); got != [4]int64{10, 11, -1, -1} {
			t.Fatalf("after a restart: %v", got)
		}
	})
}

// TestTxnOffsetsSurviveRestart: pending offsets are replayed (and carried
// by snapshots), and a marker after the restart resolves them.
func TestTxnOffsetsSurviveRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, store := newTestCoordinator(t, func(cfg *Config) { cfg.compactSlack = 1 })
		ctx := context.Background()
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 5})), 0)
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "h", 7, 0, map[int32]int64{1: 6})), 0)
		// Plain commits until a snapshot replaces the log.
		for i := range 50 {
			req := &kmsg.OffsetCommitRequest{Version: 8, Group: "g", Generation: -1, Topics: []kmsg.OffsetCommitRequestTopic{
				{Topic: "t1", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 3, Offset: int64(i)}}},
			}}
			c.OffsetCommit(ctx, req)
		}
		synctest.Wait()
		if store.snapshots == 0 {
			t.Fatal("no snapshot taken")
		}
		c.Close()
		c2, err := New(Config{Store: store, Topics: c.cfg.Topics, OffsetsTopicPartitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if got := fetchOffsets(t, c2, "g", true); got[0] != unstable {
			t.Fatalf("pending offset after the restart: %v", got)
		}
		for _, g := range []string{"g", "h"} {
			if err := c2.WriteTxnMarker(ctx, c2.Partition(g), 7, 0, true); err != nil {
				t.Fatal(err)
			}
		}
		if got := fetchOffsets(t, c2, "g", true); got[0] != 5 {
			t.Fatalf("g after the marker: %v", got)
		}
		if got := fetchOffsets(t, c2, "h", true); got[1] != 6 {
			t.Fatalf("h after the marker: %v", got)
		}
	})
}

// TestTxnOffsetCommitFenced: a commit verified before its transaction's
// marker reached the partition is refused, so the offsets of an aborted
// transaction are never left pending into the next one.
func TestTxnOffsetCommitFenced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		req := txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 5})
		g := c.BeginTxnOffsetCommit("g", 7)
		if err := c.WriteTxnMarker(ctx, c.Partition("g"), 7, 0, false); err != nil {
			t.Fatal(err)
		}
		resp := c.TxnOffsetCommit(ctx, req, g)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidTxnState.Code {
			t.Fatalf("commit after the marker: %v", kerr.ErrorForCode(code))
		}
		if resp := c.TxnOffsetCommit(ctx, req, nil); resp.Topics[0].Partitions[0].ErrorCode != kerr.InvalidTxnState.Code {
			t.Fatal("commit without a guard accepted")
		}
		if got := fetchOffsets(t, c, "g", true); got[0] != -1 {
			t.Fatalf("offsets %v", got)
		}
		if len(c.txn.guards) != 0 {
			t.Fatalf("guards left: %v", c.txn.guards)
		}
		// An abandoned guard is released.
		c.AbandonTxnOffsetCommit(c.BeginTxnOffsetCommit("g", 7))
		if len(c.txn.guards) != 0 {
			t.Fatal("abandoned guard kept")
		}
	})
}

func TestTxnOffsetCommitValidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, store := newTestCoordinator(t, nil)
		ctx := context.Background()
		member, gen := joinStable(t, c, "cg")
		req := txnCommitReq(3, "cg", 1, 0, map[int32]int64{0: 1})
		// A classic member at its generation; anonymous commits pass too.
		req.MemberID, req.Generation = member, gen
		allCodes(t, txnCommit(t, c, req), 0)
		req.Generation = gen + 1
		allCodes(t, txnCommit(t, c, req), kerr.IllegalGeneration.Code)
		req.MemberID, req.Generation = "nobody", gen
		allCodes(t, txnCommit(t, c, req), kerr.UnknownMemberID.Code)
		req.MemberID, req.Generation = "", -1
		allCodes(t, txnCommit(t, c, req), 0)
		// A named member of a group that does not exist.
		req = txnCommitReq(3, "missing", 1, 0, map[int32]int64{0: 1})
		req.MemberID, req.Generation = "m", 1
		allCodes(t, txnCommit(t, c, req), kerr.IllegalGeneration.Code)
		// Unknown partitions, too much metadata, unknown topic ids (v6).
		req = txnCommitReq(6, "s", 1, 0, map[int32]int64{0: 1})
		md := string(make([]byte, 5000))
		req.Topics[0].Partitions[0].Metadata = &md
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.TopicID = [16]byte{9}
		rt.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0}}
		req.Topics = append(req.Topics, rt)
		if codes := txnCommit(t, c, req); codes[0] != kerr.OffsetMetadataTooLarge.Code || codes[1] != kerr.UnknownTopicID.Code {
			t.Fatalf("v6: %v", codes)
		}
		req = txnCommitReq(2, "s", 1, 0, map[int32]int64{0: 1})
		req.Topics[0].Partitions[0].Partition = 9
		allCodes(t, txnCommit(t, c, req), kerr.UnknownTopicOrPartition.Code)
		// A store failure stores nothing.
		store.failAppend = errors.New("disk")
		allCodes(t, txnCommit(t, c, txnCommitReq(0, "s", 1, 0, map[int32]int64{3: 1})), kerr.CoordinatorNotAvailable.Code)
		store.failAppend = nil
		if err := c.WriteTxnMarker(ctx, c.Partition("cg"), 1, 0, true); err != nil {
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "cg", true); got[0] != 1 {
			t.Fatalf("cg: %v", got)
		}
		// A failed marker leaves the offsets pending; its retry
		// resolves them.
		allCodes(t, txnCommit(t, c, txnCommitReq(0, "cg", 1, 0, map[int32]int64{1: 4})), 0)
		store.failAppend = errors.New("disk")
		if err := c.WriteTxnMarker(ctx, c.Partition("cg"), 1, 0, true); err == nil {
			t.Fatal("marker succeeded on a failing store")
		}
		store.failAppend = nil
		if err := c.WriteTxnMarker(ctx, c.Partition("cg"), 1, 0, true); err != nil {
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "cg", true); got[1] != 4 {
			t.Fatalf("cg after the retried marker: %v", got)
		}
	})
}

// TestTxnOffsetsOfDeletedGroup: deleting a group drops its pending
// offsets; a group with pending offsets only is kept.
func TestTxnOffsetsOfDeletedGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 5})), 0)
		c.expireOffsets()
		if got := fetchOffsets(t, c, "g", true); got[0] != unstable {
			t.Fatalf("pending offsets after expiry: %v", got)
		}
		resp := c.DeleteGroups(ctx, &kmsg.DeleteGroupsRequest{Groups: []string{"g"}})
		if code := resp.Groups[0].ErrorCode; code != 0 {
			t.Fatalf("delete: %v", kerr.ErrorForCode(code))
		}
		if len(c.txn.groups) != 0 {
			t.Fatalf("index kept %v", c.txn.groups)
		}
		if err := c.WriteTxnMarker(ctx, c.Partition("g"), 7, 0, true); err != nil {
			t.Fatal(err)
		}
		if got := fetchOffsets(t, c, "g", true); got[0] != -1 {
			t.Fatalf("deleted group: %v", got)
		}
	})
}

// TestTxnOffsetCommitVersions sends every version through the wire
// encoding.
func TestTxnOffsetCommitVersions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		for v := int16(0); v <= (*kmsg.TxnOffsetCommitRequest)(nil).MaxVersion(); v++ {
			req := txnCommitReq(v, "g", 7, 0, map[int32]int64{int32(v % 4): int64(v)})
			b := req.AppendTo(nil)
			dec := kmsg.NewPtrTxnOffsetCommitRequest()
			dec.Version = v
			if err := dec.ReadFrom(b); err != nil {
				t.Fatal(err)
			}
			g := c.BeginTxnOffsetCommit(dec.Group, dec.ProducerID)
			resp := c.TxnOffsetCommit(context.Background(), dec, g)
			out := resp.AppendTo(nil)
			back := kmsg.NewPtrTxnOffsetCommitResponse()
			back.Version = v
			if err := back.ReadFrom(out); err != nil {
				t.Fatalf("v%d response: %v", v, err)
			}
			if len(back.Topics) != 1 || back.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("v%d: %+v", v, back.Topics)
			}
		}
	})
}

// TestTxnOffsetsOfDeletedTopic: a commit marker drops the pending offsets
// of a topic deleted since they were committed.
func TestTxnOffsetsOfDeletedTopic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		topics := map[string]TopicInfo{"t1": testTopics["t1"]}
		c, _ := newTestCoordinator(t, func(cfg *Config) {
			cfg.Topics = func() map[string]TopicInfo { mu.Lock(); defer mu.Unlock(); return maps.Clone(topics) }
		})
		allCodes(t, txnCommit(t, c, txnCommitReq(3, "g", 7, 0, map[int32]int64{0: 5})), 0)
		mu.Lock()
		delete(topics, "t1")
		mu.Unlock()
		if err := c.WriteTxnMarker(context.Background(), c.Partition("g"), 7, 0, true); err != nil {
			t.Fatal(err)
		}
		g, _ := c.lockGroup("g", false)
		if g != nil {
			defer g.mu.Unlock()
			if n := g.offsetCount(); n != 0 || len(g.txnOffsets) != 0 {
				t.Fatalf("offsets %d, pending %v after committing offsets of a deleted topic", n, g.txnOffsets)
			}
		}
	})
}
