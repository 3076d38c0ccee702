package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/ferrytest"
)

func TestTxnCommands(t *testing.T) {
	fb := ferrytest.Start(t)
	b := "-brokers=" + fb.Addr()
	mustFerry(t, "", "topic", "create", "orders", b, "-partitions", "2")
	cl, err := kgo.NewClient(kgo.SeedBrokers(fb.Addr()), kgo.TransactionalID("billing"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 1, Value: []byte("a")}, &kgo.Record{Topic: "orders", Partition: 1, Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out := mustFerry(t, "", "txn", "list", b)
	contains(t, "txn list", out, "TRANSACTIONAL-ID", "billing", "Ongoing")
	out = mustFerry(t, "", "txn", "list", b, "-state", "CompleteCommit")
	if contains(t, "txn list -state", out, "TRANSACTIONAL-ID"); len(out) > 60 {
		t.Errorf("txn list -state CompleteCommit listed the ongoing transaction:\n%s", out)
	}

	out = mustFerry(t, "", "txn", "describe", "billing", b, "-o", "json")
	var ds []txnDescribed
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("txn describe json: %v\n%s", err, out)
	}
	if d := ds[0]; d.State != "Ongoing" || len(d.Partitions) != 1 || d.Partitions[0] != "orders-1" || d.Started == "" || d.TimeoutMs <= 0 {
		t.Fatalf("txn describe: %+v", d)
	}
	_, errOut, code := ferry(t, "", "txn", "describe", "nobody", b)
	if code != 1 {
		t.Fatalf("describe of an unknown id: exit %d", code)
	}
	contains(t, "describe unknown", errOut, "could not be described")

	out = mustFerry(t, "", "producers", "describe", "orders", b, "-o", "json")
	var ps []producerDescribed
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 1 {
		t.Fatalf("producers describe json: %v\n%s", err, out)
	}
	if p := ps[0]; p.Partition != 1 || p.LastSequence != 1 || p.TxnStartOffset != 0 {
		t.Fatalf("producers describe: %+v", p)
	}
	out = mustFerry(t, "", "producers", "describe", "orders", b, "-partition", "0")
	contains(t, "producers describe -partition 0", out, "TOPIC", "TXN-START-OFFSET")

	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	out = mustFerry(t, "", "producers", "describe", "orders", b)
	contains(t, "producers describe after the commit", out, "orders", " -")
	out = mustFerry(t, "", "txn", "describe", "billing", b)
	contains(t, "txn describe after the commit", out, "CompleteCommit")
}
