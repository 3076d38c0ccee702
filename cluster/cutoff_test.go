//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// TestCutOffLeaderSequence: a partition's leader cut off from its peers
// goes on believing it leads after the controller has fenced it and
// elected another, and its idempotent-producer state stops where the cut
// fell. A producer's next batch reaching it there (a client whose
// metadata is as old: franz-go takes a lower leader epoch once five
// answers agree on it) must get NOT_LEADER_OR_FOLLOWER, which the client
// retries under the same sequence, not the OUT_OF_ORDER_SEQUENCE_NUMBER
// its stale state gives: a client told that bumps its producer epoch and
// sends again, as new records, what the new leader may already hold.
func TestCutOffLeaderSequence(t *testing.T) {
	c := newProcCluster(t, 3, faultTimeouts...)
	if c.net == nil {
		t.Skip("cutting a node off needs network namespaces (root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client(t))
	waitFormed(t, ctx, adm)
	const topic = "cutoff"
	createTopic(t, ctx, adm, topic, 1)
	cl := c.client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(v string) *kgo.Record {
		r := &kgo.Record{Value: []byte(v)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
		return r
	}
	// Sequences 0-2, which every replica of the partition learns.
	for i := range 3 {
		produce(fmt.Sprint("a", i))
	}
	old := leaderOf(ctx, adm, topic, 0)
	if old < 0 {
		t.Fatal("no leader")
	}
	c.net.isolate(t, int(old))
	others := slices.DeleteFunc([]int32{0, 1, 2}, func(id int32) bool { return id == old })
	waitFor(t, "another leader", 30*time.Second, func() bool {
		l, _ := leaderAt(ctx, cl.Broker(int(others[0])), topic)
		return l >= 0 && l != old
	})
	// Sequences 3-5 through the new leader.
	var last *kgo.Record
	for i := range 3 {
		last = produce(fmt.Sprint("b", i))
	}
	// The cut-off broker, which the others' metadata no longer lists,
	// through a client of its own.
	zc, err := kgo.NewClient(kgo.SeedBrokers(c.nodes[old].addr))
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	zombie := zc.SeedBrokers()[0]
	l, topicID := leaderAt(ctx, zombie, topic)
	if l != old {
		t.Fatalf("the cut-off broker %d names %d the leader: the case is not made", old, l)
	}

	// Sequence 6, sent to the cut-off leader, whose state has the
	// producer at 2 (or 3, when the client's first try of b0 reached it
	// before the cut took effect).
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, topicID // by name to v12, by id from v13
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = record.AppendBatch(nil, record.Batch{
		BaseTimestamp: time.Now().UnixMilli(),
		ProducerID:    last.ProducerID,
		ProducerEpoch: last.ProducerEpoch,
		BaseSequence:  6,
		Records:       []record.Record{{Value: []byte("c0")}},
	})
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, zombie)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Topics[0].Partitions[0]; got.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("the cut-off leader answered %v (%s), want NOT_LEADER_OR_FOLLOWER", kerr.ErrorForCode(got.ErrorCode), deref(got.ErrorMessage))
	}

	// Healed, the log holds what was acknowledged, once each.
	c.healAll(t)
	want := []string{"a0", "a1", "a2", "b0", "b1", "b2"}
	end := c.endOffsets(t, ctx, topic)
	final := &history{reads: map[partOff]string{}}
	final.consumeUntil(ctx, t, c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), end)
	var got []string
	for off := range end[0] {
		got = append(got, final.reads[partOff{0, off}])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the log holds %q, want %q", got, want)
	}
}

// leaderAt is the leader of the topic's partition 0 in the metadata
// broker b answers with (-1 if it does not answer), and the topic's id.
func leaderAt(ctx context.Context, b *kgo.Broker, topic string) (int32, [16]byte) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, b)
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) == 0 {
		return -1, [16]byte{}
	}
	return resp.Topics[0].Partitions[0].Leader, resp.Topics[0].TopicID
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
