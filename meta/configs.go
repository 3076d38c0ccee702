package meta

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// ConfigType is a config's type, numbered as DescribeConfigs v3+
// numbers them (BOOLEAN 1 ... PASSWORD 9).
type ConfigType int8

// Config types.
const (
	typeBoolean  ConfigType = 1
	typeString   ConfigType = 2
	typeInt      ConfigType = 3
	typeShort    ConfigType = 4
	typeLong     ConfigType = 5
	typeDouble   ConfigType = 6
	typeList     ConfigType = 7
	typeClass    ConfigType = 8
	typePassword ConfigType = 9
)

// topicConfig describes one topic-level config: its Kafka name, the broker
// config that sets its default (synonym; "" for none), its default and type. honored
// says whether Ferry acts on it; the others are stored and described so
// that tools work, but change nothing.
type topicConfig struct {
	name     string
	broker   string
	def      string
	typ      ConfigType
	honored  bool
	validate func(string) error
	doc      string
}

var topicConfigs = []topicConfig{
	{"cleanup.policy", "log.cleanup.policy", "delete", typeList, true, oneOfList("delete", "compact"), "delete (retention deletes old segments), compact (the log cleaner keeps the newest record of each key) or both"},
	{"compression.type", "compression.type", "producer", typeString, true, oneOf("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"), "producer: batches stored as sent; a codec (or uncompressed): batches sent otherwise are recompressed with it"},
	{"delete.retention.ms", "log.cleaner.delete.retention.ms", "86400000", typeLong, true, atLeast(0), "how long the cleaner keeps a tombstone after it first cleaned it"},
	{"delivery.delay.ms", "", "0", typeLong, true, atLeast(0), "share groups deliver each record no earlier than this long after its batch's timestamp (Ferry's; plain consumers and consumer groups see it at once)"},
	{"errors.deadletterqueue.group.enable", "", "false", typeBoolean, true, isBool, "share groups may write dead letters to this topic (KIP-1191)"},
	{"file.delete.delay.ms", "log.segment.delete.delay.ms", "60000", typeLong, false, atLeast(0), ""},
	{"flush.max.delay.ms", "log.flush.max.delay.ms", "10", typeLong, true, atLeast(0), "fdatasync a batch no producer waits for (acks 0 or 1) at most this long after it is appended; consumers see only fdatasynced records"},
	{"flush.messages", "log.flush.interval.messages", "9223372036854775807", typeLong, true, atLeast(1), "sync after this many records"},
	{"flush.ms", "log.flush.interval.ms", "9223372036854775807", typeLong, true, atLeast(0), "sync this long after the first unsynced append"},
	{"index.interval.bytes", "log.index.interval.bytes", "4096", typeInt, true, atLeast(0), "bytes of log between offset index entries"},
	{"max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", "9223372036854775807", typeLong, true, atLeast(1), "a record stays uncompacted at most this long (the active segment rolls at this age)"},
	{"max.message.bytes", "message.max.bytes", "1048588", typeInt, true, atLeast(0), "largest record batch accepted"},
	{"message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", "9223372036854775807", typeLong, false, atLeast(0), ""},
	{"message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", "9223372036854775807", typeLong, false, atLeast(0), ""},
	{"message.timestamp.type", "log.message.timestamp.type", "CreateTime", typeString, true, oneOf("CreateTime", "LogAppendTime"), "CreateTime or LogAppendTime"},
	{"min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", "0.5", typeDouble, true, between(0, 1), "clean a compacted log once this share of its bytes is not yet cleaned"},
	{"min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", "0", typeLong, true, atLeast(0), "a record stays uncompacted at least this long"},
	{"min.insync.replicas", "min.insync.replicas", "1", typeInt, true, atLeast(1), "in a cluster: an acks=all produce is refused (NOT_ENOUGH_REPLICAS) while fewer replicas are in sync"},
	{"preallocate", "log.preallocate", "false", typeBoolean, false, isBool, ""},
	{"retention.bytes", "log.retention.bytes", "-1", typeLong, true, nil, "delete old segments while the partition is larger; -1 for no limit"},
	{"retention.ms", "log.retention.ms", "604800000", typeLong, true, atLeast(-1), "delete segments older than this; -1 keeps forever"},
	{"segment.bytes", "log.segment.bytes", "1073741824", typeInt, true, atLeast(14), "roll a segment at this size"},
	{"segment.index.bytes", "log.index.size.max.bytes", "10485760", typeInt, true, atLeast(4), "size of each preallocated index"},
	{"segment.jitter.ms", "log.roll.jitter.ms", "0", typeLong, false, atLeast(0), ""},
	{"segment.ms", "log.roll.ms", "604800000", typeLong, true, atLeast(1), "roll a segment this long after it was started"},
	{"unclean.leader.election.enable", "unclean.leader.election.enable", "false", typeBoolean, true, isBool, "in a cluster: a replica out of sync may become leader when no in-sync one is left, losing records"},
}

