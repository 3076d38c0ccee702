package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// setGroupConfigs sets configs of a group (kvs: name, value, ...) with
// IncrementalAlterConfigs.
func setGroupConfigs(t testing.TB, b *testBroker, group string, kvs ...string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for i := 0; i+1 < len(kvs); i += 2 {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = kvs[i], kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(testCtx(t), b.client())
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("setting group configs %v: %v (%s)", kvs, err, derefOr(resp.Resources[0].ErrorMessage, ""))
	}
}

// shareMember is a share consumer polling in its own goroutine, recording
// what it receives and acknowledging with ack (accept unless it says
// otherwise).
type shareMember struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	recs []*kgo.Record
}

func startShareMember(t testing.TB, b *testBroker, group string, ack func(*kgo.Record) kgo.AckStatus, opts ...kgo.Opt) *shareMember {
	t.Helper()
	return startShareMemberOn(t, []string{b.addr}, group, ack, opts...)
}

// startShareMemberOn is startShareMember with the brokers' addresses.
func startShareMemberOn(t testing.TB, seeds []string, group string, ack func(*kgo.Record) kgo.AckStatus, opts ...kgo.Opt) *shareMember {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ShareGroup(group), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &shareMember{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				m.mu.Lock()
				m.recs = append(m.recs, r)
				m.mu.Unlock()
				if ack != nil {
					r.Ack(ack(r))
				} else {
					r.Ack(kgo.AckAccept)
				}
			})
		}
	}()
	t.Cleanup(m.stop)
	return m
}

// stop stops polling and leaves the group, flushing acknowledgements.
func (m *shareMember) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	<-m.done
	m.cl.FlushAcks(context.Background())
	m.cl.Close()
	m.cancel = nil
}

func (m *shareMember) received() []*kgo.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*kgo.Record(nil), m.recs...)
}

// TestShareGroupBasic: three share consumers in goroutines take the
// records of a topic between them while they are produced; each record
// is delivered, and accepted, exactly once, and the group ends with no
// lag.
func TestShareGroupBasic(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 3, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}
	setGroupConfigs(t, b, "g", "share.auto.offset.reset", "earliest")
	produceN(t, b, "q", 300)
	var ms []*shareMember
	for range 3 {
		ms = append(ms, startShareMember(t, b, "g", nil, kgo.ConsumeTopics("q")))
	}
	prod := b.client(kgo.DefaultProduceTopic("q"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 3000 {
		prod.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "x%d", i)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	total := func() int {
		n := 0
		for _, m := range ms {
			n += len(m.received())
		}
		return n
	}
	waitUntil(t, 60*time.Second, "3300 records received", func() bool { return total() >= 3300 })
	for _, m := range ms {
		m.stop() // flushes the acceptances
	}
	seen := map[string]int{}
	var counts []int
	for _, m := range ms {
		counts = append(counts, len(m.received()))
		for _, r := range m.received() {
			seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s received %d times", k, n)
		}
	}
	if len(seen) != 3300 {
		t.Errorf("%d distinct records", len(seen))
	}
	sum := int64(0)
	for p, o := range describeShareOffsets(t, b, "g") {
		if o.Lag != 0 {
			t.Errorf("partition %d: start offset %d, lag %d", p, o.StartOffset, o.Lag)
		}
		sum += o.StartOffset
	}
	if sum != 3300 {
		t.Errorf("start offsets sum to %d, want 3300 (the log ends)", sum)
	}
	t.Logf("records per member: %v", counts)
}

// shareProps are broker configs that let share tests use short locks and
// sessions.
func shareProps(extra ...string) map[string]string {
	p := map[string]string{
		"group.share.min.record.lock.duration.ms": "200",
		"group.share.min.session.timeout.ms":      "1000",
		"group.share.min.heartbeat.interval.ms":   "100",
		"group.share.heartbeat.interval.ms":       "500",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i]] = extra[i+1]
	}
	return p
}

