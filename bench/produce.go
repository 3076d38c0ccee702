package bench

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Produce runs the produce benchmark: Producers clients send Size-byte
// records to Topic as fast as they can (or at Rate) and the ack latency of
// every record goes into a histogram.
func Produce(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Records == 0 && cfg.Duration == 0 {
		cfg.Duration = DefaultDuration
	}
	ts, err := setupTopic(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := runProducers(ctx, cfg, producerRun{partitions: ts.partitions, progress: cfg.Progress, measureBroker: true})
	if cerr := ts.close(ctx); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}

// producerRun is what differs between the produce benchmark, the fill
// before a consume run and the producer half of e2e.
type producerRun struct {
	partitions int
	progress   io.Writer
	// stamp writes the intended send time (unix ns) into the first 8
	// bytes of each value, for e2e.
	stamp bool
	// begin, when set, is the time the warmup starts (shared with e2e's
	// consumers).
	begin time.Time
	name  string
	// measureBroker reads the broker's CPU (Config.Broker) over the
	// measured window.
	measureBroker bool
	// stop, when closed, ends the run as its deadline would (the bulk
	// load beside e2e stops with the e2e producer).
	stop <-chan struct{}
}

// valueBytes is the shared source of record values: random capital letters
// (compressible about as well as text, as Kafka's perf test uses). Values
// are windows into it, so producing allocates no value per record.
var valueBytes = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 4<<20)
	for i := range b {
		b[i] = 'A' + byte(r.IntN(26))
	}
	return b
}()

type producer struct {
	cl      *kgo.Client
	rec     *recorder
	quota   int64   // records to send after the warmup; 0 = until deadline
	rate    float64 // records/s for this client; 0 = no limit
	maxLate time.Duration
	sent    int64     // records sent after the warmup
	sendEnd time.Time // when the loop stopped sending, before the wait for acknowledgements
	end     time.Time // when the last acknowledgement was in
}

// runProducers runs cfg.Producers clients and returns what they measured.
func runProducers(ctx context.Context, cfg Config, run producerRun) (*Result, error) {
	name := run.name
	if name == "" {
		name = cmp.Or(cfg.Label, "produce")
	}
	if run.stamp && cfg.Size < 16 {
		return nil, fmt.Errorf("%w: e2e needs -size of at least 16 bytes, got %d", ErrConfig, cfg.Size)
	}
	if cfg.Size > len(valueBytes)/2 {
		return nil, fmt.Errorf("%w: -size %d is larger than %d", ErrConfig, cfg.Size, len(valueBytes)/2)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	begin := run.begin
	if begin.IsZero() {
		begin = time.Now()
	}
	measureStart := begin.Add(cfg.Warmup)
	var deadline time.Time
	if cfg.Records == 0 {
		deadline = measureStart.Add(cfg.Duration)
	}
	kind := LatencyAck
	if cfg.TxnRecords > 0 {
		if run.stamp {
			return nil, fmt.Errorf("%w: transactions are for produce runs", ErrConfig)
		}
		kind = LatencyCommit
	}
	m := newMeter(name, kind, cfg.Producers, measureStart, run.progress)

	keys := make([][]byte, cfg.KeySpace)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}

	ps := make([]*producer, cfg.Producers)
	for i := range ps {
		cl, err := kgo.NewClient(cfg.producerOpts()...)
		if err != nil {
			for _, p := range ps[:i] {
				p.cl.Close()
			}
			return nil, fmt.Errorf("bench: producer client for %s: %w", strings.Join(cfg.Brokers, ","), err)
		}
		p := &producer{cl: cl, rec: m.recs[i], rate: float64(cfg.Rate) / float64(cfg.Producers)}
		if cfg.Records > 0 {
			p.quota = cfg.Records / int64(cfg.Producers)
			if int64(i) < cfg.Records%int64(cfg.Producers) {
				p.quota++
			}
		}
		ps[i] = p
	}
	defer func() {
		for _, p := range ps {
			p.cl.Close()
		}
	}()

	cpu := startCPUAt(measureStart)
	var broker *brokerWindow
	if run.measureBroker {
		broker = startBrokerCPUAt(ctx, cfg.Broker, measureStart)
	}
	m.run(begin)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			if cfg.TxnRecords > 0 {
				p.txnLoop(ctx, cancel, cfg, keys, i, measureStart, deadline)
				return
			}
			p.loop(ctx, cancel, cfg, run, keys, i, begin, measureStart, deadline)
		})
	}
	wg.Wait()
	m.halt()

	res := &Result{
		Mode: "produce", Brokers: cfg.Brokers, Topic: cfg.Topic, Partitions: run.partitions,
		Size: cfg.Size, Acks: cfg.Acks, Compression: cfg.Compression, Producers: cfg.Producers,
		TargetRate: float64(max(cfg.Rate, 0)),
	}
	recs, bytes := m.totals()
	var last time.Time
	for _, p := range ps {
		if p.end.After(last) {
			last = p.end
		}
	}
	elapsed := last.Sub(measureStart)
	if elapsed <= 0 {
		elapsed = time.Since(measureStart)
	}
	res.finish(recs, bytes, elapsed)
	res.CPU = cpu.stop(recs)
	res.setLinger(cfg)
	res.LoadAverage = loadAverage()
	if bc, err := broker.stop(ctx, bytes); err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("broker CPU not read: %v", err))
	} else {
		res.BrokerCPU = bc
	}
	res.Latency = summarize(kind, m.merged())
	res.TxnRecords = cfg.TxnRecords
	res.Series = m.samples()
	if cfg.Rate > 0 {
		var sent int64
		var late time.Duration
		var sendEnd time.Time
		for _, p := range ps {
			sent += p.sent
			late = max(late, p.maxLate)
			if p.sendEnd.After(sendEnd) {
				sendEnd = p.sendEnd
			}
		}
		// The rate is what was sent over the time spent sending. The
		// wait for the last acknowledgements is the broker's latency,
		// reported as such; counting it here would make slow acks look
		// like a rate the producer could not keep.
		sending := sendEnd.Sub(measureStart)
		if sending <= 0 {
			sending = elapsed
		}
		res.ProducedRate = float64(sent) / sending.Seconds()
		res.MaxBehind = float64(late) / float64(time.Millisecond)
		held := res.ProducedRate >= 0.98*float64(cfg.Rate) && late < time.Second
		res.RateHeld = &held
		if !held {
			res.Notes = append(res.Notes, fmt.Sprintf("could not hold %s records/s: produced %s records/s, worst %s behind schedule",
				FormatCount(float64(cfg.Rate)), FormatCount(res.ProducedRate), fmtMillis(res.MaxBehind)))
		}
	}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// sampleEvery is how often a producer running flat out reads the clock:
