package bench_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/bench"
	"github.com/ferrymq/ferry/ferrytest"
)

// lingerOf returns a result's linger in ms, failing when it is missing.
func lingerOf(t *testing.T, res *bench.Result) float64 {
	t.Helper()
	if res.Linger == nil {
		t.Fatal("no linger in the result")
	}
	return *res.Linger
}

// TestE2ELinger: an e2e run sends each record at once unless told
// otherwise, a produce run keeps kgo's 10ms, and the summary says which.
func TestE2ELinger(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	for _, tt := range []struct {
		name   string
		run    func(t *testing.T, cfg bench.Config) (*bench.Result, error)
		linger time.Duration
		want   float64
		text   string
	}{
		{"e2e default", runE2E, 0, 0, "linger 0"},
		{"e2e 5ms", runE2E, 5 * time.Millisecond, 5, "linger 5.00ms"},
		{"produce default", runProduce, 0, 10, "linger 10.0ms"},
		{"produce none", runProduce, -1, 0, "linger 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(addr, "linger-"+strings.ReplaceAll(tt.name, " ", "-"))
			cfg.Records, cfg.Rate, cfg.Linger = 500, 2000, tt.linger
			res, err := tt.run(t, cfg)
			if err != nil && !errors.Is(err, bench.ErrRateNotHeld) {
				t.Fatal(err)
			}
			if got := lingerOf(t, res); got != tt.want {
				t.Errorf("linger %vms, want %vms", got, tt.want)
			}
			var text strings.Builder
			res.WriteText(&text)
			if !strings.Contains(text.String(), tt.text) {
				t.Errorf("summary lacks %q:\n%s", tt.text, text.String())
			}
		})
	}
}

func runE2E(t *testing.T, cfg bench.Config) (*bench.Result, error) {
	return bench.E2E(t.Context(), cfg)
}
func runProduce(t *testing.T, cfg bench.Config) (*bench.Result, error) {
	return bench.Produce(t.Context(), cfg)
}

// TestE2EFlatOut: an e2e run with rate -1 sends as fast as it can and
// still reads back and times every record.
func TestE2EFlatOut(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	cfg := testConfig(addr, "e2e-flat")
	cfg.Rate, cfg.Records, cfg.Partitions, cfg.Size = -1, 5000, 4, 1024
	res, err := bench.E2E(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 5000 || res.Latency.Count != 5000 || res.RateHeld != nil || res.TargetRate != 0 {
		t.Fatalf("records %d, latency samples %d, rate held %v, target %v", res.Records, res.Latency.Count, res.RateHeld, res.TargetRate)
	}
}

// TestE2EBulk: the bulk load writes its own topic while the e2e run goes,
// stops with it and is reported beside it.
func TestE2EBulk(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	cfg := testConfig(addr, "e2e-bulk")
	cfg.Rate, cfg.Records, cfg.Partitions = 2000, 1000, 1
	cfg.Bulk = bench.BulkLoad{Size: 1024, Partitions: 2}
	cfg.Keep = true
	res, err := bench.E2E(t.Context(), cfg)
	if err != nil && !errors.Is(err, bench.ErrRateNotHeld) {
		t.Fatal(err)
	}
	if res.Records != 1000 || res.Bulk == nil {
		t.Fatalf("records %d, bulk %+v", res.Records, res.Bulk)
	}
	bk := res.Bulk
	if bk.Topic != "e2e-bulk-bulk" || bk.Partitions != 2 || bk.Acks != "all" || bk.Records == 0 || bk.Size != 1024 {
		t.Fatalf("bulk: topic %s, %d partitions, acks %s, %d records of %d B", bk.Topic, bk.Partitions, bk.Acks, bk.Records, bk.Size)
	}
	// The e2e producer counts records (1000 at 2000/s: half a second);
	// the bulk load runs as long as it does, not for as many records.
	if bk.Records <= 1000 || bk.Seconds < 0.4 {
		t.Fatalf("bulk: %d records in %.2fs; the e2e producer ran %.2fs", bk.Records, bk.Seconds, float64(1000)/2000)
	}
	// The bulk records are in their topic, every one acknowledged.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), "e2e-bulk-bulk")
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	ends.Each(func(o kadm.ListedOffset) { stored += o.Offset })
	if stored < bk.Records {
		t.Fatalf("bulk topic holds %d records, %d acknowledged after the warmup", stored, bk.Records)
	}
	var text strings.Builder
	res.WriteText(&text)
	if !strings.Contains(text.String(), "bulk        topic e2e-bulk-bulk") {
		t.Errorf("summary lacks the bulk line:\n%s", text.String())
	}
}

// TestRoundRobin: every partition gets its share of the records.
func TestRoundRobin(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	cfg := testConfig(addr, "round-robin")
	cfg.Records, cfg.Partitions, cfg.RoundRobin, cfg.Keep, cfg.Linger = 2000, 8, true, true, -1
	if _, err := bench.Produce(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), "round-robin")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 250 {
			t.Errorf("partition %d holds %d records, want 250", o.Partition, o.Offset)
		}
	})
}

