package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGroupQuick(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 4, 1, nil, "gq"); err != nil {
		t.Fatal(err)
	}
	produceN(t, b, "gq", 100)
	c := b.client(kgo.ConsumeTopics("gq"), kgo.ConsumerGroup("g1"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	n := 0
	for n < 100 {
		fs := c.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	lag, err := b.admin().Lag(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if l := lag["g1"].Lag.Total(); l != 0 {
		t.Fatalf("lag %d", l)
	}
}
