package bench

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// groupKeys are the API keys a classic consumer group needs: OffsetCommit,
// OffsetFetch, FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup.
var groupKeys = []int16{8, 9, 10, 11, 12, 13, 14}

// stallTimeout ends a consume or e2e run that has received nothing for this
// long while records it waits for are still missing.
const stallTimeout = 15 * time.Second

// Consume runs the consume benchmark: Consumers clients read Topic from its
// start, directly assigned partitions or (with Group or GroupConsume) as one
// consumer group, until they have read Records records, Duration has
// passed, or, with neither set, every record the topic held at the start.
// A topic that holds fewer records than wanted is filled first (not
// measured). The latency reported is each client's time to first record.
func Consume(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ts, err := setupTopic(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := consumeTopic(ctx, cfg, ts)
	if cerr := ts.close(ctx); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

func consumeTopic(ctx context.Context, cfg Config, ts *topicSetup) (*Result, error) {
	keys := []int16{1} // Fetch
	if cfg.Group != "" || cfg.GroupConsume {
		keys = append(keys, groupKeys...)
	}
	if err := ts.require(ctx, "consume", keys...); err != nil {
		return nil, err
	}
	start, end, err := ts.offsets(ctx)
	if err != nil {
		return nil, err
	}
	var have int64
	for p, e := range end {
		have += e - start[p]
	}
	want := cfg.Records
	if want == 0 && have == 0 {
		want = DefaultFillRecords
	}
	if want > have {
		fill := cfg
		fill.Records, fill.Duration, fill.Warmup, fill.Rate = want-have, 0, 0, 0
		fill.Acks = "1"
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "filling topic %s with %s records of %d bytes\n", cfg.Topic, FormatCount(float64(want-have)), cfg.Size)
		}
		if _, err := runProducers(ctx, fill, producerRun{partitions: ts.partitions, name: "fill"}); err != nil {
			return nil, err
		}
		if start, end, err = ts.offsets(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Records == 0 && cfg.Duration == 0 {
		want = 0
		for p, e := range end {
			want += e - start[p]
		}
	} else if cfg.Records == 0 {
		want = 0 // until the deadline
	}
	if cfg.Fanout {
		want *= int64(cfg.Consumers) // each consumer reads them all
	}

	group := cfg.Group
	if group == "" && cfg.GroupConsume {
		group = fmt.Sprintf("ferry-bench-%d", time.Now().UnixNano())
	}
	cr := &consumeRun{
		cfg: cfg, name: cmp.Or(cfg.Label, "consume"), kind: LatencyFirstRecord, group: group,
		startOffsets: start, partitions: ts.partitions,
	}
	cr.want.Store(want)
	if cfg.Records == 0 && cfg.Duration > 0 {
		cr.deadline = time.Now().Add(cfg.Duration)
	}
	res, err := cr.run(ctx)
	if group != "" && cfg.Group == "" && !cfg.Keep {
		ts.deleteGroup(ctx, group)
	}
	if res != nil {
		res.Partitions = ts.partitions
	}
	return res, err
}

// consumeRun is a set of consumer clients reading one topic.
type consumeRun struct {
	cfg   Config
	name  string
	kind  string // LatencyFirstRecord, or LatencyEndToEnd to read send times from values
	group string
	// share makes group a share group (KIP-932): every record is
	// accepted after it is counted, and the acceptances are flushed at
	// the end.
	share bool
	// want is the number of records to read; zero means until deadline or
	// finishAt.
	want     atomic.Int64
	deadline time.Time
	// startOffsets assigns partitions directly from these offsets when
	// group is empty.
	startOffsets map[int32]int64
	partitions   int
	// resetAfter is where a new group starts (e2e): the first record at or
	// after this time. Zero: the log start.
	resetAfter time.Time
	// measureStart excludes e2e records sent before it (the warmup).
	measureStart time.Time
	// broker measures the broker's CPU over the run (Config.Broker).
	broker *brokerWindow

	meter      *meter
	clients    []*kgo.Client
	ready      chan struct{}
	assignedAt atomic.Int64 // unix ns of a group's first assignment // closed when every client has an assignment (groups)
}

// open creates the clients; run polls them. e2e opens first, starts its
// producer, then runs.
func (c *consumeRun) open(progress bool) error {
	cfg := c.cfg
	out := cfg.Progress
	if !progress {
		out = nil
	}
	c.meter = newMeter(c.name, c.kind, cfg.Consumers, time.Now(), out)
	if !c.measureStart.IsZero() {
		c.meter.start = c.measureStart
	}
	c.ready = make(chan struct{})
	var assigned atomic.Int64
	var readyOnce sync.Once
	for i := range cfg.Consumers {
		opts := []kgo.Opt{
			kgo.SeedBrokers(cfg.Brokers...),
			kgo.FetchMaxWait(500 * time.Millisecond),
		}
		if c.share {
			opts = append(opts, kgo.ShareGroup(c.group), kgo.ConsumeTopics(cfg.Topic))
			if cfg.ShareMaxRecords > 0 {
				opts = append(opts, kgo.ShareMaxRecords(int32(cfg.ShareMaxRecords)))
			}
		} else if c.group != "" {
			reset := kgo.NewOffset().AtStart()
			if !c.resetAfter.IsZero() {
				reset = kgo.NewOffset().AfterMilli(c.resetAfter.UnixMilli())
			}
			opts = append(opts,
				kgo.ConsumerGroup(c.group),
				kgo.ConsumeTopics(cfg.Topic),
				kgo.ConsumeResetOffset(reset),
				kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
					c.assignedAt.CompareAndSwap(0, time.Now().UnixNano())
					if assigned.Add(1) == int64(cfg.Consumers) {
						readyOnce.Do(func() { close(c.ready) })
					}
				}),
			)
		} else {
			parts := map[int32]kgo.Offset{}
			for p := range c.partitions {
				if cfg.Fanout || p%cfg.Consumers == i {
					parts[int32(p)] = kgo.NewOffset().At(c.startOffsets[int32(p)])
				}
			}
			opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: parts}))
		}
		cl, err := kgo.NewClient(append(opts, cfg.ClientOpts...)...)
		if err != nil {
			c.close()
			return fmt.Errorf("bench: consumer client for %s: %w", strings.Join(cfg.Brokers, ","), err)
		}
		c.clients = append(c.clients, cl)
	}
	if c.group == "" || c.share {
		close(c.ready) // share members take records as soon as they join
	}
	return nil
}

