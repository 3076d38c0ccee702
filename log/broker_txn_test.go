package log_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/ferrytest"
)

// readCommitted reads partition 0 of topic from the start as a
// read_committed consumer and returns the newest value of each key. It
// stops once a poll of a second brings nothing.
func readCommitted(t *testing.T, ctx context.Context, addr, topic string) map[string]string {
	t.Helper()
	cl := newClient(t, addr, kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	var recs []*kgo.Record
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			t.Fatal(err)
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r); n++ })
		if n == 0 {
			return view(recs)
		}
	}
}

// TestBrokerCompactionTransactions runs the cleaner over a compacted
// topic written by transactional producers: an aborted transaction's
// records, newer than committed ones of the same keys, are removed
// without taking the committed ones with them; a transaction still open
// when the cleaner runs is left whole, so that when it aborts the
// committed records it would have superseded are still there.
func TestBrokerCompactionTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
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
