package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/partition"
)

// kafkaError maps a storage error to the Kafka error code a client acts
// on, and the message to send where the response has room for one.
func kafkaError(err error) (int16, string) {
	if err == nil {
		return 0, ""
	}
	var code *kerr.Error
	switch {
	case errors.Is(err, partition.ErrCorruptMessage):
		code = kerr.CorruptMessage
	case errors.Is(err, partition.ErrInvalidRecord):
		code = kerr.InvalidRecord
	case errors.Is(err, partition.ErrMessageTooLarge):
		code = kerr.MessageTooLarge
	case errors.Is(err, partition.ErrRecordListTooLarge):
		code = kerr.RecordListTooLarge
	case errors.Is(err, partition.ErrOutOfOrderSequence):
		code = kerr.OutOfOrderSequenceNumber
	case errors.Is(err, partition.ErrInvalidProducerEpoch):
		code = kerr.InvalidProducerEpoch
	case errors.Is(err, partition.ErrTransactional):
		code = kerr.InvalidTxnState
	case errors.Is(err, log.ErrOffsetOutOfRange):
		code = kerr.OffsetOutOfRange
	case errors.Is(err, partition.ErrClosed), errors.Is(err, log.ErrClosed):
		code = kerr.NotLeaderForPartition
	default:
		// Write and sync failures (a full disk, an I/O error) and
		// corruption found on disk.
		code = kerr.KafkaStorageError
	}
	return code.Code, err.Error()
}
