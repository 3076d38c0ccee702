package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors returned by the runs. Each is wrapped with the broker, topic or
// setting it is about; match them with errors.Is.
var (
	// ErrConfig reports a Config that cannot be run.
	ErrConfig = errors.New("bench: bad config")
	// ErrRateNotHeld reports an e2e or rate-limited run whose producer fell
	// behind its target rate. The Result is still returned.
	ErrRateNotHeld = errors.New("bench: rate not held")
	// ErrUnsupported reports a run the broker cannot serve: consuming
	// from a NullBroker, or a group from a broker without groups.
	ErrUnsupported = errors.New("bench: not supported by the broker")
	// ErrIncomplete reports a consume or e2e run that ended before it read
	// every record it waited for.
	ErrIncomplete = errors.New("bench: incomplete")
)

// Default values of Config fields left at zero.
const (
	DefaultTopic      = "ferry-bench"
	DefaultSize       = 100
	DefaultDuration   = 10 * time.Second
	DefaultBatchBytes = 1_000_000
	DefaultE2ERate    = 10_000
	// DefaultFillRecords is how many records a consume run writes first
	// when its topic is empty and Records is not set.
	DefaultFillRecords = 1_000_000
)

// Config describes one produce, consume or e2e run. The zero value of every
// field means its default; only Brokers is required.
type Config struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topic is the topic to use. It is created when missing (with
	// Partitions partitions) and, when this run created it, deleted at the
	// end unless Keep is set. Default "ferry-bench".
	Topic string
	// Partitions is the partition count of a topic this run creates.
	// Default 1.
	Partitions int
	// Keep leaves a topic this run created (and a consumer group it used)
	// in place at the end.
	Keep bool
	// Records stops the run after this many records (not counting the
	// warmup). When zero the run lasts Duration; a consume run with neither
	// reads every record the topic holds when it starts.
	Records int64
	// Duration stops the run after this long (not counting the warmup).
	// Default 10s when Records is zero.
	Duration time.Duration
	// Size is the value size of each record in bytes. Default 100; e2e
	// needs at least 16 (the send time travels in the value).
	Size int
	// KeySpace gives each record one of this many distinct keys, which the
	// partitioner hashes onto partitions. Zero: no keys (sticky batching).
	KeySpace int
	// Acks is "0", "1" or "all". Default "all".
	Acks string
	// Compression is none, gzip, snappy, lz4 or zstd. Default none.
	Compression string
	// Linger is how long a producer waits to fill a batch; negative means
	// none. Default: none for e2e, whose records are sent at once so that
	// the latency measured is the broker's and not the client's batching
	// delay; kgo's 10ms for produce. Result.Linger says what was used.
	Linger time.Duration
	// BatchBytes is the largest batch a producer builds (kgo
	// ProducerBatchMaxBytes). Default 1,000,000.
	BatchBytes int
	// Producers is the number of producer clients. Default 1.
	Producers int
	// TxnRecords makes every producer client transactional (a
	// transactional id of its own) and commit a transaction every
	// TxnRecords records; Latency is then each commit's latency
	// (LatencyCommit): from the transaction's last record handed to the
	// client to the commit's return, the flush of its records still in
	// flight included, as Kafka's commitTransaction does. Produce runs
	// only; acks must be all. Zero: no transactions.
	TxnRecords int
	// Consumers is the number of consumer clients. Default 1.
	Consumers int
	// Rate caps production at this many records/s over all producers; zero
	// means as fast as possible. An e2e run defaults to 10,000
	// (DefaultE2ERate); -1 makes it send as fast as possible.
	Rate int
	// RoundRobin sends record i to partition i mod Partitions
	// (kgo.RoundRobinPartitioner), so that each of many partitions gets
	// its share even at a low rate. Otherwise records without keys go to
	// one partition per batch (kgo's sticky default).
	RoundRobin bool
	// Group makes consumers join this consumer group instead of being
	// assigned partitions directly. GroupConsume with an empty Group picks a
	// fresh group name.
	Group string
	// GroupConsume consumes as a group even when Group is empty.
	GroupConsume bool
	// Fanout makes every consumer read every partition, as Consumers
	// independent readers (subscribers) of the same topic do, instead of
	// sharing the partitions. A consume run then reads the topic
	// Consumers times over. Not with Group.
	Fanout bool
	// Bulk, when its Size is set, runs a second load beside an e2e run:
	// producers sending acks=all records as fast as they can to another
	// topic, for as long as the e2e producer runs. The e2e latency is then
	// that of a latency-sensitive topic next to a bulk one.
	Bulk BulkLoad
	// Broker names the broker's process so a run can report the CPU time
	// it used (Result.BrokerCPU). Zero: not reported.
	Broker BrokerProcess
	// ShareMaxRecords is how many records a share consumer (Queue) asks
	// for in one fetch (kgo ShareMaxRecords). Default 500, Kafka's.
	ShareMaxRecords int
	// Warmup runs the load this long before measuring starts.
	Warmup time.Duration
	// Progress receives one line per second while the run goes; nil means
	// none.
	Progress io.Writer
	// Label starts each progress line. Default: the mode (produce,
	// consume, e2e).
	Label string
	// Logger receives diagnostics (topic creation, client errors). nil
	// discards them.
	Logger *slog.Logger
	// ClientOpts are extra kgo options given to every client (tests use
	// them for short timeouts).
	ClientOpts []kgo.Opt

	// e2e marks the producers of an e2e run (set by E2E).
	e2e bool
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.Size <= 0 {
		c.Size = DefaultSize
	}
	if c.Acks == "" {
		c.Acks = "all"
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.Producers <= 0 {
		c.Producers = 1
	}
	if c.Consumers <= 0 {
		c.Consumers = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%w: no brokers", ErrConfig)
	}
	if c.Records < 0 || c.Duration < 0 || c.Rate < -1 || c.KeySpace < 0 || c.Warmup < 0 || c.TxnRecords < 0 {
		return fmt.Errorf("%w: negative records, duration, rate, key space, warmup or transaction size", ErrConfig)
	}
	if c.TxnRecords > 0 && c.Acks != "all" && c.Acks != "-1" {
		return fmt.Errorf("%w: transactions need acks=all, got %q", ErrConfig, c.Acks)
	}
	if c.Fanout && (c.Group != "" || c.GroupConsume) {
		return fmt.Errorf("%w: fanout consumers read every partition; a group shares them", ErrConfig)
	}
	if c.Bulk.Size < 0 || c.Bulk.Partitions < 0 || c.Bulk.Producers < 0 {
		return fmt.Errorf("%w: negative bulk size, partitions or producers", ErrConfig)
	}
	if _, err := ackOpt(c.Acks); err != nil {
		return err
	}
	if _, err := compressionOpt(c.Compression); err != nil {
		return err
	}
	return nil
}

func ackOpt(acks string) (kgo.Acks, error) {
	switch strings.ToLower(acks) {
	case "0", "none":
		return kgo.NoAck(), nil
	case "1", "leader":
		return kgo.LeaderAck(), nil
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	}
	return kgo.Acks{}, fmt.Errorf("%w: acks %q: want 0, 1 or all", ErrConfig, acks)
}

// CompressionCodec returns the kgo codec named by name (none, gzip, snappy,
// lz4 or zstd; case-insensitive), or an error wrapping ErrConfig.
func CompressionCodec(name string) (kgo.CompressionCodec, error) { return compressionOpt(name) }

func compressionOpt(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("%w: compression %q: want none, gzip, snappy, lz4 or zstd", ErrConfig, name)
}

// txnIDs numbers the transactional ids of this process's producers.
var txnIDs atomic.Int64

// BulkLoad is the bulk produce beside an e2e run (Config.Bulk).
type BulkLoad struct {
	// Size is the value size of the bulk records; zero means no bulk load.
	Size int
	// Partitions of the bulk topic (the e2e topic's name plus "-bulk").
	// Default 1.
	Partitions int
	// Producers is the number of bulk producer clients. Default 1.
	Producers int
}

// config is the produce-run Config of the bulk load beside cfg.
func (b BulkLoad) config(cfg Config) Config {
	bc := cfg
	bc.Topic = cfg.Topic + "-bulk"
	bc.Partitions = max(b.Partitions, 1)
	bc.Producers = max(b.Producers, 1)
	bc.Size = b.Size
	bc.Acks = "all"
	bc.Rate, bc.RoundRobin, bc.KeySpace, bc.Linger = 0, false, 0, 0
	// It runs until the e2e producer stops it, whether that one counts
	// records or time; the day is only a bound.
	bc.Records, bc.Duration = 0, 24*time.Hour
	bc.Bulk = BulkLoad{}
	bc.Label = cmp.Or(cfg.Label, "e2e") + "-bulk"
	return bc
}

// bufferedRecords is kgo's MaxBufferedRecords for a producer: about 64 MiB
// or 1M records, whichever is fewer, over all producers of the run, enough
// to keep several full batches per partition in flight. A stamped run
// sending flat out (e2e without a rate) buffers 4 MiB: what waits in the
// client counts in its latency, and a deep buffer would measure the queue
// rather than the broker.
func (c Config) bufferedRecords() int {
	if c.stampedFlatOut() {
		return max(4<<20/(c.Size+16), 64)
	}
	return max(min(64<<20/(c.Size+16)+1, 1_000_000)/c.Producers, 1024)
}

// stampedFlatOut reports an e2e run without a rate.
func (c Config) stampedFlatOut() bool { return c.e2e && c.Rate <= 0 }

// linger is the linger a producer of this run uses (see Config.Linger).
func (c Config) linger() time.Duration {
	switch {
	case c.Linger < 0:
		return 0
	case c.Linger > 0:
		return c.Linger
	case c.e2e:
		return 0
	}
	return kgoDefaultLinger
}

// kgoDefaultLinger is kgo's ProducerLinger default.
const kgoDefaultLinger = 10 * time.Millisecond

// producerOpts are the kgo options of one load-generating producer client.
func (c Config) producerOpts() []kgo.Opt {
	acks, _ := ackOpt(c.Acks)
	codec, _ := compressionOpt(c.Compression)
	buffered := c.bufferedRecords()
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerBatchMaxBytes(int32(c.BatchBytes)),
		kgo.MaxBufferedRecords(buffered),
	}
	if c.Acks != "all" && c.Acks != "-1" {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(5))
	}
	if c.TxnRecords > 0 {
		opts = append(opts, kgo.TransactionalID(fmt.Sprintf("ferry-bench-%s-%d", c.Topic, txnIDs.Add(1))), kgo.TransactionTimeout(time.Minute))
	}
	opts = append(opts, kgo.ProducerLinger(c.linger()))
	if c.RoundRobin {
		opts = append(opts, kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	}
	return append(opts, c.ClientOpts...)
}