// the send time of every sampleEvery-th record is taken and its ack latency
// recorded. Reading the clock costs ~60ns on this kind of VM, as much as
// the rest of the per-record work of the generator; sampling one record in
// eight keeps millions of samples per run.
const sampleEvery = 8

// item is a reusable record plus the bookkeeping its promise needs. The
// record's Context points at ctx, which points back at the item, so the
// promise finds the send time without a map or an allocation.
type item struct {
	rec kgo.Record
	ctx itemCtx
}

type itemCtx struct {
	context.Context
	item     *item
	sent     time.Time // zero when this record is not a latency sample
	measured bool      // sent after the warmup
}

// itemRing is a single-producer single-consumer free list of items: the
// produce loop takes, the promise (which kgo calls serially) gives back.
type itemRing struct {
	buf  []*item
	mask uint64
	head atomic.Uint64 // next slot to take
	tail atomic.Uint64 // next slot to fill
}

func newItemRing(n int) *itemRing {
	size := 1
	for size < n {
		size <<= 1
	}
	return &itemRing{buf: make([]*item, size), mask: uint64(size - 1)}
}

func (q *itemRing) get() *item {
	h := q.head.Load()
	if h == q.tail.Load() {
		return nil
	}
	it := q.buf[h&q.mask]
	q.buf[h&q.mask] = nil
	q.head.Store(h + 1)
	return it
}

func (q *itemRing) put(it *item) {
	t := q.tail.Load()
	if t-q.head.Load() > q.mask {
		return // full: let the GC have it
	}
	q.buf[t&q.mask] = it
	q.tail.Store(t + 1)
}

