package server

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestProduceConsumeBasic(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "basic"); err != nil {
		t.Fatal(err)
	}
	cl := b.client(kgo.DefaultProduceTopic("basic"), kgo.RequiredAcks(kgo.AllISRAcks()))
	const n = 1000
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 10)), Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cons := b.client(kgo.ConsumeTopics("basic"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := 0
	for seen < n {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { seen++ })
	}
	if seen != n {
		t.Fatalf("consumed %d, want %d", seen, n)
	}
}
