package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrymq/ferry/bench"
)

// queueOpts are the flags of bench queue.
type queueOpts struct {
	src        *brokerSource
	consumers  string
	rate       int
	duration   time.Duration
	size       int
	partitions int
	producers  int
	acks       string
	repeat     int
	trials     int
	held       int64
	warmup     time.Duration
	linger     time.Duration
	maxRecords int
	json       bool
}

func queueFlags() (*flag.FlagSet, *queueOpts) {
	fs := newFlagSet("bench queue")
	o := &queueOpts{src: addBrokerSourceFlags(fs)}
	fs.StringVar(&o.consumers, "consumers", "1,3", "share consumer counts to run, comma-separated")
	fs.IntVar(&o.rate, "rate", bench.DefaultE2ERate, "records/s of the end-to-end latency runs (0: skip them)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each run")
	fs.IntVar(&o.size, "size", 1024, "record value size in bytes")
	fs.IntVar(&o.partitions, "partitions", 3, "partitions of the queue topic")
	fs.IntVar(&o.producers, "producers", 1, "producer clients")
	fs.StringVar(&o.acks, "acks", "all", "acks: 0, 1 or all")
	fs.IntVar(&o.repeat, "repeat", 1, "repetitions of every run (the table shows medians)")
	fs.IntVar(&o.trials, "trials", 5, "redelivery trials (0: skip)")
	fs.Int64Var(&o.held, "held", bench.DefaultRedeliveryRecords, "records the killed consumer holds in a redelivery trial")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "run this long before measuring (members join meanwhile)")
	fs.DurationVar(&o.linger, "linger", 0, "producer linger (0: none, every record is sent at once, as a queue's publisher does)")
	fs.IntVar(&o.maxRecords, "max-records", 500, "records a share consumer asks for in one fetch (Kafka's default: 500)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON")
	return fs, o
}

func queueFlagsOnly() *flag.FlagSet { fs, _ := queueFlags(); return fs }

// queueRow is one line of the bench queue table: the medians of a run's
// repetitions.
type queueRow struct {
	Consumers int      `json:"consumers"`
	Rate      int      `json:"rate"` // 0: as fast as possible
	Publish   float64  `json:"publish_per_sec"`
	Consumed  float64  `json:"acked_consume_per_sec"`
	P50       float64  `json:"e2e_p50_ms"`
	P99       float64  `json:"e2e_p99_ms"`
	Runs      int      `json:"runs"`
	NotHeld   bool     `json:"rate_not_held,omitempty"` // a run could not hold Rate
	Notes     []string `json:"notes,omitempty"`
}

