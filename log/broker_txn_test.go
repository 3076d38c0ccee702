package log_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/ferrytest"
	"github.com/ferrymq/ferry/record"
)

// readCommitted reads partition 0 of topic from the start as a
// read_committed consumer and returns the newest value of each key. It
// reads up to the high watermark, whose last record must be committed
// and kept (the tests end with records of keys written once, outside
// transactions).
func readCommitted(t *testing.T, ctx context.Context, addr, topic string) map[string]string {
	t.Helper()
	ends, err := kadm.NewClient(newClient(t, addr)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Err != nil {
		t.Fatal(end.Err)
	}
	cl := newClient(t, addr, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	var recs []*kgo.Record
	for len(recs) == 0 || recs[len(recs)-1].Offset < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s read_committed: at %d of %d: %v", topic, firstOffset(recs), end.Offset, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return view(recs)
}

// TestBrokerCompactionTransactions runs the cleaner over a compacted
// topic written by transactional producers: an aborted transaction's
// records, newer than committed ones of the same keys, are removed
// without taking the committed ones with them; a transaction still open
// when the cleaner runs is left whole, so that when it aborts the
// committed records it would have superseded are still there.
func TestBrokerCompactionTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	b := ferrytest.Start(t, ferrytest.Props(cleanerProps))
	const topic = "ledger"
	adm := kadm.NewClient(newClient(t, b.Addr()))
	compactedTopic(t, ctx, adm, topic, time.Hour)
	plain := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	fill := func(round int) {
		t.Helper()
		for i := range 60 {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("filler-%d", i)), Value: []byte(fmt.Sprintf("%d%s", round, strings.Repeat("f", 60)))}
			if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	txn := func(cl *kgo.Client, value string, end *kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for k := range 10 {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(value)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if end != nil {
			if err := cl.EndTransaction(ctx, *end); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit, abort := kgo.TryCommit, kgo.TryAbort
	a := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.TransactionalID("a"))
	txn(a, "committed", &commit)
	txn(a, "aborted", &abort)
	fill(1)
	// B's transaction stays open while the cleaner runs.
	bcl := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.TransactionalID("b"), kgo.TransactionTimeout(2*time.Minute))
	txn(bcl, "open", nil)
	fill(2)

	// Cleaned once the aborted records are gone (read_uncommitted).
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		gone, open := true, 0
		for _, r := range consumeFrom(t, ctx, b.Addr(), topic, 0) {
			switch string(r.Value) {
			case "aborted":
				gone = false
			case "open":
				open++
			}
		}
		if open != 10 {
			t.Fatalf("the open transaction has %d of its 10 records after cleaning", open)
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the aborted transaction's records were not cleaned in 60s")
		}
	}
	if err := bcl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	fill(3)
	got := readCommitted(t, ctx, b.Addr(), topic)
	want := map[string]string{}
	for k := range 10 {
		want[fmt.Sprintf("k%d", k)] = "committed"
	}
	for i := range 60 {
		want[fmt.Sprintf("filler-%d", i)] = "3" + strings.Repeat("f", 60)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("read_committed after cleaning: %v", got)
	}
}

// markers lists the control batches of partition 0 of topic, read with
// raw Fetch requests (read_uncommitted) from the log start to the high
// watermark: their offsets and whether they carry a delete horizon.
func markers(t *testing.T, ctx context.Context, cl *kgo.Client, topic string) (offs []int64, horizon []bool) {
	t.Helper()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := topics[topic].ID
	for off := int64(0); ; {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 0
		req.MaxBytes = 1 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset = off
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("fetch answered %d topics", len(resp.Topics))
		}
		p := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			t.Fatalf("fetch at %d: %v", off, err)
		}
		data := p.RecordBatches
		if len(data) == 0 {
			if off < p.HighWatermark {
				t.Fatalf("fetch at %d below the high watermark %d returned nothing", off, p.HighWatermark)
			}
			return offs, horizon
		}
		for len(data) > 0 {
			var h record.Header
			if err := record.ParseInto(data, &h); err != nil {
				break // a partial batch at the end of the response
			}
			if h.Size() > len(data) {
				break
			}
			if h.IsControl() {
				_, has := h.DeleteHorizonMs()
				offs = append(offs, h.BaseOffset)
				horizon = append(horizon, has)
			}
			off = h.NextOffset()
			data = data[h.Size():]
		}
	}
}

