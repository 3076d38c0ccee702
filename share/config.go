package share

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

var (
	// ErrConfig reports an invalid Config passed to New, or an invalid
	// group config value (ValidateGroupConfig).
	ErrConfig = errors.New("share: invalid config")
	// ErrCorrupt marks a __share_group_state record that cannot be
	// decoded. New skips such records with a warning rather than refusing
	// to start.
	ErrCorrupt = errors.New("share: corrupt __share_group_state record")
	// ErrUnknownPartition is what a Reader wraps when the topic partition
	// it is asked about does not exist (UNKNOWN_TOPIC_OR_PARTITION).
	ErrUnknownPartition = errors.New("share: unknown topic or partition")
	// ErrNotLeader is what a Reader wraps when this broker does not lead
	// the partition it is asked about (NOT_LEADER_OR_FOLLOWER): in a
	// cluster its share-partitions are served by its leader.
	ErrNotLeader = errors.New("share: not the leader of the partition")
	// ErrDeadLetterRejected is what a DLQWriter wraps when a dead letter
	// can never be written (the group's DLQ topic is not allowed, does not
	// exist and may not be created, ...). The record is then archived
	// without a dead letter and a warning is logged, as Kafka does;
	// any other error is retried.
	ErrDeadLetterRejected = errors.New("share: dead letter rejected")
)

// Record is one key/value record of __share_group_state. A nil Value is a
// tombstone.
type Record struct{ Key, Value []byte }

// Store is the durable home of share-group state: the partitions of the
// internal __share_group_state topic, numbered 0 to
// Config.StatePartitions-1. It has the shape of group.Store, and the
// server implements both over the same coordinator-state log. Its methods
// must be safe for concurrent use, including concurrent Appends to one
// partition.
type Store interface {
	// Append appends recs as one batch to partition p and returns only
	// after they are durable (fsynced). It returns the offset of the first
	// record. The coordinator does not modify recs after the call; the
	// store may keep them.
	Append(p int32, recs []Record) (int64, error)
	// Replay calls fn for every record of partition p from its log start,
	// in order. fn copies what it keeps: the store may reuse r's slices
	// after fn returns. An error from fn stops the replay and is returned.
	Replay(p int32, fn func(offset int64, r Record) error) error
	// Snapshot compacts partition p: it durably appends recs (the live
	// state) and then advances the partition's log start offset to the
	// first of them, so everything older may be deleted; with no recs the
	// log start moves to the log end. No Append to p runs while
	// Snapshot(p) does.
	Snapshot(p int32, recs []Record) error
}

// TopicPartition names one partition of a topic by topic ID (KIP-516), as
// ShareFetch and ShareAcknowledge do.
type TopicPartition struct {
	TopicID   [16]byte
	Partition int32
}

// TopicInfo describes one topic.
type TopicInfo struct {
	ID         [16]byte // topic ID (KIP-516)
	Partitions int32    // partition count
	// DeliveryDelay is the topic's delivery.delay.ms (a Ferry topic
	// config, default 0): a share group delivers a record no earlier than
	// its batch's max timestamp plus this delay. Plain consumers and
	// consumer groups are not affected.
	DeliveryDelay time.Duration
}

// Batch describes one record batch of a partition log, as Reader reports
// it. Only the batch header is needed; record data stays in the log.
type Batch struct {
	BaseOffset   int64 // offset of the first record
	LastOffset   int64 // offset of the last record (base + last offset delta)
	MaxTimestamp int64 // max timestamp of the batch, ms since the epoch
	ProducerID   int64 // -1 if none
	// Control marks a control batch (transaction markers): never
	// delivered to a share group.
	Control bool
	// Transactional marks a batch written in a transaction; with
	// share.isolation.level=read_committed its records are dropped when
	// AbortedTransactions covers them.
	Transactional bool
	// MayDelay reports that a record of the batch may carry the
	// HeaderDeliverAt header. The engine calls Reader.DeliveryTimes only
	// for such batches, so a reader that knows a batch has no such header
	// (no headers at all, say) leaves it false and the batch costs no
	// decoding. Setting it for every batch is correct, only slower.
	MayDelay bool
}