var topicConfigByName = func() map[string]*topicConfig {
	m := make(map[string]*topicConfig, len(topicConfigs))
	for i := range topicConfigs {
		m[topicConfigs[i].name] = &topicConfigs[i]
	}
	return m
}()

// brokerConfig describes one broker-level config.
type brokerConfig struct {
	name     string
	def      string
	typ      ConfigType
	dynamic  bool // may be changed by AlterConfigs on the broker
	validate func(string) error
}

// brokerConfigs are the broker configs Ferry knows besides the topic
// defaults (the synonyms in topicConfigs).
var brokerConfigs = []brokerConfig{
	{"auto.create.topics.enable", "true", typeBoolean, true, isBool},
	{"broker.id", "0", typeInt, false, nil},
	{"node.id", "0", typeInt, false, nil},
	{"connections.max.idle.ms", "600000", typeLong, false, atLeast(1)},
	{"default.replication.factor", "1", typeInt, false, atLeast(1)},
	{"delete.topic.enable", "true", typeBoolean, true, isBool},
	{"group.initial.rebalance.delay.ms", "3000", typeInt, false, atLeast(0)},
	{"group.max.session.timeout.ms", "1800000", typeInt, false, atLeast(1)},
	{"group.min.session.timeout.ms", "6000", typeInt, false, atLeast(1)},
	{"group.consumer.session.timeout.ms", "45000", typeInt, false, atLeast(1)},
	{"group.consumer.heartbeat.interval.ms", "5000", typeInt, false, atLeast(1)},
	{"log.cleaner.enable", "true", typeBoolean, false, isBool},
	{"log.cleaner.threads", "1", typeInt, false, atLeast(0)},
	{"log.cleaner.dedupe.buffer.size", "134217728", typeLong, false, atLeast(0)},
	{"log.cleaner.io.buffer.load.factor", "0.9", typeDouble, false, between(0.01, 1)},
	{"log.cleaner.io.max.bytes.per.second", "1.7976931348623157E308", typeDouble, false, between(0, math.MaxFloat64)},
	{"log.cleaner.backoff.ms", "15000", typeLong, false, atLeast(0)},
	{"log.retention.check.interval.ms", "300000", typeLong, false, atLeast(1)},
	{"log.retention.hours", "168", typeInt, false, nil},
	{"log.retention.minutes", "", typeInt, false, nil},
	{"log.roll.hours", "168", typeInt, false, atLeast(1)},
	{"log.roll.jitter.hours", "0", typeInt, false, atLeast(0)},
	{"log.dirs", "", typeString, false, nil},
	{"fetch.max.bytes", "57671680", typeInt, false, atLeast(1024)},
	{"max.connections", "2147483647", typeInt, true, atLeast(0)},
	{"max.connections.per.ip", "1000", typeInt, true, atLeast(0)},
	{"max.connections.per.ip.overrides", "", typeString, false, validConnOverrides},
	{"max.incremental.fetch.session.cache.slots", "1000", typeInt, false, atLeast(0)},
	{"metrics.partition.series.max.partitions", "1000", typeInt, true, atLeast(-1)},
	{"num.partitions", "1", typeInt, true, atLeast(1)},
	{"offsets.retention.check.interval.ms", "600000", typeLong, false, atLeast(1)},
	{"offsets.retention.minutes", "10080", typeInt, false, atLeast(1)},
	{"offsets.topic.num.partitions", "50", typeInt, false, atLeast(1)},
	{"offsets.topic.replication.factor", "3", typeShort, false, atLeast(1)},
	{"producer.id.expiration.ms", "86400000", typeInt, true, atLeast(1)},
	{"queued.max.request.bytes", "268435456", typeLong, false, isInt},
	{"offsets.topic.segment.bytes", "104857600", typeInt, false, atLeast(14)},
	{"slow.request.threshold.ms", "1000", typeLong, true, atLeast(-1)},
	{"socket.request.max.bytes", "104857600", typeInt, false, atLeast(1)},
	{"transaction.state.log.replication.factor", "3", typeShort, false, atLeast(1)},
	{"transaction.state.log.min.isr", "2", typeInt, false, atLeast(1)},
	{"transaction.state.log.num.partitions", "50", typeInt, false, atLeast(1)},
	{"transaction.state.log.segment.bytes", "104857600", typeInt, false, atLeast(14)},
	{"transaction.max.timeout.ms", "900000", typeInt, false, atLeast(1)},
	{"transactional.id.expiration.ms", "604800000", typeInt, false, atLeast(1)},
	{"transaction.abort.timed.out.transaction.cleanup.interval.ms", "10000", typeInt, false, atLeast(1)},
	{"transaction.remove.expired.transaction.cleanup.interval.ms", "3600000", typeInt, false, atLeast(1)},
	// Share groups (KIP-932, KIP-1191); the last three are Ferry's.
	{"group.share.session.timeout.ms", "45000", typeInt, false, atLeast(1)},
	{"group.share.min.session.timeout.ms", "45000", typeInt, false, atLeast(1)},
	{"group.share.max.session.timeout.ms", "60000", typeInt, false, atLeast(1)},
	{"group.share.heartbeat.interval.ms", "5000", typeInt, false, atLeast(1)},
	{"group.share.min.heartbeat.interval.ms", "5000", typeInt, false, atLeast(1)},
	{"group.share.max.heartbeat.interval.ms", "15000", typeInt, false, atLeast(1)},
	{"group.share.record.lock.duration.ms", "30000", typeInt, false, atLeast(1)},
	{"group.share.min.record.lock.duration.ms", "15000", typeInt, false, atLeast(1)},
	{"group.share.max.record.lock.duration.ms", "60000", typeInt, false, atLeast(1)},
	{"group.share.delivery.count.limit", "5", typeInt, false, atLeast(1)},
	{"group.share.min.delivery.count.limit", "2", typeInt, false, atLeast(1)},
	{"group.share.max.delivery.count.limit", "10", typeInt, false, atLeast(1)},
	{"group.share.partition.max.record.locks", "2000", typeInt, false, atLeast(1)},
	{"group.share.max.size", "200", typeShort, false, atLeast(1)},
	{"group.share.max.share.sessions", "2000", typeInt, false, atLeast(1)},
	{"share.coordinator.state.topic.num.partitions", "50", typeInt, false, atLeast(1)},
	{"share.coordinator.state.topic.replication.factor", "3", typeShort, false, atLeast(1)},
	{"share.coordinator.state.topic.min.isr", "2", typeShort, false, atLeast(1)},
	{"share.coordinator.state.topic.segment.bytes", "104857600", typeInt, false, atLeast(14)},
	{"errors.deadletterqueue.topic.name.prefix", "dlq.", typeString, false, nil},
	{"errors.deadletterqueue.auto.create.topics.enable", "false", typeBoolean, true, isBool},
	{"group.share.partition.max.delayed.records", "100000", typeInt, false, atLeast(1)},
	{"group.share.delivery.backoff.ms", "0", typeInt, false, atLeast(0)},
	{"group.share.delivery.backoff.max.ms", "60000", typeInt, false, atLeast(1)},
	// A cluster (see package raftlog and package cluster).
	{"controller.quorum.voters", "", typeList, false, nil},
	{"process.roles", "", typeList, false, oneOfList("broker", "controller")},
	{"cluster.id", "", typeString, false, nil},
	{"controller.quorum.election.timeout.ms", "1000", typeInt, false, atLeast(10)},
	{"broker.session.timeout.ms", "1000", typeInt, false, atLeast(10)},
	{"replica.lag.time.max.ms", "30000", typeLong, false, atLeast(1)},
	{"replica.fetch.wait.max.ms", "500", typeInt, false, atLeast(0)},
	{"replica.fetch.max.bytes", "1048576", typeInt, false, atLeast(0)},
	{"auto.leader.rebalance.enable", "true", typeBoolean, false, isBool},
	{"broker.rack", "", typeString, false, nil},
	{"replica.selector.class", "", typeString, false, validReplicaSelector},
	{"leader.imbalance.check.interval.seconds", "300", typeLong, false, atLeast(1)},
	{"leader.imbalance.per.broker.percentage", "10", typeInt, false, atLeast(0)},

	// Listeners, TLS, SASL, ACLs and quotas (package server: listener.go,
	// tls.go, sasl.go, security.go, quota.go). Settings of one listener
	// may also be given as listener.name.<name>.<config>.
	{"listeners", "", typeString, false, nil},
	{"advertised.listeners", "", typeString, false, nil},
	{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", typeString, false, nil},
	{"ssl.keystore.type", "PEM", typeString, false, oneOf("PEM", "pem")},
	{"ssl.keystore.location", "", typeString, false, nil},
	{"ssl.keystore.key", "", typePassword, false, nil},
	{"ssl.keystore.certificate.chain", "", typePassword, false, nil},
	{"ssl.keystore.password", "", typePassword, false, nil},
	{"ssl.key.password", "", typePassword, false, nil},
	{"ssl.truststore.type", "PEM", typeString, false, oneOf("PEM", "pem")},
	{"ssl.truststore.location", "", typeString, false, nil},
	{"ssl.truststore.certificates", "", typePassword, false, nil},
	{"ssl.truststore.password", "", typePassword, false, nil},
	{"ssl.client.auth", "none", typeString, false, oneOf("none", "requested", "required")},
	{"ssl.enabled.protocols", "TLSv1.2,TLSv1.3", typeList, false, oneOfList("TLSv1.2", "TLSv1.3")},
	{"sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", typeList, false, oneOfList("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")},
	{"sasl.jaas.config", "", typePassword, false, nil},
	{"sasl.oauthbearer.jwks.endpoint.url", "", typeString, false, nil},
	{"sasl.oauthbearer.expected.audience", "", typeList, false, nil},
	{"sasl.oauthbearer.expected.issuer", "", typeString, false, nil},
	{"sasl.oauthbearer.sub.claim.name", "sub", typeString, false, nil},
	{"sasl.oauthbearer.clock.skew.seconds", "30", typeInt, false, atLeast(0)},
	{"connections.max.reauth.ms", "0", typeLong, false, atLeast(0)},
	{"connection.failed.authentication.delay.ms", "100", typeInt, false, atLeast(0)},
	{"authorizer.class.name", "", typeString, false, nil},
	{"super.users", "", typeString, false, nil},
	{"allow.everyone.if.no.acl.found", "false", typeBoolean, false, isBool},
	{"quota.window.num", "11", typeInt, false, atLeast(1)},
	{"quota.window.size.seconds", "1", typeInt, false, atLeast(1)},
}

var brokerConfigByName = func() map[string]*brokerConfig {
	m := make(map[string]*brokerConfig, len(brokerConfigs))
	for i := range brokerConfigs {
		m[brokerConfigs[i].name] = &brokerConfigs[i]
	}
	for i := range topicConfigs {
		tc := &topicConfigs[i]
		if tc.broker == "" {
			continue // no broker-wide default
		}
		if _, ok := m[tc.broker]; !ok {
			m[tc.broker] = &brokerConfig{name: tc.broker, def: tc.def, typ: tc.typ, dynamic: true, validate: tc.validate}
		}
	}
	return m
}()

func isBool(v string) error {
	if v != "true" && v != "false" {
		return fmt.Errorf("must be true or false")
	}
	return nil
}

func isInt(v string) error {
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	return nil
}

// validConnOverrides checks the form of max.connections.per.ip.overrides:
// comma-separated host:count items (host names are resolved when the
// broker starts).
func validConnOverrides(v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := strings.LastIndexByte(item, ':')
		if i <= 0 {
			return fmt.Errorf("max.connections.per.ip.overrides: %q is not host:count", item)
		}
		if n, err := strconv.ParseInt(item[i+1:], 10, 32); err != nil || n < 0 {
			return fmt.Errorf("max.connections.per.ip.overrides: %q: count must be an integer of at least 0", item)
		}
	}
	return nil
}

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		if n < min {
			return fmt.Errorf("%d is below the minimum %d", n, min)
		}
		return nil
	}
}

