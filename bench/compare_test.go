package bench_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/bench"
	"github.com/ferrymq/ferry/ferrytest"
	"github.com/ferrymq/ferry/internal/benchpeers"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    bench.Target
		wantErr bool
	}{
		{"ferry=localhost:9092", bench.Target{Name: "ferry", Brokers: []string{"localhost:9092"}}, false},
		{"k=a:1,b:2", bench.Target{Name: "k", Brokers: []string{"a:1", "b:2"}}, false},
		{"localhost:9092", bench.Target{Name: "localhost:9092", Brokers: []string{"localhost:9092"}}, false},
		{"x=", bench.Target{}, true},
		{"=a:1", bench.Target{}, true},
		{"ferry=a:1,pid=42", bench.Target{Name: "ferry", Brokers: []string{"a:1"}, Process: bench.BrokerProcess{PID: 42}}, false},
		{"f=a:1,b:2,admin=localhost:9644", bench.Target{Name: "f", Brokers: []string{"a:1", "b:2"}, Process: bench.BrokerProcess{Admin: "localhost:9644"}}, false},
		{"a:1,pid=7", bench.Target{Name: "a:1", Brokers: []string{"a:1"}, Process: bench.BrokerProcess{PID: 7}}, false},
		{"x=a:1,pid=-1", bench.Target{}, true},
		{"x=a:1,pid=z", bench.Target{}, true},
		{"x=a:1,admin=", bench.Target{}, true},
		{"x=pid=3", bench.Target{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := bench.ParseTarget(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && (got.Name != tt.want.Name || strings.Join(got.Brokers, ",") != strings.Join(tt.want.Brokers, ",") || got.Process != tt.want.Process) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// smallScenarios is the standard set cut down for tests.
func smallScenarios() []bench.Scenario { return cutDown(bench.StandardScenarios()) }

// cutDown makes scenarios small enough for tests.
func cutDown(scs []bench.Scenario) []bench.Scenario {
	var out []bench.Scenario
	for _, sc := range scs {
		sc.Size = min(sc.Size, 256)
		if sc.Rate > 0 {
			sc.Rate = 1000
		}
		sc.Partitions = min(sc.Partitions, 20)
		sc.Producers = min(sc.Producers, 3)
		out = append(out, sc)
	}
	return out
}

// TestCompareLoadScenarios runs the load scenarios, cut down, against
// Ferry and kfake with an fsync per batch, both in this process, and checks
// what the table shows: the bulk load, the linger, every percentile, the
// broker's CPU per GB.
func TestCompareLoadScenarios(t *testing.T) {
	a := ferrytest.Start(t).Addr()
	b := benchpeers.StartKfakeSync(t)
	self := bench.BrokerProcess{Self: true}
	scenarios := cutDown(bench.LoadScenarios())
	cmp, err := bench.Compare(t.Context(), bench.CompareConfig{
		Targets: []bench.Target{
			{Name: "ferry", Brokers: []string{a}, Process: self},
			{Name: "kfake", Brokers: []string{b}, Process: self},
		},
		Scenarios:   scenarios,
		Repeat:      1,
		Duration:    300 * time.Millisecond,
		FillRecords: 2000,
		Base:        bench.Config{ClientOpts: []kgo.Opt{kgo.RetryTimeout(10 * time.Second)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := cmp.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	for _, r := range cmp.Rows {
		if r.Runs != 1 || r.RecordsPerSec <= 0 || len(r.Errors) > 0 {
			t.Errorf("row %+v", r)
		}
		if r.BrokerCPUPerGB <= 0 || !strings.Contains(r.BrokerCPUSource, "this process") {
			t.Errorf("%s on %s: broker cpu %v from %q", r.Scenario, r.Target, r.BrokerCPUPerGB, r.BrokerCPUSource)
		}
		if len(r.LoadAverages) != 1 {
			t.Errorf("%s on %s: load averages %v", r.Scenario, r.Target, r.LoadAverages)
		}
		if strings.HasSuffix(r.Scenario, "-bulk") && r.BulkMiBPerSec <= 0 {
			t.Errorf("%s on %s: no bulk throughput", r.Scenario, r.Target)
		}
	}
	for _, w := range []string{"bulk MiB/s", "p50 end-to-end (linger 0)", "p90", "p99.9", "max", "broker cpu s/GB", "load avg",
		"p50 ack (linger 0)", "consume-3x-8p-1KiB"} {
		if !strings.Contains(table.String(), w) {
			t.Errorf("table lacks %q", w)
		}
	}
	md := cmp.Markdown()
	if !strings.Contains(md, "broker CPU of `ferry`: this process") {
		t.Errorf("markdown lacks the broker CPU source:\n%s", md)
	}
}

func TestCompareAndReport(t *testing.T) {
	a := ferrytest.Start(t).Addr()
	b := benchpeers.StartKfake(t)
	scenarios := smallScenarios()
	var progress bytes.Buffer
	cmp, err := bench.Compare(t.Context(), bench.CompareConfig{
		Targets:   []bench.Target{{Name: "first", Brokers: []string{a}}, {Name: "second", Brokers: []string{b}}},
		Scenarios: scenarios,
		Repeat:    1,
		Duration:  300 * time.Millisecond,
		Base:      bench.Config{ClientOpts: []kgo.Opt{kgo.RetryTimeout(10 * time.Second)}},
		Progress:  &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.Rows) != 2*len(scenarios) {
		t.Fatalf("%d rows", len(cmp.Rows))
	}
	for _, r := range cmp.Rows {
		if r.Runs != 1 || r.RecordsPerSec <= 0 || len(r.Errors) > 0 {
			t.Errorf("row %+v", r)
		}
		if r.Target == "first" && r.Ratio != 1 {
			t.Errorf("first target ratio %v", r.Ratio)
		}
	}
	var table bytes.Buffer
	if err := cmp.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"SCENARIO", "first", "second", "produce-1p-100B", "consume-8p-1KiB", "e2e-1p-1KiB-10k", "records/s", "x)"} {
		if !strings.Contains(table.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, table.String())
		}
	}
	t.Logf("\n%s", table.String())

	dir := t.TempDir()
	if err := cmp.WriteReport(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report.md", "report.json", "index.html", "latency-produce-1p-100B.svg", "throughput-e2e-1p-1KiB-10k.svg"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(name) {
		case ".svg":
			if !bytes.HasPrefix(data, []byte("<svg")) || !bytes.Contains(data, []byte("<polyline")) {
				t.Errorf("%s is not a chart:\n%s", name, data)
			}
		case ".json":
			var back bench.Comparison
			if err := json.Unmarshal(data, &back); err != nil || len(back.Rows) != len(cmp.Rows) {
				t.Errorf("%s: %v, %d rows", name, err, len(back.Rows))
			}
		case ".html":
			if !bytes.Contains(data, []byte(`<img src="latency-produce-1p-100B.svg"`)) {
				t.Errorf("index.html lacks charts")
			}
		}
	}
}
