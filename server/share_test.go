package server

import (
	"context"
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
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr), kgo.ShareGroup(group), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)
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

// TestShareGroupBasic: two share consumers take the records of a topic
// between them, each record once.
func TestShareGroupBasic(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 3, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}
	setGroupConfigs(t, b, "g", "share.auto.offset.reset", "earliest")
	produceN(t, b, "q", 300)
	m1 := startShareMember(t, b, "g", nil, kgo.ConsumeTopics("q"))
	m2 := startShareMember(t, b, "g", nil, kgo.ConsumeTopics("q"))
	waitUntil(t, 30*time.Second, "300 records received", func() bool { return len(m1.received())+len(m2.received()) >= 300 })
	seen := map[string]int{}
	for _, m := range []*shareMember{m1, m2} {
		for _, r := range m.received() {
			seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s received %d times", k, n)
		}
	}
	if len(seen) != 300 {
		t.Errorf("%d distinct records", len(seen))
	}
	t.Logf("m1 %d m2 %d", len(m1.received()), len(m2.received()))
}
