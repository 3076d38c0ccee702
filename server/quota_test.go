package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type throttleHook struct{ n *atomic.Int32 }

func (h throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	if d > 0 {
		h.n.Add(1)
	}
}

// TestQuotas: a producer and a consumer whose client ids have byte-rate
// quotas stay within them (with a generous margin: the machine is shared
// and a rate is measured over whole windows), are told to back off, and
// DescribeClientQuotas shows the quotas.
func TestQuotas(t *testing.T) {
	b := startBroker(t, map[string]string{"quota.window.num": "3", "quota.window.size.seconds": "1"})
	ctx := testCtx(t)
	adm := b.admin()
	const quota = 256 << 10
	slow, reader := "slow-writer", "slow-reader"
	res, err := adm.AlterClientQuotas(ctx, []kadm.AlterClientQuotaEntry{
		{Entity: []kadm.ClientQuotaEntityComponent{{Type: "client-id", Name: &slow}}, Ops: []kadm.AlterClientQuotaOp{{Key: "producer_byte_rate", Value: quota}}},
		{Entity: []kadm.ClientQuotaEntityComponent{{Type: "client-id", Name: &reader}}, Ops: []kadm.AlterClientQuotaOp{{Key: "consumer_byte_rate", Value: quota}}},
		{Entity: []kadm.ClientQuotaEntityComponent{{Type: "client-id", Name: &reader}}, Ops: []kadm.AlterClientQuotaOp{{Key: "no_such_quota", Value: 1}}},
	})
	if err != nil || len(res) != 3 || res[0].Err != nil || res[1].Err != nil || res[2].Err == nil {
		t.Fatalf("alter: %+v, %v", res, err)
	}
	described, err := adm.DescribeClientQuotas(ctx, false, []kadm.DescribeClientQuotaComponent{{Type: "client-id", MatchType: 2}})
	if err != nil || len(described) != 2 {
		t.Fatalf("described %+v, %v", described, err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}

	var throttled atomic.Int32
	value := make([]byte, 16<<10) // uncompressed: the quota counts request bytes
	rate := func(cl *kgo.Client, run func(context.Context) int64) float64 {
		d := 4 * time.Second
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		start := time.Now()
		n := run(rctx)
		return float64(n) / time.Since(start).Seconds()
	}
	producer := b.client(kgo.ClientID(slow), kgo.WithHooks(throttleHook{&throttled}), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produced := rate(producer, func(rctx context.Context) int64 {
		var n int64
		for rctx.Err() == nil {
			recs := make([]*kgo.Record, 8)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: "q", Value: value}
			}
			if producer.ProduceSync(rctx, recs...).FirstErr() == nil {
				n += int64(len(recs) * len(value))
			}
		}
		return n
	})
	t.Logf("produced at %.0f KiB/s with a quota of %d KiB/s; throttled %d times", produced/1024, quota>>10, throttled.Load())
	// Over 4 s a rate measured over at least 2 windows allows about
	// (4+2)/4 of the quota; 2x leaves room for a loaded machine.
	if produced > 2*quota || throttled.Load() == 0 {
		t.Errorf("producer at %.0f B/s (quota %d), throttled %d times", produced, quota, throttled.Load())
	}

	throttled.Store(0)
	consumer := b.client(kgo.ClientID(reader), kgo.WithHooks(throttleHook{&throttled}), kgo.ConsumeTopics("q"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<10), kgo.FetchMaxPartitionBytes(64<<10))
	consumed := rate(consumer, func(rctx context.Context) int64 {
		var n int64
		for rctx.Err() == nil {
			consumer.PollFetches(rctx).EachRecord(func(r *kgo.Record) { n += int64(len(r.Value)) })
		}
		return n
	})
	t.Logf("consumed at %.0f KiB/s with a quota of %d KiB/s; throttled %d times", consumed/1024, quota>>10, throttled.Load())
	if consumed > 2*quota || throttled.Load() == 0 {
		t.Errorf("consumer at %.0f B/s (quota %d), throttled %d times", consumed, quota, throttled.Load())
	}
}
