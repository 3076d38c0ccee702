package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestShareReadCommitted: a share group with
// share.isolation.level=read_committed is delivered no record of an open
// transaction until the transaction commits, nothing after it meanwhile
// (the last stable offset holds it back), and never a record of an
// aborted transaction; a read_uncommitted group is delivered every record
// at once. No control batch is delivered to either.
func TestShareReadCommitted(t *testing.T) {
	b := startBroker(t, shareProps())
	newShareTopic(t, b, "tx", 1, "committed", "share.isolation.level", "read_committed")
	setGroupConfigs(t, b, "uncommitted", "share.auto.offset.reset", "earliest")
	ctx := testCtx(t)
	plain := b.client(kgo.DefaultProduceTopic("tx"), kgo.ProducerLinger(0))
	txp := b.client(kgo.TransactionalID("share-tx"), kgo.DefaultProduceTopic("tx"), kgo.ProducerLinger(0))
	produce := func(cl *kgo.Client, vals ...string) {
		t.Helper()
		for _, v := range vals {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	begin := func() {
		t.Helper()
		if err := txp.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	end := func(commit kgo.TransactionEndTry) {
		t.Helper()
		if err := txp.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	produce(plain, "p0")
	begin()
	produce(txp, "a1", "a2")
	end(kgo.TryAbort)
	begin()
	produce(txp, "b1", "b2")
	produce(plain, "p1") // after the open transaction's first record
	// The transaction stays open while the groups consume.

	committed := startShareMember(t, b, "committed", nil, kgo.ConsumeTopics("tx"))
	uncommitted := startShareMember(t, b, "uncommitted", nil, kgo.ConsumeTopics("tx"))
	values := func(m *shareMember) map[string]int {
		got := map[string]int{}
		for _, r := range m.received() {
			got[string(r.Value)]++
		}
		return got
	}
	waitUntil(t, 30*time.Second, "the read_uncommitted group got every record", func() bool { return len(values(uncommitted)) == 6 })
	waitUntil(t, 30*time.Second, "the read_committed group got p0", func() bool { return values(committed)["p0"] == 1 })
	time.Sleep(500 * time.Millisecond) // it would have got more by now
	if got := values(committed); len(got) != 1 {
		t.Fatalf("read_committed group with a transaction open got %v, want p0 only", got)
	}

	end(kgo.TryCommit)
	waitUntil(t, 30*time.Second, "the read_committed group got the committed records", func() bool {
		got := values(committed)
		return got["b1"] == 1 && got["b2"] == 1 && got["p1"] == 1
	})
	committed.stop()
	uncommitted.stop()
	got := values(committed)
	for v, n := range got {
		if n != 1 || v == "a1" || v == "a2" {
			t.Errorf("read_committed group got %q %d times", v, n)
		}
	}
	if len(got) != 4 {
		t.Errorf("read_committed group got %v, want p0 b1 b2 p1", got)
	}
	for v, n := range values(uncommitted) {
		if n != 1 {
			t.Errorf("read_uncommitted group got %q %d times", v, n)
		}
	}
	for _, o := range describeShareOffsets(t, b, "committed") {
		if o.Lag != 0 {
			t.Errorf("read_committed group: start offset %d, lag %d", o.StartOffset, o.Lag)
		}
	}
}
