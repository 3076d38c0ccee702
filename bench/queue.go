package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LatencyRedelivery is the Latency.Kind of Redelivery: from the moment a
// consumer holding records loses its connections to the moment another
// consumer holds all of them.
const LatencyRedelivery = "redelivery"

// shareKeys are the API keys a share group needs: IncrementalAlterConfigs
// (its configs), ShareGroupHeartbeat, ShareFetch, ShareAcknowledge.
var shareKeys = []int16{44, 76, 78, 79}

// Queue runs the queue benchmark: Consumers members of one share group
// (KIP-932) accept every record they get while Producers clients send
// Size-byte records with Acks at Rate (0: as fast as they can), each value
// stamped with its scheduled send time, for Duration or Records records
// after the Warmup. It reports the acknowledged-consume rate (Records,
// RecordsPerSec: records consumed and accepted), the publish rate
// (PublishRate: records whose produce was acknowledged, per second) and
// the end-to-end latency from send time to receipt. The group is made up
// for the run and starts at the earliest offset.
func Queue(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Records == 0 && cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	if cfg.Size < 16 {
		return nil, fmt.Errorf("%w: queue needs -size of at least 16 bytes, got %d", ErrConfig, cfg.Size)
	}
	ts, err := setupTopic(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := queueTopic(ctx, cfg, ts)
	if cerr := ts.close(ctx); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

func queueTopic(ctx context.Context, cfg Config, ts *topicSetup) (*Result, error) {
	if err := ts.require(ctx, "queue", shareKeys...); err != nil {
		return nil, err
	}
	group := cmp.Or(cfg.Group, fmt.Sprintf("ferry-bench-queue-%d", time.Now().UnixNano()))
	if err := setShareGroupConfigs(ctx, ts.cl, group, "share.auto.offset.reset", "earliest"); err != nil {
		return nil, err
	}
	begin := time.Now()
	cr := &consumeRun{
		cfg: cfg, name: cmp.Or(cfg.Label, "queue"), kind: LatencyEndToEnd, group: group, share: true,
		partitions: ts.partitions, measureStart: begin.Add(cfg.Warmup),
	}
	if err := cr.open(true); err != nil {
		return nil, err
	}
	type consumed struct {
		res *Result
		err error
	}
	done := make(chan consumed, 1)
	cctx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	go func() {
		res, err := cr.run(cctx)
		done <- consumed{res, err}
	}()
	pres, perr := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, stamp: true, begin: begin, name: "queue-publish"})
	var sent int64
	if pres != nil {
		sent = pres.Records
	}
	if perr != nil || sent == 0 {
		stopConsumers() // nothing to wait for
	} else {
		cr.finishAt(sent)
	}
	c := <-done
	if cfg.Group == "" && !cfg.Keep {
		ts.deleteGroup(ctx, group)
	}
	if perr != nil {
		return c.res, perr
	}
	res := c.res
	if res == nil {
		return nil, c.err
	}
	res.Mode = "queue"
	res.Acks, res.Compression, res.Producers = cfg.Acks, cfg.Compression, cfg.Producers
	res.PublishRate = pres.RecordsPerSec
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

// setShareGroupConfigs sets configs of a share group (kvs: name, value,
// ...) with IncrementalAlterConfigs.
func setShareGroupConfigs(ctx context.Context, cl *kgo.Client, group string, kvs ...string) error {
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	for i := 0; i+1 < len(kvs); i += 2 {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = kvs[i], kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, c)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && len(resp.Resources) == 1 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("bench: configs of share group %q: %w", group, err)
	}
	return nil
}

// severableDialer dials for a kgo client until severed; then it closes
// every connection it made and refuses new ones, as if the client's
// process had died.
type severableDialer struct {
	mu      sync.Mutex
	conns   []net.Conn
	severed bool
}