func (c *consumeRun) close() {
	for _, cl := range c.clients {
		cl.Close()
	}
	c.clients = nil
}

// run opens the clients if needed, polls until done and returns the result.
func (c *consumeRun) run(ctx context.Context) (*Result, error) {
	if c.clients == nil {
		if err := c.open(true); err != nil {
			return nil, err
		}
	}
	defer c.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	begin := time.Now()
	measureStart := begin
	if !c.measureStart.IsZero() {
		measureStart = c.measureStart // e2e: after the warmup
	}
	cpu := startCPUAt(measureStart)
	c.broker = startBrokerCPUAt(ctx, c.cfg.Broker, measureStart)
	c.meter.run(begin)
	defer c.meter.halt()

	var total atomic.Int64
	var lastProgress atomic.Int64
	lastProgress.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	for i, cl := range c.clients {
		rec := c.meter.recs[i]
		wg.Go(func() { c.poll(ctx, cancel, cl, rec, begin, &total, &lastProgress) })
	}
	// Watch for the deadline and for stalls.
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if !c.deadline.IsZero() && now.After(c.deadline) {
					cancel(errDone)
					return
				}
				want := c.want.Load()
				if want > 0 && total.Load() >= want {
					cancel(errDone)
					return
				}
				if want > 0 && now.Sub(time.Unix(0, lastProgress.Load())) > stallTimeout {
					cancel(fmt.Errorf("%w: read %d of %d records of topic %q, nothing new for %s",
						ErrIncomplete, total.Load(), want, c.cfg.Topic, stallTimeout))
					return
				}
				if want == 0 {
					lastProgress.Store(now.UnixNano())
				}
			}
		}
	})
	wg.Wait()
	c.meter.halt()
	if c.share {
		// The last acceptances go out before the clients leave.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		for _, cl := range c.clients {
			if err := cl.FlushAcks(fctx); err != nil {
				c.cfg.Logger.Warn("flushing share acknowledgements", "err", err)
			}
		}
		cancel()
	}

	recs, bytes := c.meter.totals()
	res := &Result{
		Mode: "consume", Brokers: c.cfg.Brokers, Topic: c.cfg.Topic, Partitions: c.partitions,
		Size: c.cfg.Size, Consumers: c.cfg.Consumers, Group: c.group, Fanout: c.cfg.Fanout,
	}
	last := c.meter.lastCounted()
	if last.IsZero() {
		last = time.Now()
	}
	// A group's throughput is timed from its first assignment, as
	// Kafka's consumer perf test leaves out the rebalance: joining (3s of
	// group.initial.rebalance.delay.ms on Kafka) is not reading. The wait
	// for the first record, joining included, is the reported latency.
	from := begin
	if at := c.assignedAt.Load(); at > 0 && c.kind == LatencyFirstRecord && time.Unix(0, at).After(begin) {
		from = time.Unix(0, at)
	}
	if c.kind == LatencyEndToEnd && !c.measureStart.IsZero() {
		from = c.measureStart
	}
	res.finish(recs, bytes, last.Sub(from))
	res.CPU = cpu.stop(recs)
	res.LoadAverage = loadAverage()
	if bc, err := c.broker.stop(ctx, bytes); err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("broker CPU not read: %v", err))
	} else {
		res.BrokerCPU = bc
	}
	res.Latency = summarize(c.kind, c.meter.merged())
	res.Series = c.meter.samples()
	err := context.Cause(ctx)
	if errors.Is(err, errDone) {
		err = nil
	}
	if want := c.want.Load(); err == nil && want > 0 && total.Load() < want {
		err = fmt.Errorf("%w: read %d of %d records of topic %q", ErrIncomplete, total.Load(), want, c.cfg.Topic)
	}
	return res, err
}

