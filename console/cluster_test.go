package console

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterAndThroughput: the overview counts topics, partitions and
// groups, and while a producer runs the sampler reports its throughput,
// in all and for its topic.
func TestClusterAndThroughput(t *testing.T) {
	tc := startConsole(t, nil, func(c *Config) { c.SampleInterval = 100 * time.Millisecond })
	tc.call("POST", "/api/topics", createRequest{Name: "metrics", Partitions: 4}, nil)
	tc.call("POST", "/api/topics", createRequest{Name: "quiet", Partitions: 1}, nil)

	var v clusterView
	tc.mustGet("/api/cluster", &v)
	if v.ClusterID == "" || len(v.Brokers) != 1 || v.Brokers[0].NodeID != 0 || v.Topics != 2 || v.InternalTopics != 2 || v.Partitions != 5 || v.SampleIntervalMS != 100 {
		t.Fatalf("cluster: %+v", v)
	}

	// A producer runs until the console has seen its throughput.
	cl := tc.client(kgo.DefaultProduceTopic("metrics"), kgo.ProducerLinger(0))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "sample %d", i)})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	var tp struct {
		Now       int64       `json:"now"`
		Points    []point     `json:"points"`
		TopTopics []topicRate `json:"top_topics"`
	}
	waitFor(t, "throughput", func() bool {
		tc.mustGet("/api/throughput?since=0", &tp)
		for _, p := range tp.Points {
			if p.RecordsPerSec > 0 && p.BytesPerSec > 0 && len(tp.TopTopics) > 0 {
				return true
			}
		}
		return false
	})
	if tp.TopTopics[0].Topic != "metrics" {
		t.Fatalf("top topics: %+v", tp.TopTopics)
	}
	last := tp.Points[len(tp.Points)-1]
	var newer struct {
		Points []point `json:"points"`
	}
	tc.mustGet(fmt.Sprintf("/api/throughput?since=%d", last.Time), &newer)
	for _, p := range newer.Points {
		if p.Time <= last.Time {
			t.Fatalf("since=%d returned a point at %d", last.Time, p.Time)
		}
	}
	tc.mustGet("/api/cluster", &v)
	if v.Records <= 0 || v.LogBytes <= 0 || v.SampledAt == 0 || len(v.Throughput) == 0 {
		t.Fatalf("cluster totals: %+v", v)
	}
	var row topicView
	tc.mustGet("/api/topics/metrics", &row)
	if row.Rate == nil {
		t.Fatalf("topic without a rate: %+v", row.topicRow)
	}
}

// TestSamplerRests: the sampler samples only while the console is used.
func TestSamplerRests(t *testing.T) {
	tc := startConsole(t, nil, func(c *Config) {
		c.SampleInterval = 10 * time.Millisecond
		c.SampleIdle = 200 * time.Millisecond
	})
	s := tc.console.sampler
	tc.call("GET", "/api/throughput", nil, nil)
	waitFor(t, "a sample", func() bool {
		_, _, _, ok := s.latest()
		if _, err := s.since(0); err != nil {
			t.Logf("sample: %v", err)
		}
		return ok
	})
	// Unused for longer than idleAfter, it rests and forgets its last
	// sample.
	waitFor(t, "the sampler to rest", func() bool { _, _, _, ok := s.latest(); return !ok })
	before := tc.hooks.snapshot()
	time.Sleep(100 * time.Millisecond)
	if after := tc.hooks.snapshot(); total(after) != total(before) {
		t.Fatalf("the resting sampler wrote requests: %v -> %v", before, after)
	}
	var tp struct {
		Points []point `json:"points"`
	}
	tc.mustGet("/api/throughput", &tp) // wakes it
	waitFor(t, "a sample after the rest", func() bool { _, _, _, ok := s.latest(); return ok })
}
