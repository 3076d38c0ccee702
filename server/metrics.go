package server

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/metric"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
)

// The broker's Prometheus metrics. Counting happens where the work is
// done, with atomic adds on fields the counting package owns: per
// partition (partition.Stats), per fsync (partition.StorageStats), per
// request and connection (stats.go). This collector reads them at scrape
// time and turns them into series; nothing is kept between scrapes.
//
// Names follow Kafka's metrics (BytesInPerSec, MessagesInPerSec,
// RequestsPerSec, ErrorsPerSec, Log Size, LogStartOffset, LogEndOffset,
// OfflinePartitionsCount) and Redpanda's (request latency histograms,
// consumer group lag), prefixed ferry_ and in Prometheus's units. README
// lists them; docs/grafana-dashboard.json charts them.

// partitionSeriesConfig bounds the brokers whose partitions get series of
// their own (topic and partition labels), and their groups' lag per
// partition.
const partitionSeriesConfig = "metrics.partition.series.max.partitions"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	// Per topic, always; per partition, up to partitionSeriesConfig.
	descTopicBytesIn       = desc("ferry_kafka_topic_bytes_in_total", "Bytes of record batches appended to the topic's partitions (Kafka's BytesInPerSec).", "topic")
	descTopicRecordsIn     = desc("ferry_kafka_topic_records_in_total", "Records appended to the topic's partitions (Kafka's MessagesInPerSec).", "topic")
	descTopicBytesOut      = desc("ferry_kafka_topic_bytes_out_total", "Bytes of record batches fetches sent from the topic (Kafka's BytesOutPerSec).", "topic")
	descTopicRecordsOut    = desc("ferry_kafka_topic_records_out_total", "Records fetches sent from the topic, counted as offsets past each fetch position.", "topic")
	descTopicSize          = desc("ferry_storage_topic_size_bytes", "Bytes of the topic's segments on disk.", "topic")
	descTopicPartitions    = desc("ferry_kafka_topic_partitions", "Partitions of the topic.", "topic")
	descPartitionBytesIn   = desc("ferry_kafka_partition_bytes_in_total", "Bytes of record batches appended to the partition.", "topic", "partition")
	descPartitionRecordsIn = desc("ferry_kafka_partition_records_in_total", "Records appended to the partition.", "topic", "partition")
	descPartitionBytesOut  = desc("ferry_kafka_partition_bytes_out_total", "Bytes of record batches fetches sent from the partition.", "topic", "partition")
	descPartitionRecsOut   = desc("ferry_kafka_partition_records_out_total", "Records fetches sent from the partition, counted as offsets past each fetch position.", "topic", "partition")
	descPartitionSize      = desc("ferry_storage_log_size_bytes", "Bytes of the partition's segments on disk (Kafka's Log Size).", "topic", "partition")
	descPartitionSegments  = desc("ferry_storage_log_segments", "Segments of the partition (Kafka's NumLogSegments).", "topic", "partition")
	descLogStart           = desc("ferry_kafka_partition_log_start_offset", "First offset a consumer may fetch (Kafka's LogStartOffset).", "topic", "partition")
	descHighWatermark      = desc("ferry_kafka_partition_high_watermark", "Offset below which every record is fdatasynced and served to consumers.", "topic", "partition")
	descLogEnd             = desc("ferry_kafka_partition_log_end_offset", "Offset the next record appended gets (Kafka's LogEndOffset).", "topic", "partition")

	// Broker-wide partition state.
	descTopics            = desc("ferry_kafka_topics", "Topics on the broker, internal ones included.")
	descPartitions        = desc("ferry_kafka_partitions", "Partitions on the broker, offline ones included.")
	descOffline           = desc("ferry_kafka_offline_partitions", "Partitions that could not be opened and are not served (Kafka's OfflinePartitionsCount).")
	descFailed            = desc("ferry_storage_failed_partitions", "Partitions refusing appends after a failed write or fsync, until the broker restarts.")
	descPartitionSeriesOn = desc("ferry_metrics_partition_series_enabled", "1 while per-partition series are exported (the broker holds at most "+partitionSeriesConfig+" partitions), else 0.")

	// Requests.
	descRequests      = desc("ferry_kafka_requests_total", "Requests received, by API (Kafka's RequestsPerSec).", "api")
	descRequestErrors = desc("ferry_kafka_request_errors_total", "Error codes in responses, at every level (request, topic, partition), by API and error (Kafka's ErrorsPerSec).", "api", "error")
	descLatency       = desc("ferry_kafka_request_latency_seconds", "Time from a request read to its response written, by API (Kafka's TotalTimeMs; long polls included).", "api")
	descRequestBytes  = desc("ferry_kafka_request_bytes_total", "Bytes of request frames read, by API.", "api")
	descResponseBytes = desc("ferry_kafka_response_bytes_total", "Bytes of response frames written, by API.", "api")
	descSlow          = desc("ferry_kafka_slow_requests_total", "Requests slower than slow.request.threshold.ms (plus their own long-poll or rebalance wait), by API; each is logged.", "api")
	descInFlight      = desc("ferry_kafka_requests_in_flight", "Requests read and not yet answered.")
	descConnections   = desc("ferry_kafka_connections", "Client connections open (Kafka's connection-count).")
	descConnsAccepted = desc("ferry_kafka_connections_accepted_total", "Client connections accepted (Kafka's connection-creation-total).")
	descConnsRefused  = desc("ferry_kafka_connections_refused_total", "Client connections closed at once by max.connections or max.connections.per.ip.")
	descMemUsed       = desc("ferry_kafka_request_memory_used_bytes", "Request bytes held in memory, bounded by queued.max.request.bytes (Kafka's MemoryPoolUsed).")
	descMemLimit      = desc("ferry_kafka_request_memory_limit_bytes", "queued.max.request.bytes; 0 when unbounded.")
	descMemWaiting    = desc("ferry_kafka_request_memory_waiting_connections", "Connections waiting for request memory before reading a request.")

	// Storage.
	descFsyncLatency   = desc("ferry_storage_fsync_latency_seconds", "Time of each group-committed fdatasync round of a partition.")
	descFsyncBytes     = desc("ferry_storage_fsync_bytes", "Bytes each fdatasync round made durable.")
	descGroupCommit    = desc("ferry_storage_group_commit_batches", "Record batches each fdatasync round made durable: the group commit's size.")
	descCacheFiles     = desc("ferry_storage_file_cache_open_files", "Segment files held open.")
	descCacheMaps      = desc("ferry_storage_file_cache_mappings", "Segment memory mappings held.")
	descCacheMaxFiles  = desc("ferry_storage_file_cache_max_open_files", "Open segment files beyond which idle segments' are closed.")
	descCacheMaxMaps   = desc("ferry_storage_file_cache_max_mappings", "Segment mappings beyond which idle segments' are unmapped.")
	descCacheEvictions = desc("ferry_storage_file_cache_evictions_total", "Idle segments whose files and mappings the cache closed.")

	// Consumer groups.
	descGroupMembers   = desc("ferry_kafka_consumer_group_members", "Members of the consumer group.", "group")
	descGroupLagSum    = desc("ferry_kafka_consumer_group_lag_sum", "Records of the topic past the group's committed offsets (high watermark minus committed offset, summed over partitions).", "group", "topic")
	descGroupLagMax    = desc("ferry_kafka_consumer_group_lag_max", "Largest lag of one of the topic's partitions in the group.", "group", "topic")
	descGroupLag       = desc("ferry_kafka_consumer_group_lag", "High watermark minus the group's committed offset.", "group", "topic", "partition")
	descGroupCommitted = desc("ferry_kafka_consumer_group_committed_offset", "The group's committed offset.", "group", "topic", "partition")
)

