package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/ferrymq/ferry/bench"
	"github.com/ferrymq/ferry/server"
)

// brokerSource is where a bench run's brokers come from: -brokers, or a
// broker this process starts (-embedded, -sink).
type brokerSource struct {
	brokers  string
	embedded bool
	sink     bool
	props    kvFlag
	pprof    string
	quiet    bool
	sec      *clientSecurity // TLS and SASL towards -brokers (clientsec.go)
}

// lingerFlag is -linger: unset leaves the choice to bench (none for e2e,
// kgo's 10ms for produce); 0 means none.
type lingerFlag struct {
	d   time.Duration
	set bool
}

func (f *lingerFlag) String() string {
	if !f.set {
		return ""
	}
	return f.d.String()
}

func (f *lingerFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	f.d, f.set = max(d, 0), true // negative, as 0: none
	return nil
}

// config is bench.Config.Linger for the flag.
func (f *lingerFlag) config() time.Duration {
	switch {
	case !f.set:
		return 0
	case f.d == 0:
		return -1
	}
	return f.d
}

const lingerUsage = "producer linger, `duration` (0: none; default: none for e2e, kgo's 10ms otherwise)"

func addBrokerSourceFlags(fs *flag.FlagSet) *brokerSource {
	bs := &brokerSource{}
	brokersFlag(fs, &bs.brokers)
	fs.BoolVar(&bs.embedded, "embedded", false, "start a Ferry broker in this process on a temporary data dir and bench it")
	fs.BoolVar(&bs.sink, "sink", false, "start a null broker in this process (acknowledges produce requests, stores nothing): the load generator's own ceiling")
	fs.Var(&bs.props, "c", "broker config `key=value` for -embedded (repeatable)")
	fs.StringVar(&bs.pprof, "pprof", "", "serve net/http/pprof on this `address` while running")
	fs.BoolVar(&bs.quiet, "q", false, "no progress lines on stderr")
	bs.sec = addSecurityFlags(fs)
	return bs
}

// started is a broker this process runs for a bench.
type started struct {
	name string
	addr string
	stop func()
}

// startEmbedded starts an in-process Ferry broker on 127.0.0.1:0 with a
// temporary data directory, removed by stop.
func startEmbedded(props kvFlag, stderr io.Writer) (*started, error) {
	dir, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	p := map[string]string{}
	for _, kv := range props.pairs {
		p[kv[0]] = kv[1]
	}
	srv, err := server.New(server.Config{
		DataDir:        dir,
		AdvertisedAddr: ln.Addr().String(),
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Props:          p,
	})
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	return &started{name: "ferry", addr: ln.Addr().String(), stop: func() {
		srv.Close()
		ln.Close()
		<-done
		os.RemoveAll(dir)
	}}, nil
}

// startSink starts a bench.NullBroker on 127.0.0.1:0.
func startSink(partitions int) (*started, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("null broker: %w", err)
	}
	nb, err := bench.StartNullBroker(ln, bench.NullBrokerConfig{Partitions: int32(max(partitions, 1))})
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &started{name: "sink", addr: nb.Addr(), stop: func() { nb.Close() }}, nil
}

