package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Target is one broker (or cluster) a comparison runs against.
type Target struct {
	// Name labels the target in tables and charts.
	Name string `json:"name"`
	// Brokers are its seed brokers.
	Brokers []string `json:"brokers"`
	// Process names the broker's process, for its CPU per GB; zero: not
	// measured.
	Process BrokerProcess `json:"process,omitzero"`
}

// ParseTarget reads "name=host:port[,host:port...][,pid=N][,admin=HOST:PORT]".
// Without "name=" the address is the name. pid= names the broker's process
// on this machine, admin= its admin listener; either lets the comparison
// report the broker's CPU per GB.
func ParseTarget(s string) (Target, error) {
	var t Target
	rest := s
	if name, after, ok := strings.Cut(s, "="); ok && !strings.Contains(name, ",") && name != "pid" && name != "admin" {
		if name == "" {
			return Target{}, fmt.Errorf("%w: target %q: want name=host:port", ErrConfig, s)
		}
		t.Name, rest = name, after
	}
	for item := range strings.SplitSeq(rest, ",") {
		switch {
		case strings.HasPrefix(item, "pid="):
			pid, err := strconv.Atoi(item[len("pid="):])
			if err != nil || pid <= 0 {
				return Target{}, fmt.Errorf("%w: target %q: bad %s", ErrConfig, s, item)
			}
			t.Process.PID = pid
		case strings.HasPrefix(item, "admin="):
			if t.Process.Admin = item[len("admin="):]; t.Process.Admin == "" {
				return Target{}, fmt.Errorf("%w: target %q: empty admin=", ErrConfig, s)
			}
		case item != "":
			t.Brokers = append(t.Brokers, item)
		}
	}
	if len(t.Brokers) == 0 {
		return Target{}, fmt.Errorf("%w: target %q: want name=host:port", ErrConfig, s)
	}
	if t.Name == "" {
		t.Name = strings.Join(t.Brokers, ",")
	}
	return t, nil
}

// Scenario is one entry of a comparison.
type Scenario struct {
	// Name identifies the scenario: produce-1p-100B, consume-group-8p-1KiB...
	Name string `json:"name"`
	// Mode is produce, consume or e2e.
	Mode       string `json:"mode"`
	Partitions int    `json:"partitions"`
	Size       int    `json:"size"`
	Acks       string `json:"acks,omitempty"`
	// Rate is the rate in records/s over all producers: an e2e run's
	// (default 10,000; -1 as fast as possible), or a produce run's cap.
	Rate int `json:"rate,omitempty"`
	// Producers and Consumers are client counts; zero takes
	// CompareConfig.Base's.
	Producers int `json:"producers,omitempty"`
	Consumers int `json:"consumers,omitempty"`
	// Fanout makes every consumer read every partition (Config.Fanout).
	Fanout bool `json:"fanout,omitempty"`
	// RoundRobin spreads records over the partitions in turn
	// (Config.RoundRobin).
	RoundRobin bool `json:"round_robin,omitempty"`
	// Linger overrides CompareConfig.Base's linger when not zero;
	// negative means none.
	Linger time.Duration `json:"linger_ns,omitempty"`
	// Bulk is a bulk load beside an e2e run (Config.Bulk).
	Bulk BulkLoad `json:"bulk,omitzero"`
	// Group consumes as a consumer group.
	Group bool `json:"group,omitempty"`
	// Source names the produce scenario whose topic a consume scenario
	// reads back; without it (or when the source is not run) the consume
	// scenario fills its own topic.
	Source string `json:"source,omitempty"`
	// TxnRecords makes a produce scenario transactional: each producer
	// commits every TxnRecords records (Config.TxnRecords).
	TxnRecords int `json:"txn_records,omitempty"`
}

// StandardScenarios is the built-in comparison set: produce with acks=all to
// 1 partition with 100 B and 1 KiB records and to 8 partitions with 1 KiB
// records; read the 8-partition topic back with plain consumers and as a
// group; end-to-end latency at 10,000 records/s of 1 KiB, each record sent
// at once (no linger).
func StandardScenarios() []Scenario {
	return []Scenario{
		{Name: "produce-1p-100B", Mode: "produce", Partitions: 1, Size: 100, Acks: "all"},
		{Name: "produce-1p-1KiB", Mode: "produce", Partitions: 1, Size: 1024, Acks: "all"},
		{Name: "produce-8p-1KiB", Mode: "produce", Partitions: 8, Size: 1024, Acks: "all"},
		{Name: "consume-8p-1KiB", Mode: "consume", Partitions: 8, Size: 1024, Source: "produce-8p-1KiB"},
		{Name: "consume-group-8p-1KiB", Mode: "consume", Partitions: 8, Size: 1024, Group: true, Source: "produce-8p-1KiB"},
		{Name: "e2e-1p-1KiB-10k", Mode: "e2e", Partitions: 1, Size: 1024, Acks: "all", Rate: 10_000},
	}
}

