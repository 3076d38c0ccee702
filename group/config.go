package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

var (
	// ErrConfig reports an invalid Config passed to New.
	ErrConfig = errors.New("group: invalid config")
	// ErrCorrupt marks a __consumer_offsets record that cannot be decoded.
	// New skips such records with a warning rather than refusing to start.
	ErrCorrupt = errors.New("group: corrupt __consumer_offsets record")
)

// Record is one key/value record of __consumer_offsets. A nil Value is a
// tombstone.
type Record struct{ Key, Value []byte }

// Store is the durable home of coordinator state: the partitions of the
// internal __consumer_offsets topic, numbered 0 to
// Config.OffsetsTopicPartitions-1. The server implements it over real
// partition logs. Its methods must be safe for concurrent use, including
// concurrent Appends to one partition.
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
	// moves to the log end. Used to keep the topic bounded. No Append to p
	// runs while Snapshot(p) does.
	Snapshot(p int32, recs []Record) error
}

// TopicInfo describes one topic for assignment and validation.
type TopicInfo struct {
	ID         [16]byte // topic ID (KIP-516)
	Partitions int32    // partition count
}

// Assignor names accepted in ConsumerGroupHeartbeat's ServerAssignor.
const (
	AssignorUniform = "uniform"
	AssignorRange   = "range"
)

// Config configures a Coordinator. Store and Topics are required; every
// other field's zero value means the default given with it.
type Config struct {
	// Store holds __consumer_offsets. Required.
	Store Store
	// Topics returns the current topics by name. It is used for KIP-848
	// assignment and regex subscriptions, and to validate committed
	// partitions (UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID). It is
	// called with group locks held and must not call the Coordinator; the
	// returned map is not modified. Required.
	Topics func() map[string]TopicInfo
	// OtherGroup reports whether a group ID is taken by another kind of
	// group (a share group), which a consumer group may not share:
	// JoinGroup, ConsumerGroupHeartbeat and OffsetCommit then answer
	// GROUP_ID_NOT_FOUND instead of creating the group. An error (the
	// share group coordinator of a cluster could not be asked) answers
	// COORDINATOR_NOT_AVAILABLE, for the client to retry. Nil means never.
	// Called with no group lock held; it must not call the Coordinator.
	OtherGroup func(group string) (bool, error)
	// Logger receives the coordinator's logs. Nil discards them.
	Logger *slog.Logger
	// NodeID is this broker's node ID, used in log lines.
	NodeID int32

	// OffsetsTopicPartitions is the partition count of __consumer_offsets.
	// Corresponds to offsets.topic.num.partitions; default 50. It must match
	// the store and must not change once groups exist, because
	// Partition(group) depends on it.
	OffsetsTopicPartitions int32
	// LoadOnLead: New loads no partition; the broker calls Load for each
	// partition of __consumer_offsets it starts to lead and Unload for
	// each it stops leading (a cluster). A group whose partition is not
	// loaded gets COORDINATOR_NOT_AVAILABLE, so its clients look for
	// the coordinator again. Default false: New loads every partition.
	LoadOnLead bool
	// MinSessionTimeout and MaxSessionTimeout bound a classic member's
	// session timeout (INVALID_SESSION_TIMEOUT outside). They correspond to
	// group.min.session.timeout.ms (default 6s) and
	// group.max.session.timeout.ms (default 30m).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is how long a new, empty classic group waits for
	// more members before its first generation; every member that joins in
	// the window extends it, up to the rebalance timeout. Corresponds to
	// group.initial.rebalance.delay.ms; default 3s; a negative value means 0.
	InitialRebalanceDelay time.Duration
	// OffsetsRetention is how long the offsets of an empty group are kept.
	// Corresponds to offsets.retention.minutes; default 7 days.
	OffsetsRetention time.Duration
	// OffsetsRetentionCheckInterval is how often expired offsets are
	// removed. Corresponds to offsets.retention.check.interval.ms; default
	// 10 minutes.
	OffsetsRetentionCheckInterval time.Duration
	// OffsetMetadataMaxBytes bounds a commit's metadata string
	// (OFFSET_METADATA_TOO_LARGE above it). Corresponds to
	// offsets.metadata.max.bytes; default 4096.
	OffsetMetadataMaxBytes int

	// ConsumerSessionTimeout fences a KIP-848 member that has not
	// heartbeated for this long. Corresponds to
	// group.consumer.session.timeout.ms; default 45s.
	ConsumerSessionTimeout time.Duration
	// ConsumerHeartbeatInterval is the interval KIP-848 members are told to
	// heartbeat at. Corresponds to group.consumer.heartbeat.interval.ms;
	// default 5s.
	ConsumerHeartbeatInterval time.Duration
	// ConsumerAssignors lists the server-side assignors KIP-848 members may
	// pick; the first is used when no member names one. Corresponds to
	// group.consumer.assignors; default ["uniform", "range"]. Only
	// AssignorUniform and AssignorRange exist.
	ConsumerAssignors []string

	// Test hooks, unexported so only this package's tests set them.
	newID        func(prefix string) string // classic member ID generator; default prefix + "-" + UUID
	newUUID      func() string              // KIP-848 member ID generator (v0 joins without one)
	compactSlack int64                      // snapshot when log bytes > 2*live bytes + compactSlack; default 1 MiB
}