// TestFanout: each of the consumers reads the whole topic.
func TestFanout(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	cfg := testConfig(addr, "fanout")
	cfg.Records, cfg.Partitions, cfg.Consumers, cfg.Fanout = 1000, 3, 3, true
	res, err := bench.Consume(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 3000 || !res.Fanout {
		t.Fatalf("read %d records (fanout %v), want 3 × 1000", res.Records, res.Fanout)
	}
	cfg.GroupConsume = true
	if _, err := bench.Consume(t.Context(), cfg); !errors.Is(err, bench.ErrConfig) {
		t.Fatalf("fanout in a group: err %v, want ErrConfig", err)
	}
}

// TestBrokerCPU reads the broker's CPU time each way: the process it runs
// in, its pid and its admin listener.
func TestBrokerCPU(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm := admin.New(admin.Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		adm.Serve(ln)
	}()
	t.Cleanup(func() {
		adm.Shutdown(t.Context())
		<-done
	})
	procs := []struct {
		name   string
		proc   bench.BrokerProcess
		source string
	}{
		{"self", bench.BrokerProcess{Self: true}, "this process"},
		{"admin", bench.BrokerProcess{Admin: ln.Addr().String()}, "process_cpu_seconds_total at http://" + ln.Addr().String()},
	}
	if runtime.GOOS == "linux" {
		procs = append(procs, struct {
			name   string
			proc   bench.BrokerProcess
			source string
		}{"pid", bench.BrokerProcess{PID: os.Getpid()}, "/proc/"})
	}
	for _, tt := range procs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(addr, "cpu-"+tt.name)
			cfg.Records, cfg.Size, cfg.Broker = 20_000, 1024, tt.proc
			res, err := bench.Produce(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			bc := res.BrokerCPU
			if bc == nil {
				t.Fatalf("no broker CPU; notes %q", res.Notes)
			}
			// The broker runs in this process: 20 MB cost it something.
			if bc.Seconds <= 0 || bc.PerGB <= 0 || !strings.Contains(bc.Source, tt.source) {
				t.Fatalf("broker cpu %+v", bc)
			}
			if want := bc.Seconds / (float64(res.Bytes) / 1e9); bc.PerGB < want*0.999 || bc.PerGB > want*1.001 {
				t.Fatalf("per GB %v, want %v", bc.PerGB, want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		cfg := testConfig(addr, "cpu-unreachable")
		cfg.Broker = bench.BrokerProcess{Admin: "127.0.0.1:1"}
		res, err := bench.Produce(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.BrokerCPU != nil || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "broker CPU not read") {
			t.Fatalf("broker cpu %+v, notes %q", res.BrokerCPU, res.Notes)
		}
	})
}

func TestPickScenarios(t *testing.T) {
	names := func(scs []bench.Scenario) string {
		var n []string
		for _, sc := range scs {
			n = append(n, sc.Name)
		}
		return strings.Join(n, ",")
	}
	all, _ := bench.PickScenarios("")
	if len(all) != len(bench.StandardScenarios())+len(bench.LoadScenarios()) {
		t.Fatalf("all: %s", names(all))
	}
	got, err := bench.PickScenarios("consume-3x-8p-1KiB, standard")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bench.StandardScenarios())+1 || got[len(got)-1].Name != "consume-3x-8p-1KiB" {
		t.Fatalf("picked %s", names(got))
	}
	if _, err := bench.PickScenarios("load,nope"); !errors.Is(err, bench.ErrConfig) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("err %v", err)
	}
	for _, sc := range bench.LoadScenarios() {
		if sc.Size != 1024 || (sc.Mode != "consume" && sc.Acks != "all") {
			t.Errorf("%s: %d B, acks %q", sc.Name, sc.Size, sc.Acks)
		}
	}
}
