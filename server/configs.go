package server

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// configType is the ConfigType of DescribeConfigs v3+.
type configType int8

const (
	typeBoolean  configType = 1
	typeString   configType = 2
	typeInt      configType = 3
	typeShort    configType = 4
	typeLong     configType = 5
	typeDouble   configType = 6
	typeList     configType = 7
	typeClass    configType = 8
	typePassword configType = 9
)

// topicConfig describes one topic-level config: its Kafka name, the broker
// config that sets its default (synonym), its default and type. honored
// says whether Ferry acts on it; the others are stored and described so
// that tools work, but change nothing.
type topicConfig struct {
	name     string
	broker   string
	def      string
	typ      configType
	honored  bool
	validate func(string) error
	doc      string
}

var topicConfigs = []topicConfig{
	{"cleanup.policy", "log.cleanup.policy", "delete", typeList, true, oneOfList("delete", "compact"), "delete or compact (compact: retention never deletes; compaction itself is not run)"},
	{"compression.type", "compression.type", "producer", typeString, true, oneOf("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"), "producer: batches stored as sent; a codec (or uncompressed): batches sent otherwise are recompressed with it"},
	{"delete.retention.ms", "log.cleaner.delete.retention.ms", "86400000", typeLong, false, atLeast(0), ""},
	{"file.delete.delay.ms", "log.segment.delete.delay.ms", "60000", typeLong, false, atLeast(0), ""},
	{"flush.max.delay.ms", "log.flush.max.delay.ms", "10", typeLong, true, atLeast(0), "fdatasync a batch no producer waits for (acks 0 or 1) at most this long after it is appended; consumers see only fdatasynced records"},
	{"flush.messages", "log.flush.interval.messages", "9223372036854775807", typeLong, true, atLeast(1), "sync after this many records"},
	{"flush.ms", "log.flush.interval.ms", "9223372036854775807", typeLong, true, atLeast(0), "sync this long after the first unsynced append"},
	{"index.interval.bytes", "log.index.interval.bytes", "4096", typeInt, true, atLeast(0), "bytes of log between offset index entries"},
	{"max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", "9223372036854775807", typeLong, false, atLeast(1), ""},
	{"max.message.bytes", "message.max.bytes", "1048588", typeInt, true, atLeast(0), "largest record batch accepted"},
	{"message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", "9223372036854775807", typeLong, false, atLeast(0), ""},
	{"message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", "9223372036854775807", typeLong, false, atLeast(0), ""},
	{"message.timestamp.type", "log.message.timestamp.type", "CreateTime", typeString, true, oneOf("CreateTime", "LogAppendTime"), "CreateTime or LogAppendTime"},
	{"min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", "0.5", typeDouble, false, nil, ""},
	{"min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", "0", typeLong, false, atLeast(0), ""},
	{"min.insync.replicas", "min.insync.replicas", "1", typeInt, false, atLeast(1), ""},
	{"preallocate", "log.preallocate", "false", typeBoolean, false, isBool, ""},
	{"retention.bytes", "log.retention.bytes", "-1", typeLong, true, nil, "delete old segments while the partition is larger; -1 for no limit"},
	{"retention.ms", "log.retention.ms", "604800000", typeLong, true, atLeast(-1), "delete segments older than this; -1 keeps forever"},
	{"segment.bytes", "log.segment.bytes", "1073741824", typeInt, true, atLeast(14), "roll a segment at this size"},
	{"segment.index.bytes", "log.index.size.max.bytes", "10485760", typeInt, true, atLeast(4), "size of each preallocated index"},
	{"segment.jitter.ms", "log.roll.jitter.ms", "0", typeLong, false, atLeast(0), ""},
	{"segment.ms", "log.roll.ms", "604800000", typeLong, true, atLeast(1), "roll a segment this long after it was started"},
	{"unclean.leader.election.enable", "unclean.leader.election.enable", "false", typeBoolean, false, isBool, ""},
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
	typ      configType
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
	{"log.retention.check.interval.ms", "300000", typeLong, false, atLeast(1)},
	{"log.retention.hours", "168", typeInt, false, nil},
	{"log.retention.minutes", "", typeInt, false, nil},
	{"log.roll.hours", "168", typeInt, false, atLeast(1)},
	{"log.roll.jitter.hours", "0", typeInt, false, atLeast(0)},
	{"log.dirs", "", typeString, false, nil},
	{"max.incremental.fetch.session.cache.slots", "1000", typeInt, false, atLeast(0)},
	{"num.partitions", "1", typeInt, true, atLeast(1)},
	{"offsets.retention.check.interval.ms", "600000", typeLong, false, atLeast(1)},
	{"offsets.retention.minutes", "10080", typeInt, false, atLeast(1)},
	{"offsets.topic.num.partitions", "50", typeInt, false, atLeast(1)},
	{"offsets.topic.replication.factor", "1", typeShort, false, atLeast(1)},
	{"producer.id.expiration.ms", "86400000", typeInt, true, atLeast(1)},
	{"offsets.topic.segment.bytes", "104857600", typeInt, false, atLeast(14)},
	{"socket.request.max.bytes", "104857600", typeInt, false, atLeast(1)},
	{"transaction.state.log.replication.factor", "1", typeShort, false, atLeast(1)},
}