// PartitionOffsets are the offsets of a partition log that acquisition
// needs.
type PartitionOffsets struct {
	LogStart      int64 // first offset still in the log
	HighWatermark int64 // offsets below it may be delivered (read_uncommitted)
	LastStable    int64 // offsets below it may be delivered (read_committed): below the oldest open transaction, at most HighWatermark
	LeaderEpoch   int32 // the partition's leader epoch, -1 if unknown
}

// RecordTime is the delivery time of one record: the value of its
// HeaderDeliverAt header, in ms since the epoch.
type RecordTime struct {
	Offset    int64
	DeliverAt int64
}

// AbortedRange is one aborted transaction of a partition: records of
// ProducerID from FirstOffset to LastOffset were aborted.
type AbortedRange struct {
	ProducerID  int64
	FirstOffset int64
	LastOffset  int64
}

// Reader gives the engine what it needs of the partition logs; the broker
// implements it over its partitions. Methods must be safe for concurrent
// use. They are called with the lock of one share-partition held, so they
// must not call back into the Coordinator.
type Reader interface {
	// Offsets returns the current offsets of tp, or an error wrapping
	// ErrUnknownPartition.
	Offsets(tp TopicPartition) (PartitionOffsets, error)
	// OffsetForTime returns the first offset of tp whose timestamp is at
	// or after ms (ListOffsets by timestamp), or the high watermark if
	// there is none. Used by share.auto.offset.reset=by_duration.
	OffsetForTime(tp TopicPartition, ms int64) (int64, error)
	// ReadBatches appends to dst the headers of consecutive batches of tp
	// in offset order, starting with the batch that holds offset from (or
	// the first batch after it), and returns the extended slice. It stops
	// before a batch that starts at or after limit (the high watermark or
	// last stable offset the engine read with Offsets), and after the
	// batch that brings the offsets covered from from on to maxRecords or
	// more. A from below the log start reads from the log start. The
	// engine reuses dst; the reader must not keep it.
	ReadBatches(dst []Batch, tp TopicPartition, from, limit int64, maxRecords int) ([]Batch, error)
	// DeliveryTimes appends to dst, in offset order, the delivery time of
	// every record of b that carries the HeaderDeliverAt header with a
	// valid value (decimal ms since the epoch), and returns the extended
	// slice. Records without it are left out. Called only for batches
	// with MayDelay set; it may decompress the batch.
	DeliveryTimes(dst []RecordTime, tp TopicPartition, b *Batch) ([]RecordTime, error)
	// AbortedTransactions appends to dst the aborted transactions of tp
	// that overlap [from, to) and returns the extended slice. Called only
	// for groups with share.isolation.level=read_committed.
	AbortedTransactions(dst []AbortedRange, tp TopicPartition, from, to int64) ([]AbortedRange, error)
}

// Reason says why a record was dead-lettered.
type Reason int8

const (
	// ReasonRejected: a member acknowledged the record with REJECT.
	ReasonRejected Reason = 1
	// ReasonDeliveryCountExceeded: the record reached the group's
	// share.delivery.count.limit.
	ReasonDeliveryCountExceeded Reason = 2
)

// Message is the text of the HeaderDLQMessage header for r, as Kafka
// writes it.
func (r Reason) Message() string {
	switch r {
	case ReasonRejected:
		return "Offset rejected by client."
	case ReasonDeliveryCountExceeded:
		return "Offset delivery count exceeded the threshold."
	}
	return "Unknown reason."
}