type queueReport struct {
	Size       int             `json:"size"`
	Acks       string          `json:"acks"`
	Partitions int             `json:"partitions"`
	Rows       []queueRow      `json:"rows"`
	Redelivery *bench.Latency  `json:"redelivery,omitempty"`
	Held       int64           `json:"held"`
	MaxRecords int             `json:"max_records"`
	Linger     string          `json:"linger"`
	Results    []*bench.Result `json:"results"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runBenchQueue is `ferry bench queue`: share consumers acknowledging
// every record while producers publish, at full speed and at -rate, for
// each -consumers count; then how fast records held by a killed consumer
// reach another.
func runBenchQueue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := queueFlags()
	rest, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("bench queue takes no arguments (got %q)", rest[0])
	}
	if o.src.sink {
		return usageError("bench queue: -sink stores nothing to consume")
	}
	var counts []int
	for c := range strings.SplitSeq(o.consumers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			return usageError("bench queue: -consumers %q: want counts like 1,3", o.consumers)
		}
		counts = append(counts, n)
	}
	if o.repeat <= 0 {
		return usageError("bench queue: -repeat must be positive")
	}
	stopPprof, err := startPprof(o.src.pprof, stderr)
	if err != nil {
		return err
	}
	defer stopPprof()
	brokers := splitBrokers(o.src.brokers)
	if o.src.embedded {
		b, err := startEmbedded(o.src.props, stderr)
		if err != nil {
			return err
		}
		defer b.stop()
		brokers = []string{b.addr}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	base := bench.Config{
		Brokers: brokers, Partitions: o.partitions, Size: o.size, Acks: o.acks, Producers: o.producers,
		Duration: o.duration, Warmup: o.warmup, Logger: logger, Linger: o.linger, ShareMaxRecords: o.maxRecords,
	}
	if o.linger == 0 {
		base.Linger = -1 // none
	}
	if !o.src.quiet {
		base.Progress = stderr
	}
	rep := queueReport{Size: o.size, Acks: o.acks, Partitions: o.partitions, Held: o.held, MaxRecords: o.maxRecords, Linger: o.linger.String()}
	rates := []int{0}
	if o.rate > 0 {
		rates = append(rates, o.rate)
	}
	var errs []error
	for _, c := range counts {
		for _, rate := range rates {
			row := queueRow{Consumers: c, Rate: rate}
			var pub, con, p50, p99 []float64
			for i := range o.repeat {
				cfg := base
				cfg.Consumers, cfg.Rate = c, rate
				cfg.Topic = fmt.Sprintf("ferry-bench-queue-%d-%d-%d", c, rate, time.Now().UnixNano())
				cfg.Label = fmt.Sprintf("queue c=%d rate=%s #%d", c, rateName(rate), i+1)
				res, err := bench.Queue(ctx, cfg)
				if errors.Is(err, bench.ErrConfig) {
					return usageError("bench queue: %v", err)
				}
				if res != nil {
					rep.Results = append(rep.Results, res)
					pub, con = append(pub, res.PublishRate), append(con, res.RecordsPerSec)
					p50, p99 = append(p50, res.Latency.P50), append(p99, res.Latency.P99)
					row.Notes = append(row.Notes, res.Notes...)
					if res.RateHeld != nil && !*res.RateHeld {
						row.NotHeld = true
					}
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", cfg.Label, err))
					if ctx.Err() != nil {
						break
					}
				}
			}
			row.Publish, row.Consumed, row.P50, row.P99, row.Runs = median(pub), median(con), median(p50), median(p99), len(pub)
			rep.Rows = append(rep.Rows, row)
		}
	}
	if o.trials > 0 && ctx.Err() == nil {
		cfg := base
		cfg.Records, cfg.Topic = o.held, "ferry-bench-queue"
		res, err := bench.Redelivery(ctx, cfg, o.trials)
		if err != nil {
			errs = append(errs, fmt.Errorf("redelivery: %w", err))
		}
		if res != nil {
			rep.Results = append(rep.Results, res)
			rep.Redelivery = &res.Latency
		}
	}
	var werr error
	if o.json {
		werr = writeJSON(stdout, rep)
	} else {
		werr = rep.writeTable(stdout, o.repeat)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench queue on %s: %w", strings.Join(brokers, ","), err)
	}
	return werr
}

func rateName(r int) string {
	if r == 0 {
		return "max"
	}
	return bench.FormatCount(float64(r)) + "/s"
}

func (rep queueReport) writeTable(w io.Writer, repeat int) error {
	fmt.Fprintf(w, "queue: %d B records, acks=%s, linger %s, %d partitions, share consumers accept every record (up to %d a fetch)",
		rep.Size, rep.Acks, rep.Linger, rep.Partitions, rep.MaxRecords)
	if repeat > 1 {
		fmt.Fprintf(w, "; medians of %d runs", repeat)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "consumers\tpublish\tpublish rec/s\tacked consume rec/s\te2e p50 ms\te2e p99 ms\t")
	for _, r := range rep.Rows {
		held := ""
		if r.NotHeld {
			held = "rate NOT HELD: the latency includes a backlog"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.2f\t%.2f\t%s\n", r.Consumers, rateName(r.Rate), bench.FormatCount(r.Publish), bench.FormatCount(r.Consumed), r.P50, r.P99, held)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l := rep.Redelivery; l != nil && l.Count > 0 {
		fmt.Fprintf(w, "redelivery of %s records held by a consumer whose connections closed (%d trials): p50 %.1f ms, max %.1f ms\n",
			bench.FormatCount(float64(rep.Held)), l.Count, l.P50, l.Max)
	}
	for _, r := range rep.Rows {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note (%d consumers, %s): %s\n", r.Consumers, rateName(r.Rate), n)
		}
	}
	return nil
}