var brokerConfigByName = func() map[string]*brokerConfig {
	m := make(map[string]*brokerConfig, len(brokerConfigs))
	for i := range brokerConfigs {
		m[brokerConfigs[i].name] = &brokerConfigs[i]
	}
	for i := range topicConfigs {
		tc := &topicConfigs[i]
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
		return fmt.Errorf("invalid value for %s: %v", name, err)
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
		return fmt.Errorf("invalid value for %s: %v", name, err)
	}
	return nil
}

// configSource is the DescribeConfigs source of a value.
type configSource int8

const (
	sourceTopic         configSource = 1 // DYNAMIC_TOPIC_CONFIG
	sourceDynamicBroker configSource = 2 // DYNAMIC_BROKER_CONFIG
	sourceStaticBroker  configSource = 4 // STATIC_BROKER_CONFIG
	sourceDefault       configSource = 5 // DEFAULT_CONFIG
)

// brokerSettings holds broker configs: static ones from the command line
// and dynamic ones from AlterConfigs (persisted in the metadata log).
type brokerSettings struct {
	static  map[string]string
	dynamic map[string]string
}

// get returns a broker config's value and source.
func (b *brokerSettings) get(name string) (string, configSource) {
	if v, ok := b.dynamic[name]; ok {
		return v, sourceDynamicBroker
	}
	if v, ok := b.static[name]; ok {
		return v, sourceStaticBroker
	}
	// Kafka's alternative spellings of the retention and roll times.
	switch name {
	case "log.retention.ms":
		if v, ok := b.static["log.retention.minutes"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*60_000, 10), sourceStaticBroker
			}
		}
		if v, ok := b.static["log.retention.hours"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*3_600_000, 10), sourceStaticBroker
			}
		}
	case "log.roll.ms":
		if v, ok := b.static["log.roll.hours"]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return strconv.FormatInt(n*3_600_000, 10), sourceStaticBroker
			}
		}
	}
	if bc, ok := brokerConfigByName[name]; ok {
		return bc.def, sourceDefault
	}
	return "", sourceDefault
}