func between(lo, hi float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		if f < lo || f > hi {
			return fmt.Errorf("%v is not between %v and %v", f, lo, hi)
		}
		return nil
	}
}

// Replica selectors of replica.selector.class (KIP-392): Kafka's two.
const (
	// LeaderSelector: consumers fetch from the leader (as unset).
	LeaderSelector = "org.apache.kafka.common.replica.LeaderSelector"
	// RackAwareSelector: a consumer naming its rack is sent to an
	// in-sync replica in that rack.
	RackAwareSelector = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
)

// validReplicaSelector accepts Kafka's selectors only: a class name is
// code Ferry cannot load.
func validReplicaSelector(v string) error {
	if v == LeaderSelector || v == RackAwareSelector {
		return nil
	}
	return fmt.Errorf("%q is not a supported replica selector: use %s (or leave it unset to fetch from the leader)", v, RackAwareSelector)
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(vals, ", "))
	}
}

func oneOfList(vals ...string) func(string) error {
	one := oneOf(vals...)
	return func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if err := one(strings.TrimSpace(p)); err != nil {
				return err
			}
		}
		return nil
	}
}

// validateTopicConfig checks one topic config by name and value.
func validateTopicConfig(name string, value *string) error {
	tc, ok := topicConfigByName[name]
	if !ok {
		return fmt.Errorf("unknown topic config %q", name)
	}
	if value == nil || tc.validate == nil {
		return nil
	}
	if err := tc.validate(*value); err != nil {
		return fmt.Errorf("invalid value for %s: %w", name, err)
	}
	if tc.typ == typeInt {
		if n, _ := strconv.ParseInt(*value, 10, 64); n > math.MaxInt32 {
			return fmt.Errorf("invalid value for %s: above 2147483647", name)
		}
	}
	return nil
}

