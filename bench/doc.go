// Package bench is the load generator behind `ferry bench`. It talks the
// Kafka protocol through franz-go (kgo, kadm) to any broker, Ferry or not,
// so the same numbers can be taken from Ferry, Kafka or Redpanda.
//
// Four runs:
//
//   - Produce: Producers clients send Size-byte records as fast as they can
//     (or at Rate) and record each acknowledgement's latency. RoundRobin
//     spreads them over the partitions in turn. With TxnRecords each
//     client is a transactional producer committing every TxnRecords
//     records, and the latency is each commit's.
//   - Consume: Consumers clients read a topic back, sharing its partitions
//     (assigned directly or as a consumer group) or each reading all of
//     them (Fanout), and record the time to first record.
//   - E2E: a producer at a fixed rate, or as fast as it can, and consumers
//     at once; each record's value carries its scheduled send time (unix
//     nanoseconds, big endian, in bytes 0..8), and the consumer records now
//     minus that. Records are sent without linger by default, so the
//     latency is the broker's and not the client's batching delay; the
//     result says which linger was used. Bulk adds acks=all producers
//     writing another topic flat out all the while.
//   - Compare: StandardScenarios and LoadScenarios (or
//     TransactionScenarios: produce in 100-record transactions beside the
//     same load without) against several
//     targets, Repeat times, the targets taking turns at each scenario,
//     medians side by side with ratios to the first target; WriteReport
//     writes Markdown, JSON, SVG charts and an HTML page.
//
// Every run prints one progress line per second to Config.Progress (that
// second's records/s and MiB/s, and p50/p99 latency of the run so far) and
// returns a Result: records, bytes, records/s, MiB/s, an HdrHistogram
// summary (p50 p90 p99 p99.9 max), this process's CPU use from getrusage
// after the warmup (which includes any broker run in the same process),
// the machine's load average, and, when Config.Broker names the broker's
// process (its pid, read from /proc/PID/stat, or its admin listener's
// process_cpu_seconds_total), the broker's CPU seconds per GB.
//
// # Keeping the generator out of the way
//
// A producer reuses its records through a single-producer single-consumer
// free list (the produce loop takes, kgo's serial promise gives back),
// takes values as windows into one shared buffer of random letters, and
// reads the clock once every sampleEvery records when it runs flat out:
// that record's ack latency is the sample. On the 2-core development VM one
// producer client sends 2.3 to 4.3 million 100-byte records/s into
// NullBroker (`ferry bench produce -sink`, which acknowledges without
// storing, in the same process), depending on what else the machine runs;
// about 0.55µs of CPU per record, sink included.
//
// # Concurrency
//
// A run owns every goroutine it starts (one per client, one progress
// ticker, one watcher) and waits for all of them before it returns; ctx
// ends a run early, and the partial Result comes back with the error.
// Topics a run creates are deleted at its end unless Config.Keep.
//
//	res, err := bench.Produce(ctx, bench.Config{
//		Brokers:  []string{"localhost:9092"},
//		Duration: 10 * time.Second,
//		Progress: os.Stderr,
//	})
//	if err == nil {
//		res.WriteText(os.Stdout)
//	}
package bench
