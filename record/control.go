package record

import (
	"encoding/binary"
	"fmt"
)

// Control record types: the type field of a control record's key, as
// Kafka numbers them (ControlRecordType).
const (
	ControlAbort  int16 = 0
	ControlCommit int16 = 1
)

// AppendControlBatch appends a transaction marker to dst: an uncompressed
// control batch (attributes transactional and control) of producerID at
// epoch, base sequence -1, holding one record whose key is Kafka's
// ControlRecordKey [int16 version 0][int16 type: 0 abort, 1 commit] and
// whose value is an EndTxnMarker [int16 version 0][int32 coordinator
// epoch]. ts is the batch timestamp.
func AppendControlBatch(dst []byte, producerID int64, epoch int16, commit bool, coordinatorEpoch int32, ts int64) []byte {
	typ := ControlAbort
	if commit {
		typ = ControlCommit
	}
	var key [4]byte
	binary.BigEndian.PutUint16(key[2:], uint16(typ))
	var value [6]byte
	binary.BigEndian.PutUint32(value[2:], uint32(coordinatorEpoch))
	return AppendBatch(dst, Batch{
		BaseTimestamp: ts,
		Attributes:    Transactional | Control,
		ProducerID:    producerID,
		ProducerEpoch: epoch,
		BaseSequence:  -1,
		Records:       []Record{{Key: key[:], Value: value[:]}},
	})
}

// ControlType returns the type of a control batch: the type field of its
// first record's key (ControlAbort, ControlCommit, or another type Kafka
// may define). It returns ErrCorrupt when the batch holds no record or
// the key is shorter than 4 bytes, and ErrInvalid for a compressed batch.
func ControlType(batch []byte) (int16, error) {
	typ := int16(-1)
	err := ForEach(batch, func(r *Record) error {
		if typ >= 0 {
			return nil
		}
		if len(r.Key) < 4 {
			return fmt.Errorf("%w: control record key of %d bytes", ErrCorrupt, len(r.Key))
		}
		typ = int16(binary.BigEndian.Uint16(r.Key[2:]))
		if typ < 0 {
			return fmt.Errorf("%w: control record type %d", ErrCorrupt, typ)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if typ < 0 {
		return 0, fmt.Errorf("%w: control batch without a record", ErrCorrupt)
	}
	return typ, nil
}

// MarkerCoordinatorEpoch returns the coordinator epoch of a commit or
// abort marker: the int32 after the version of its first record's
// EndTxnMarker value. It returns ErrCorrupt when the batch holds no
// record or the value is shorter than 6 bytes, and ErrInvalid for a
// compressed batch.
func MarkerCoordinatorEpoch(batch []byte) (int32, error) {
	epoch, found := int32(0), false
	err := ForEach(batch, func(r *Record) error {
		if found {
			return nil
		}
		if len(r.Value) < 6 {
			return fmt.Errorf("%w: transaction marker value of %d bytes", ErrCorrupt, len(r.Value))
		}
		epoch, found = int32(binary.BigEndian.Uint32(r.Value[2:])), true
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%w: control batch without a record", ErrCorrupt)
	}
	return epoch, nil
}