// validateBrokerConfig checks one broker config.
func validateBrokerConfig(name, value string) error {
	bc, ok := brokerConfigByName[name]
	if !ok {
		return nil // unknown broker configs are accepted and ignored, as Kafka's are
	}
	if bc.validate == nil || value == "" {
		return nil
	}
	if err := bc.validate(value); err != nil {
		return fmt.Errorf("invalid value for %s: %w", name, err)
	}
	return nil
}

// ConfigSource says where a config value comes from, numbered as
// DescribeConfigs numbers its sources.
type ConfigSource int8

// Config sources.
const (
	SourceTopic         ConfigSource = 1 // DYNAMIC_TOPIC_CONFIG
	SourceDynamicBroker ConfigSource = 2 // DYNAMIC_BROKER_CONFIG
	SourceStaticBroker  ConfigSource = 4 // STATIC_BROKER_CONFIG
	SourceDefault       ConfigSource = 5 // DEFAULT_CONFIG
)

// Settings holds broker configs: static ones from the command line and
// dynamic ones from AlterConfigs (persisted in the metadata log). A
// Settings is never changed once made: a change replaces it, so a caller
// may keep one for the length of a request.
type Settings struct {
	static  map[string]string // from the command line or properties file
	dynamic map[string]string // set by AlterConfigs, in the metadata log
}

