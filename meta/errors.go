package meta

import "errors"

// Errors of the metadata package. Each names one Kafka error code, which
// package server picks with errors.Is; the wrapped message says what was
// wrong and goes to the client where the response has room for it.
var (
	// ErrUnknownTopicOrPartition: no such topic, or no such partition of
	// it (UNKNOWN_TOPIC_OR_PARTITION).
	ErrUnknownTopicOrPartition = errors.New("meta: unknown topic or partition")
	// ErrTopicExists: a topic of that name exists (TOPIC_ALREADY_EXISTS).
	ErrTopicExists = errors.New("meta: topic already exists")
	// ErrInvalidTopic: an illegal, reserved or colliding topic name, or an
	// operation internal topics refuse (INVALID_TOPIC_EXCEPTION).
	ErrInvalidTopic = errors.New("meta: invalid topic")
	// ErrInvalidPartitions: a partition count out of range
	// (INVALID_PARTITIONS).
	ErrInvalidPartitions = errors.New("meta: invalid partitions")
	// ErrInvalidReplicationFactor: more replicas than brokers, or fewer
	// than one (INVALID_REPLICATION_FACTOR).
	ErrInvalidReplicationFactor = errors.New("meta: invalid replication factor")
	// ErrInvalidConfig: an unknown config or a value it refuses
	// (INVALID_CONFIG).
	ErrInvalidConfig = errors.New("meta: invalid config")
	// ErrInvalidRequest: a change that is not allowed as asked, such as a
	// static broker config or the partitions of an internal topic
	// (INVALID_REQUEST).
	ErrInvalidRequest = errors.New("meta: invalid request")
	// ErrDeletionDisabled: delete.topic.enable is false
	// (TOPIC_DELETION_DISABLED).
	ErrDeletionDisabled = errors.New("meta: topic deletion is disabled")
	// ErrInternalTopic: an internal topic cannot be deleted
	// (TOPIC_AUTHORIZATION_FAILED, as Kafka answers).
	ErrInternalTopic = errors.New("meta: internal topic")
	// ErrStorage: the metadata log or a partition directory could not be
	// written (KAFKA_STORAGE_ERROR).
	ErrStorage = errors.New("meta: storage error")
	// ErrOffline: the partition could not be opened at start and serves
	// nothing until a restart finds it healthy (KAFKA_STORAGE_ERROR). The
	// error wrapping it says why.
	ErrOffline = errors.New("meta: partition offline")
	// ErrNotReplica: this broker holds no replica of the partition, or
	// has not opened it yet (NOT_LEADER_OR_FOLLOWER: the client asks
	// Metadata again).
	ErrNotReplica = errors.New("meta: not a replica of the partition on this broker")
	// ErrBrokerNotRegistered: no broker of that id is registered
	// (BROKER_ID_NOT_REGISTERED).
	ErrBrokerNotRegistered = errors.New("meta: broker not registered")
	// ErrNoReassignment: a cancelled reassignment is not in progress
	// (NO_REASSIGNMENT_IN_PROGRESS).
	ErrNoReassignment = errors.New("meta: no reassignment in progress")
	// ErrClosed is returned by changes after Close.
	ErrClosed = errors.New("meta: closed")
)