// newShareTopic creates topic with n partitions, sets group to start at
// the earliest offset, and returns the topic's id.
func newShareTopic(t testing.TB, b *testBroker, topic string, n int32, group string, kvs ...string) [16]byte {
	t.Helper()
	resp, err := b.admin().CreateTopic(testCtx(t), n, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	setGroupConfigs(t, b, group, append([]string{"share.auto.offset.reset", "earliest"}, kvs...)...)
	return topicIDOf(t, b.addr, topic)
}

// TestShareSessions: share session epochs, their errors, the session
// limit, the final epoch releasing what the member holds, and a long run
// of requests each sent as soon as the previous answer arrives never
// finding the session busy.
func TestShareSessions(t *testing.T) {
	b := startBroker(t, shareProps("group.share.max.share.sessions", "2"))
	id := newShareTopic(t, b, "s", 1, "g")
	produceN(t, b, "s", 20)
	parts := partitionsOf(id, 1)

	m := newRawShare(t, b.addr, "g")
	m.join("s")
	// No session yet.
	m.epoch = 3
	if resp := m.fetch(parts, nil, 0, 10); resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("fetch without a session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if resp := m.ack([]ackRange{{parts[0], 0, 0, 1}}); resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("ack without a session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// Acknowledgements cannot open a session.
	m.epoch = 0
	if resp := m.fetch(parts, []ackRange{{parts[0], 0, 0, 1}}, 0, 10); resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("acks at epoch 0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	got := acquired(t, m.fetch(parts, nil, time.Second, 5))
	if n := len(got[parts[0]]); n == 0 {
		t.Fatal("nothing acquired")
	}
	held := got[parts[0]]
	// A wrong epoch.
	m.epoch += 5
	if resp := m.fetch(nil, nil, 0, 10); resp.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("wrong epoch: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	m.epoch -= 5
	if resp := m.ack([]ackRange{{parts[0], held[0], held[0], 1}}); resp.ErrorCode != 0 || kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode) != nil {
		t.Fatalf("ack: %+v", resp)
	}
	// ShareAcknowledge never opens a session.
	other := newRawShare(t, b.addr, "g")
	other.join("s")
	if resp := other.ack([]ackRange{{parts[0], 0, 0, 1}}); resp.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("ack at epoch 0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// The limit: two sessions exist, a third is refused.
	acquired(t, other.fetch(parts, nil, 0, 1))
	third := newRawShare(t, b.addr, "g")
	third.join("s")
	if resp := third.fetch(parts, nil, 0, 1); resp.ErrorCode != kerr.ShareSessionLimitReached.Code {
		t.Fatalf("third session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	// The final epoch releases the rest of what m holds: another member
	// gets them (other's session ends the same way, making room).
	m.epoch = -1
	if resp := m.ack(nil); resp.ErrorCode != 0 {
		t.Fatalf("closing ack: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	other.epoch = -1
	if resp := other.fetch(nil, nil, 0, 0); resp.ErrorCode != 0 {
		t.Fatalf("closing fetch: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	third.epoch = 0
	again := acquired(t, third.fetch(parts, nil, time.Second, 100))[parts[0]]
	if len(again) < len(held)-1 || again[0] != held[1] {
		t.Fatalf("after m closed its session third got %v; m held %v and accepted %d", again, held, held[0])
	}

	// Each request sent as soon as the previous one is answered.
	fast := newRawShare(t, b.addr, "g")
	fast.join("s")
	third.epoch = -1
	third.ack(nil)
	fast.fetch(parts, nil, 0, 1)
	for i := range 300 {
		var resp *kmsg.ShareFetchResponse
		if i%2 == 0 {
			resp = fast.fetch(nil, nil, 0, 1)
		} else {
			ar := fast.ack(nil)
			if ar.ErrorCode != 0 {
				t.Fatalf("ack %d: %v", i, kerr.ErrorForCode(ar.ErrorCode))
			}
			continue
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("fetch %d: %v", i, kerr.ErrorForCode(resp.ErrorCode))
		}
	}
}

// TestShareRenew: a renew acknowledgement (ShareFetch v2 IsRenewAck, or
// ShareAcknowledge) keeps records locked past their lock duration; the
// fetch fields must be zero.
func TestShareRenew(t *testing.T) {
	b := startBroker(t, shareProps())
	id := newShareTopic(t, b, "r", 1, "g", "share.record.lock.duration.ms", "600")
	produceN(t, b, "r", 3)
	parts := partitionsOf(id, 1)
	m := newRawShare(t, b.addr, "g")
	m.join("r")
	held := acquired(t, m.fetch(parts, nil, time.Second, 10))[parts[0]]
	if len(held) != 3 {
		t.Fatalf("acquired %v", held)
	}
	// Renewing through a ShareFetch with fetch fields is refused.
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID, req.ShareSessionEpoch = &m.group, &m.member, m.epoch
	req.IsRenewAck, req.MaxWaitMillis, req.MaxBytes = true, 100, 0
	req.Topics = []kmsg.ShareFetchRequestTopic{{TopicID: id, Partitions: []kmsg.ShareFetchRequestTopicPartition{{Partition: 0,
		AcknowledgementBatches: []kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{{FirstOffset: 0, LastOffset: 2, AcknowledgeTypes: []int8{4}}}}}}}
	resp, err := req.RequestWith(testCtx(t), m.cl)
	if err != nil || resp.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("renew with MaxWait: %v %v", err, resp)
	}
	other := newRawShare(t, b.addr, "g")
	other.join("r")
	other.fetch(parts, nil, 0, 10)
	for range 4 { // 1.2 s: twice the lock duration
		time.Sleep(300 * time.Millisecond)
		req.MaxWaitMillis, req.ShareSessionEpoch = 0, m.epoch
		resp, err := req.RequestWith(testCtx(t), m.cl)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("renew: %v %v", err, resp)
		}
		m.bump()
		if e := ackErrors(resp)[parts[0]]; e != nil {
			t.Fatalf("renew: %v", e)
		}
		if got := acquired(t, other.fetch(nil, nil, 0, 10)); len(got) > 0 {
			t.Fatalf("other acquired renewed records %v", got)
		}
	}
	// Without renewal they expire and go to the other member.
	time.Sleep(800 * time.Millisecond)
	if got := acquired(t, other.fetch(nil, nil, time.Second, 10))[parts[0]]; len(got) != 3 {
		t.Fatalf("after the locks expired other got %v", got)
	}
	if resp := m.ack([]ackRange{{parts[0], 0, 2, 1}}); kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode) != kerr.InvalidRecordState {
		t.Fatalf("accepting records whose lock expired: %+v", resp.Topics)
	}
}

// readTopic reads the records of topic (all partitions) from the start,
// until it has want of them or wait passed.
func readTopic(t testing.TB, b *testBroker, topic string, want int, wait time.Duration) []*kgo.Record {
	t.Helper()
	cl := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// TestShareDeadLetters: a rejected record and a record released until
// share.delivery.count.limit land in the group's dead-letter topic with
// their key, value and headers and the __dlq.errors.* headers, are never
// delivered again, and the rest of the queue goes on. Without the copy
// config they carry the headers alone; a topic that does not accept dead
// letters gets none and the records are archived anyway.
func TestShareDeadLetters(t *testing.T) {
	b := startBroker(t, shareProps())
	ctx := testCtx(t)
	id := newShareTopic(t, b, "orders", 2, "g",
		"share.delivery.count.limit", "2",
		"errors.deadletterqueue.topic.name", "dlq.orders")
	if _, err := b.admin().CreateTopic(ctx, 1, 1, map[string]*string{"errors.deadletterqueue.group.enable": kmsg.StringPtr("true")}, "dlq.orders"); err != nil {
		t.Fatal(err)
	}
	prod := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i % 2), Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("v", i)),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(fmt.Sprint("t", i))}}})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// v0 (partition 0, offset 0) is rejected; v3 (partition 1, offset 1)
	// is released every time; the rest are accepted.
	var mu sync.Mutex
	deliveries := map[string]int{}
	m := startShareMember(t, b, "g", func(r *kgo.Record) kgo.AckStatus {
		mu.Lock()
		deliveries[string(r.Value)]++
		mu.Unlock()
		switch string(r.Value) {
		case "v0":
			return kgo.AckReject
		case "v3":
			return kgo.AckRelease
		}
		return kgo.AckAccept
	}, kgo.ConsumeTopics("orders"))
	dl := readTopic(t, b, "dlq.orders", 2, 20*time.Second)
	if len(dl) != 2 {
		t.Fatalf("%d dead letters", len(dl))
	}
	byValue := map[string]*kgo.Record{}
	for _, r := range dl {
		byValue[string(r.Value)] = r
	}
	for _, w := range []struct {
		value, key, part, off, count, msg string
	}{
		{"v0", "k0", "0", "0", "1", "Offset rejected by client."},
		{"v3", "k3", "1", "1", "2", "Offset delivery count exceeded the threshold."},
	} {
		r := byValue[w.value]
		if r == nil {
			t.Fatalf("no dead letter of %s: %v", w.value, dl)
		}
		h := headerMap(r)
		if string(r.Key) != w.key || h["trace"] != "t"+w.value[1:] || h["__dlq.errors.topic"] != "orders" || h["__dlq.errors.partition"] != w.part ||
			h["__dlq.errors.offset"] != w.off || h["__dlq.errors.group"] != "g" || h["__dlq.errors.delivery.count"] != w.count || h["__dlq.errors.message"] != w.msg {
			t.Errorf("dead letter of %s: key %q headers %v", w.value, r.Key, h)
		}
	}
	waitUntil(t, 10*time.Second, "every record was delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) == 6
	})
	m.stop()
	mu.Lock()
	if deliveries["v0"] != 1 || deliveries["v3"] != 2 {
		t.Errorf("deliveries %v: v0 once, v3 twice", deliveries)
	}
	mu.Unlock()
	// Nothing is left in the queue.
	offs := describeShareOffsets(t, b, "g")
	for p, o := range offs {
		if o.Lag != 0 {
			t.Errorf("partition %d: start %d lag %d", p, o.StartOffset, o.Lag)
		}
	}

	// Headers only, and a topic that refuses dead letters.
	setGroupConfigs(t, b, "g", "errors.deadletterqueue.copy.record.enable", "false")
	more := []*kgo.Record{{Topic: "orders", Partition: 0, Key: []byte("k6"), Value: []byte("v6")}}
	if err := prod.ProduceSync(ctx, more...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rej := startShareMember(t, b, "g", func(*kgo.Record) kgo.AckStatus { return kgo.AckReject }, kgo.ConsumeTopics("orders"))
	dl = readTopic(t, b, "dlq.orders", 3, 20*time.Second)
	if len(dl) != 3 || len(dl[2].Value) != 0 || dl[2].Key != nil || headerMap(dl[2])["__dlq.errors.offset"] != "3" {
		t.Fatalf("dead letter without copy: %+v", dl[len(dl)-1])
	}
	rej.stop()
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "dlq.closed"); err != nil {
		t.Fatal(err)
	}
	setGroupConfigs(t, b, "g", "errors.deadletterqueue.topic.name", "dlq.closed")
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 1, Value: []byte("v7")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rej = startShareMember(t, b, "g", func(*kgo.Record) kgo.AckStatus { return kgo.AckReject }, kgo.ConsumeTopics("orders"))
	waitUntil(t, 10*time.Second, "v7 rejected and archived", func() bool {
		o := describeShareOffsets(t, b, "g")[1]
		return o.StartOffset == 4 && o.Lag == 0
	})
	rej.stop()
	if got := readTopic(t, b, "dlq.closed", 1, time.Second); len(got) != 0 {
		t.Fatalf("a topic without errors.deadletterqueue.group.enable got %d dead letters", len(got))
	}
	_ = id
}

// describeShareOffsets returns each partition's start offset and lag for
// a group's only topic.
func describeShareOffsets(t testing.TB, b *testBroker, group string) map[int32]kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition {
	t.Helper()
	req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	req.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: group}}
	resp, err := req.RequestWith(testCtx(t), b.client())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition{}
	for _, g := range resp.Groups {
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			t.Fatalf("describe share offsets: %v", err)
		}
		for _, tt := range g.Topics {
			for _, p := range tt.Partitions {
				out[p.Partition] = p
			}
		}
	}
	return out
}