// TransactionScenarios compares transactional produce with 100-record
// transactions (throughput and commit latency) with the same load
// produced without transactions (ack latency): 1 partition and 8, 100 B
// records, acks=all. `ferry bench compare -scenarios` takes their names.
func TransactionScenarios() []Scenario {
	return []Scenario{
		{Name: "produce-1p-100B", Mode: "produce", Partitions: 1, Size: 100, Acks: "all"},
		{Name: "produce-txn100-1p-100B", Mode: "produce", Partitions: 1, Size: 100, Acks: "all", TxnRecords: 100},
		{Name: "produce-8p-100B", Mode: "produce", Partitions: 8, Size: 100, Acks: "all"},
		{Name: "produce-txn100-8p-100B", Mode: "produce", Partitions: 8, Size: 100, Acks: "all", TxnRecords: 100},
	}
}

// LoadScenarios is the comparison set of real load, all with 1 KiB records
// and acks=all:
//
//   - e2e-1p-1KiB-10k-bulk: end-to-end latency at 10,000 records/s on one
//     topic while another takes bulk produce as fast as it goes;
//   - e2e-8p-1KiB-max: produce as fast as possible and consume at once,
//     8 partitions, end-to-end latency of the consumed records;
//   - produce-64p-1KiB-16c: 16 producer clients over 64 partitions;
//   - produce-1000p-1KiB-trickle: 10,000 records/s spread over 1,000
//     partitions in turn, each sent at once: 10 a second each, group
//     commit across many partitions;
//   - consume-3x-8p-1KiB: 3 consumers each reading the whole 8-partition
//     topic of produce-8p-1KiB (filled first when that is not run).
func LoadScenarios() []Scenario {
	return []Scenario{
		{Name: "e2e-1p-1KiB-10k-bulk", Mode: "e2e", Partitions: 1, Size: 1024, Acks: "all", Rate: 10_000,
			Bulk: BulkLoad{Size: 1024, Partitions: 1, Producers: 1}},
		{Name: "e2e-8p-1KiB-max", Mode: "e2e", Partitions: 8, Size: 1024, Acks: "all", Rate: -1},
		{Name: "produce-64p-1KiB-16c", Mode: "produce", Partitions: 64, Size: 1024, Acks: "all", Producers: 16},
		{Name: "produce-1000p-1KiB-trickle", Mode: "produce", Partitions: 1000, Size: 1024, Acks: "all", Rate: 10_000,
			RoundRobin: true, Linger: -1},
		{Name: "consume-3x-8p-1KiB", Mode: "consume", Partitions: 8, Size: 1024, Consumers: 3, Fanout: true, Source: "produce-8p-1KiB"},
	}
}

// AllScenarios is StandardScenarios followed by LoadScenarios.
func AllScenarios() []Scenario { return append(StandardScenarios(), LoadScenarios()...) }

// PickScenarios returns the scenarios named in the comma-separated list
// names, in AllScenarios order and then TransactionScenarios': scenario
// names, or "standard", "load" and "all" for those sets and "txn" for
// TransactionScenarios. An empty list is every scenario of AllScenarios.
func PickScenarios(names string) ([]Scenario, error) {
	all := AllScenarios()
	if strings.TrimSpace(names) == "" {
		return all, nil
	}
	for _, sc := range TransactionScenarios() {
		if !slices.ContainsFunc(all, func(o Scenario) bool { return o.Name == sc.Name }) {
			all = append(all, sc)
		}
	}
	want := map[string]bool{}
	for n := range strings.SplitSeq(names, ",") {
		n = strings.TrimSpace(n)
		var set []Scenario
		switch n {
		case "":
			continue
		case "standard":
			set = StandardScenarios()
		case "load":
			set = LoadScenarios()
		case "all":
			set = AllScenarios()
		case "txn":
			set = TransactionScenarios()
		default:
			if !slices.ContainsFunc(all, func(sc Scenario) bool { return sc.Name == n }) {
				return nil, fmt.Errorf("%w: unknown scenario %q", ErrConfig, n)
			}
			want[n] = true
		}
		for _, sc := range set {
			want[sc.Name] = true
		}
	}
	var out []Scenario
	for _, sc := range all {
		if want[sc.Name] {
			out = append(out, sc)
		}
	}
	return out, nil
}

