package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type topicsAnswer struct {
	page
	Topics []topicRow `json:"topics"`
}

// TestTopicsAPI creates a topic through the API, produces to it with a
// Kafka client, and reads it back: list, page, totals, configs,
// partitions; then deletes it, with and without the confirmation.
func TestTopicsAPI(t *testing.T) {
	tc := startConsole(t, nil)
	var created struct {
		Name       string `json:"name"`
		ID         string `json:"id"`
		Partitions int32  `json:"partitions"`
	}
	body := createRequest{Name: "orders", Partitions: 3, Configs: map[string]string{"retention.ms": "3600000"}}
	if code := tc.call("POST", "/api/topics", body, &created); code != http.StatusCreated || created.Partitions != 3 || len(created.ID) != 22 {
		t.Fatalf("create: %d %+v", code, created)
	}
	var e apiError
	if code := tc.call("POST", "/api/topics", body, &e); code != http.StatusConflict || e.Code != "TOPIC_ALREADY_EXISTS" {
		t.Fatalf("create again: %d %+v", code, e)
	}
	for _, bad := range []createRequest{{Name: "bad name!", Partitions: 1}, {Name: ""}, {Name: "x", Configs: map[string]string{"retention.ms": "soon"}}} {
		if code := tc.call("POST", "/api/topics", bad, &e); code != http.StatusBadRequest {
			t.Errorf("create %+v: %d %+v, want 400", bad, code, e)
		}
	}
	if code := tc.call("POST", "/api/topics", map[string]any{"name": "x", "colour": "red"}, &e); code != http.StatusBadRequest {
		t.Errorf("create with an unknown field: %d", code)
	}
	tc.call("POST", "/api/topics", createRequest{Name: "audit", Partitions: 1}, nil)

	var recs []*kgo.Record
	for i := range 30 {
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i % 3), Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	tc.produce(recs...)

	var list topicsAnswer
	tc.mustGet("/api/topics", &list)
	if list.Total != 2 || len(list.Topics) != 2 || list.Topics[0].Name != "audit" || list.Topics[1].Name != "orders" {
		t.Fatalf("topics: %+v", list)
	}
	o := list.Topics[1]
	if o.Partitions != 3 || o.Records != 30 || o.LogBytes <= 0 || o.ReplicationFactor != 1 || o.Internal || o.ID != created.ID {
		t.Fatalf("orders row: %+v", o)
	}
	tc.mustGet("/api/topics?internal=true&q=OFFSETS", &list)
	if list.Total != 1 || list.Topics[0].Name != "__consumer_offsets" || !list.Topics[0].Internal {
		t.Fatalf("internal topics: %+v", list)
	}
	tc.mustGet("/api/topics?offset=1&limit=1", &list)
	if list.Total != 2 || len(list.Topics) != 1 || list.Topics[0].Name != "orders" {
		t.Fatalf("second page: %+v", list)
	}
	tc.mustGet("/api/topics?offset=5", &list)
	if list.Total != 2 || len(list.Topics) != 0 {
		t.Fatalf("past the end: %+v", list)
	}
	if code := tc.call("GET", "/api/topics?limit=x", nil, &e); code != http.StatusBadRequest {
		t.Fatalf("bad limit: %d", code)
	}

	var topic topicView
	tc.mustGet("/api/topics/orders", &topic)
	if topic.Records != 30 || topic.Partitions != 3 {
		t.Fatalf("topic: %+v", topic.topicRow)
	}
	cfgs := map[string]configRow{}
	for _, c := range topic.Configs {
		cfgs[c.Name] = c
	}
	if c := cfgs["retention.ms"]; c.Value == nil || *c.Value != "3600000" || c.Default || c.Source != "DYNAMIC_TOPIC" {
		t.Fatalf("retention.ms: %+v", c)
	}
	if c := cfgs["segment.bytes"]; c.Value == nil || !c.Default {
		t.Fatalf("segment.bytes: %+v", c)
	}

	var parts struct {
		page
		Partitions []partitionRow `json:"partitions"`
	}
	tc.mustGet("/api/topics/orders/partitions?offset=1&limit=5", &parts)
	if parts.Total != 3 || len(parts.Partitions) != 2 || parts.Partitions[0].Partition != 1 {
		t.Fatalf("partitions: %+v", parts)
	}
	for _, p := range parts.Partitions {
		if p.StartOffset != 0 || p.EndOffset != 10 || p.Records != 10 || p.LogBytes <= 0 || p.Leader != 0 || len(p.Replicas) != 1 || p.Error != "" {
			t.Fatalf("partition: %+v", p)
		}
	}

	for _, path := range []string{"/api/topics/nope", "/api/topics/nope/partitions", "/api/topics/nope/records", "/api/topics/orders/records?partition=7"} {
		if code := tc.call("GET", path, nil, &e); code != http.StatusNotFound || e.Code != "UNKNOWN_TOPIC_OR_PARTITION" {
			t.Errorf("GET %s: %d %+v, want 404", path, code, e)
		}
	}
	// Looking at a topic does not create it (Metadata without auto-create).
	tc.mustGet("/api/topics", &list)
	if list.Total != 2 {
		t.Fatalf("a topic was created by looking: %+v", list)
	}

	if code := tc.call("DELETE", "/api/topics/orders", nil, &e); code != http.StatusBadRequest {
		t.Fatalf("delete without confirm: %d", code)
	}
	if code := tc.call("DELETE", "/api/topics/orders?confirm=order", nil, &e); code != http.StatusBadRequest {
		t.Fatalf("delete with a wrong confirm: %d", code)
	}
	if code := tc.call("DELETE", "/api/topics/orders?confirm=orders", nil, &e); code != http.StatusOK {
		t.Fatalf("delete: %d %+v", code, e)
	}
	if code := tc.call("GET", "/api/topics/orders", nil, &e); code != http.StatusNotFound {
		t.Fatalf("deleted topic: %d", code)
	}
	if code := tc.call("DELETE", "/api/topics/orders?confirm=orders", nil, &e); code != http.StatusNotFound {
		t.Fatalf("delete again: %d %+v", code, e)
	}
	if code := tc.call("GET", "/api/nothing", nil, &e); code != http.StatusNotFound {
		t.Fatalf("unknown API: %d", code)
	}
}

