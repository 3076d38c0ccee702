package bench_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/bench"
	"github.com/ferrymq/ferry/ferrytest"
	"github.com/ferrymq/ferry/internal/benchpeers"
)

// TestCompareKfake runs the standard comparison against an in-process Ferry
// and an in-process kfake in one run and prints the table. It is a
// measurement, not a check, so it runs only when asked:
//
//	FERRY_BENCH_COMPARE=1 go test -run CompareKfake -v -timeout 30m ./bench/
//
// FERRY_BENCH_DURATION (default 5s) and FERRY_BENCH_REPEAT (default 3) set
// the run length and repetitions; FERRY_BENCH_REPORT=DIR also writes the
// report (Markdown, JSON, SVG, HTML) there. FERRY_BENCH_SINK=1 adds the
// null broker as a third target, the load generator's own ceiling.
// FERRY_BENCH_FERRY=HOST:PORT measures a Ferry running elsewhere (`ferry
// serve`) instead of one in this process; kfake stays in process. kfake
// keeps its data in a temporary directory and fsyncs every batch, as
// durable as Ferry; FERRY_BENCH_KFAKE=memory runs it in memory only.
// FERRY_BENCH_SCENARIOS picks scenarios as `ferry bench compare
// -scenarios` does (default: all; txn for the TransactionScenarios).
func TestCompareKfake(t *testing.T) {
	if os.Getenv("FERRY_BENCH_COMPARE") == "" {
		t.Skip("set FERRY_BENCH_COMPARE=1 to compare Ferry with kfake")
	}
	ferry := os.Getenv("FERRY_BENCH_FERRY")
	if ferry == "" {
		// Kafka's defaults, the group delay included.
		ferry = ferrytest.Start(t, ferrytest.Props(map[string]string{"group.initial.rebalance.delay.ms": "3000"})).Addr()
	}
	var kfake string
	if os.Getenv("FERRY_BENCH_KFAKE") == "memory" {
		kfake = benchpeers.StartKfake(t)
	} else {
		kfake = benchpeers.StartKfakeSync(t)
	}
	targets := []bench.Target{
		{Name: "ferry", Brokers: []string{ferry}},
		{Name: "kfake", Brokers: []string{kfake}},
	}
	scenarios, err := bench.PickScenarios(os.Getenv("FERRY_BENCH_SCENARIOS"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("FERRY_BENCH_SINK") != "" {
		targets = append(targets, bench.Target{Name: "sink", Brokers: []string{benchpeers.StartNullBroker(t)}})
	}
	duration := 5 * time.Second
	if v := os.Getenv("FERRY_BENCH_DURATION"); v != "" {
		if duration, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	repeat := 3
	if v := os.Getenv("FERRY_BENCH_REPEAT"); v != "" {
		if repeat, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	cmp, err := bench.Compare(t.Context(), bench.CompareConfig{
		Targets:   targets,
		Scenarios: scenarios,
		Repeat:    repeat,
		Duration:  duration,
		Progress:  os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	cmp.WriteTable(os.Stdout)
	if dir := os.Getenv("FERRY_BENCH_REPORT"); dir != "" {
		if err := cmp.WriteReport(dir); err != nil {
			t.Fatal(err)
		}
		t.Logf("report in %s", dir)
	}
}
