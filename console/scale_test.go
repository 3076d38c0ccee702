package console

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestsOf runs f and returns the Kafka requests the console's client
// wrote meanwhile, by API key (ApiVersions, written once per new
// connection, left out).
func (tc *testConsole) requestsOf(f func()) map[int16]int {
	before := tc.hooks.snapshot()
	f()
	after := tc.hooks.snapshot()
	out := map[int16]int{}
	for k, n := range after {
		if d := n - before[k]; d > 0 && k != kmsg.ApiVersions.Int16() {
			out[k] = d
		}
	}
	return out
}

func total(m map[int16]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestRequestsBounded checks that no page costs a Kafka request per
// partition: with a topic of 300 partitions, a group committed to all of
// them and a share group with state on all of them, each API call writes
// a handful of requests (one broker here).
func TestRequestsBounded(t *testing.T) {
	const partitions = 300
	tc := startConsole(t, shareProps(), func(c *Config) { c.SampleInterval = -1 })
	tc.setGroupConfigs("sharers", "share.auto.offset.reset", "earliest")
	tc.call("POST", "/api/topics", createRequest{Name: "wide", Partitions: partitions}, nil)
	var recs []*kgo.Record
	for p := range int32(partitions) {
		recs = append(recs, &kgo.Record{Topic: "wide", Partition: p, Value: []byte("v")})
	}
	tc.produce(recs...)
	cons := tc.client(kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("wide"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < partitions {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	if err := cons.CommitRecords(ctx, got...); err != nil {
		t.Fatal(err)
	}
	sc := tc.shareConsumer("sharers", kgo.ConsumeTopics("wide"))
	sc.accept(ctx, partitions)
	var sg groupAnswer
	tc.mustGet("/api/groups/sharers?limit=1000", &sg)
	if sg.Type != "share" || sg.Total != partitions || !sg.LagKnown || sg.Lag != 0 {
		t.Fatalf("share group: %d partitions, lag %d (known %v)", sg.Total, sg.Lag, sg.LagKnown)
	}

	for _, path := range []string{
		"/api/cluster",
		"/api/topics",
		"/api/topics?internal=true", // __consumer_offsets: 50 more partitions
		"/api/topics/wide",
		"/api/topics/wide/partitions?limit=1000",
		"/api/topics/wide/records?partition=299&from=oldest",
		"/api/groups",
		"/api/groups/readers?limit=1000",
		"/api/groups?type=share",
		"/api/groups/sharers?limit=1000",
	} {
		var raw map[string]any
		reqs := tc.requestsOf(func() {
			if code := tc.call("GET", path, nil, &raw); code != http.StatusOK {
				t.Fatalf("GET %s: %d %v", path, code, raw)
			}
		})
		t.Logf("GET %s: %d Kafka requests %v", path, total(reqs), reqs)
		if n := total(reqs); n > 12 {
			t.Errorf("GET %s wrote %d Kafka requests for %d partitions: %v", path, n, partitions, reqs)
		}
		if n := reqs[kmsg.ListOffsets.Int16()]; n > 3 {
			t.Errorf("GET %s wrote %d ListOffsets", path, n)
		}
	}
	reqs := tc.requestsOf(func() {
		snap, err := tc.console.sampler.take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if snap.records != partitions || snap.topics["wide"].end != partitions {
			t.Errorf("sample: %d records, wide %+v", snap.records, snap.topics["wide"])
		}
	})
	t.Logf("throughput sample: %d Kafka requests %v", total(reqs), reqs)
	if n := total(reqs); n > 6 {
		t.Errorf("a throughput sample wrote %d Kafka requests: %v", n, reqs)
	}
}

// TestScale measures the API on a topic of FERRY_CONSOLE_PARTITIONS
// partitions (10,000 when the variable is "1"), on a real broker; it is
// skipped unless the variable is set (creating the topic takes a while).
// It logs the latency of each call; it asserts no timing.
func TestScale(t *testing.T) {
	env := os.Getenv("FERRY_CONSOLE_PARTITIONS")
	if env == "" {
		t.Skip("set FERRY_CONSOLE_PARTITIONS=1 (10,000 partitions) or a number to measure the console on a large topic")
	}
	partitions := 10000
	if env != "1" {
		n, err := strconv.Atoi(env)
		if err != nil || n <= 0 {
			t.Fatalf("FERRY_CONSOLE_PARTITIONS=%q", env)
		}
		partitions = n
	}
	tc := startConsole(t, shareProps(), func(c *Config) { c.SampleInterval = -1 })
	tc.setGroupConfigs("shared", "share.auto.offset.reset", "earliest")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	adm := tc.admin()
	adm.SetTimeoutMillis(int32((5 * time.Minute).Milliseconds()))
	resp, err := adm.CreateTopic(ctx, int32(partitions), 1, nil, "huge")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %d partitions: %v", partitions, err)
	}
	t.Logf("created a topic of %d partitions in %v", partitions, time.Since(start).Round(time.Millisecond))
	cl := tc.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(10*time.Millisecond))
	start = time.Now()
	for p := range int32(partitions) {
		cl.Produce(ctx, &kgo.Record{Topic: "huge", Partition: p, Value: fmt.Appendf(nil, "record of partition %d", p)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced one record to each partition in %v", time.Since(start).Round(time.Millisecond))
	cons := tc.client(kgo.ConsumerGroup("all"), kgo.ConsumeTopics("huge"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	var got []*kgo.Record
	for len(got) < partitions/2 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	if err := cons.CommitRecords(ctx, got...); err != nil {
		t.Fatal(err)
	}
	t.Logf("a group committed %d partitions", len(got))
	start = time.Now()
	tc.shareConsumer("shared", kgo.ConsumeTopics("huge")).accept(ctx, partitions/2)
	t.Logf("a share group accepted %d records in %v", partitions/2, time.Since(start).Round(time.Millisecond))

	for _, path := range []string{
		"/api/cluster",
		"/api/topics",
		"/api/topics/huge",
		"/api/topics/huge/partitions",
		fmt.Sprintf("/api/topics/huge/partitions?offset=%d", partitions-50),
		fmt.Sprintf("/api/topics/huge/records?partition=%d&from=oldest", partitions-1),
		"/api/groups",
		"/api/groups/all",
		"/api/groups/shared",
	} {
		var raw map[string]any
		var took []time.Duration
		var reqs map[int16]int
		for range 5 {
			t0 := time.Now()
			reqs = tc.requestsOf(func() {
				if code := tc.call("GET", path, nil, &raw); code != http.StatusOK {
					t.Fatalf("GET %s: %d %v", path, code, raw)
				}
			})
			took = append(took, time.Since(t0))
		}
		t.Logf("GET %-50s median %v (of 5: %v), %d Kafka requests", path, median(took), took, total(reqs))
	}
	reqs := tc.requestsOf(func() {
		t0 := time.Now()
		if _, err := tc.console.sampler.take(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("throughput sample: %v", time.Since(t0))
	})
	t.Logf("throughput sample: %d Kafka requests %v", total(reqs), reqs)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2].Round(100 * time.Microsecond)
}
