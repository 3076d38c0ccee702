package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/segment"
)

// metricsURL serves the broker's collector, with the runtime collectors,
// through the admin listener's handler, as `ferry serve -admin-listen`
// does, and returns the /metrics URL.
func (b *testBroker) metricsURL() string {
	b.t.Helper()
	reg := admin.NewRegistry()
	reg.MustRegister(b.srv.Collector())
	hs := httptest.NewServer(admin.New(admin.Config{Registry: reg}).Handler())
	b.t.Cleanup(hs.Close)
	return hs.URL + "/metrics"
}

// scraped is one scrape of /metrics: each sample by its series, written
// as name{label="value",...} with the labels sorted by name.
type scraped map[string]float64

func scrape(t *testing.T, url string) scraped {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	m := scraped{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// series names a series: labels are name, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i < len(labels); i += 2 {
		pairs = append(pairs, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// get returns a series' value, failing the test if it is missing.
func (m scraped) get(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m[series(name, labels...)]
	if !ok {
		t.Fatalf("no series %s", series(name, labels...))
	}
	return v
}

// has reports whether any series of the metric name exists.
func (m scraped) has(name string) bool {
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// TestMetrics produces and consumes with kgo against a real broker and
// scrapes /metrics: bytes and records in and out per partition and topic,
// offsets and size, request counts and latencies by API, an error code
// counted by its name, fsyncs and group commits, connections and the
// request memory, and a group's lag falling as it commits.
func TestMetrics(t *testing.T) {
	b := startBroker(t, map[string]string{"offsets.topic.num.partitions": "3", "transaction.state.log.num.partitions": "1"})
	url := b.metricsURL()
	ctx := testCtx(t)
	const topic, n = "metered", 100
	if _, err := b.admin().CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	prod := b.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range n {
		r := &kgo.Record{Partition: 0, Value: fmt.Appendf(nil, "record %d", i)}
		if i%10 == 9 {
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		} else {
			prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
			})
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// A request's latency is observed once its response is written, a
	// moment after the client has it: scrape until the last is in.
	m := scrape(t, url)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); m = scrape(t, url) {
		if m.get(t, "ferry_kafka_request_latency_seconds_count", "api", "Produce") == m.get(t, "ferry_kafka_requests_total", "api", "Produce") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p0 := []string{"topic", topic, "partition", "0"}
	size := m.get(t, "ferry_storage_log_size_bytes", p0...)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ferry_kafka_partition_records_in_total", p0, n},
		{"ferry_kafka_partition_bytes_in_total", p0, size},
		{"ferry_kafka_partition_log_start_offset", p0, 0},
		{"ferry_kafka_partition_high_watermark", p0, n},
		{"ferry_kafka_partition_log_end_offset", p0, n},
		{"ferry_storage_log_segments", p0, 1},
		{"ferry_kafka_partition_records_in_total", []string{"topic", topic, "partition", "1"}, 0},
		{"ferry_kafka_topic_records_in_total", []string{"topic", topic}, n},
		{"ferry_kafka_topic_bytes_in_total", []string{"topic", topic}, size},
		{"ferry_kafka_topic_partitions", []string{"topic", topic}, 2},
		{"ferry_kafka_partitions", nil, 6}, // and __consumer_offsets' 3, __transaction_state's 1
		{"ferry_kafka_offline_partitions", nil, 0},
		{"ferry_storage_failed_partitions", nil, 0},
		{"ferry_metrics_partition_series_enabled", nil, 1},
		{"ferry_kafka_request_memory_limit_bytes", nil, 268435456},
	} {
		if got := m.get(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s = %v, want %v", series(c.name, c.labels...), got, c.want)
		}
	}
	if size < n*10 {
		t.Errorf("log size %v for %d records", size, n)
	}
	produces := m.get(t, "ferry_kafka_requests_total", "api", "Produce")
	if produces < 10 || m.get(t, "ferry_kafka_request_latency_seconds_count", "api", "Produce") != produces {
		t.Errorf("%v produce requests, latencies of %v", produces, m.get(t, "ferry_kafka_request_latency_seconds_count", "api", "Produce"))
	}
	if m.get(t, "ferry_kafka_request_latency_seconds_bucket", "api", "Produce", "le", "+Inf") != produces {
		t.Error("latency buckets do not add up to the requests")
	}
	if m.get(t, "ferry_kafka_request_bytes_total", "api", "Produce") < size {
		t.Error("produce request bytes below the bytes stored")
	}
	fsyncs := m.get(t, "ferry_storage_fsync_latency_seconds_count")
	batches := m.get(t, "ferry_storage_group_commit_batches_sum")
	if fsyncs < 1 || fsyncs > produces || batches < produces || m.get(t, "ferry_storage_fsync_bytes_sum") < size {
		t.Errorf("%v fsyncs of %v batches and %v bytes, for %v produce requests of %v bytes", fsyncs, batches, m.get(t, "ferry_storage_fsync_bytes_sum"), produces, size)
	}
	if m.get(t, "ferry_kafka_connections") < 1 || m.get(t, "ferry_kafka_connections_accepted_total") < 1 {
		t.Error("no connection counted")
	}
	if m.has("ferry_kafka_request_errors_total") {
		t.Errorf("errors counted before any: %v", m)
	}

	// An error code is counted by API and name: ListOffsets of a
	// partition that does not exist.
	raw := b.client()
	lreq := kmsg.NewPtrListOffsetsRequest()
	lreq.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: topic, Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 9, Timestamp: -1, CurrentLeaderEpoch: -1}}}}
	kresp, err := raw.Broker(0).Request(ctx, lreq)
	if err != nil {
		t.Fatal(err)
	}
	lresp := kresp.(*kmsg.ListOffsetsResponse)
	if code := lresp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("ListOffsets of partition 9: code %d", code)
	}
	m = scrape(t, url)
	if got := m.get(t, "ferry_kafka_request_errors_total", "api", "ListOffsets", "error", "UNKNOWN_TOPIC_OR_PARTITION"); got != 1 {
		t.Errorf("UNKNOWN_TOPIC_OR_PARTITION counted %v times, want 1", got)
	}

	// Consume partition 0 from the start: bytes and records out.
	cons := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	m = scrape(t, url)
	if out := m.get(t, "ferry_kafka_partition_records_out_total", p0...); out != n {
		t.Errorf("records out %v, want %d", out, n)
	}
	if out := m.get(t, "ferry_kafka_partition_bytes_out_total", p0...); out != size {
		t.Errorf("bytes out %v, want the partition's %v", out, size)
	}
	if out := m.get(t, "ferry_kafka_topic_bytes_out_total", "topic", topic); out != size {
		t.Errorf("topic bytes out %v, want %v", out, size)
	}
	// A response is counted once written, after the client may have
	// read it.
	waitUntil(t, 5*time.Second, "fetch requests and response bytes counted", func() bool {
		m := scrape(t, url)
		return m.get(t, "ferry_kafka_requests_total", "api", "Fetch") >= 1 && m.get(t, "ferry_kafka_response_bytes_total", "api", "Fetch") >= size
	})

	// A group's lag falls as it commits.
	adm := b.admin()
	const group = "metered-group"
	lagAt := func(committed int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: committed, LeaderEpoch: -1})
		offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 0, LeaderEpoch: -1})
		if resp, err := adm.CommitOffsets(ctx, group, offs); err != nil || !resp.Ok() {
			t.Fatalf("commit %d: %v %v", committed, err, resp.Error())
		}
		m := scrape(t, url)
		want := float64(n - committed)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"ferry_kafka_consumer_group_lag", []string{"group", group, "topic", topic, "partition", "0"}, want},
			{"ferry_kafka_consumer_group_committed_offset", []string{"group", group, "topic", topic, "partition", "0"}, float64(committed)},
			{"ferry_kafka_consumer_group_lag", []string{"group", group, "topic", topic, "partition", "1"}, 0},
			{"ferry_kafka_consumer_group_lag_sum", []string{"group", group, "topic", topic}, want},
			{"ferry_kafka_consumer_group_lag_max", []string{"group", group, "topic", topic}, want},
			{"ferry_kafka_consumer_group_members", []string{"group", group}, 0},
		} {
			if got := m.get(t, c.name, c.labels...); got != c.want {
				t.Errorf("committed %d: %s = %v, want %v", committed, series(c.name, c.labels...), got, c.want)
			}
		}
	}
	lagAt(0)
	lagAt(40)
	lagAt(n)
	if got := scrape(t, url).get(t, "ferry_kafka_requests_total", "api", "OffsetCommit"); got != 3 {
		t.Errorf("%v OffsetCommit requests counted, want 3", got)
	}
}

