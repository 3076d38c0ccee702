package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/ferrytest"
)

// testConsole is a real broker started in-process on 127.0.0.1:0 and a
// console talking to it, served by an httptest server. Everything stops
// when the test ends.
type testConsole struct {
	t       testing.TB
	broker  string // Kafka address
	console *Console
	url     string // of the console
	hooks   *requestCounter
}

func startConsole(t testing.TB, props map[string]string, configure ...func(*Config)) *testConsole {
	t.Helper()
	all := map[string]string{"group.initial.rebalance.delay.ms": "0"}
	for k, v := range props {
		all[k] = v
	}
	addr := ferrytest.Start(t, ferrytest.Props(all)).Addr()
	hooks := &requestCounter{byKey: map[int16]int{}}
	cfg := Config{
		Brokers:        []string{addr},
		ClientOpts:     []kgo.Opt{kgo.WithHooks(hooks)},
		SampleInterval: 200 * time.Millisecond,
	}
	for _, f := range configure {
		f(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(c)
	t.Cleanup(func() {
		hs.Close()
		c.Close()
	})
	return &testConsole{t: t, broker: addr, console: c, url: hs.URL, hooks: hooks}
}

// client returns a Kafka client of the test's broker, closed with the test.
func (tc *testConsole) client(opts ...kgo.Opt) *kgo.Client {
	tc.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(tc.broker)}, opts...)...)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(cl.Close)
	return cl
}

func (tc *testConsole) admin() *kadm.Client { return kadm.NewClient(tc.client()) }

// call makes an API request and decodes the JSON answer into out (when
// not nil), returning the status.
func (tc *testConsole) call(method, path string, body any, out any) int {
	tc.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tc.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, tc.url+path, rd)
	if err != nil {
		tc.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tc.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tc.t.Fatalf("%s %s: %d %v\n%s", method, path, resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode
}

// mustGet is a GET that must answer 200.
func (tc *testConsole) mustGet(path string, out any) {
	tc.t.Helper()
	var raw json.RawMessage
	if code := tc.call("GET", path, nil, &raw); code != http.StatusOK {
		tc.t.Fatalf("GET %s: %d %s", path, code, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		tc.t.Fatalf("GET %s: %v", path, err)
	}
}

// produce writes records to the partitions they name, with acks=all, and
// waits for them.
func (tc *testConsole) produce(recs ...*kgo.Record) {
	tc.t.Helper()
	cl := tc.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tc.t.Fatal(err)
	}
}

// requestCounter counts the Kafka requests the console's client writes,
// by API key.
type requestCounter struct {
	mu    sync.Mutex
	byKey map[int16]int
}

func (rc *requestCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	rc.mu.Lock()
	rc.byKey[key]++
	rc.mu.Unlock()
}

// snapshot returns the counts so far.
func (rc *requestCounter) snapshot() map[int16]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[int16]int, len(rc.byKey))
	for k, v := range rc.byKey {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it holds or 30s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasString(xs []string, s string) bool {
	for _, x := range xs {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// shareProps are broker configs that let share-group tests run fast:
// members heartbeat every 500ms, and a group may hold records for as
// little as 200ms.
func shareProps() map[string]string {
	return map[string]string{
		"group.share.min.heartbeat.interval.ms":   "100",
		"group.share.heartbeat.interval.ms":       "500",
		"group.share.min.record.lock.duration.ms": "200",
	}
}

// setGroupConfigs sets configs of a group (IncrementalAlterConfigs on the
// GROUP resource), as `ferry group alter-config` does.
func (tc *testConsole) setGroupConfigs(group string, kvs ...string) {
	tc.t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for i := 0; i+1 < len(kvs); i += 2 {
		cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		cfg.Name, cfg.Op, cfg.Value = kvs[i], kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, cfg)
	}
	req.Resources = append(req.Resources, res)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, tc.client())
	if err != nil {
		tc.t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		tc.t.Fatalf("configs of group %s: %v", group, err)
	}
}

// shareConsumer is a franz-go share-group consumer driven by the test:
// accept polls until it has accepted n more records, releasing any it
// gets beyond them, and flushes the acknowledgements, so the group's lag
// falls by exactly n.
type shareConsumer struct {
	t  testing.TB
	cl *kgo.Client
}

func (tc *testConsole) shareConsumer(group string, opts ...kgo.Opt) *shareConsumer {
	tc.t.Helper()
	return &shareConsumer{t: tc.t, cl: tc.client(append([]kgo.Opt{kgo.ShareGroup(group), kgo.FetchMaxWait(500 * time.Millisecond)}, opts...)...)}
}

func (sc *shareConsumer) accept(ctx context.Context, n int) {
	sc.t.Helper()
	for n > 0 {
		fs := sc.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			sc.t.Fatalf("share consumer: %v (%d records still to accept)", err, n)
		}
		fs.EachError(func(t string, p int32, err error) { sc.t.Logf("share fetch of %s-%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if n > 0 {
				r.Ack(kgo.AckAccept)
				n--
			} else {
				r.Ack(kgo.AckRelease)
			}
		})
	}
	if err := sc.cl.FlushAcks(ctx); err != nil {
		sc.t.Fatal(err)
	}
}
