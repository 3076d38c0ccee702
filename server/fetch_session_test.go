package server

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// TestFetchSessions walks KIP-227: a full fetch opens a session, an
// incremental fetch names only what changed and gets only partitions with
// news, forgotten partitions leave the session, and a wrong epoch or an
// unknown session id is refused.
func TestFetchSessions(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 3, 1, nil, "sess"); err != nil {
		t.Fatal(err)
	}
	td, _ := b.admin().ListTopics(ctx, "sess")
	id := td["sess"].ID
	cl := b.client()
	fetch := func(sessionID, epoch int32, parts map[int32]int64, forget []int32) *kmsg.FetchResponse {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 0, 0, 1<<20
		req.SessionID, req.SessionEpoch = sessionID, epoch
		if len(parts) > 0 {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = "sess", id
			for p, off := range parts {
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, 1<<20
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = []kmsg.FetchRequestTopic{rt}
		}
		if len(forget) > 0 {
			req.ForgottenTopics = []kmsg.FetchRequestForgottenTopic{{Topic: "sess", TopicID: id, Partitions: forget}}
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ok := func(resp *kmsg.FetchResponse) *kmsg.FetchResponse {
		t.Helper()
		if resp.ErrorCode != 0 {
			t.Fatalf("fetch failed: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		return resp
	}
	parts := func(resp *kmsg.FetchResponse) map[int32]int {
		m := map[int32]int{}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				m[rp.Partition] = len(rp.RecordBatches)
			}
		}
		return m
	}

	full := fetch(0, 0, map[int32]int64{0: 0, 1: 0, 2: 0}, nil)
	if full.ErrorCode != 0 || full.SessionID == 0 || len(parts(full)) != 3 {
		t.Fatalf("new session: code %d id %d partitions %v", full.ErrorCode, full.SessionID, parts(full))
	}
	sid := full.SessionID
	// Nothing changed: an incremental fetch lists no partitions.
	if got := parts(ok(fetch(sid, 1, nil, nil))); len(got) != 0 {
		t.Fatalf("idle incremental fetch returned %v", got)
	}
	// Data on partition 1 only: only partition 1 comes back.
	produceTo(t, b, "sess", 1, 3)
	got := parts(ok(fetch(sid, 2, nil, nil)))
	if len(got) != 1 || got[1] == 0 {
		t.Fatalf("incremental fetch after producing to 1 returned %v", got)
	}
	// Forget partition 1, then data on 1 and 2: only 2 comes back.
	ok(fetch(sid, 3, map[int32]int64{1: 3}, []int32{1}))
	produceTo(t, b, "sess", 1, 1)
	produceTo(t, b, "sess", 2, 1)
	got = parts(ok(fetch(sid, 4, nil, nil)))
	if len(got) != 1 || got[2] == 0 {
		t.Fatalf("after forgetting 1, incremental fetch returned %v", got)
	}
	if resp := fetch(sid, 9, nil, nil); resp.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("wrong epoch: code %d", resp.ErrorCode)
	}
	if resp := fetch(sid+1, 1, nil, nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("unknown session: code %d", resp.ErrorCode)
	}
	if resp := fetch(0, 3, nil, nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("incremental epoch without a session: code %d", resp.ErrorCode)
	}
	// Epoch -1 closes the session; it is gone afterwards.
	ok(fetch(sid, -1, map[int32]int64{0: 0}, nil))
	if resp := fetch(sid, 5, nil, nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("closed session still answers: code %d", resp.ErrorCode)
	}
}

// produceTo produces n records to one partition of topic.
func produceTo(t *testing.T, b *testBroker, topic string, partition int32, n int) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	if td, _ := b.admin().ListTopics(testCtx(t), topic); td.Has(topic) {
		rt.TopicID = td[topic].ID // Produce v13 names topics by id
	}
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = testBatch("sess", n, time.Now().UnixMilli())
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	resp, err := req.RequestWith(testCtx(t), b.client())
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(code))
	}
}

// TestFetchInterleavedTopics fetches [a-0, b-0, a-1]: partitions of one
// topic that are not adjacent in the request must still each get their
// own records.
func TestFetchInterleavedTopics(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	for _, name := range []string{"ta", "tb"} {
		if _, err := b.admin().CreateTopic(ctx, 2, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	produceTo(t, b, "ta", 0, 1)
	produceTo(t, b, "tb", 0, 2)
	produceTo(t, b, "ta", 1, 3)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12) // by name
	req.MaxBytes, req.SessionEpoch = 1<<20, -1
	for _, tp := range []struct {
		topic string
		p     int32
	}{{"ta", 0}, {"tb", 0}, {"ta", 1}} {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = tp.topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = tp.p, 1<<20
		rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
		req.Topics = append(req.Topics, rt)
	}
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	kresp, err := rawRoundTrip(nc, 1, req)
	if err != nil {
		t.Fatal(err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	want := map[string]int32{"ta/0": 1, "tb/0": 2, "ta/1": 3}
	got := map[string]int32{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			h, err := record.Parse(rp.RecordBatches)
			if err != nil {
				t.Fatalf("%s/%d: %v", rt.Topic, rp.Partition, err)
			}
			got[fmt.Sprintf("%s/%d", rt.Topic, rp.Partition)] = h.RecordCount
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records per partition %v, want %v", got, want)
	}
}