// startPprof serves the pprof handlers on addr until the returned stop.
func startPprof(addr string, stderr io.Writer) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	fmt.Fprintf(stderr, "pprof on http://%s/debug/pprof/\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}

// benchOpts are the flags of bench produce, consume and e2e.
type benchOpts struct {
	src         *brokerSource
	topic       string
	partitions  int
	keep        bool
	records     int64
	duration    time.Duration
	size        int
	keySpace    int
	roundRobin  bool
	acks        string
	compression string
	linger      lingerFlag
	batchBytes  int
	producers   int
	consumers   int
	fanout      bool
	rate        int
	group       string
	warmup      time.Duration
	bulk        bench.BulkLoad
	brokerPID   int
	brokerAdmin string
	json        bool
	txnRecords  int
}

func benchFlags(mode string) (*flag.FlagSet, *benchOpts) {
	fs := newFlagSet("bench " + mode)
	o := &benchOpts{src: addBrokerSourceFlags(fs)}
	fs.StringVar(&o.topic, "topic", bench.DefaultTopic, "topic (created if missing and then deleted at the end unless -keep)")
	fs.IntVar(&o.partitions, "partitions", 1, "partitions of a topic this run creates")
	fs.BoolVar(&o.keep, "keep", false, "keep a topic (and group) this run created")
	fs.Int64Var(&o.records, "records", 0, "stop after this many records (0: run for -duration"+map[bool]string{true: "; consume: read the whole topic", false: ""}[mode == "consume"]+")")
	fs.DurationVar(&o.duration, "duration", 0, "how long to run when -records is 0 (default 10s)")
	fs.IntVar(&o.size, "size", bench.DefaultSize, "record value size in bytes")
	fs.IntVar(&o.keySpace, "key-space", 0, "give records one of N keys (0: no keys)")
	fs.BoolVar(&o.roundRobin, "round-robin", false, "send record i to partition i mod partitions (a share for each of many partitions)")
	fs.StringVar(&o.acks, "acks", "all", "acks: 0, 1 or all")
	fs.StringVar(&o.compression, "compression", "none", "compression: none, gzip, snappy, lz4, zstd")
	fs.Var(&o.linger, "linger", lingerUsage)
	fs.IntVar(&o.batchBytes, "batch-bytes", bench.DefaultBatchBytes, "largest batch a producer builds")
	fs.IntVar(&o.producers, "producers", 1, "producer clients")
	fs.IntVar(&o.consumers, "consumers", 1, "consumer clients")
	fs.BoolVar(&o.fanout, "fanout", false, "every consumer reads every partition (independent readers) instead of sharing them")
	rateDefault := 0
	if mode == "e2e" {
		rateDefault = bench.DefaultE2ERate
	}
	fs.IntVar(&o.rate, "rate", rateDefault, "records/s over all producers (0: as fast as possible)")
	fs.StringVar(&o.group, "group", "", "consume as this consumer group (consume, e2e)")
	fs.DurationVar(&o.warmup, "warmup", 0, "run this long before measuring")
	if mode == "e2e" {
		fs.IntVar(&o.bulk.Size, "bulk-size", 0, "also produce records of this many bytes to TOPIC-bulk, acks=all, as fast as possible (0: no bulk load)")
		fs.IntVar(&o.bulk.Partitions, "bulk-partitions", 1, "partitions of the bulk topic")
		fs.IntVar(&o.bulk.Producers, "bulk-producers", 1, "bulk producer clients")
	}
	fs.IntVar(&o.brokerPID, "broker-pid", 0, "report the CPU time of the broker process with this `pid` (Linux, /proc)")
	fs.StringVar(&o.brokerAdmin, "broker-admin", "", "report the broker's CPU time from process_cpu_seconds_total at `host:port`/metrics (ferry serve -admin-listen)")
	fs.BoolVar(&o.json, "json", false, "print the result as one JSON object")
	if mode == "produce" {
		fs.IntVar(&o.txnRecords, "txn-records", 0, "produce in transactions of `N` records, one transactional id per producer; latency is then each commit's (0: no transactions)")
	}
	return fs, o
}

func benchFlagsFor(mode string) func() *flag.FlagSet {
	return func() *flag.FlagSet { fs, _ := benchFlags(mode); return fs }
}

func runBenchProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runBench(ctx, "produce", bench.Produce, args, stdout, stderr)
}

func runBenchConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runBench(ctx, "consume", bench.Consume, args, stdout, stderr)
}

func runBenchE2E(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runBench(ctx, "e2e", bench.E2E, args, stdout, stderr)
}