type recordsAnswer struct {
	recordsPage
}

// TestRecordsAPI browses a partition from an offset, a time, the oldest
// and the newest records, and checks keys, values and headers as stored,
// including binary, JSON, empty and null ones and compressed batches.
func TestRecordsAPI(t *testing.T) {
	tc := startConsole(t, nil)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 100 {
		r := &kgo.Record{Topic: "events", Timestamp: base.Add(time.Duration(i) * time.Second), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i)}
		switch i {
		case 1:
			r.Key, r.Value = nil, nil
		case 2:
			r.Key, r.Value = []byte{}, []byte{0xff, 0x00, 0x01}
		case 3:
			r.Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "empty"}}
		case 4:
			r.Value = []byte(strings.Repeat("x", maxShownBytes+10))
		}
		recs = append(recs, r)
	}
	cl := tc.client(kgo.DefaultProduceTopic("events"), kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.AllowAutoTopicCreation())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var pg recordsAnswer
	tc.mustGet("/api/topics/events/records?partition=0&from=oldest&limit=10", &pg)
	if pg.StartOffset != 0 || pg.EndOffset != 100 || pg.From != 0 || pg.NextOffset != 10 || len(pg.Records) != 10 {
		t.Fatalf("oldest page: %+v", pg.recordsPage)
	}
	r0 := pg.Records[0]
	if r0.Offset != 0 || string(r0.Key.Data) != "k0" || !r0.Value.JSON || !r0.Value.UTF8 || string(r0.Value.Data) != `{"i":0}` || r0.Timestamp != base.UnixMilli() {
		t.Fatalf("record 0: %+v", r0)
	}
	if r := pg.Records[1]; r.Key != nil || r.Value != nil {
		t.Fatalf("record 1 (null key and value): key %+v value %+v", r.Key, r.Value)
	}
	if r := pg.Records[2]; r.Key == nil || r.Key.Size != 0 || r.Value.UTF8 || r.Value.JSON || string(r.Value.Data) != "\xff\x00\x01" {
		t.Fatalf("record 2 (empty key, binary value): key %+v value %+v", r.Key, r.Value)
	}
	if r := pg.Records[3]; len(r.Headers) != 2 || r.Headers[0].Key != "trace" || string(r.Headers[0].Value.Data) != "abc" || r.Headers[1].Value != nil {
		t.Fatalf("record 3 headers: %+v", r.Headers)
	}
	if r := pg.Records[4]; !r.Value.Truncated || r.Value.Size != maxShownBytes+10 || len(r.Value.Data) != maxShownBytes {
		t.Fatalf("record 4 (large value): size %d shown %d truncated %v", r.Value.Size, len(r.Value.Data), r.Value.Truncated)
	}

	tc.mustGet("/api/topics/events/records?partition=0&offset=42&limit=3", &pg)
	if pg.From != 42 || len(pg.Records) != 3 || pg.Records[0].Offset != 42 || pg.Records[2].Offset != 44 || pg.NextOffset != 45 {
		t.Fatalf("from offset 42: %+v", pg.recordsPage)
	}
	tc.mustGet("/api/topics/events/records?partition=0&offset=98", &pg)
	if len(pg.Records) != 2 || pg.NextOffset != 100 {
		t.Fatalf("from offset 98: %+v", pg.recordsPage)
	}
	tc.mustGet("/api/topics/events/records?partition=0&offset=5000", &pg)
	if pg.From != 100 || len(pg.Records) != 0 {
		t.Fatalf("past the end: %+v", pg.recordsPage)
	}
	tc.mustGet("/api/topics/events/records?partition=0&limit=5", &pg)
	if pg.From != 95 || len(pg.Records) != 5 || pg.Records[4].Offset != 99 {
		t.Fatalf("newest: %+v", pg.recordsPage)
	}
	at := base.Add(70*time.Second + time.Millisecond)
	for _, ts := range []string{fmt.Sprint(at.UnixMilli()), at.UTC().Format(time.RFC3339Nano)} {
		tc.mustGet("/api/topics/events/records?partition=0&limit=1&time="+url.QueryEscape(ts), &pg)
		if len(pg.Records) != 1 || pg.Records[0].Offset != 71 {
			t.Fatalf("time %s: %+v", ts, pg.recordsPage)
		}
	}
	tc.mustGet("/api/topics/events/records?partition=0&time="+fmt.Sprint(time.Now().Add(time.Hour).UnixMilli()), &pg)
	if pg.From != 100 || len(pg.Records) != 0 {
		t.Fatalf("time after the last record: %+v", pg.recordsPage)
	}
	var e apiError
	for _, q := range []string{"offset=x", "time=yesterday", "from=middle", "limit=0", "partition=x"} {
		if code := tc.call("GET", "/api/topics/events/records?"+q, nil, &e); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %+v, want 400", q, code, e)
		}
	}
	// The JSON of a page carries bytes as base64.
	var raw map[string]any
	tc.mustGet("/api/topics/events/records?partition=0&offset=0&limit=1", &raw)
	b, _ := json.Marshal(raw["records"])
	if !strings.Contains(string(b), `"data":"azA="`) {
		t.Fatalf("key not base64 in %s", b)
	}
}

// TestCrossOrigin: a change sent from another origin is refused.
func TestCrossOrigin(t *testing.T) {
	tc := startConsole(t, nil, func(c *Config) { c.SampleInterval = -1 })
	req, _ := http.NewRequest("POST", tc.url+"/api/topics", strings.NewReader(`{"name":"evil"}`))
	req.Header.Set("Origin", "http://attacker.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %d, want 403", resp.StatusCode)
	}
	var list topicsAnswer
	tc.mustGet("/api/topics", &list)
	if list.Total != 0 {
		t.Fatalf("topic created cross-origin: %+v", list)
	}
}