// receipt is when a share member got a record.
type receipt struct {
	at    time.Time
	count int32
}

// receipts records every delivery of each value, and how the member
// acknowledged it.
type receipts struct {
	mu sync.Mutex
	m  map[string][]receipt
}

func (rc *receipts) add(r *kgo.Record) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil {
		rc.m = map[string][]receipt{}
	}
	rc.m[string(r.Value)] = append(rc.m[string(r.Value)], receipt{time.Now(), r.DeliveryCount()})
}

func (rc *receipts) get(v string) []receipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receipt(nil), rc.m[v]...)
}

// TestShareDelays: a record whose ferry-deliver-at header is in the
// future reaches a share group then and not before (a plain consumer
// sees it at once), also across a broker restart; a topic's
// delivery.delay.ms delays its records; released records come back after
// a backoff that doubles up to its maximum.
func TestShareDelays(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, shareProps(), dir)
	ctx := testCtx(t)
	newShareTopic(t, b, "later", 1, "g")
	prod := b.client(kgo.ProducerLinger(0))
	// The header carries milliseconds: compare with the instant it names.
	at := time.UnixMilli(time.Now().Add(1500 * time.Millisecond).UnixMilli())
	atRestart := time.UnixMilli(time.Now().Add(4 * time.Second).UnixMilli())
	recs := []*kgo.Record{
		{Topic: "later", Value: []byte("now")},
		{Topic: "later", Value: []byte("later"), Headers: []kgo.RecordHeader{{Key: "ferry-deliver-at", Value: []byte(fmt.Sprint(at.UnixMilli()))}}},
		{Topic: "later", Value: []byte("after restart"), Headers: []kgo.RecordHeader{{Key: "ferry-deliver-at", Value: []byte(fmt.Sprint(atRestart.UnixMilli()))}}},
		{Topic: "later", Value: []byte("bad header"), Headers: []kgo.RecordHeader{{Key: "ferry-deliver-at", Value: []byte("soon")}}},
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := readTopic(t, b, "later", 4, 10*time.Second); len(got) != 4 {
		t.Fatalf("a plain consumer read %d records", len(got))
	}
	var rc receipts
	m := startShareMember(t, b, "g", func(r *kgo.Record) kgo.AckStatus { rc.add(r); return kgo.AckAccept }, kgo.ConsumeTopics("later"))
	waitUntil(t, 10*time.Second, "the delayed record arrived", func() bool { return len(rc.get("later")) > 0 })
	if now, later := rc.get("now"), rc.get("later"); len(now) != 1 || len(rc.get("bad header")) != 1 || !now[0].at.Before(at) {
		t.Errorf("records without a valid delay: %v %v", now, rc.get("bad header"))
	} else if got := later[0].at.Sub(at); got < 0 || got > time.Second {
		t.Errorf("delayed record delivered %v after its time", got)
	} else {
		t.Logf("delayed record delivered %v after its time", got)
	}
	m.stop()
	b.stop()
	b = startBroker(t, shareProps(), dir)
	m = startShareMember(t, b, "g", func(r *kgo.Record) kgo.AckStatus { rc.add(r); return kgo.AckAccept }, kgo.ConsumeTopics("later"))
	waitUntil(t, 15*time.Second, "the record delayed past the restart arrived", func() bool { return len(rc.get("after restart")) > 0 })
	if got := rc.get("after restart")[0].at.Sub(atRestart); got < 0 || got > time.Second {
		t.Errorf("record delayed past a restart delivered %v after its time", got)
	}
	if n := len(rc.get("later")) + len(rc.get("now")); n != 2 {
		t.Errorf("%d records delivered again after the restart", n-2)
	}
	m.stop()

	// A topic delay.
	prod = b.client(kgo.ProducerLinger(0))
	if _, err := b.admin().CreateTopic(ctx, 1, 1, map[string]*string{"delivery.delay.ms": kmsg.StringPtr("800")}, "slow"); err != nil {
		t.Fatal(err)
	}
	setGroupConfigs(t, b, "g2", "share.auto.offset.reset", "earliest")
	var rc2 receipts
	m = startShareMember(t, b, "g2", func(r *kgo.Record) kgo.AckStatus { rc2.add(r); return kgo.AckAccept }, kgo.ConsumeTopics("slow"))
	r := &kgo.Record{Topic: "slow", Value: []byte("x")}
	if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the topic-delayed record arrived", func() bool { return len(rc2.get("x")) > 0 })
	if got := rc2.get("x")[0].at.Sub(time.UnixMilli(r.Timestamp.UnixMilli())); got < 800*time.Millisecond || got > 2*time.Second {
		t.Errorf("record of a topic delayed 800ms delivered %v after its timestamp", got)
	}
	m.stop()

	// Backoff: 300ms, 600ms, then capped at 700ms.
	setGroupConfigs(t, b, "g3", "share.auto.offset.reset", "earliest", "share.delivery.backoff.ms", "300", "share.delivery.backoff.max.ms", "700", "share.delivery.count.limit", "5")
	var rc3 receipts
	m = startShareMember(t, b, "g3", func(r *kgo.Record) kgo.AckStatus {
		rc3.add(r)
		if r.DeliveryCount() < 4 {
			return kgo.AckRelease
		}
		return kgo.AckAccept
	}, kgo.ConsumeTopics("later"))
	waitUntil(t, 15*time.Second, "the fourth delivery", func() bool { return len(rc3.get("now")) >= 4 })
	got := rc3.get("now")
	for i, want := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 700 * time.Millisecond} {
		// Times on the broker count in milliseconds.
		if gap := got[i+1].at.Sub(got[i].at); gap < want-time.Millisecond || gap > want+time.Second {
			t.Errorf("delivery %d came %v after the previous one, want %v", i+2, gap, want)
		}
	}
}