// errDone is the cancel cause when every wanted record has been read.
var errDone = errors.New("bench: done")

// finishAt tells a run started with want == 0 to stop once it has read
// want records; e2e calls it when its producer is done.
func (c *consumeRun) finishAt(want int64) { c.want.Store(want) }

func (c *consumeRun) poll(ctx context.Context, cancel context.CancelCauseFunc, cl *kgo.Client, rec *recorder,
	begin time.Time, total, lastProgress *atomic.Int64) {
	e2e := c.kind == LatencyEndToEnd
	first := true
	measureStartNs := c.measureStart.UnixNano()
	for {
		fs := cl.PollRecords(ctx, 100_000)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			// kgo keeps retrying what a broker said it cannot do
			// (no consumer groups, say); end the run instead.
			if strings.Contains(err.Error(), "broker is too old") {
				what := fmt.Sprintf("topic %q", c.cfg.Topic)
				if c.group != "" {
					what = fmt.Sprintf("group %q on topic %q", c.group, c.cfg.Topic)
				}
				cancel(fmt.Errorf("bench: consume %s on %s: %w", what, strings.Join(c.cfg.Brokers, ","), err))
				return
			}
			c.cfg.Logger.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		var n, b int64
		var now time.Time
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) == 0 {
				return
			}
			now = time.Now()
			for _, r := range ftp.Records {
				if e2e {
					if len(r.Value) < 16 {
						continue
					}
					sent := int64(binary.BigEndian.Uint64(r.Value))
					if sent < measureStartNs {
						continue
					}
					rec.observe(now, now.Sub(time.Unix(0, sent)))
				}
				n++
				b += int64(len(r.Key) + len(r.Value))
			}
		})
		if c.share {
			cl.MarkAcks(kgo.AckAccept) // every record of this poll
		}
		if n == 0 && now.IsZero() {
			continue
		}
		if first && !e2e {
			rec.observe(now, now.Sub(begin))
		}
		first = false
		rec.add(n, b)
		rec.touch(now)
		lastProgress.Store(now.UnixNano())
		got := total.Add(n)
		if want := c.want.Load(); want > 0 && got >= want {
			cancel(errDone)
			return
		}
	}
}
