package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
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
	// Linger is how long a producer waits to fill a batch. Default 10ms
	// (kgo's default); negative means none.
	Linger time.Duration
	// BatchBytes is the largest batch a producer builds (kgo
	// ProducerBatchMaxBytes). Default 1,000,000.
	BatchBytes int
	// Producers is the number of producer clients. Default 1.
	Producers int
	// Consumers is the number of consumer clients. Default 1.
	Consumers int
	// Rate caps production at this many records/s over all producers; zero
	// means as fast as possible. An e2e run defaults to 10,000.
	Rate int
	// Group makes consumers join this consumer group instead of being
	// assigned partitions directly. GroupConsume with an empty Group picks a
	// fresh group name.
	Group string
	// GroupConsume consumes as a group even when Group is empty.
	GroupConsume bool
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
	if c.Records < 0 || c.Duration < 0 || c.Rate < 0 || c.KeySpace < 0 || c.Warmup < 0 {
		return fmt.Errorf("%w: negative records, duration, rate, key space or warmup", ErrConfig)
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

// bufferedRecords is kgo's MaxBufferedRecords for a producer: about 64 MiB
// or 1M records, whichever is fewer, enough to keep several full batches per
// partition in flight.
func (c Config) bufferedRecords() int { return min(64<<20/(c.Size+16)+1, 1_000_000) }

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
	switch {
	case c.Linger < 0:
		opts = append(opts, kgo.ProducerLinger(0))
	case c.Linger > 0:
		opts = append(opts, kgo.ProducerLinger(c.Linger))
	}
	return append(opts, c.ClientOpts...)
}