// TestShareGroupAdmin: group configs (DescribeConfigs and
// IncrementalAlterConfigs on the GROUP resource), ListGroups,
// DescribeGroups and DeleteGroups with share groups, a share group and a
// consumer group never sharing a name, FindCoordinator for share keys,
// and the share APIs in ApiVersions.
func TestShareGroupAdmin(t *testing.T) {
	b := startBroker(t, shareProps())
	ctx := testCtx(t)
	cl := b.client()
	newShareTopic(t, b, "a", 1, "sg", "share.record.lock.duration.ms", "15000")

	// Configs.
	alter := func(group string, op kmsg.IncrementalAlterConfigOp, name string, value *string) (int16, string) {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		req.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeGroupConfig, ResourceName: group,
			Configs: []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: name, Op: op, Value: value}}}}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Resources[0].ErrorCode, derefOr(resp.Resources[0].ErrorMessage, "")
	}
	for _, bad := range [][2]string{
		{"share.record.lock.duration.ms", "100"},
		{"share.record.lock.duration.ms", "x"},
		{"share.auto.offset.reset", "middle"},
		{"share.isolation.level", "serializable"},
		{"errors.deadletterqueue.topic.name", "orders-dlq"},
		{"errors.deadletterqueue.topic.name", "__dlq"},
		{"consumer.session.timeout.ms", "45000"},
		{"no.such.config", "1"},
	} {
		if code, msg := alter("sg", kmsg.IncrementalAlterConfigOpSet, bad[0], kmsg.StringPtr(bad[1])); code != kerr.InvalidConfig.Code {
			t.Errorf("%s=%s: %v %s", bad[0], bad[1], kerr.ErrorForCode(code), msg)
		}
	}
	if code, _ := alter("sg", kmsg.IncrementalAlterConfigOpSet, "share.auto.offset.reset", kmsg.StringPtr("by_duration:PT1H")); code != 0 {
		t.Errorf("by_duration: %v", kerr.ErrorForCode(code))
	}
	if code, _ := alter("sg", kmsg.IncrementalAlterConfigOpDelete, "share.auto.offset.reset", nil); code != 0 {
		t.Errorf("delete: %v", kerr.ErrorForCode(code))
	}
	dreq := kmsg.NewPtrDescribeConfigsRequest()
	dreq.IncludeSynonyms = true
	dreq.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeGroupConfig, ResourceName: "sg"}}
	dresp, err := dreq.RequestWith(ctx, cl)
	if err != nil || dresp.Resources[0].ErrorCode != 0 {
		t.Fatalf("describe group configs: %v %+v", err, dresp)
	}
	byName := map[string]kmsg.DescribeConfigsResponseResourceConfig{}
	for _, c := range dresp.Resources[0].Configs {
		byName[c.Name] = c
	}
	for name, want := range map[string]struct {
		value  string
		source kmsg.ConfigSource
	}{
		"share.record.lock.duration.ms":             {"15000", kmsg.ConfigSourceGroupConfig},
		"share.auto.offset.reset":                   {"latest", kmsg.ConfigSourceDefaultConfig},
		"share.delivery.count.limit":                {"5", kmsg.ConfigSourceDefaultConfig},
		"share.heartbeat.interval.ms":               {"500", kmsg.ConfigSourceStaticBrokerConfig},
		"errors.deadletterqueue.copy.record.enable": {"true", kmsg.ConfigSourceDefaultConfig},
		"share.delivery.backoff.ms":                 {"0", kmsg.ConfigSourceDefaultConfig},
	} {
		c, ok := byName[name]
		if !ok || derefOr(c.Value, "") != want.value || c.Source != want.source {
			t.Errorf("%s: %v %v, want %s %v", name, derefOr(c.Value, "<nil>"), c.Source, want.value, want.source)
		}
	}

	// A share group with a member; a consumer group.
	m := newRawShare(t, b.addr, "sg")
	m.join("a")
	cg := b.client(kgo.ConsumerGroup("cg"), kgo.ConsumeTopics("a"))
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	cg.PollRecords(pctx, 1) // joins, reads nothing (the topic is empty)
	cancel()
	waitUntil(t, 10*time.Second, "the consumer group exists", func() bool {
		gs, _ := b.admin().ListGroups(ctx)
		_, ok := gs["cg"]
		return ok
	})

	// The names are taken.
	if resp := newRawShare(t, b.addr, "cg").heartbeat("a"); resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("share member joining a consumer group's name: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	hb.Group, hb.MemberID, hb.RebalanceTimeoutMillis = "sg", "m1", 1000
	hb.SubscribedTopicNames, hb.Topics = []string{"a"}, []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if resp, err := hb.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("consumer member joining a share group's name: %v %v", err, resp)
	}
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group, oc.Generation = "sg", -1
	oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "a", TopicID: topicIDOf(t, b.addr, "a"), Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	if resp, err := oc.RequestWith(ctx, cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("committing offsets for a share group: %v %+v", err, resp)
	}

	// Listing and describing.
	listed, err := b.admin().ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := listed["sg"]; !ok || g.GroupType != "share" || g.ProtocolType != "share" || g.State != "Stable" {
		t.Errorf("listed share group: %+v", listed["sg"])
	}
	if g, ok := listed["cg"]; !ok || g.GroupType == "share" {
		t.Errorf("listed consumer group: %+v", listed["cg"])
	}
	onlyShare, err := b.admin().ListGroupsByType(ctx, []string{"share"})
	if err != nil || len(onlyShare) != 1 {
		t.Errorf("share groups: %v %v", onlyShare, err)
	}
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{"sg", "cg"}
	dgr, err := dg.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if g := dgr.Groups[0]; g.ErrorCode != kerr.GroupIDNotFound.Code || g.State != "Dead" {
		t.Errorf("DescribeGroups of a share group: %v %s", kerr.ErrorForCode(g.ErrorCode), g.State)
	}
	if g := dgr.Groups[1]; g.ErrorCode != 0 && g.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("DescribeGroups of a consumer group: %v", kerr.ErrorForCode(g.ErrorCode))
	}
	sd, err := b.admin().DescribeShareGroups(ctx, "sg")
	if err != nil || sd["sg"].Err != nil || len(sd["sg"].Members) != 1 || sd["sg"].Members[0].MemberID != m.member {
		t.Errorf("ShareGroupDescribe: %v %+v", err, sd["sg"])
	}

	// Deleting: not while it has members.
	del, err := b.admin().DeleteGroups(ctx, "sg")
	if err != nil || !errors.Is(del["sg"].Err, kerr.NonEmptyGroup) {
		t.Errorf("deleting a share group with a member: %v %v", err, del["sg"].Err)
	}
	m.leave()
	del, err = b.admin().DeleteGroups(ctx, "sg")
	if err != nil || del["sg"].Err != nil {
		t.Errorf("deleting an empty share group: %v %v", err, del["sg"].Err)
	}
	if listed, _ := b.admin().ListGroups(ctx); func() bool { _, ok := listed["sg"]; return ok }() {
		t.Error("the deleted share group is listed")
	}

	// FindCoordinator for share-partition keys.
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType = 2
	fc.CoordinatorKeys = []string{"sg:AAAAAAAAAAAAAAAAAAAAAA:0"}
	fcr, err := fc.RequestWith(ctx, cl)
	if err != nil || len(fcr.Coordinators) != 1 || fcr.Coordinators[0].ErrorCode != 0 || fcr.Coordinators[0].NodeID != 0 {
		t.Errorf("FindCoordinator key type 2: %v %+v", err, fcr)
	}

	// ApiVersions.
	vresp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	have := map[int16]int16{}
	for _, k := range vresp.ApiKeys {
		have[k.ApiKey] = k.MaxVersion
	}
	for key, maxV := range map[int16]int16{76: 1, 77: 1, 78: 2, 79: 2, 90: 1, 91: 0, 92: 0} {
		if v, ok := have[key]; !ok || v != maxV {
			t.Errorf("ApiVersions %s: max %d (listed %v), want %d", kmsg.NameForKey(key), v, ok, maxV)
		}
	}
}