// CompareConfig configures Compare.
type CompareConfig struct {
	// Targets are compared in this order; ratios are to the first. Required.
	Targets []Target
	// Scenarios default to StandardScenarios.
	Scenarios []Scenario
	// Repeat is how many times every scenario runs on every target; the
	// table shows medians. Default 3.
	Repeat int
	// Duration is how long each produce and e2e run lasts. Default 5s.
	Duration time.Duration
	// FillRecords is how many records a consume scenario without a source
	// writes before reading them back. Default 200,000.
	FillRecords int64
	// Base holds the knobs every run shares (Producers, Consumers,
	// Compression, Linger, BatchBytes, Warmup, ClientOpts, Logger).
	// Brokers, Topic, Partitions, Size, Acks, Rate and Records come from
	// the target and scenario.
	Base Config
	// Progress receives a line per run (and the runs' per-second lines).
	Progress io.Writer
}

// Comparison is the outcome of Compare.
type Comparison struct {
	Started   time.Time  `json:"started"`
	Machine   string     `json:"machine"`
	Repeat    int        `json:"repeat"`
	Duration  float64    `json:"duration_s"`
	Targets   []Target   `json:"targets"`
	Scenarios []Scenario `json:"scenarios"`
	// Rows are the medians, one per scenario and target, in scenario then
	// target order.
	Rows []Row `json:"rows"`
	// Runs are every run's full result.
	Runs []*Result `json:"runs"`
}

