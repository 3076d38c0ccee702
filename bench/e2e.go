package bench

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// E2E runs a producer at a fixed Rate (default 10,000 records/s) and
// consumers reading the same topic at once, and reports end-to-end latency:
// the producer writes each record's scheduled send time into its value and
// the consumer subtracts it from the time it receives the record. Scheduled,
// not actual, send times are used so that a producer falling behind shows up
// as latency rather than hiding it. A producer that cannot hold the rate is
// reported in Result.Notes and with ErrRateNotHeld.
func E2E(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultE2ERate
	}
	if cfg.Records == 0 && cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Size < 16 {
		return nil, fmt.Errorf("%w: e2e needs -size of at least 16 bytes, got %d", ErrConfig, cfg.Size)
	}
	ts, err := setupTopic(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := e2eTopic(ctx, cfg, ts)
	if cerr := ts.close(ctx); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

func e2eTopic(ctx context.Context, cfg Config, ts *topicSetup) (*Result, error) {
	keys := []int16{1} // Fetch
	if cfg.Group != "" || cfg.GroupConsume {
		keys = append(keys, groupKeys...)
	}
	if err := ts.require(ctx, "e2e", keys...); err != nil {
		return nil, err
	}
	_, end, err := ts.offsets(ctx)
	if err != nil {
		return nil, err
	}
	group := cfg.Group
	if group == "" && cfg.GroupConsume {
		group = fmt.Sprintf("ferry-bench-e2e-%d", time.Now().UnixNano())
	}
	begin := time.Now()
	cr := &consumeRun{
		cfg: cfg, name: cmp.Or(cfg.Label, "e2e"), kind: LatencyEndToEnd, group: group,
		startOffsets: end, partitions: ts.partitions,
		resetAfter: begin.Add(-time.Second), measureStart: begin.Add(cfg.Warmup),
	}
	if err := cr.open(true); err != nil {
		return nil, err
	}
	if group != "" {
		select {
		case <-cr.ready:
		case <-time.After(30 * time.Second):
			cr.close()
			return nil, fmt.Errorf("%w: group %q got no assignment for topic %q in 30s", ErrIncomplete, group, cfg.Topic)
		case <-ctx.Done():
			cr.close()
			return nil, ctx.Err()
		}
	}

	type consumed struct {
		res *Result
		err error
	}
	done := make(chan consumed, 1)
	begin = time.Now()
	cr.measureStart = begin.Add(cfg.Warmup)
	cr.meter.start = cr.measureStart
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	go func() {
		res, err := cr.run(cctx)
		done <- consumed{res, err}
	}()
	pres, perr := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, stamp: true, begin: begin, name: "e2e-produce"})
	var sent int64
	if pres != nil {
		sent = pres.Records
	}
	if perr != nil {
		stopConsumers()
	} else {
		cr.finishAt(sent)
	}
	c := <-done
	if group != "" && cfg.Group == "" && !cfg.Keep {
		ts.deleteGroup(ctx, group)
	}
	if perr != nil {
		return c.res, perr
	}
	res := c.res
	if res == nil {
		return nil, c.err
	}
	res.Mode = "e2e"
	res.Acks, res.Compression, res.Producers = cfg.Acks, cfg.Compression, cfg.Producers
	res.TargetRate, res.ProducedRate, res.RateHeld, res.MaxBehind = pres.TargetRate, pres.ProducedRate, pres.RateHeld, pres.MaxBehind
	res.Notes = append(res.Notes, pres.Notes...)
	if c.err != nil {
		return res, c.err
	}
	if res.RateHeld != nil && !*res.RateHeld {
		return res, fmt.Errorf("%w: %s", ErrRateNotHeld, pres.Notes[0])
	}
	return res, nil
}