// Headers of a dead-letter record (KIP-1191), with Kafka's names. Values
// are UTF-8 text; numbers are decimal.
const (
	HeaderDLQTopic         = "__dlq.errors.topic"          // source topic name
	HeaderDLQPartition     = "__dlq.errors.partition"      // source partition
	HeaderDLQOffset        = "__dlq.errors.offset"         // source offset
	HeaderDLQGroup         = "__dlq.errors.group"          // share group that gave up on it
	HeaderDLQDeliveryCount = "__dlq.errors.delivery.count" // deliveries so far
	HeaderDLQMessage       = "__dlq.errors.message"        // Reason.Message
)

// HeaderDeliverAt is the record header that delays a record for share
// groups: its value is the time the record becomes deliverable, as decimal
// milliseconds since the Unix epoch ("1767225600000"). A share group does
// not deliver the record before then; plain consumers see it at once.
const HeaderDeliverAt = "ferry-deliver-at"

// DeadLetter is a run of consecutive records of one source partition to
// write to a group's dead-letter topic.
type DeadLetter struct {
	Group       string         // the share group
	Topic       string         // errors.deadletterqueue.topic.name of the group
	CopyRecord  bool           // errors.deadletterqueue.copy.record.enable: copy key, value and headers
	Source      TopicPartition // where the records are
	SourceTopic string         // the source topic's name ("" if unknown: use the ID)
	FirstOffset int64          // first source offset
	LastOffset  int64          // last source offset, inclusive
	// DeliveryCount is the records' delivery count when they were given
	// up on.
	DeliveryCount int16
	Reason        Reason
}

// DLQWriter writes dead letters to their topics; the broker implements it.
// Methods are called from one background goroutine of the coordinator,
// never with its locks held, and must be safe to call while the
// coordinator serves requests.
type DLQWriter interface {
	// WriteDeadLetters durably writes one record per source offset of dl
	// (offsets that no longer exist in the source log, such as gaps left
	// by compaction, get a record with the headers only), in offset order,
	// to dl.Topic, with the Header* headers and, if dl.CopyRecord, the
	// source record's key, value and headers. It returns once they are
	// durable, or an error; an error wrapping ErrDeadLetterRejected means
	// retrying cannot help.
	WriteDeadLetters(dl *DeadLetter) error
	// DeadLettersWritten returns the first offset of dl whose dead letter
	// is not yet in dl.Topic: dl.FirstOffset if none is, dl.LastOffset+1
	// if all are. The engine asks before writing again what an earlier
	// write may have written (after an error, or after a restart), so a
	// record is never dead-lettered twice.
	DeadLettersWritten(dl *DeadLetter) (int64, error)
}

// Timer is a timer made by a Clock.
type Timer interface {
	// Stop prevents the timer from firing; see time.Timer.Stop.
	Stop() bool
}

// Clock is the engine's source of time. The default is the time package
// (under testing/synctest, fake time).
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