var allDescs = []*prometheus.Desc{
	descTopicBytesIn, descTopicRecordsIn, descTopicBytesOut, descTopicRecordsOut, descTopicSize, descTopicPartitions,
	descPartitionBytesIn, descPartitionRecordsIn, descPartitionBytesOut, descPartitionRecsOut, descPartitionSize,
	descPartitionSegments, descLogStart, descHighWatermark, descLogEnd,
	descTopics, descPartitions, descOffline, descFailed, descPartitionSeriesOn,
	descRequests, descRequestErrors, descLatency, descRequestBytes, descResponseBytes, descSlow, descInFlight,
	descConnections, descConnsAccepted, descConnsRefused, descMemUsed, descMemLimit, descMemWaiting,
	descFsyncLatency, descFsyncBytes, descGroupCommit,
	descCacheFiles, descCacheMaps, descCacheMaxFiles, descCacheMaxMaps, descCacheEvictions,
	descGroupMembers, descGroupLagSum, descGroupLagMax, descGroupLag, descGroupCommitted,
}

// Collector returns the broker's Prometheus collector, for the admin
// listener's registry (`ferry serve` registers it). Collecting reads the
// counters with atomic loads and walks the topics, partitions and groups;
// it takes no lock a request holds for long.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.requests(ch)
	c.connections(ch)
	c.partitions(ch)
	c.storage(ch)
	c.groups(ch)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// histogram turns a snapshot into a Prometheus histogram, its values and
