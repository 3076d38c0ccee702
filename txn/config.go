package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

var (
	// ErrConfig reports an invalid Config passed to New.
	ErrConfig = errors.New("txn: invalid config")
	// ErrCorrupt marks a __transaction_state record that cannot be decoded.
	// New keeps such a record (a snapshot carries it) and the state replayed
	// before it, with a warning, rather than refusing to start.
	ErrCorrupt = errors.New("txn: corrupt __transaction_state record")
	// ErrUnknownPartition is what Markers.WriteMarker returns (wrapped or
	// not) for a partition that no longer exists, its topic deleted: the
	// coordinator then needs no marker there, as Kafka skips a partition
	// without a leader.
	ErrUnknownPartition = errors.New("txn: unknown partition")
	// ErrCoordinatorFenced is what Markers.WriteMarker returns (wrapped)
	// when the partition refuses the marker because a coordinator of a
	// newer epoch has written one for the producer there
	// (TRANSACTION_COORDINATOR_FENCED): that coordinator owns the
	// transaction now, and this one stops writing its markers, as Kafka's
	// does.
	ErrCoordinatorFenced = errors.New("txn: transaction coordinator fenced")
)

// Record is one key/value record of __transaction_state. A nil Value is a
// tombstone.
type Record struct{ Key, Value []byte }

// Store is the durable home of the coordinator's state: the partitions of
// the internal __transaction_state topic, numbered 0 to
// Config.TransactionTopicPartitions-1. It has the shape of group.Store. Its
// methods must be safe for concurrent use, including concurrent Appends to
// one partition.
type Store interface {
	// Append appends recs as one batch to partition p and returns only after
	// they are durable (fsynced). It returns the offset of the first record.
	// The coordinator does not modify recs after the call; the store may
	// keep them.
	Append(p int32, recs []Record) (int64, error)
	// Replay calls fn for every record of partition p from its log start, in
	// order. fn copies what it keeps: the store may reuse r's slices after fn
	// returns. An error from fn stops the replay and is returned.
	Replay(p int32, fn func(offset int64, r Record) error) error
	// Snapshot compacts partition p: it durably appends recs (the live state)
	// and then advances the partition's log start offset to the first of
	// them, so everything older may be deleted; with no recs the log start
	// moves to the log end. No Append to p runs while Snapshot(p) does.
	Snapshot(p int32, recs []Record) error
}

