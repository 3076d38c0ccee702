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
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := bench.ParseTarget(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && (got.Name != tt.want.Name || strings.Join(got.Brokers, ",") != strings.Join(tt.want.Brokers, ",")) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// smallScenarios is the standard set cut down for tests.
func smallScenarios() []bench.Scenario {
	var out []bench.Scenario
	for _, sc := range bench.StandardScenarios() {
		sc.Size = min(sc.Size, 256)
		if sc.Rate > 0 {
			sc.Rate = 1000
		}
		out = append(out, sc)
	}
	return out
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