// bounds multiplied by scale (1e-9 turns nanoseconds into seconds).
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, s metric.Snapshot, scale float64, labels ...string) {
	buckets := make(map[float64]uint64, len(s.Bounds))
	for i, b := range s.Bounds {
		buckets[float64(b)*scale] = s.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(d, s.Count, float64(s.Sum)*scale, buckets, labels...)
}

func (c collector) requests(ch chan<- prometheus.Metric) {
	for key, st := range c.s.stats.apis {
		if st == nil {
			continue
		}
		n := st.requests.Load()
		if n == 0 {
			continue
		}
		api := kmsg.NameForKey(int16(key))
		counter(ch, descRequests, float64(n), api)
		counter(ch, descRequestBytes, float64(st.requestBytes.Load()), api)
		counter(ch, descResponseBytes, float64(st.responseBytes.Load()), api)
		counter(ch, descSlow, float64(st.slow.Load()), api)
		histogram(ch, descLatency, st.latency.Snapshot(), 1e-9, api)
		for i := range st.errors {
			if v := st.errors[i].Load(); v > 0 {
				counter(ch, descRequestErrors, float64(v), api, errorName(i))
			}
		}
	}
}

func (c collector) connections(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	conns, inFlight := len(s.mu.conns), int64(0)
	for cn := range s.mu.conns {
		inFlight += cn.outstanding.Load()
	}
	s.mu.Unlock()
	gauge(ch, descConnections, float64(conns))
	gauge(ch, descInFlight, float64(inFlight))
	counter(ch, descConnsAccepted, float64(s.stats.connsAccepted.Load()))
	counter(ch, descConnsRefused, float64(s.stats.connsRefused.Load()))
	b := s.limits.budget
	gauge(ch, descMemUsed, float64(b.held()))
	gauge(ch, descMemLimit, float64(b.total))
	gauge(ch, descMemWaiting, float64(b.waiting()))
}

// partitionSeries reports whether a broker holding n partitions exports
// per-partition series.
func (s *Server) partitionSeries(n int) bool {
	limit := s.settings().int64(partitionSeriesConfig)
	return limit < 0 || int64(n) <= limit
}

func (c collector) partitions(ch chan<- prometheus.Metric) {
	topics := c.s.meta.Topics()
	total := 0
	for _, t := range topics {
		total += int(t.NumPartitions())
	}
	perPartition := c.s.partitionSeries(total)
	offline, failed := 0, 0
	for _, t := range topics {
		name := t.Name()
		var sum partition.Stats
		n := t.NumPartitions()
		for i := range n {
			p, err := t.Partition(i)
			if err != nil {
				if errors.Is(err, meta.ErrOffline) {
					offline++
				}
				continue
			}
			st := p.Stats()
			if st.Failed {
				failed++
			}
			sum.BytesIn += st.BytesIn
			sum.RecordsIn += st.RecordsIn
			sum.BytesOut += st.BytesOut
			sum.RecordsOut += st.RecordsOut
			sum.Size += st.Size
			if !perPartition {
				continue
			}
			id := strconv.Itoa(int(i))
			counter(ch, descPartitionBytesIn, float64(st.BytesIn), name, id)
			counter(ch, descPartitionRecordsIn, float64(st.RecordsIn), name, id)
			counter(ch, descPartitionBytesOut, float64(st.BytesOut), name, id)
			counter(ch, descPartitionRecsOut, float64(st.RecordsOut), name, id)
			gauge(ch, descPartitionSize, float64(st.Size), name, id)
			gauge(ch, descPartitionSegments, float64(st.Segments), name, id)
			gauge(ch, descLogStart, float64(st.LogStartOffset), name, id)
			gauge(ch, descHighWatermark, float64(st.HighWatermark), name, id)
			gauge(ch, descLogEnd, float64(st.LogEndOffset), name, id)
		}
		counter(ch, descTopicBytesIn, float64(sum.BytesIn), name)
		counter(ch, descTopicRecordsIn, float64(sum.RecordsIn), name)
		counter(ch, descTopicBytesOut, float64(sum.BytesOut), name)
		counter(ch, descTopicRecordsOut, float64(sum.RecordsOut), name)
		gauge(ch, descTopicSize, float64(sum.Size), name)
		gauge(ch, descTopicPartitions, float64(n), name)
	}
	gauge(ch, descTopics, float64(len(topics)))
	gauge(ch, descPartitions, float64(total))
	gauge(ch, descOffline, float64(offline))
	gauge(ch, descFailed, float64(failed))
	on := 0.0
	if perPartition {
		on = 1
	}
	gauge(ch, descPartitionSeriesOn, on)
}

func (c collector) storage(ch chan<- prometheus.Metric) {
	st := c.s.meta.StorageStats()
	histogram(ch, descFsyncLatency, st.FsyncLatency.Snapshot(), 1e-9)
	histogram(ch, descFsyncBytes, st.FsyncBytes.Snapshot(), 1)
	histogram(ch, descGroupCommit, st.GroupCommit.Snapshot(), 1)
	fc := partition.FileCache()
	gauge(ch, descCacheFiles, float64(fc.Files))
	gauge(ch, descCacheMaps, float64(fc.Maps))
	gauge(ch, descCacheMaxFiles, float64(fc.MaxFiles))
	gauge(ch, descCacheMaxMaps, float64(fc.MaxMaps))
	counter(ch, descCacheEvictions, float64(fc.Evictions))
}

// groups exports each group's members and lag: the high watermark (what
// a consumer can read) minus the committed offset, 0 when the group is
// ahead of it. Partitions that are gone or offline are left out.
func (c collector) groups(ch chan<- prometheus.Metric) {
	if c.s.groups == nil {
		return
	}
	groups := c.s.groups.Stats()
	total := 0
	for _, t := range c.s.meta.Topics() {
		total += int(t.NumPartitions())
	}
	perPartition := c.s.partitionSeries(total)
	for _, g := range groups {
		gauge(ch, descGroupMembers, float64(g.Members), g.Name)
		for i := 0; i < len(g.Offsets); {
			topic := g.Offsets[i].Topic
			t := c.s.meta.Topic(topic)
			var lagSum, lagMax int64
			found := false
			for ; i < len(g.Offsets) && g.Offsets[i].Topic == topic; i++ {
				o := g.Offsets[i]
				p, err := t.Partition(o.Partition)
				if err != nil {
					continue
				}
				found = true
				lag := max(0, p.HighWatermark()-o.Offset)
				lagSum += lag
				lagMax = max(lagMax, lag)
				if perPartition {
					id := strconv.Itoa(int(o.Partition))
					gauge(ch, descGroupLag, float64(lag), g.Name, topic, id)
					gauge(ch, descGroupCommitted, float64(o.Offset), g.Name, topic, id)
				}
			}
			if found {
				gauge(ch, descGroupLagSum, float64(lagSum), g.Name, topic)
				gauge(ch, descGroupLagMax, float64(lagMax), g.Name, topic)
			}
		}
	}
}