const (
	defaultOffsetsTopicPartitions    = 50
	defaultMinSessionTimeout         = 6 * time.Second
	defaultMaxSessionTimeout         = 30 * time.Minute
	defaultInitialRebalanceDelay     = 3 * time.Second
	defaultOffsetsRetention          = 7 * 24 * time.Hour
	defaultOffsetsRetentionCheck     = 10 * time.Minute
	defaultOffsetMetadataMaxBytes    = 4096
	defaultConsumerSessionTimeout    = 45 * time.Second
	defaultConsumerHeartbeatInterval = 5 * time.Second
	defaultCompactSlack              = 1 << 20

	// newMemberJoinTimeout bounds how long a member that has never
	// completed a join may wait in JoinGroup (Kafka's
	// group.classic.new.member.join.timeout, 5 minutes).
	newMemberJoinTimeout = 5 * time.Minute
)

// withDefaults returns cfg with every zero field set to its default, or an
// error wrapping ErrConfig.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Store == nil {
		return cfg, fmt.Errorf("%w: Store is required", ErrConfig)
	}
	if cfg.Topics == nil {
		return cfg, fmt.Errorf("%w: Topics is required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OffsetsTopicPartitions == 0 {
		cfg.OffsetsTopicPartitions = defaultOffsetsTopicPartitions
	}
	if cfg.OffsetsTopicPartitions < 0 {
		return cfg, fmt.Errorf("%w: OffsetsTopicPartitions %d", ErrConfig, cfg.OffsetsTopicPartitions)
	}
	if cfg.MinSessionTimeout == 0 {
		cfg.MinSessionTimeout = defaultMinSessionTimeout
	}
	if cfg.MaxSessionTimeout == 0 {
		cfg.MaxSessionTimeout = defaultMaxSessionTimeout
	}
	if cfg.MinSessionTimeout > cfg.MaxSessionTimeout {
		return cfg, fmt.Errorf("%w: MinSessionTimeout %v above MaxSessionTimeout %v", ErrConfig, cfg.MinSessionTimeout, cfg.MaxSessionTimeout)
	}
	switch {
	case cfg.InitialRebalanceDelay == 0:
		cfg.InitialRebalanceDelay = defaultInitialRebalanceDelay
	case cfg.InitialRebalanceDelay < 0:
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.OffsetsRetention <= 0 {
		cfg.OffsetsRetention = defaultOffsetsRetention
	}
	if cfg.OffsetsRetentionCheckInterval <= 0 {
		cfg.OffsetsRetentionCheckInterval = defaultOffsetsRetentionCheck
	}
	if cfg.OffsetMetadataMaxBytes <= 0 {
		cfg.OffsetMetadataMaxBytes = defaultOffsetMetadataMaxBytes
	}
	if cfg.ConsumerSessionTimeout <= 0 {
		cfg.ConsumerSessionTimeout = defaultConsumerSessionTimeout
	}
	if cfg.ConsumerHeartbeatInterval <= 0 {
		cfg.ConsumerHeartbeatInterval = defaultConsumerHeartbeatInterval
	}
	if len(cfg.ConsumerAssignors) == 0 {
		cfg.ConsumerAssignors = []string{AssignorUniform, AssignorRange}
	}
	for _, a := range cfg.ConsumerAssignors {
		if a != AssignorUniform && a != AssignorRange {
			return cfg, fmt.Errorf("%w: unknown assignor %q", ErrConfig, a)
		}
	}
	if cfg.newID == nil {
		cfg.newID = func(prefix string) string { return prefix + "-" + uuidString() }
	}
	if cfg.newUUID == nil {
		cfg.newUUID = kafkaUUID
	}
	if cfg.compactSlack <= 0 {
		cfg.compactSlack = defaultCompactSlack
	}
	return cfg, nil
}

// ClientInfo identifies the client behind a request: its client.id and its
// host as Kafka shows it in DescribeGroups (e.g. "/127.0.0.1", no port).
type ClientInfo struct {
	ClientID string
	Host     string
}

type clientInfoKey struct{}

// WithClientInfo returns a context carrying ci. The server passes such a
// context to every Coordinator method so members get their client ID and
// host; without it both are empty.
func WithClientInfo(ctx context.Context, ci ClientInfo) context.Context {
	return context.WithValue(ctx, clientInfoKey{}, ci)
}

func clientInfoFrom(ctx context.Context) ClientInfo {
	ci, _ := ctx.Value(clientInfoKey{}).(ClientInfo)
	return ci
}
