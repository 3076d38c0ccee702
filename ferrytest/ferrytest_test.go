package ferrytest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/ferrytest"
)

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestStart: a broker takes records and gives them back, applies the
// configs it is given, and a restart on its data and address keeps what
// was acknowledged, for the same client.
func TestStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b := ferrytest.Start(t, ferrytest.Props(map[string]string{"num.partitions": "3"}))
	cl := client(t, b.Addr(), kgo.DefaultProduceTopic("orders"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for _, v := range []string{"a", "b", "c"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topics["orders"].Partitions); n != 3 {
		t.Fatalf("auto-created topic has %d partitions, want num.partitions=3", n)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b = ferrytest.Start(t, ferrytest.DataDir(b.DataDir()), ferrytest.ListenAddr(b.Addr()))
	got := map[string]bool{}
	for len(got) < 3 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %v after the restart: %v", got, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	if !got["a"] || !got["b"] || !got["c"] {
		t.Fatalf("read %v after the restart", got)
	}
}