// NoSyncAppender is a Store that can also append without waiting for
// durability (coordstate's stores can). The coordinator uses it for the
// Complete record of a transaction, which no answer depends on: a crash
// that loses it leaves the transaction prepared, and the next New writes
// its markers again and then the record. A later Append of the partition
// makes it durable with itself.
type NoSyncAppender interface {
	AppendNoSync(p int32, recs []Record) (int64, error)
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

// Marker is the end of one transaction on one partition: the control record
// (kmsg.ControlRecordKey, type 0 abort or 1 commit, and kmsg.EndTxnMarker)
// that a partition leader writes for a WriteTxnMarkers request.
type Marker struct {
	// TransactionalID is the transaction's id, for logs.
	TransactionalID string
	// ProducerID and ProducerEpoch are the producer's as the partition must
	// see them: with transaction version 2 the epoch is the bumped one, one
	// more than the epoch of the transaction's batches (KIP-890), so a
	// batch of the ended transaction can no longer be appended.
	ProducerID    int64
	ProducerEpoch int16
	// Commit is true for a commit marker, false for an abort marker.
	Commit bool
	// CoordinatorEpoch is the epoch of the coordinator that decided; 0 on a
	// single broker. It goes into the marker's EndTxnMarker value.
	CoordinatorEpoch int32
}

// Markers writes transaction markers. The broker implements it over its
// partitions; a marker for a __consumer_offsets partition goes to the group
// coordinator, which makes the transaction's pending offsets visible
// (commit) or drops them (abort).
type Markers interface {
	// WriteMarker appends m's control batch to partition tp and returns once
	// it is durable, as WriteTxnMarkers does on a Kafka partition leader. It
	// must accept a marker repeated after a crash (the same producer id and
	// epoch, no transaction open at the partition any more): the coordinator
	// writes every marker of a prepared transaction again when it restarts
	// before recording the transaction complete. It returns
	// ErrUnknownPartition when tp no longer exists and ErrCoordinatorFenced
	// when a newer coordinator wrote a marker for the producer there; any
	// other error is retried, with backoff, until it succeeds or the
	// coordinator closes. It
	// is called without coordinator locks held, concurrently for different
	// partitions, and must return soon after ctx is done.
	WriteMarker(ctx context.Context, tp TopicPartition, m Marker) error
}

// Names of the internal topics. A client may not add their partitions to a
// transaction with AddPartitionsToTxn (TOPIC_AUTHORIZATION_FAILED, as Kafka
// answers); AddOffsetsToTxn adds the group's __consumer_offsets partition.
const (
	OffsetsTopic          = "__consumer_offsets"
	TransactionStateTopic = "__transaction_state"
)

// Config configures a Coordinator. Store, Markers, ProducerIDs,
// GroupPartition and PartitionCount are required; every other field's zero
// value means the default given with it.
type Config struct {
	// Store holds __transaction_state. Required.
	Store Store
	// Markers writes commit and abort markers to data partitions and to
	// __consumer_offsets partitions. It must be usable when New is called:
	// New writes the markers of transactions a crash left prepared.
	// Required.
	Markers Markers
	// ProducerIDs allocates a producer id never handed out before, durably
	// (the broker's producer-id blocks). It is called for a new
	// transactional id, for a producer whose epochs are exhausted, and for
	// InitProducerID without a transactional id. It may block; it is called
	// with the lock of one transactional id held, never the coordinator's.
	// An error it returns that is a *kerr.Error is answered as is; others
	// answer COORDINATOR_NOT_AVAILABLE. Required.
	ProducerIDs func() (int64, error)
	// GroupPartition maps a consumer group to its __consumer_offsets
	// partition (the group coordinator's Partition). AddOffsetsToTxn adds
	// that partition to the transaction. Required.
	GroupPartition func(group string) int32
	// PartitionCount returns the number of partitions of a topic, 0 when
	// the topic does not exist. AddPartitionsToTxn answers
	// UNKNOWN_TOPIC_OR_PARTITION for partitions outside it (internal topics
	// are not asked about). It must not call the Coordinator. Required.
	PartitionCount func(topic string) int32
	// LoadOnLead: New loads no partition of __transaction_state; the
	// broker of a cluster calls Load for each partition it comes to lead
	// and Unload when it stops, as Kafka's coordinator follows the
	// leadership of the topic's partitions. A transactional id whose
	// partition is not loaded gets NOT_COORDINATOR (its client looks for
	// the coordinator again). False (a single broker): New loads them all.
	LoadOnLead bool
	// Logger receives the coordinator's logs. Nil discards them.
	Logger *slog.Logger
	// NodeID is this broker's node ID, used in log lines.
	NodeID int32

	// TransactionTopicPartitions is the partition count of
	// __transaction_state. Corresponds to
	// transaction.state.log.num.partitions; default 50. It must match the
	// store and must not change once transactional ids exist, because
	// Partition(id) depends on it.
	TransactionTopicPartitions int32
	// TransactionMaxTimeout bounds the transaction timeout a producer asks
	// for in InitProducerID (INVALID_TRANSACTION_TIMEOUT above it).
	// Corresponds to transaction.max.timeout.ms; default 15 minutes.
	TransactionMaxTimeout time.Duration
	// TransactionalIDExpiration is how long a transactional id without an
	// open transaction is kept after its last use; then it is forgotten (a
	// tombstone is written). Corresponds to transactional.id.expiration.ms;
	// default 7 days.
	TransactionalIDExpiration time.Duration
	// AbortTimedOutTransactionsInterval is how often transactions open
	// longer than their timeout are looked for and aborted. Corresponds to
	// transaction.abort.timed.out.transaction.cleanup.interval.ms; default
	// 10 seconds.
	AbortTimedOutTransactionsInterval time.Duration
	// RemoveExpiredTransactionalIDsInterval is how often expired
	// transactional ids are removed. Corresponds to
	// transaction.remove.expired.transaction.cleanup.interval.ms; default 1
	// hour.
	RemoveExpiredTransactionalIDsInterval time.Duration
	// TransactionVersion is the finalized level of the transaction.version
	// feature (KIP-1022) that the broker advertises: 1 or 2; 0 means 2.
	// Level 2 (KIP-890) is what clients use when they send EndTxn v5+; the
	// coordinator also uses it for the aborts it starts itself (a timed-out
	// transaction, an InitProducerID that finds one open), bumping the epoch
	// on them as Kafka does. Records are written as value version 1 (with
	// tagged fields) at either level.
	TransactionVersion int16

	// Test hooks, unexported so only this package's tests set them.
	compactSlack int64         // snapshot when log bytes > 2*live + compactSlack; default 1 MiB
	retryBackoff time.Duration // first wait before retrying markers or a Complete record; default 100ms
}

const (
	defaultTransactionTopicPartitions = 50
	defaultTransactionMaxTimeout      = 15 * time.Minute
	defaultTransactionalIDExpiration  = 7 * 24 * time.Hour
	defaultAbortTimedOutInterval      = 10 * time.Second
	defaultRemoveExpiredInterval      = time.Hour
	defaultTransactionVersion         = 2
	defaultCompactSlack               = 1 << 20
	defaultRetryBackoff               = 100 * time.Millisecond

	// maxRetryBackoff caps the doubling wait between marker retries.
	maxRetryBackoff = 10 * time.Second
	// markerParallelism bounds the markers of one transaction written at
	// once.
	markerParallelism = 16
)

// withDefaults returns cfg with every zero field set to its default, or an
// error wrapping ErrConfig.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Store == nil:
		return cfg, fmt.Errorf("%w: Store is required", ErrConfig)
	case cfg.Markers == nil:
		return cfg, fmt.Errorf("%w: Markers is required", ErrConfig)
	case cfg.ProducerIDs == nil:
		return cfg, fmt.Errorf("%w: ProducerIDs is required", ErrConfig)
	case cfg.GroupPartition == nil:
		return cfg, fmt.Errorf("%w: GroupPartition is required", ErrConfig)
	case cfg.PartitionCount == nil:
		return cfg, fmt.Errorf("%w: PartitionCount is required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TransactionTopicPartitions == 0 {
		cfg.TransactionTopicPartitions = defaultTransactionTopicPartitions
	}
	if cfg.TransactionTopicPartitions < 0 {
		return cfg, fmt.Errorf("%w: TransactionTopicPartitions %d", ErrConfig, cfg.TransactionTopicPartitions)
	}
	if cfg.TransactionMaxTimeout <= 0 {
		cfg.TransactionMaxTimeout = defaultTransactionMaxTimeout
	}
	if cfg.TransactionalIDExpiration <= 0 {
		cfg.TransactionalIDExpiration = defaultTransactionalIDExpiration
	}
	if cfg.AbortTimedOutTransactionsInterval <= 0 {
		cfg.AbortTimedOutTransactionsInterval = defaultAbortTimedOutInterval
	}
	if cfg.RemoveExpiredTransactionalIDsInterval <= 0 {
		cfg.RemoveExpiredTransactionalIDsInterval = defaultRemoveExpiredInterval
	}
	switch cfg.TransactionVersion {
	case 0:
		cfg.TransactionVersion = defaultTransactionVersion
	case 1, 2:
	default:
		return cfg, fmt.Errorf("%w: TransactionVersion %d (1 or 2)", ErrConfig, cfg.TransactionVersion)
	}
	if cfg.compactSlack <= 0 {
		cfg.compactSlack = defaultCompactSlack
	}
	if cfg.retryBackoff <= 0 {
		cfg.retryBackoff = defaultRetryBackoff
	}
	return cfg, nil
}