// Config configures a Coordinator. Store, Reader and Topics are required;
// every other field's zero value means the default given with it. Broker
// configs with a group-level override (share.record.lock.duration.ms, ...)
// give the default of that group config; GroupConfigs supplies overrides.
type Config struct {
	// Store holds __share_group_state. Required.
	Store Store
	// Reader reads the partition logs. Required.
	Reader Reader
	// Topics returns the current topics by name. It is called with
	// coordinator locks held and must not call the Coordinator; the
	// returned map is not modified. Required.
	Topics func() map[string]TopicInfo
	// DLQ writes dead letters. Nil means no group may have a dead-letter
	// topic: records are archived without one.
	DLQ DLQWriter
	// GroupConfigs returns the dynamic configs set on a group (Kafka's
	// GROUP config resource, IncrementalAlterConfigs), name → value, only
	// those set; values were checked with ValidateGroupConfig. Nil means
	// none. Called with coordinator locks held; the result is parsed and
	// cached until GroupConfigChanged.
	GroupConfigs func(group string) map[string]string
	// Available is called, without coordinator locks held, when records
	// of tp became deliverable to group other than by new data in the
	// log: released, their lock expired, their member left, or their delay
	// passed. The server wakes the ShareFetch requests waiting on tp. It
	// must not block. Nil means nobody is told.
	Available func(group string, tp TopicPartition)
	// MemberGone is called, without coordinator locks held, when a member
	// leaves its group or its session times out, after its records were
	// released. The server drops the member's share sessions. Nil means
	// nobody is told.
	MemberGone func(group, member string)
	// OtherGroup reports whether a group ID is in use by a consumer group
	// (classic or KIP-848), which a share group may not share
	// (ShareGroupHeartbeat answers GROUP_ID_NOT_FOUND). An error (the
	// group coordinator of a cluster could not be asked) answers
	// COORDINATOR_NOT_AVAILABLE, for the client to retry. Nil means
	// never. Called only when a share group is about to be created, with
	// no lock of the Coordinator held.
	OtherGroup func(group string) (bool, error)
	// Clock is the source of time; nil means the time package.
	Clock Clock
	// Logger receives the coordinator's logs. Nil discards them.
	Logger *slog.Logger
	// NodeID is this broker's node ID, used in log lines.
	NodeID int32
	// LoadOnLead serves only the partitions of the store given to Load
	// (a cluster: those this broker leads), instead of replaying every
	// partition in New. Requests for a group whose membership partition
	// is not loaded answer NOT_COORDINATOR; for a share-partition whose
	// state partition is not loaded, NOT_LEADER_OR_FOLLOWER.
	LoadOnLead bool
	// State, set with LoadOnLead, splits a share-partition's serving from
	// its storage, as Kafka does (remote.go): this broker serves the
	// share-partitions of the data partitions it leads, reading their
	// state from, and writing it through, the leader of their
	// __share_group_state partition, which it reaches with State (itself
	// included); the partitions of __share_group_state it leads keep the
	// state written to them for snapshots and reads. Nil keeps serving and
	// storage together (one broker).
	State StateClient

	// StatePartitions is the partition count of __share_group_state.
	// Corresponds to share.coordinator.state.topic.num.partitions;
	// default 50. It must match the store and must not change once state
	// exists.
	StatePartitions int32

	// SessionTimeout removes a member that has not heartbeated for this
	// long and releases its records. Corresponds to
	// group.share.session.timeout.ms (default 45s), the default of the
	// group config share.session.timeout.ms, which must lie within
	// group.share.min.session.timeout.ms (default 45s) and
	// group.share.max.session.timeout.ms (default 60s).
	SessionTimeout    time.Duration
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// HeartbeatInterval is the interval members are told to heartbeat at.
	// Corresponds to group.share.heartbeat.interval.ms (default 5s), the
	// default of share.heartbeat.interval.ms, bounded by
	// group.share.min.heartbeat.interval.ms (5s) and
	// group.share.max.heartbeat.interval.ms (15s).
	HeartbeatInterval    time.Duration
	MinHeartbeatInterval time.Duration
	MaxHeartbeatInterval time.Duration
	// RecordLockDuration is how long acquired records stay locked to their
	// member before they are released. Corresponds to
	// group.share.record.lock.duration.ms (default 30s), the default of
	// share.record.lock.duration.ms, bounded by
	// group.share.min.record.lock.duration.ms (15s) and
	// group.share.max.record.lock.duration.ms (60s).
	RecordLockDuration    time.Duration
	MinRecordLockDuration time.Duration
	MaxRecordLockDuration time.Duration
	// DeliveryCountLimit is how many times a record is delivered before
	// it is archived (and dead-lettered). Corresponds to
	// group.share.delivery.count.limit (default 5), the default of
	// share.delivery.count.limit, bounded by
	// group.share.min.delivery.count.limit (2) and
	// group.share.max.delivery.count.limit (10).
	DeliveryCountLimit    int
	MinDeliveryCountLimit int
	MaxDeliveryCountLimit int
	// PartitionMaxRecordLocks bounds the in-flight records of one
	// share-partition: offsets from its start offset on that are not yet
	// acknowledged, not counting those held back by a delay. Corresponds
	// to group.share.partition.max.record.locks; default 2000.
	PartitionMaxRecordLocks int
	// PartitionMaxDelayedRecords bounds the records of one share-partition
	// that are held back by a delay (HeaderDeliverAt, delivery.delay.ms or
	// a backoff); past it no new records are read until some become due.
	// Ferry's group.share.partition.max.delayed.records; default 100000.
	PartitionMaxDelayedRecords int
	// MaxGroupSize bounds the members of a share group
	// (GROUP_MAX_SIZE_REACHED). Corresponds to group.share.max.size;
	// default 200.
	MaxGroupSize int
	// DeliveryBackoff and DeliveryBackoffMax delay a record released
	// after its n-th delivery by DeliveryBackoff × 2^(n-1), at most
	// DeliveryBackoffMax. Ferry's group.share.delivery.backoff.ms (default
	// 0: released records come back at once, as in Kafka) and
	// group.share.delivery.backoff.max.ms (default 60s), the defaults of
	// the group configs share.delivery.backoff.ms and
	// share.delivery.backoff.max.ms.
	DeliveryBackoff    time.Duration
	DeliveryBackoffMax time.Duration
	// DLQTopicPrefix is the prefix every dead-letter topic name must have
	// (KIP-1191). Corresponds to errors.deadletterqueue.topic.name.prefix;
	// default "dlq."; "-" means no prefix is required.
	DLQTopicPrefix string
	// SnapshotSlack is how many bytes a __share_group_state partition may
	// hold beyond twice its live state before a background snapshot
	// compacts it. Default 4 MiB.
	SnapshotSlack int64

	// Test hooks, unexported so only this package's tests set them.
	retryBackoff time.Duration // first wait before retrying a dead letter; default 1s
}