// Get returns a broker config's value and source.
func (b *Settings) Get(name string) (string, ConfigSource) {
	if v, ok := b.dynamic[name]; ok {
		return v, SourceDynamicBroker
	}
	if v, ok := b.static[name]; ok {
		return v, SourceStaticBroker
	}
	// Kafka's alternative spellings of the retention and roll times.
	switch name {
	case "log.retention.ms":
		if v, ok := b.static["log.retention.minutes"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*60_000, 10), SourceStaticBroker
			}
		}
		if v, ok := b.static["log.retention.hours"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*3_600_000, 10), SourceStaticBroker
			}
		}
	case "log.roll.ms":
		if v, ok := b.static["log.roll.hours"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*3_600_000, 10), SourceStaticBroker
			}
		}
	}
	if bc, ok := brokerConfigByName[name]; ok {
		return bc.def, SourceDefault
	}
	return "", SourceDefault
}

// Int64 returns a broker config's value as an integer (0 if it is not
// one).
func (b *Settings) Int64(name string) int64 {
	v, _ := b.Get(name)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// Float64 returns a broker config's value as a number (0 if it is not
// one).
func (b *Settings) Float64(name string) float64 {
	v, _ := b.Get(name)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// Bool reports whether a broker config is "true".
func (b *Settings) Bool(name string) bool {
	v, _ := b.Get(name)
	return v == "true"
}

// TopicValue resolves a topic config: the topic's own value, else the
// broker's synonym, else the default.
func (b *Settings) TopicValue(overrides map[string]string, name string) (string, ConfigSource) {
	if v, ok := overrides[name]; ok {
		return v, SourceTopic
	}
	tc := topicConfigByName[name]
	if tc == nil {
		return "", SourceDefault
	}
	if tc.broker == "" {
		return tc.def, SourceDefault
	}
	return b.Get(tc.broker)
}

// storedCodecs maps compression.type to the codec batches are stored with
// (other than "producer").
var storedCodecs = map[string]int{
	"uncompressed": record.CodecNone,
	"gzip":         record.CodecGzip,
	"snappy":       record.CodecSnappy,
	"lz4":          record.CodecLZ4,
	"zstd":         record.CodecZstd,
}

// partitionConfig turns a topic's resolved configs into partition settings.
func (b *Settings) partitionConfig(overrides map[string]string) partition.Config {
	num := func(name string) int64 {
		v, _ := b.TopicValue(overrides, name)
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	str := func(name string) string {
		v, _ := b.TopicValue(overrides, name)
		return v
	}
	// In the log's Config zero means "default"; Kafka's 0 means "none
	// kept", which 1 (ms or byte) gives.
	retentionMs := num("retention.ms")
	if retentionMs == 0 {
		retentionMs = 1
	}
	ratio, _ := strconv.ParseFloat(str("min.cleanable.dirty.ratio"), 64)
	if ratio <= 0 {
		ratio = 1e-9 // Kafka's 0: clean whatever is dirty
	}
	policy := str("cleanup.policy")
	cfg := partition.Config{
		ProducerIDExpirationMs: b.Int64("producer.id.expiration.ms"),
		MinInsyncReplicas:      int(num("min.insync.replicas")),
		MaxMessageBytes:        int(num("max.message.bytes")),
		LogAppendTime:          str("message.timestamp.type") == "LogAppendTime",
		Recompress:             str("compression.type") != "producer",
		Codec:                  storedCodecs[str("compression.type")],
		Log: log.Config{
			SegmentBytes:           num("segment.bytes"),
			SegmentMs:              num("segment.ms"),
			SegmentIndexBytes:      int(num("segment.index.bytes")),
			IndexIntervalBytes:     int(num("index.interval.bytes")),
			RetentionMs:            retentionMs,
			RetentionBytes:         num("retention.bytes"),
			NoDelete:               !strings.Contains(policy, "delete"),
			Compact:                strings.Contains(policy, "compact"),
			MinCleanableDirtyRatio: ratio,
			MinCompactionLagMs:     num("min.compaction.lag.ms"),
			MaxCompactionLagMs:     num("max.compaction.lag.ms"),
			DeleteRetentionMs:      max(num("delete.retention.ms"), 1), // 0: at the next pass
			FlushMessages:          num("flush.messages"),
			FlushMs:                num("flush.ms"),
			FlushMaxDelayMs:        max(num("flush.max.delay.ms"), 1), // 0: as soon as possible
		},
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 1
	}
	if cfg.Log.RetentionBytes == 0 {
		cfg.Log.RetentionBytes = 1
	}
	if cfg.Log.FlushMs == 0 {
		cfg.Log.FlushMs = 1 // flush.ms=0: as soon as possible, not never
	}
	return cfg
}

// ConfigEntry describes one config for DescribeConfigs and CreateTopics
// answers.
type ConfigEntry struct {
	Name string
	// Value is nil for a broker config with neither a value nor a
	// default.
	Value     *string
	Source    ConfigSource
	IsDefault bool
	// ReadOnly marks a broker config that cannot change while the
	// broker runs.
	ReadOnly bool
	// Sensitive marks a password config: its value is never described.
	Sensitive bool
	Type      ConfigType
	// Doc is the config's documentation, when asked for and known.
	Doc string
	// Synonyms lists where the value could come from, in the order of
	// precedence, when asked for.
	Synonyms []ConfigSynonym
}

// ConfigSynonym is one source of a config's value.
type ConfigSynonym struct {
	Name   string
	Value  string
	Source ConfigSource
}

// DescribeOptions says what DescribeTopicConfigs and
// DescribeBrokerConfigs include.
type DescribeOptions struct {
	// Keys limits the answer to these configs; nil means all.
	Keys []string
	// Synonyms and Docs ask for the synonyms and documentation of each.
	Synonyms, Docs bool
}

// DescribeTopicConfigs lists every topic config with its value for a topic
// whose own values are overrides (Topic.Configs), its source and
// synonyms.
func (b *Settings) DescribeTopicConfigs(overrides map[string]string, o DescribeOptions) []ConfigEntry {
	var out []ConfigEntry
	want := keySet(o.Keys)
	for i := range topicConfigs {
		tc := &topicConfigs[i]
		if want != nil && !want[tc.name] {
			continue
		}
		v, src := b.TopicValue(overrides, tc.name)
		c := ConfigEntry{Name: tc.name, Value: &v, Source: src, IsDefault: src == SourceDefault, Type: tc.typ}
		if o.Docs {
			c.Doc = tc.doc
		}
		if o.Synonyms {
			if ov, ok := overrides[tc.name]; ok {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{tc.name, ov, SourceTopic})
			}
			if tc.broker == "" {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{tc.name, tc.def, SourceDefault})
				out = append(out, c)
				continue
			}
			if dv, ok := b.dynamic[tc.broker]; ok {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{tc.broker, dv, SourceDynamicBroker})
			}
			if sv, ok := b.static[tc.broker]; ok {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{tc.broker, sv, SourceStaticBroker})
			}
			c.Synonyms = append(c.Synonyms, ConfigSynonym{tc.broker, tc.def, SourceDefault})
		}
		out = append(out, c)
	}
	return out
}

