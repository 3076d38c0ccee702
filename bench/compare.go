package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Target is one broker (or cluster) a comparison runs against.
type Target struct {
	// Name labels the target in tables and charts.
	Name string `json:"name"`
	// Brokers are its seed brokers.
	Brokers []string `json:"brokers"`
}

// ParseTarget reads "name=host:port[,host:port...]". Without "name=" the
// address is the name.
func ParseTarget(s string) (Target, error) {
	name, addrs, ok := strings.Cut(s, "=")
	if !ok {
		name, addrs = s, s
	}
	if name == "" || addrs == "" {
		return Target{}, fmt.Errorf("%w: target %q: want name=host:port", ErrConfig, s)
	}
	return Target{Name: name, Brokers: strings.Split(addrs, ",")}, nil
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
	// Rate is the e2e rate in records/s.
	Rate int `json:"rate,omitempty"`
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
// group; end-to-end latency at 10,000 records/s of 1 KiB.
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
	P50           float64 `json:"p50_ms"`
	P99           float64 `json:"p99_ms"`
	P999          float64 `json:"p99_9_ms"`
	CPUPercent    float64 `json:"cpu_percent"`
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
// order repetition, target, scenario (so slow drift of the machine spreads
// over all targets), and returns the medians. A failed run is counted in
// Row.Failed and its error kept; Compare itself fails only on bad config or
// when ctx ends.
func Compare(ctx context.Context, cc CompareConfig) (*Comparison, error) {
	if len(cc.Targets) == 0 {
		return nil, fmt.Errorf("%w: no targets", ErrConfig)
	}
	if cc.Scenarios == nil {
		cc.Scenarios = StandardScenarios()
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
	names := map[string]bool{}
	for _, sc := range cc.Scenarios {
		names[sc.Name] = true
	}
	type key struct{ scenario, target string }
	results := map[key][]*Result{}
	errs := map[key][]string{}
	unsupported := map[key]int{}
	stamp := time.Now().Unix()

	for rep := range cc.Repeat {
		for _, tg := range cc.Targets {
			kept := map[string]*topicSetup{} // source topics kept for consume scenarios
			for _, sc := range cc.Scenarios {
				if err := ctx.Err(); err != nil {
					return cmp, err
				}
				cfg := cc.Base
				cfg.Brokers = tg.Brokers
				cfg.Topic = fmt.Sprintf("ferry-compare-%d-%s-%d", stamp, sc.Name, rep)
				cfg.Partitions, cfg.Size, cfg.Acks, cfg.Rate, cfg.TxnRecords = sc.Partitions, sc.Size, sc.Acks, sc.Rate, sc.TxnRecords
				cfg.Records, cfg.Duration, cfg.Keep = 0, cc.Duration, false
				cfg.Label = tg.Name + "/" + sc.Name
				cfg.Progress = cc.Progress
				cfg = cfg.withDefaults()
				if sc.Group {
					cfg.GroupConsume = true
				}
				needed := false
				for _, other := range cc.Scenarios {
					if other.Source == sc.Name {
						needed = true
					}
				}
				res, ts, err := runScenario(ctx, cfg, sc, names, kept, cc.FillRecords)
				if needed && ts != nil {
					kept[sc.Name] = ts
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
						return cmp, ctx.Err()
					}
					continue
				}
				res.Scenario, res.Target = sc.Name, tg.Name
				cmp.Runs = append(cmp.Runs, res)
				results[k] = append(results[k], res)
				if cc.Progress != nil {
					fmt.Fprintf(cc.Progress, "[%d/%d] %s %s: %s records/s, %.1f MiB/s, %s p50 %s p99 %s\n",
						rep+1, cc.Repeat, tg.Name, sc.Name, FormatCount(res.RecordsPerSec), res.MiBPerSec,
						res.Latency.Kind, fmtMillis(res.Latency.P50), fmtMillis(res.Latency.P99))
				}
			}
			for _, ts := range kept {
				ts.close(ctx)
			}
		}
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
		res, err := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, progress: cfg.Progress, name: cfg.Label})
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
	row.P99 = pick(func(r *Result) float64 { return r.Latency.P99 })
	row.P999 = pick(func(r *Result) float64 { return r.Latency.P999 })
	row.CPUPercent = pick(func(r *Result) float64 { return r.CPU.Percent })
	row.LatencyKind = rs[0].Latency.Kind
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