func (b *brokerSettings) int64(name string) int64 {
	v, _ := b.get(name)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func (b *brokerSettings) bool(name string) bool {
	v, _ := b.get(name)
	return v == "true"
}

// topicValue resolves a topic config: the topic's own value, else the
// broker's synonym, else the default.
func (b *brokerSettings) topicValue(overrides map[string]string, name string) (string, configSource) {
	if v, ok := overrides[name]; ok {
		return v, sourceTopic
	}
	tc := topicConfigByName[name]
	if tc == nil {
		return "", sourceDefault
	}
	return b.get(tc.broker)
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
func (b *brokerSettings) partitionConfig(overrides map[string]string) partition.Config {
	num := func(name string) int64 {
		v, _ := b.topicValue(overrides, name)
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	str := func(name string) string {
		v, _ := b.topicValue(overrides, name)
		return v
	}
	// In the log's Config zero means "default"; Kafka's 0 means "none
	// kept", which 1 (ms or byte) gives.
	retentionMs := num("retention.ms")
	if retentionMs == 0 {
		retentionMs = 1
	}
	cfg := partition.Config{
		ProducerIDExpirationMs: b.int64("producer.id.expiration.ms"),
		MaxMessageBytes:        int(num("max.message.bytes")),
		LogAppendTime:          str("message.timestamp.type") == "LogAppendTime",
		Recompress:             str("compression.type") != "producer",
		Codec:                  storedCodecs[str("compression.type")],
		Log: log.Config{
			SegmentBytes:       num("segment.bytes"),
			SegmentMs:          num("segment.ms"),
			SegmentIndexBytes:  int(num("segment.index.bytes")),
			IndexIntervalBytes: int(num("index.interval.bytes")),
			RetentionMs:        retentionMs,
			RetentionBytes:     num("retention.bytes"),
			Compact:            !strings.Contains(str("cleanup.policy"), "delete"),
			FlushMessages:      num("flush.messages"),
			FlushMs:            num("flush.ms"),
			FlushMaxDelayMs:    max(num("flush.max.delay.ms"), 1), // 0: as soon as possible
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

// describeTopicConfigs lists every topic config with its value, source and
// synonyms, for DescribeConfigs.
func (b *brokerSettings) describeTopicConfigs(overrides map[string]string, keys []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	want := keySet(keys)
	for i := range topicConfigs {
		tc := &topicConfigs[i]
		if want != nil && !want[tc.name] {
			continue
		}
		v, src := b.topicValue(overrides, tc.name)
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = tc.name
		c.Value = kmsg.StringPtr(v)
		c.Source = kmsg.ConfigSource(src)
		c.IsDefault = src == sourceDefault
		c.ConfigType = kmsg.ConfigType(tc.typ)
		if docs && tc.doc != "" {
			c.Documentation = kmsg.StringPtr(tc.doc)
		}
		if synonyms {
			if ov, ok := overrides[tc.name]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(tc.name, ov, sourceTopic))
			}
			if dv, ok := b.dynamic[tc.broker]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(tc.broker, dv, sourceDynamicBroker))
			}
			if sv, ok := b.static[tc.broker]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(tc.broker, sv, sourceStaticBroker))
			}
			c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(tc.broker, tc.def, sourceDefault))
		}
		out = append(out, c)
	}
	return out
}

// describeBrokerConfigs lists every broker config Ferry knows.
func (b *brokerSettings) describeBrokerConfigs(keys []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	want := keySet(keys)
	names := make([]string, 0, len(brokerConfigByName))
	for n := range brokerConfigByName {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range names {
		if want != nil && !want[name] {
			continue
		}
		bc := brokerConfigByName[name]
		v, src := b.get(name)
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = name
		c.Value = kmsg.StringPtr(v)
		if v == "" && bc.def == "" && src == sourceDefault {
			c.Value = nil
		}
		c.Source = kmsg.ConfigSource(src)
		c.IsDefault = src == sourceDefault
		c.ReadOnly = !bc.dynamic
		c.ConfigType = kmsg.ConfigType(bc.typ)
		if synonyms {
			if dv, ok := b.dynamic[name]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(name, dv, sourceDynamicBroker))
			}
			if sv, ok := b.static[name]; ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(name, sv, sourceStaticBroker))
			}
			if bc.def != "" {
				c.ConfigSynonyms = append(c.ConfigSynonyms, synonym(name, bc.def, sourceDefault))
			}
		}
		out = append(out, c)
	}
	return out
}

func synonym(name, value string, src configSource) kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
	s.Name = name
	s.Value = kmsg.StringPtr(value)
	s.Source = kmsg.ConfigSource(src)
	return s
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