func runBench(ctx context.Context, mode string, fn func(context.Context, bench.Config) (*bench.Result, error),
	args []string, stdout, stderr io.Writer) error {
	fs, o := benchFlags(mode)
	rest, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("bench %s takes no arguments (got %q)", mode, rest[0])
	}
	if o.src.embedded && o.src.sink {
		return usageError("bench %s: -embedded and -sink exclude each other", mode)
	}
	if o.src.sink && mode != "produce" {
		return usageError("bench %s: -sink only takes produce requests; use it with bench produce", mode)
	}
	stopPprof, err := startPprof(o.src.pprof, stderr)
	if err != nil {
		return err
	}
	defer stopPprof()
	brokers := splitBrokers(o.src.brokers)
	proc := bench.BrokerProcess{PID: o.brokerPID, Admin: o.brokerAdmin}
	var note string
	switch {
	case o.src.embedded:
		proc = bench.BrokerProcess{Self: true}
		b, err := startEmbedded(o.src.props, stderr)
		if err != nil {
			return err
		}
		defer b.stop()
		brokers = []string{b.addr}
		note = "the broker ran in this process (-embedded): CPU figures include it"
	case o.src.sink:
		b, err := startSink(o.partitions)
		if err != nil {
			return err
		}
		defer b.stop()
		brokers = []string{b.addr}
		note = "null broker in this process (-sink): nothing was stored; CPU figures include it"
	}
	rate := o.rate
	if mode == "e2e" && rate == 0 {
		rate = -1 // as fast as possible
	}
	cfg := bench.Config{
		Brokers: brokers, Topic: o.topic, Partitions: o.partitions, Keep: o.keep,
		Records: o.records, Duration: o.duration, Size: o.size, KeySpace: o.keySpace, RoundRobin: o.roundRobin,
		Acks: o.acks, Compression: o.compression, Linger: o.linger.config(), BatchBytes: o.batchBytes,
		Producers: o.producers, Consumers: o.consumers, Fanout: o.fanout, Rate: rate, Group: o.group, Warmup: o.warmup,
		Bulk: o.bulk, Broker: proc, TxnRecords: o.txnRecords,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if !o.src.quiet {
		cfg.Progress = stderr
	}
	if cfg.ClientOpts, err = o.src.sec.opts(); err != nil {
		return err
	}
	res, err := fn(ctx, cfg)
	if errors.Is(err, bench.ErrConfig) {
		return usageError("bench %s: %v", mode, err)
	}
	if res != nil {
		if note != "" {
			res.Notes = append(res.Notes, note)
		}
		var werr error
		if o.json {
			werr = writeJSON(stdout, res)
		} else {
			werr = res.WriteText(stdout)
		}
		if err == nil {
			err = werr
		}
	}
	if err != nil {
		return fmt.Errorf("bench %s on %s: %w", mode, strings.Join(brokers, ","), err)
	}
	return nil
}

// compareOpts are the flags of bench compare.
type compareOpts struct {
	src         *brokerSource
	targets     listFlag
	repeat      int
	duration    time.Duration
	report      string
	json        bool
	scenarios   string
	fillRecords int64
	producers   int
	consumers   int
	compression string
	linger      lingerFlag
	batchBytes  int
	warmup      time.Duration
}