func (d *severableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.severed {
		return nil, errors.New("bench: connection severed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *severableDialer) sever() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.severed = true
	for _, c := range d.conns {
		c.Close()
	}
}

// DefaultRedeliveryRecords is how many records a Redelivery trial holds.
const DefaultRedeliveryRecords = 1000

// Redelivery measures how fast the records a share consumer holds reach
// another member of its group when the holder dies. Each of trials
// trials creates a topic of one partition holding Records records
// (default 1,000) of Size bytes; a consumer acquires them all in one
// fetch and keeps them, with locks (share.record.lock.duration.ms) of a
// minute; a second consumer waits for records; then every connection of
// the first is closed at once, as a killed process's are. The time from
// the close to the moment the second consumer holds every record is one
// sample of Latency (kind "redelivery"). The broker releases a dead
// member's records when its share session's connection closes (Ferry,
// Kafka) or when its locks expire.
func Redelivery(ctx context.Context, cfg Config, trials int) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Records == 0 {
		cfg.Records = DefaultRedeliveryRecords
	}
	trials = max(trials, 1)
	m := newMeter(cmp.Or(cfg.Label, "redelivery"), LatencyRedelivery, 1, time.Now(), nil)
	base := cfg.Topic
	var notes []string
	for i := range trials {
		tc := cfg
		tc.Topic = fmt.Sprintf("%s-redelivery-%d-%d", base, time.Now().UnixNano(), i)
		tc.Partitions, tc.Keep = 1, false
		d, err := redeliveryTrial(ctx, tc)
		if err != nil {
			return nil, err
		}
		m.recs[0].observe(time.Now(), d)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "redelivery trial %d: %s records in %s\n", i+1, FormatCount(float64(cfg.Records)), fmtMillis(float64(d)/float64(time.Millisecond)))
		}
	}
	res := &Result{
		Mode: "redelivery", Brokers: cfg.Brokers, Topic: base, Partitions: 1, Size: cfg.Size, Consumers: 2,
		Records: cfg.Records, Latency: summarize(LatencyRedelivery, m.merged()), Notes: notes,
	}
	return res, nil
}

func redeliveryTrial(ctx context.Context, cfg Config) (time.Duration, error) {
	ts, err := setupTopic(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer ts.close(ctx)
	if err := ts.require(ctx, "redelivery", shareKeys...); err != nil {
		return 0, err
	}
	group := fmt.Sprintf("ferry-bench-redelivery-%d", time.Now().UnixNano())
	defer ts.deleteGroup(ctx, group)
	if err := setShareGroupConfigs(ctx, ts.cl, group, "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "60000"); err != nil {
		return 0, err
	}
	fill := cfg
	fill.Duration, fill.Warmup, fill.Rate, fill.Producers, fill.Progress = 0, 0, 0, 1, nil
	if _, err := runProducers(ctx, fill, producerRun{partitions: 1, name: "fill"}); err != nil {
		return 0, err
	}
	want := int(cfg.Records)
	common := []kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(cfg.Topic),
		kgo.ShareMaxRecords(int32(want)), kgo.FetchMaxWait(5 * time.Second)}

	// The holder takes them all in one fetch, and then never polls again
	// (a poll would accept what the previous one returned).
	d := &severableDialer{}
	holder, err := kgo.NewClient(append(common, kgo.Dialer(d.dial), kgo.RetryTimeout(time.Second), kgo.RequestRetries(1))...)
	if err != nil {
		return 0, fmt.Errorf("bench: share consumer for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	defer holder.Close()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	held := holder.PollRecords(hctx, 0).NumRecords()
	cancel()
	if held != want {
		return 0, fmt.Errorf("%w: the holding consumer acquired %d of %d records in its first fetch", ErrIncomplete, held, want)
	}

	// The waiter joins and parks in a fetch: nothing is free for it.
	waiter, err := kgo.NewClient(common...)
	if err != nil {
		return 0, fmt.Errorf("bench: share consumer for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	defer waiter.Close()
	got := make(chan time.Time, 1)
	wctx, stopWaiter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopWaiter()
	wg.Go(func() {
		n := 0
		for wctx.Err() == nil {
			fs := waiter.PollRecords(wctx, 0)
			n += fs.NumRecords()
			waiter.MarkAcks(kgo.AckAccept)
			if n >= want {
				got <- time.Now()
				return
			}
		}
	})
	if err := waitAssigned(ctx, ts, group, 2); err != nil {
		return 0, err
	}
	time.Sleep(300 * time.Millisecond) // the waiter's fetch is parked by now

	severed := time.Now()
	d.sever()
	select {
	case at := <-got:
		return at.Sub(severed), nil
	case <-time.After(90 * time.Second):
		return 0, fmt.Errorf("%w: the records of the dead consumer did not reach the other in 90s", ErrIncomplete)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// waitAssigned waits until group has n members with an assignment.
func waitAssigned(ctx context.Context, ts *topicSetup, group string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		described, err := ts.adm.DescribeShareGroups(ctx, group)
		if err == nil {
			assigned := 0
			for _, m := range described[group].Members {
				if len(m.Assignment) > 0 {
					assigned++
				}
			}
			if assigned >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: share group %q did not have %d assigned members in 30s (%v)", ErrIncomplete, group, n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
