package bench

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// E2E runs a producer at a fixed Rate (default 10,000 records/s; -1 for
// as fast as it can) and consumers reading the same topic at once, and
// reports end-to-end latency: the producer writes each record's scheduled
// send time into its value and the consumer subtracts it from the time it
// receives the record. Scheduled, not actual, send times are used so that a
// producer falling behind shows up as latency rather than hiding it. A
// producer that cannot hold the rate is reported in Result.Notes and with
// ErrRateNotHeld. Without a rate, each record carries the time it was
// handed to the client, whose buffer is kept small (4 MiB), so the latency
// includes the wait for room in it.
//
// Records are sent without linger unless Config.Linger says otherwise. With
// Config.Bulk set, bulk producers write to another topic all the while.
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
	cfg.e2e = true
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

	var bulk *topicSetup
	if cfg.Bulk.Size > 0 {
		if bulk, err = setupTopic(ctx, cfg.Bulk.config(cfg)); err != nil {
			cr.close()
			return nil, err
		}
		defer bulk.close(ctx)
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
	type produced struct {
		res *Result
		err error
	}
	var bulkDone chan produced
	stopBulk := make(chan struct{})
	if bulk != nil {
		bulkDone = make(chan produced, 1)
		go func() {
			res, err := runProducers(ctx, bulk.cfg, producerRun{partitions: bulk.partitions, begin: begin, stop: stopBulk,
				name: bulk.cfg.Label, progress: cfg.Progress})
			bulkDone <- produced{res, err}
		}()
	}
	pres, perr := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, stamp: true, begin: begin, name: "e2e-produce"})
	close(stopBulk)
	var sent int64
	if pres != nil {
		sent = pres.Records
	}
	if cfg.Fanout {
		sent *= int64(cfg.Consumers) // each consumer reads them all
	}
	if perr != nil || sent == 0 {
		// Nothing to wait for (a want of 0 would read until cancelled).
		stopConsumers()
	} else {
		cr.finishAt(sent)
	}
	c := <-done
	var bres *Result
	if bulkDone != nil {
		b := <-bulkDone
		bres = b.res
		if b.err != nil && perr == nil {
			perr = fmt.Errorf("bench: bulk load: %w", b.err)
		}
	}
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
	res.setLinger(cfg)
	res.Notes = append(res.Notes, pres.Notes...)
	res.Bulk = bres
	if res.BrokerCPU != nil {
		// Per GB produced: each record once, however many read it.
		produced := res.Bytes / int64(fanout(cfg))
		if bres != nil {
			produced += bres.Bytes
		}
		res.BrokerCPU.setBytes(produced)
	}
	if c.err != nil {
		return res, c.err
	}
	if res.RateHeld != nil && !*res.RateHeld {
		return res, fmt.Errorf("%w: %s", ErrRateNotHeld, pres.Notes[0])
	}
	return res, nil
}

// fanout is how many times each record is consumed: Consumers with
// Config.Fanout, once otherwise.
func fanout(cfg Config) int {
	if cfg.Fanout {
		return cfg.Consumers
	}
	return 1
}