const (
	defaultStatePartitions            = 50
	defaultSessionTimeout             = 45 * time.Second
	defaultMinSessionTimeout          = 45 * time.Second
	defaultMaxSessionTimeout          = 60 * time.Second
	defaultHeartbeatInterval          = 5 * time.Second
	defaultMinHeartbeatInterval       = 5 * time.Second
	defaultMaxHeartbeatInterval       = 15 * time.Second
	defaultRecordLockDuration         = 30 * time.Second
	defaultMinRecordLockDuration      = 15 * time.Second
	defaultMaxRecordLockDuration      = 60 * time.Second
	defaultDeliveryCountLimit         = 5
	defaultMinDeliveryCountLimit      = 2
	defaultMaxDeliveryCountLimit      = 10
	defaultPartitionMaxRecordLocks    = 2000
	defaultPartitionMaxDelayedRecords = 100000
	defaultMaxGroupSize               = 200
	defaultDeliveryBackoffMax         = 60 * time.Second
	defaultDLQTopicPrefix             = "dlq."
	defaultSnapshotSlack              = 4 << 20
	defaultRetryBackoff               = time.Second
	maxRetryBackoff                   = 30 * time.Second
)

// withDefaults returns cfg with every zero field set to its default, or an
// error wrapping ErrConfig.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Store == nil:
		return cfg, fmt.Errorf("%w: Store is required", ErrConfig)
	case cfg.Reader == nil:
		return cfg, fmt.Errorf("%w: Reader is required", ErrConfig)
	case cfg.Topics == nil:
		return cfg, fmt.Errorf("%w: Topics is required", ErrConfig)
	}
	if cfg.State != nil && !cfg.LoadOnLead {
		return cfg, fmt.Errorf("%w: State needs LoadOnLead", ErrConfig)
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StatePartitions == 0 {
		cfg.StatePartitions = defaultStatePartitions
	}
	if cfg.StatePartitions < 0 {
		return cfg, fmt.Errorf("%w: StatePartitions %d", ErrConfig, cfg.StatePartitions)
	}
	durations := []struct {
		name          string
		v, min, max   *time.Duration
		dv, dmin, dmx time.Duration
	}{
		{"SessionTimeout", &cfg.SessionTimeout, &cfg.MinSessionTimeout, &cfg.MaxSessionTimeout, defaultSessionTimeout, defaultMinSessionTimeout, defaultMaxSessionTimeout},
		{"HeartbeatInterval", &cfg.HeartbeatInterval, &cfg.MinHeartbeatInterval, &cfg.MaxHeartbeatInterval, defaultHeartbeatInterval, defaultMinHeartbeatInterval, defaultMaxHeartbeatInterval},
		{"RecordLockDuration", &cfg.RecordLockDuration, &cfg.MinRecordLockDuration, &cfg.MaxRecordLockDuration, defaultRecordLockDuration, defaultMinRecordLockDuration, defaultMaxRecordLockDuration},
	}
	for _, d := range durations {
		if *d.min <= 0 {
			*d.min = min(d.dmin, *d.v)
			if *d.v <= 0 {
				*d.min = d.dmin
			}
		}
		if *d.max <= 0 {
			*d.max = max(d.dmx, *d.v)
		}
		if *d.v <= 0 {
			*d.v = min(max(d.dv, *d.min), *d.max)
		}
		if *d.min > *d.v || *d.v > *d.max {
			return cfg, fmt.Errorf("%w: %s %v outside [%v, %v]", ErrConfig, d.name, *d.v, *d.min, *d.max)
		}
	}
	if cfg.SessionTimeout <= cfg.HeartbeatInterval {
		return cfg, fmt.Errorf("%w: SessionTimeout %v must be above HeartbeatInterval %v", ErrConfig, cfg.SessionTimeout, cfg.HeartbeatInterval)
	}
	if cfg.MinDeliveryCountLimit <= 0 {
		cfg.MinDeliveryCountLimit = defaultMinDeliveryCountLimit
	}
	if cfg.MaxDeliveryCountLimit <= 0 {
		cfg.MaxDeliveryCountLimit = defaultMaxDeliveryCountLimit
	}
	if cfg.DeliveryCountLimit <= 0 {
		cfg.DeliveryCountLimit = defaultDeliveryCountLimit
	}
	if cfg.MinDeliveryCountLimit > cfg.DeliveryCountLimit || cfg.DeliveryCountLimit > cfg.MaxDeliveryCountLimit || cfg.MaxDeliveryCountLimit > 1<<15-1 {
		return cfg, fmt.Errorf("%w: DeliveryCountLimit %d outside [%d, %d]", ErrConfig, cfg.DeliveryCountLimit, cfg.MinDeliveryCountLimit, cfg.MaxDeliveryCountLimit)
	}
	if cfg.PartitionMaxRecordLocks <= 0 {
		cfg.PartitionMaxRecordLocks = defaultPartitionMaxRecordLocks
	}
	if cfg.PartitionMaxDelayedRecords <= 0 {
		cfg.PartitionMaxDelayedRecords = defaultPartitionMaxDelayedRecords
	}
	if cfg.MaxGroupSize <= 0 {
		cfg.MaxGroupSize = defaultMaxGroupSize
	}
	if cfg.DeliveryBackoff < 0 {
		return cfg, fmt.Errorf("%w: DeliveryBackoff %v", ErrConfig, cfg.DeliveryBackoff)
	}
	if cfg.DeliveryBackoffMax <= 0 {
		cfg.DeliveryBackoffMax = defaultDeliveryBackoffMax
	}
	switch cfg.DLQTopicPrefix {
	case "":
		cfg.DLQTopicPrefix = defaultDLQTopicPrefix
	case "-":
		cfg.DLQTopicPrefix = ""
	}
	if cfg.SnapshotSlack <= 0 {
		cfg.SnapshotSlack = defaultSnapshotSlack
	}
	if cfg.retryBackoff <= 0 {
		cfg.retryBackoff = defaultRetryBackoff
	}
	return cfg, nil
}