// loop sends records until the quota or deadline is reached or ctx ends,
// then waits for every acknowledgement.
func (p *producer) loop(ctx context.Context, fail context.CancelCauseFunc, cfg Config, run producerRun, keys [][]byte,
	client int, begin, measureStart, deadline time.Time) {
	size, stamp := cfg.Size, run.stamp
	ring := newItemRing(cfg.bufferedRecords() + 1024)
	newItem := func() *item {
		it := &item{}
		it.ctx.Context = ctx
		it.ctx.item = it
		if stamp {
			it.rec.Value = make([]byte, size)
		}
		return it
	}
	where := fmt.Sprintf("topic %q on %s", cfg.Topic, strings.Join(cfg.Brokers, ","))
	var failOnce sync.Once
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			failOnce.Do(func() { fail(fmt.Errorf("bench: produce to %s: %w", where, err)) })
			return
		}
		ic := r.Context.(*itemCtx)
		if ic.measured {
			p.rec.add(1, int64(len(r.Key)+len(r.Value)))
			if !ic.sent.IsZero() {
				now := time.Now()
				p.rec.observe(now, now.Sub(ic.sent))
			}
		}
		ring.put(ic.item)
	}

	every := int64(sampleEvery)
	if p.rate > 0 && p.rate <= 200_000 || stamp {
		// A stamped record carries the time it was handed to the
		// client: read the clock for each, since a Produce that blocks
		// on a full buffer would otherwise date the next ones early.
		every = 1
	}
	// Each client starts at its own place in valueBytes.
	off := (client * 7919 * size) % (len(valueBytes) - size)
	var (
		n   int64 // records sent, warmup included
		now time.Time
	)
	for {
		sample := n%every == 0
		if sample {
			if ctx.Err() != nil || stopped(run.stop) {
				break
			}
			now = time.Now()
		}
		sendAt := now
		if p.rate > 0 {
			due := begin.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
			if wait := due.Sub(now); wait > time.Millisecond {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				now = time.Now()
			}
			if late := now.Sub(due); late > p.maxLate && !due.Before(measureStart) {
				p.maxLate = late
			}
			sendAt = due
			if sendAt.After(now) {
				sendAt = now
			}
		}
		measured := !sendAt.Before(measureStart)
		if measured {
			if p.quota > 0 && p.sent >= p.quota {
				break
			}
			// A run measures at least one record, however late a
			// loaded machine let it start.
			if !deadline.IsZero() && !now.Before(deadline) && p.sent > 0 {
				break
			}
			p.sent++
		}
		it := ring.get()
		if it == nil {
			it = newItem()
		}
		var value []byte
		if stamp {
			value = it.rec.Value[:size]
			binary.BigEndian.PutUint64(value, uint64(sendAt.UnixNano()))
			binary.BigEndian.PutUint64(value[8:], uint64(n))
		} else {
			value = valueBytes[off : off+size]
			off += size
			if off+size > len(valueBytes) {
				off = 0
			}
		}
		it.rec = kgo.Record{Value: value, Timestamp: sendAt, Context: &it.ctx}
		if len(keys) > 0 {
			it.rec.Key = keys[n%int64(len(keys))]
		}
		it.ctx.measured = measured
		it.ctx.sent = time.Time{}
		if sample {
			it.ctx.sent = sendAt
		}
		n++
		p.cl.Produce(ctx, &it.rec, promise)
	}
	p.sendEnd = time.Now()
	if err := p.cl.Flush(ctx); err != nil && context.Cause(ctx) == nil {
		fail(fmt.Errorf("bench: flush to %s: %w", where, err))
	}
	p.end = time.Now()
}

// txnLoop sends records in transactions of cfg.TxnRecords records, each
// committed before the next begins, until the quota or deadline is
// reached or ctx ends. A transaction's records count once it commits; its
// latency sample is the time from its last record handed to the client to
// the return of its commit, the flush of the records still in flight
// included, as Kafka's commitTransaction does. Rate is not applied.
func (p *producer) txnLoop(ctx context.Context, fail context.CancelCauseFunc, cfg Config, keys [][]byte,
	client int, measureStart, deadline time.Time) {
	size := cfg.Size
	where := fmt.Sprintf("topic %q on %s", cfg.Topic, strings.Join(cfg.Brokers, ","))
	recs := make([]kgo.Record, cfg.TxnRecords)
	off := (client * 7919 * size) % (len(valueBytes) - size)
	var n int64
	var failOnce sync.Once
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failOnce.Do(func() { fail(fmt.Errorf("bench: transactional produce to %s: %w", where, err)) })
		}
	}
	defer func() { p.sendEnd, p.end = time.Now(), time.Now() }()
	for ctx.Err() == nil {
		start := time.Now()
		measured := !start.Before(measureStart)
		if measured && ((p.quota > 0 && p.sent >= p.quota) || (!deadline.IsZero() && !start.Before(deadline))) {
			return
		}
		if err := p.cl.BeginTransaction(); err != nil {
			fail(fmt.Errorf("bench: begin transaction on %s: %w", where, err))
			return
		}
		var bytes int64
		for i := range recs {
			value := valueBytes[off : off+size]
			off += size
			if off+size > len(valueBytes) {
				off = 0
			}
			recs[i] = kgo.Record{Value: value, Timestamp: start}
			if len(keys) > 0 {
				recs[i].Key = keys[n%int64(len(keys))]
			}
			n++
			bytes += int64(len(recs[i].Key) + size)
			p.cl.Produce(ctx, &recs[i], promise)
		}
		sent := time.Now()
		if err := p.cl.Flush(ctx); err != nil {
			if context.Cause(ctx) == nil {
				fail(fmt.Errorf("bench: flush to %s: %w", where, err))
			}
			return
		}
		if err := p.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			if context.Cause(ctx) == nil {
				fail(fmt.Errorf("bench: commit on %s: %w", where, err))
			}
			return
		}
		if measured {
			now := time.Now()
			p.sent += int64(len(recs))
			p.rec.add(int64(len(recs)), bytes)
			p.rec.observe(now, now.Sub(sent))
		}
	}
}

// stopped reports whether stop is closed; a nil stop never is.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}