// TestMetricsPartitionSeriesSwitch: metrics.partition.series.max.partitions
// below the broker's partition count leaves out every series with a
// partition label, per-topic and per-group series stay; raising it (a
// dynamic broker config) brings them back.
func TestMetricsPartitionSeriesSwitch(t *testing.T) {
	b := startBroker(t, map[string]string{"offsets.topic.num.partitions": "1", partitionSeriesConfig: "2"})
	url := b.metricsURL()
	ctx := testCtx(t)
	const topic = "wide"
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil { // 3 partitions with __consumer_offsets
		t.Fatal(err)
	}
	prod := b.client(kgo.DefaultProduceTopic(topic))
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx, "g", offs); err != nil || !resp.Ok() {
		t.Fatal(err, resp.Error())
	}
	check := func(on bool) {
		t.Helper()
		m := scrape(t, url)
		var withPartition []string
		for k := range m {
			if strings.Contains(k, `partition="`) {
				withPartition = append(withPartition, k)
			}
		}
		if on != (len(withPartition) > 0) {
			t.Errorf("per-partition series on=%v, series with a partition label: %v", on, withPartition)
		}
		want := 0.0
		if on {
			want = 1
		}
		if got := m.get(t, "ferry_metrics_partition_series_enabled"); got != want {
			t.Errorf("ferry_metrics_partition_series_enabled = %v, want %v", got, want)
		}
		if got := m.get(t, "ferry_kafka_topic_records_in_total", "topic", topic); got != 1 {
			t.Errorf("topic records in %v, want 1", got)
		}
		if !m.has("ferry_kafka_consumer_group_lag_sum") {
			t.Error("no group lag sum")
		}
	}
	check(false)
	alter := func(v string) {
		t.Helper()
		resp, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: partitionSeriesConfig, Value: &v}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp {
			if r.Err != nil {
				t.Fatalf("alter %s=%s: %v", partitionSeriesConfig, v, r.Err)
			}
		}
	}
	alter("-1")
	check(true)
	alter("0")
	check(false)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for log
// handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines decodes the JSON log lines written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestSlowRequestLog: with slow.request.threshold.ms=0 every request is
// slow; its JSON log line names the API, version, client id, correlation
// id, connection and duration, and it is counted. With -1 nothing is.
func TestSlowRequestLog(t *testing.T) {
	for _, threshold := range []string{"0", "-1"} {
		t.Run("threshold="+threshold, func(t *testing.T) {
			var logs syncBuffer
			b := startBrokerConfig(t, Config{
				DataDir: t.TempDir(),
				Props:   map[string]string{"slow.request.threshold.ms": threshold, "offsets.topic.num.partitions": "1"},
				Logger:  slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			ctx := testCtx(t)
			cl := b.client(kgo.ClientID("slow-client"), kgo.DefaultProduceTopic("slow"), kgo.AllowAutoTopicCreation())
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			b.stop() // the writer has counted and logged every request
			var slow []map[string]any
			for _, l := range logs.lines(t) {
				if l["msg"] == "slow request" {
					slow = append(slow, l)
				}
			}
			if threshold == "-1" {
				if len(slow) > 0 {
					t.Fatalf("slow requests logged with the threshold off: %v", slow)
				}
				return
			}
			var produce map[string]any
			for _, l := range slow {
				if l["api"] == "Produce" {
					produce = l
				}
			}
			if produce == nil {
				t.Fatalf("no slow Produce logged; slow lines: %v", slow)
			}
			if produce["client_id"] != "slow-client" || produce["level"] != "WARN" {
				t.Errorf("slow produce line: %v", produce)
			}
			for _, k := range []string{"correlation_id", "version", "duration", "conn", "request_bytes", "response_bytes"} {
				if v, ok := produce[k].(float64); !ok || (k == "duration" && v <= 0) {
					t.Errorf("slow produce line: %s = %v (%T)", k, produce[k], produce[k])
				}
			}
			if r, _ := produce["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
				t.Errorf("slow produce line: remote %v", produce["remote"])
			}
		})
	}
}

// TestSlowRequestCounted: a slow request is counted by API.
func TestSlowRequestCounted(t *testing.T) {
	b := startBrokerConfig(t, Config{
		DataDir: t.TempDir(),
		Props:   map[string]string{"slow.request.threshold.ms": "0", "offsets.topic.num.partitions": "1"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	url := b.metricsURL()
	ctx := testCtx(t)
	if _, err := b.admin().ListTopics(ctx); err != nil {
		t.Fatal(err)
	}
	// The writer counts a request once its response is written, which
	// is after the client has read it: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, url)
		if v, ok := m[series("ferry_kafka_slow_requests_total", "api", "Metadata")]; ok && v >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slow Metadata request counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failingSyncs fails every fdatasync while fail is set.
type failingSyncs struct {
	*os.File
	fail *atomic.Bool
}

func (f failingSyncs) Sync() error {
	if f.fail.Load() {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Sync()
}

// TestStorageErrorLogged: a failed fdatasync is logged, in JSON, with
// the topic, the partition and the file, the produce is answered
// KAFKA_STORAGE_ERROR (counted by name), and the partition counts as
// failed.
func TestStorageErrorLogged(t *testing.T) {
	var logs syncBuffer
	var fail atomic.Bool
	b := startBrokerConfig(t, Config{
		DataDir: t.TempDir(),
		Props:   map[string]string{"offsets.topic.num.partitions": "1"},
		Logger:  slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		testPartitionConfig: func(topic string, cfg *partition.Config) {
			if topic == "failing" {
				cfg.Log.WrapFile = func(f *os.File) segment.File { return failingSyncs{File: f, fail: &fail} }
			}
		},
	})
	url := b.metricsURL()
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 2, 1, nil, "failing"); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	cl := b.client(kgo.DefaultProduceTopic("failing"), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(5*time.Second))
	err := cl.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("lost")}).FirstErr()
	if err == nil {
		t.Fatal("produce acknowledged though its fdatasync failed")
	}
	m := scrape(t, url)
	if got := m.get(t, "ferry_storage_failed_partitions"); got != 1 {
		t.Errorf("failed partitions %v, want 1", got)
	}
	if got := m.get(t, "ferry_kafka_request_errors_total", "api", "Produce", "error", "KAFKA_STORAGE_ERROR"); got < 1 {
		t.Errorf("KAFKA_STORAGE_ERROR counted %v times", got)
	}
	b.stop()
	var found []string
	for _, l := range logs.lines(t) {
		if l["level"] != "ERROR" {
			continue
		}
		msg, _ := l["msg"].(string)
		found = append(found, msg)
		errText, _ := l["err"].(string)
		if l["topic"] != "failing" || l["partition"] != float64(1) || !strings.Contains(errText, "failing-1") || !strings.Contains(errText, ".log") {
			t.Errorf("storage error line without its topic, partition and file: %v", l)
		}
	}
	for _, want := range []string{"log write failed; refusing appends until reopened", "fsync failed; produce not acknowledged"} {
		if !slices.Contains(found, want) {
			t.Errorf("no %q line; error lines: %q", want, found)
		}
	}
}

// TestMetricsDocumented: README lists every metric the collector
// exports, and the Grafana dashboard queries only metrics that exist.
func TestMetricsDocumented(t *testing.T) {
	fq := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	known := map[string]bool{}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range allDescs {
		m := fq.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		known[m[1]] = true
		if !bytes.Contains(readme, []byte("`"+m[1]+"`")) {
			t.Errorf("README does not list %s", m[1])
		}
	}
	if len(known) != len(allDescs) {
		t.Errorf("%d metrics, %d names", len(allDescs), len(known))
	}
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) < 20 {
		t.Fatalf("dashboard has %d queries", len(exprs))
	}
	name := regexp.MustCompile(`\bferry_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range name.FindAllString(e, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("dashboard queries %s, which the broker does not export: %s", n, e)
			}
			used[base] = true
		}
	}
	t.Logf("the dashboard charts %d of %d metrics", len(used), len(known))
}