// Row is the median of the runs of one scenario on one target.
type Row struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	Runs     int    `json:"runs"`
	Failed   int    `json:"failed,omitempty"`
	// Unsupported counts runs the target cannot serve (ErrUnsupported).
	Unsupported   int     `json:"unsupported,omitempty"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MiBPerSec     float64 `json:"mib_per_sec"`
	LatencyKind   string  `json:"latency_kind"`
	// Linger is the producers' linger in ms, for produce and e2e.
	Linger *float64 `json:"linger_ms,omitempty"`
	P50    float64  `json:"p50_ms"`
	P90    float64  `json:"p90_ms"`
	P99    float64  `json:"p99_ms"`
	P999   float64  `json:"p99_9_ms"`
	Max    float64  `json:"max_ms"`
	// CPUPercent is the load generator's CPU use.
	CPUPercent float64 `json:"cpu_percent"`
	// BrokerCPUPerGB is the broker's CPU seconds per 10^9 bytes
	// (BrokerCPU.PerGB), zero when not measured; BrokerCPUSource says
	// where it was read.
	BrokerCPUPerGB  float64 `json:"broker_cpu_s_per_gb,omitempty"`
	BrokerCPUSource string  `json:"broker_cpu_source,omitempty"`
	// BulkMiBPerSec is the bulk load's throughput beside an e2e run.
	BulkMiBPerSec float64 `json:"bulk_mib_per_sec,omitempty"`
	// LoadAverages are the 1-minute load averages at the end of each run.
	LoadAverages []float64 `json:"load_averages,omitempty"`
	// Ratio is RecordsPerSec over the first target's; P99Ratio likewise
	// for p99 latency. Zero when the first target has no figure.
	Ratio    float64 `json:"ratio"`
	P99Ratio float64 `json:"p99_ratio"`
	// RateHeld is false when an e2e run could not hold its rate.
	RateHeld *bool    `json:"rate_held,omitempty"`
	Errors   []string `json:"errors,omitempty"`
	// median is the run whose throughput is the median, for charts.
	median *Result
}

// Compare runs every scenario against every target, Repeat times, in the
// order repetition, scenario, target: the targets take turns at each
// scenario, so the figures compared were taken minutes apart at most on a
// machine whose load drifts. It returns the medians. A failed run is
// counted in Row.Failed and its error kept; Compare itself fails only on
// bad config or when ctx ends.
func Compare(ctx context.Context, cc CompareConfig) (*Comparison, error) {
	if len(cc.Targets) == 0 {
		return nil, fmt.Errorf("%w: no targets", ErrConfig)
	}
	if cc.Scenarios == nil {
		cc.Scenarios = AllScenarios()
	}
	if cc.Repeat <= 0 {
		cc.Repeat = 3
	}
	if cc.Duration <= 0 {
		cc.Duration = 5 * time.Second
	}
	if cc.FillRecords <= 0 {
		cc.FillRecords = 200_000
	}
	base := cc.Base.withDefaults()
	base.Brokers = []string{"placeholder:0"}
	if err := base.validate(); err != nil {
		return nil, err
	}
	cmp := &Comparison{
		Started: time.Now(), Machine: machine(), Repeat: cc.Repeat, Duration: cc.Duration.Seconds(),
		Targets: cc.Targets, Scenarios: cc.Scenarios,
	}
	// lastUse is the index of the last scenario reading each source's
	// topic: the topic is deleted after it.
	names := map[string]bool{}
	lastUse := map[string]int{}
	for i, sc := range cc.Scenarios {
		names[sc.Name] = true
		if sc.Source != "" {
			lastUse[sc.Source] = i
		}
	}
	type key struct{ scenario, target string }
	results := map[key][]*Result{}
	errs := map[key][]string{}
	unsupported := map[key]int{}
	stamp := time.Now().Unix()

	for rep := range cc.Repeat {
		// Source topics kept for consume scenarios, by target.
		kept := map[string]map[string]*topicSetup{}
		for _, tg := range cc.Targets {
			kept[tg.Name] = map[string]*topicSetup{}
		}
		closeKept := func(keep func(source string) bool) {
			for _, byName := range kept {
				for name, ts := range byName {
					if !keep(name) {
						ts.close(ctx)
						delete(byName, name)
					}
				}
			}
		}
		for si, sc := range cc.Scenarios {
			for _, tg := range cc.Targets {
				if err := ctx.Err(); err != nil {
					closeKept(func(string) bool { return false })
					return cmp, err
				}
				cfg := cc.scenarioConfig(sc, tg, fmt.Sprintf("ferry-compare-%d-%s-%d", stamp, sc.Name, rep))
				_, needed := lastUse[sc.Name]
				res, ts, err := runScenario(ctx, cfg, sc, names, kept[tg.Name], cc.FillRecords)
				if needed && ts != nil {
					kept[tg.Name][sc.Name] = ts
				} else if ts != nil {
					ts.close(ctx)
				}
				k := key{sc.Name, tg.Name}
				if errors.Is(err, ErrUnsupported) {
					unsupported[k]++
					if cc.Progress != nil {
						fmt.Fprintf(cc.Progress, "[%d/%d] %s %s: n/a: %v\n", rep+1, cc.Repeat, tg.Name, sc.Name, err)
					}
					continue
				}
				if err != nil && !errors.Is(err, ErrRateNotHeld) {
					errs[k] = append(errs[k], err.Error())
					if cc.Progress != nil {
						fmt.Fprintf(cc.Progress, "[%d/%d] %s %s: FAILED: %v\n", rep+1, cc.Repeat, tg.Name, sc.Name, err)
					}
					if ctx.Err() != nil {
						closeKept(func(string) bool { return false })
						return cmp, ctx.Err()
					}
					continue
				}
				res.Scenario, res.Target = sc.Name, tg.Name
				cmp.Runs = append(cmp.Runs, res)
				results[k] = append(results[k], res)
				if cc.Progress != nil {
					fmt.Fprintf(cc.Progress, "[%d/%d] %s %s: %s\n", rep+1, cc.Repeat, tg.Name, sc.Name, res.oneLine())
				}
			}
			closeKept(func(source string) bool { return lastUse[source] > si })
		}
		closeKept(func(string) bool { return false })
	}

	for _, sc := range cc.Scenarios {
		var first *Row
		for i, tg := range cc.Targets {
			k := key{sc.Name, tg.Name}
			row := medianRow(sc.Name, tg.Name, results[k])
			row.Failed = len(errs[k])
			row.Unsupported = unsupported[k]
			row.Errors = errs[k]
			if i == 0 {
				first = &row
			}
			if first.RecordsPerSec > 0 {
				row.Ratio = row.RecordsPerSec / first.RecordsPerSec
			}
			if first.P99 > 0 {
				row.P99Ratio = row.P99 / first.P99
			}
			cmp.Rows = append(cmp.Rows, row)
		}
	}
	return cmp, nil
}

// scenarioConfig is the Config of one run of sc against tg.
func (cc *CompareConfig) scenarioConfig(sc Scenario, tg Target, topic string) Config {
	cfg := cc.Base
	cfg.Brokers = tg.Brokers
	cfg.Broker = tg.Process
	cfg.Topic = topic
	cfg.Partitions, cfg.Size, cfg.Acks, cfg.Rate, cfg.TxnRecords = sc.Partitions, sc.Size, sc.Acks, sc.Rate, sc.TxnRecords
	cfg.Records, cfg.Duration, cfg.Keep = 0, cc.Duration, false
	cfg.Label = tg.Name + "/" + sc.Name
	cfg.Progress = cc.Progress
	if sc.Producers > 0 {
		cfg.Producers = sc.Producers
	}
	if sc.Consumers > 0 {
		cfg.Consumers = sc.Consumers
	}
	if sc.Linger != 0 {
		cfg.Linger = sc.Linger
	}
	cfg.Fanout, cfg.RoundRobin, cfg.Bulk = sc.Fanout, sc.RoundRobin, sc.Bulk
	cfg.GroupConsume = sc.Group
	return cfg.withDefaults()
}

// runScenario runs one scenario. It returns the topic setup, still open,
// so a produce scenario's topic can be read back by consume scenarios.
func runScenario(ctx context.Context, cfg Config, sc Scenario, names map[string]bool,
	kept map[string]*topicSetup, fill int64) (*Result, *topicSetup, error) {
	switch sc.Mode {
	case "produce":
		ts, err := setupTopic(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		res, err := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, progress: cfg.Progress, name: cfg.Label, measureBroker: true})
		return res, ts, err
	case "consume":
		cfg.Duration = 0
		if src, ok := kept[sc.Source]; ok && names[sc.Source] {
			cfg.Topic = src.cfg.Topic
			res, err := consumeTopic(ctx, cfg, src)
			return res, nil, err
		}
		cfg.Records = fill
		ts, err := setupTopic(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		res, err := consumeTopic(ctx, cfg, ts)
		return res, ts, err
	case "e2e":
		if cfg.Rate == 0 {
			cfg.Rate = DefaultE2ERate
		}
		ts, err := setupTopic(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		res, err := e2eTopic(ctx, cfg, ts)
		return res, ts, err
	}
	return nil, nil, fmt.Errorf("%w: scenario %q: unknown mode %q", ErrConfig, sc.Name, sc.Mode)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianRow(scenario, target string, rs []*Result) Row {
	row := Row{Scenario: scenario, Target: target, Runs: len(rs)}
	if len(rs) == 0 {
		return row
	}
	pick := func(f func(*Result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	row.RecordsPerSec = pick(func(r *Result) float64 { return r.RecordsPerSec })
	row.MiBPerSec = pick(func(r *Result) float64 { return r.MiBPerSec })
	row.P50 = pick(func(r *Result) float64 { return r.Latency.P50 })
	row.P90 = pick(func(r *Result) float64 { return r.Latency.P90 })
	row.P99 = pick(func(r *Result) float64 { return r.Latency.P99 })
	row.P999 = pick(func(r *Result) float64 { return r.Latency.P999 })
	row.Max = pick(func(r *Result) float64 { return r.Latency.Max })
	row.CPUPercent = pick(func(r *Result) float64 { return r.CPU.Percent })
	row.LatencyKind = rs[0].Latency.Kind
	row.Linger = rs[0].Linger
	if rs[0].BrokerCPU != nil {
		row.BrokerCPUSource = rs[0].BrokerCPU.Source
		row.BrokerCPUPerGB = pick(func(r *Result) float64 {
			if r.BrokerCPU == nil {
				return 0
			}
			return r.BrokerCPU.PerGB
		})
	}
	if rs[0].Bulk != nil {
		row.BulkMiBPerSec = pick(func(r *Result) float64 {
			if r.Bulk == nil {
				return 0
			}
			return r.Bulk.MiBPerSec
		})
	}
	for _, r := range rs {
		row.LoadAverages = append(row.LoadAverages, r.LoadAverage)
	}
	for _, r := range rs {
		if r.RateHeld != nil {
			held := *r.RateHeld && (row.RateHeld == nil || *row.RateHeld)
			row.RateHeld = &held
		}
	}
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b *Result) int {
		switch {
		case a.RecordsPerSec < b.RecordsPerSec:
			return -1
		case a.RecordsPerSec > b.RecordsPerSec:
			return 1
		}
		return 0
	})
	row.median = sorted[len(sorted)/2]
	return row
}