func compareFlags() (*flag.FlagSet, *compareOpts) {
	fs := newFlagSet("bench compare")
	o := &compareOpts{src: addBrokerSourceFlags(fs)}
	fs.Var(&o.targets, "target", "`name=host:port[,host:port][,pid=N][,admin=host:port]` to compare (repeatable; ratios are to the first); pid= or admin= names the broker's process, whose CPU per GB is then reported")
	fs.IntVar(&o.repeat, "repeat", 3, "repetitions of every scenario on every target (the table shows medians)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each produce and e2e run")
	fs.StringVar(&o.report, "report", "", "write report.md, report.json, SVG charts and index.html into `DIR`")
	fs.BoolVar(&o.json, "json", false, "print the comparison as JSON instead of a table")
	var names []string
	for _, sc := range bench.AllScenarios() {
		names = append(names, sc.Name)
	}
	var txnNames []string
	for _, sc := range bench.TransactionScenarios() {
		txnNames = append(txnNames, sc.Name)
	}
	fs.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenarios, or the sets standard, load, all (default all): "+strings.Join(names, ", ")+
		"; or the set txn: "+strings.Join(txnNames, ", "))
	fs.Int64Var(&o.fillRecords, "fill-records", 200_000, "records a consume scenario writes first when its source scenario is not run")
	fs.IntVar(&o.producers, "producers", 1, "producer clients per run")
	fs.IntVar(&o.consumers, "consumers", 1, "consumer clients per run")
	fs.StringVar(&o.compression, "compression", "none", "compression: none, gzip, snappy, lz4, zstd")
	fs.Var(&o.linger, "linger", lingerUsage+"; scenarios that set their own keep it")
	fs.IntVar(&o.batchBytes, "batch-bytes", bench.DefaultBatchBytes, "largest batch a producer builds")
	fs.DurationVar(&o.warmup, "warmup", 0, "run this long before measuring, in every run")
	return fs, o
}

func compareFlagsOnly() *flag.FlagSet { fs, _ := compareFlags(); return fs }

func runBenchCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := compareFlags()
	rest, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("bench compare takes no arguments (got %q)", rest[0])
	}
	var targets []bench.Target
	stopPprof, err := startPprof(o.src.pprof, stderr)
	if err != nil {
		return err
	}
	defer stopPprof()
	if o.src.embedded {
		b, err := startEmbedded(o.src.props, stderr)
		if err != nil {
			return err
		}
		defer b.stop()
		targets = append(targets, bench.Target{Name: "ferry", Brokers: []string{b.addr}, Process: bench.BrokerProcess{Self: true}})
	}
	for _, t := range o.targets {
		tg, err := bench.ParseTarget(t)
		if err != nil {
			return usageError("bench compare: %v", err)
		}
		targets = append(targets, tg)
	}
	if o.src.sink {
		b, err := startSink(1)
		if err != nil {
			return err
		}
		defer b.stop()
		targets = append(targets, bench.Target{Name: "sink", Brokers: []string{b.addr}})
	}
	if len(targets) == 0 {
		targets = append(targets, bench.Target{Name: "default", Brokers: splitBrokers(o.src.brokers)})
	}
	scenarios, err := bench.PickScenarios(o.scenarios)
	if err != nil {
		return usageError("bench compare: %v", err)
	}
	cc := bench.CompareConfig{
		Targets: targets, Scenarios: scenarios, Repeat: o.repeat, Duration: o.duration, FillRecords: o.fillRecords,
		Base: bench.Config{
			Producers: o.producers, Consumers: o.consumers, Compression: o.compression,
			Linger: o.linger.config(), BatchBytes: o.batchBytes, Warmup: o.warmup,
			Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
	}
	if !o.src.quiet {
		cc.Progress = stderr
	}
	if cc.Base.ClientOpts, err = o.src.sec.opts(); err != nil {
		return err
	}
	cmp, err := bench.Compare(ctx, cc)
	if errors.Is(err, bench.ErrConfig) {
		return usageError("bench compare: %v", err)
	}
	if cmp != nil && len(cmp.Rows) > 0 {
		var werr error
		if o.json {
			werr = writeJSON(stdout, cmp)
		} else {
			werr = cmp.WriteTable(stdout)
		}
		if werr != nil && err == nil {
			err = werr
		}
		if o.report != "" {
			if rerr := cmp.WriteReport(o.report); rerr != nil && err == nil {
				err = rerr
			} else if rerr == nil {
				fmt.Fprintf(stderr, "report written to %s\n", o.report+string(os.PathSeparator)+"index.html")
			}
		}
	}
	if err != nil {
		return fmt.Errorf("bench compare: %w", err)
	}
	return nil
}
