package server

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/raftlog"
)

// errorCodes maps the sentinel errors of the layers below to the Kafka
// code a client acts on. It is the one place where errors become codes;
// the handlers' own errors wrap a *kerr.Error instead.
var errorCodes = []struct {
	err  error
	code *kerr.Error
}{
	// A change of the replicated metadata log that did not commit in
	// time (it may still commit): before meta.ErrStorage, which wraps it.
	{raftlog.ErrTimeout, kerr.RequestTimedOut},
	// This broker is stopping: its partitions lead elsewhere next.
	// Before the context errors, which it may wrap.
	{errBrokerStopping, kerr.NotLeaderForPartition},
	{raftlog.ErrClosed, kerr.NotController},
	{context.DeadlineExceeded, kerr.RequestTimedOut},
	// A wait cut short because the connection or the broker is closing:
	// whether the change lands is not known, as with a timeout.
	{context.Canceled, kerr.RequestTimedOut},
	{meta.ErrNotReplica, kerr.NotLeaderForPartition},
	{partition.ErrNotLeader, kerr.NotLeaderForPartition},
	{partition.ErrFencedEpoch, kerr.FencedLeaderEpoch},
	{partition.ErrUnknownEpoch, kerr.UnknownLeaderEpoch},
	{partition.ErrNotEnoughReplicas, kerr.NotEnoughReplicas},
	{partition.ErrNotEnoughReplicasAfterAppend, kerr.NotEnoughReplicasAfterAppend},
	{meta.ErrNoReassignment, kerr.NoReassignmentInProgress},
	{meta.ErrBrokerNotRegistered, kerr.BrokerIDNotRegistered},
	{raftlog.ErrNotLeader, kerr.NotLeaderForPartition},
	{raftlog.ErrVoter, kerr.InvalidRequest},
	{raftlog.ErrChangePending, kerr.RequestTimedOut},
	{raftlog.ErrNotCaughtUp, kerr.RequestTimedOut},
	{raftlog.ErrDuplicateVoter, kerr.DuplicateVoter},
	{raftlog.ErrVoterNotFound, kerr.VoterNotFound},
	{raftlog.ErrLastVoter, kerr.InvalidRequest},
	{cluster.ErrElectionNotNeeded, kerr.ElectionNotNeeded},
	{cluster.ErrPreferredNotAvailable, kerr.PreferredLeaderNotAvailable},
	{cluster.ErrNoEligibleLeader, kerr.EligibleLeadersNotAvailable},
	{meta.ErrUnknownTopicOrPartition, kerr.UnknownTopicOrPartition},
	{meta.ErrTopicExists, kerr.TopicAlreadyExists},
	{meta.ErrInvalidTopic, kerr.InvalidTopicException},
	{meta.ErrInvalidPartitions, kerr.InvalidPartitions},
	{meta.ErrInvalidReplicationFactor, kerr.InvalidReplicationFactor},
	{meta.ErrInvalidConfig, kerr.InvalidConfig},
	{meta.ErrInvalidRequest, kerr.InvalidRequest},
	{meta.ErrDeletionDisabled, kerr.TopicDeletionDisabled},
	{meta.ErrInternalTopic, kerr.TopicAuthorizationFailed},
	{meta.ErrOffline, kerr.KafkaStorageError},
	{meta.ErrStorage, kerr.KafkaStorageError},
	{meta.ErrClosed, kerr.NotLeaderForPartition},
	{partition.ErrCorruptMessage, kerr.CorruptMessage},
	{partition.ErrInvalidRecord, kerr.InvalidRecord},
	{partition.ErrMessageTooLarge, kerr.MessageTooLarge},
	{partition.ErrRecordListTooLarge, kerr.RecordListTooLarge},
	{partition.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{partition.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{partition.ErrInvalidTxnState, kerr.InvalidTxnState},
	{partition.ErrCoordinatorFenced, kerr.TransactionCoordinatorFenced},
	{partition.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{partition.ErrClosed, kerr.NotLeaderForPartition},
	{partition.ErrLogClosed, kerr.NotLeaderForPartition},
	{group.ErrNotLoaded, kerr.NotLeaderForPartition},
	{group.ErrClosed, kerr.NotLeaderForPartition},
}

// errorCode returns the Kafka code of err (0 for nil) and the message to
// send where the response has room for one. An error of a handler wraps
// its *kerr.Error; anything unknown is a write or sync failure (a full
// disk, an I/O error) or corruption found on disk: KAFKA_STORAGE_ERROR.
func errorCode(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	msg := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, &msg
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code.Code, &msg
		}
	}
	return kerr.KafkaStorageError.Code, &msg
}

// codeOf is errorCode without the message.
func codeOf(err error) int16 {
	code, _ := errorCode(err)
	return code
}