// TestBrokerCompactionTxnMarkers: transactional producers write a
// compacted topic; once a transaction has no record left (superseded by
// a later transaction, or aborted), its marker is kept for
// delete.retention.ms and then removed, while the marker of a
// transaction whose records stay is kept. read_committed and
// read_uncommitted consumers from the beginning see exactly the newest
// committed value of each key before and after the markers go, and
// offsets do not change. After a restart, transactions go on and
// read_committed consumers see them (the last stable offset is right).
func TestBrokerCompactionTxnMarkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	b := ferrytest.Start(t, ferrytest.Props(cleanerProps))
	const topic = "accounts"
	const retention = 8 * time.Second
	adm := kadm.NewClient(newClient(t, b.Addr()))
	compactedTopic(t, ctx, adm, topic, retention)
	plain := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	fill := func(round int) {
		t.Helper()
		for i := range 60 {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("filler-%d", i)), Value: []byte(fmt.Sprintf("%d%s", round, strings.Repeat("f", 60)))}
			if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// txn runs a transaction of one record of each key and returns the
	// offset of its marker: the one after its last record, nothing else
	// being produced meanwhile.
	txn := func(cl *kgo.Client, value string, end kgo.TransactionEndTry) int64 {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var last int64
		for k := range 10 {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(value)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			last = r.Offset
		}
		if err := cl.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
		return last + 1
	}
	a := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.TransactionalID("a"))
	initial := []int64{txn(a, "c1", kgo.TryCommit), txn(a, "aborted", kgo.TryAbort), txn(a, "c2", kgo.TryCommit)}
	// No marker goes before delete.retention.ms from now: the pass that
	// gives them a horizon comes after.
	ended := time.Now()
	fill(1)
	fill(2)
	raw := newClient(t, b.Addr())
	if offs, _ := markers(t, ctx, raw, topic); !slices.Equal(offs, initial) && time.Since(ended) < retention-time.Second {
		t.Fatalf("markers at %v, want %v", offs, initial)
	}
	want := map[string]string{}
	for k := range 10 {
		want[fmt.Sprintf("k%d", k)] = "c2"
	}
	for i := range 60 {
		want[fmt.Sprintf("filler-%d", i)] = "2" + strings.Repeat("f", 60)
	}
	// checkViews reads the topic from the start as both kinds of
	// consumer, and returns the records read_uncommitted saw by offset.
	checkViews := func(when string) map[int64]string {
		t.Helper()
		recs := consumeFrom(t, ctx, b.Addr(), topic, 0)
		if got := view(recs); !maps.Equal(got, want) {
			t.Fatalf("%s: read_uncommitted reads %v", when, got)
		}
		if got := readCommitted(t, ctx, b.Addr(), topic); !maps.Equal(got, want) {
			t.Fatalf("%s: read_committed reads %v", when, got)
		}
		offs := map[int64]string{}
		for _, r := range recs {
			offs[r.Offset] = string(r.Key) + "=" + string(r.Value)
		}
		return offs
	}

	// Cleaned: only c2 and the newest fillers are left; the markers of
	// the first two transactions wait out delete.retention.ms.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs := consumeFrom(t, ctx, b.Addr(), topic, 0)
		if onceEach(recs) && maps.Equal(view(recs), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not compacted after 60s: %v", view(recs))
		}
	}
	before := checkViews("before the markers go")
	offs, horizon := markers(t, ctx, raw, topic)
	if time.Since(ended) < retention-time.Second {
		if !slices.Equal(offs, initial) || !slices.Equal(horizon, []bool{true, true, false}) {
			t.Fatalf("markers once cleaned: %v (delete horizons %v), want %v with horizons on the first two", offs, horizon, initial)
		}
	} else {
		t.Logf("%v since the transactions ended (a loaded machine): the markers may be gone already, not checked", time.Since(ended))
	}

	// delete.retention.ms later, the first two markers go.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if offs, _ = markers(t, ctx, raw, topic); slices.Equal(offs, initial[2:]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("markers 60s after delete.retention.ms: %v, want %v", offs, initial[2:])
		}
	}
	// Records may have gone meanwhile (a segment whose seal had not
	// finished is cleaned now), but none moved.
	for off, r := range checkViews("after the markers went") {
		if before[off] != r {
			t.Fatalf("offset %d reads %q after the markers went, %q before", off, r, before[off])
		}
	}

	// A restart; transactions go on and read_committed sees them.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = ferrytest.Start(t, ferrytest.DataDir(b.DataDir()), ferrytest.ListenAddr(b.Addr()), ferrytest.Props(cleanerProps))
	checkViews("after a restart")
	a2 := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0), kgo.TransactionalID("a"))
	txn(a2, "c3", kgo.TryCommit)
	for k := range 10 {
		want[fmt.Sprintf("k%d", k)] = "c3"
	}
	fill(3)
	for i := range 60 {
		want[fmt.Sprintf("filler-%d", i)] = "3" + strings.Repeat("f", 60)
	}
	checkViews("after a transaction following the restart")
}