// DescribeBrokerConfigs lists every broker config Ferry knows, by name.
func (b *Settings) DescribeBrokerConfigs(o DescribeOptions) []ConfigEntry {
	want := keySet(o.Keys)
	names := make([]string, 0, len(brokerConfigByName))
	for n := range brokerConfigByName {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []ConfigEntry
	for _, name := range names {
		if want != nil && !want[name] {
			continue
		}
		bc := brokerConfigByName[name]
		v, src := b.Get(name)
		c := ConfigEntry{Name: name, Value: &v, Source: src, IsDefault: src == SourceDefault, ReadOnly: !bc.dynamic, Type: bc.typ}
		if v == "" && bc.def == "" && src == SourceDefault {
			c.Value = nil
		}
		if bc.typ == typePassword {
			c.Value, c.Sensitive = nil, true
			out = append(out, c)
			continue
		}
		if o.Synonyms {
			if dv, ok := b.dynamic[name]; ok {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{name, dv, SourceDynamicBroker})
			}
			if sv, ok := b.static[name]; ok {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{name, sv, SourceStaticBroker})
			}
			if bc.def != "" {
				c.Synonyms = append(c.Synonyms, ConfigSynonym{name, bc.def, SourceDefault})
			}
		}
		out = append(out, c)
	}
	return out
}

func keySet(keys []string) map[string]bool {
	if keys == nil {
		return nil
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
