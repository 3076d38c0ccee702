package share

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// Record key versions: the int16 every __share_group_state key starts
// with. 0 and 1 are Kafka's share coordinator records; 10, 11 and 14 are
// the share-group membership records Kafka keeps in __consumer_offsets,
// with the same layouts, kept here beside the partition state (see the
// package doc for why).
const (
	keyShareSnapshot    int16 = 0  // ShareSnapshotKey: group, topic ID, partition
	keyShareUpdate      int16 = 1  // ShareUpdateKey: group, topic ID, partition
	keyMemberMetadata   int16 = 10 // ShareGroupMemberMetadataKey: group, member
	keyGroupMetadata    int16 = 11 // ShareGroupMetadataKey: group
	keyMemberAssignment int16 = 14 // ShareGroupCurrentMemberAssignmentKey: group, member
)

// valueVersion is the version of every value written. All are Kafka's
// flexible version 0 (compact strings and arrays, tagged fields).
//
// FORMAT MIGRATION: never change a written version's layout. To add a
// field, add it as a tagged field (unknown tags are skipped by every
// reader, Kafka's included), or write version 1 with the field appended,
// keep decoding version 0, and only then start writing 1. A record of a
// version this broker does not know is kept (carried through snapshots
// untouched) but not applied.
const valueVersion int16 = 0

// Delivery states as Kafka persists them (RecordState ids). Acquired (1)
// is never written: an acquired record is persisted as available with its
// delivery count, which is what it becomes after a restart.
const (
	persistAvailable int8 = 0
	persistAcked     int8 = 2
	persistArchiving int8 = 3 // KIP-1191: archived once its dead letter is written
	persistArchived  int8 = 4
)

// Tags of the StateBatch struct. Kafka defines none; these are Ferry's,
// numbered far from where Kafka adds its own.
const (
	tagNotBefore int = 100 // int64: ms since the epoch before which an available batch is not delivered
	tagReason    int = 101 // int8: Reason of an archiving batch
)

// tagDeliveryComplete is Kafka 4.2's tagged DeliveryCompleteCount (KIP-1226)
// of ShareSnapshotValue and ShareUpdateValue: offsets at or after the start
// offset whose delivery is complete.
const tagDeliveryComplete = 0

// stateBatch is one StateBatch of a ShareSnapshotValue or ShareUpdateValue.
type stateBatch struct {
	first, last int64
	state       int8
	count       int16
	notBefore   int64 // tagNotBefore; 0 if none
	reason      Reason
}

// stateValue is a decoded ShareSnapshotValue or ShareUpdateValue:
//
//	ShareSnapshotValue v0 (flexible)      ShareUpdateValue v0 (flexible)
//	int32  SnapshotEpoch                  int32  SnapshotEpoch
//	int32  StateEpoch                     int32  LeaderEpoch
//	int32  LeaderEpoch                    int64  StartOffset (-1: unchanged)
//	int64  StartOffset                    []StateBatch
//	int64  CreateTimestamp                tags: 0 DeliveryCompleteCount int32
//	int64  WriteTimestamp
//	[]StateBatch
//	tags: 0 DeliveryCompleteCount int32
//
//	StateBatch: int64 FirstOffset, int64 LastOffset, int8 DeliveryState,
//	int16 DeliveryCount; tags: 100 not-before ms (int64), 101 reason (int8)
//
// Ferry writes SnapshotEpoch equal to the state epoch: it changes only when
// the state is reset (AlterShareGroupOffsets), not at compaction, so an
// update built against an older state is recognised and ignored.
type stateValue struct {
	snapshotEpoch    int32
	stateEpoch       int32 // snapshot only
	leaderEpoch      int32
	start            int64
	createTime       int64 // snapshot only
	writeTime        int64 // snapshot only
	deliveryComplete int32 // -1 if absent
	batches          []stateBatch
}

// appendShareKey appends a ShareSnapshotKey or ShareUpdateKey.
func appendShareKey(b []byte, version int16, group string, tp TopicPartition) []byte {
	b = kbin.AppendInt16(b, version)
	b = kbin.AppendString(b, group)
	b = kbin.AppendUuid(b, tp.TopicID)
	return kbin.AppendInt32(b, tp.Partition)
}

func appendGroupKey(b []byte, group string) []byte {
	b = kbin.AppendInt16(b, keyGroupMetadata)
	return kbin.AppendString(b, group)
}

func appendMemberKey(b []byte, version int16, group, member string) []byte {
	b = kbin.AppendInt16(b, version)
	b = kbin.AppendString(b, group)
	return kbin.AppendString(b, member)
}

// appendStateValue encodes v as a ShareSnapshotValue (snapshot) or a
// ShareUpdateValue.
func appendStateValue(b []byte, v *stateValue, snapshot bool) []byte {
	b = kbin.AppendInt16(b, valueVersion)
	b = kbin.AppendInt32(b, v.snapshotEpoch)
	if snapshot {
		b = kbin.AppendInt32(b, v.stateEpoch)
	}
	b = kbin.AppendInt32(b, v.leaderEpoch)
	b = kbin.AppendInt64(b, v.start)
	if snapshot {
		b = kbin.AppendInt64(b, v.createTime)
		b = kbin.AppendInt64(b, v.writeTime)
	}
	b = appendStateBatches(b, v.batches)
	if v.deliveryComplete >= 0 {
		b = kbin.AppendUvarint(b, 1)
		b = kbin.AppendUvarint(b, tagDeliveryComplete)
		b = kbin.AppendUvarint(b, 4)
		b = kbin.AppendInt32(b, v.deliveryComplete)
	} else {
		b = kbin.AppendUvarint(b, 0)
	}
	return b
}

func appendStateBatches(b []byte, batches []stateBatch) []byte {
	b = kbin.AppendCompactArrayLen(b, len(batches))
	for i := range batches {
		b = appendStateBatch(b, &batches[i])
	}
	return b
}

func appendStateBatch(b []byte, sb *stateBatch) []byte {
	b = kbin.AppendInt64(b, sb.first)
	b = kbin.AppendInt64(b, sb.last)
	b = kbin.AppendInt8(b, sb.state)
	b = kbin.AppendInt16(b, sb.count)
	n := 0
	if sb.notBefore != 0 {
		n++
	}
	if sb.reason != 0 {
		n++
	}
	b = kbin.AppendUvarint(b, uint32(n))
	if sb.notBefore != 0 {
		b = kbin.AppendUvarint(b, uint32(tagNotBefore))
		b = kbin.AppendUvarint(b, 8)
		b = kbin.AppendInt64(b, sb.notBefore)
	}
	if sb.reason != 0 {
		b = kbin.AppendUvarint(b, uint32(tagReason))
		b = kbin.AppendUvarint(b, 1)
		b = kbin.AppendInt8(b, int8(sb.reason))
	}
	return b
}

// readTags calls fn for every tagged field of the struct the reader is at.
func readTags(r *kbin.Reader, fn func(tag uint32, data []byte)) {
	n := r.Uvarint()
	for i := uint32(0); i < n && r.Ok(); i++ {
		tag := r.Uvarint()
		size := r.Uvarint()
		if size > uint32(len(r.Src)) {
			r.Span(len(r.Src) + 1) // fail the reader
			return
		}
		data := r.Span(int(size))
		if r.Ok() {
			fn(tag, data)
		}
	}
}

// decodeStateValue decodes a ShareSnapshotValue (snapshot) or a
// ShareUpdateValue. The batches are appended to dst, which the returned
// value's batches alias.
func decodeStateValue(val []byte, snapshot bool, dst []stateBatch) (stateValue, error) {
	v := stateValue{deliveryComplete: -1}
	r := kbin.Reader{Src: val}
	if ver := r.Int16(); r.Ok() && ver != valueVersion {
		return v, fmt.Errorf("%w: state value version %d", errUnknownVersion, ver)
	}
	v.snapshotEpoch = r.Int32()
	if snapshot {
		v.stateEpoch = r.Int32()
	}
	v.leaderEpoch = r.Int32()
	v.start = r.Int64()
	if snapshot {
		v.createTime = r.Int64()
		v.writeTime = r.Int64()
	}
	n := r.CompactArrayLen()
	if n > 0 && int(n)*20 > len(r.Src) { // a batch is at least 20 bytes
		return v, fmt.Errorf("%w: %d state batches in %d bytes", ErrCorrupt, n, len(r.Src))
	}
	for i := int32(0); i < n && r.Ok(); i++ {
		sb := stateBatch{first: r.Int64(), last: r.Int64(), state: r.Int8(), count: r.Int16()}
		readTags(&r, func(tag uint32, data []byte) {
			switch {
			case int(tag) == tagNotBefore && len(data) == 8:
				sb.notBefore = int64(binary.BigEndian.Uint64(data))
			case int(tag) == tagReason && len(data) == 1:
				sb.reason = Reason(data[0])
			}
		})
		dst = append(dst, sb)
	}
	readTags(&r, func(tag uint32, data []byte) {
		if tag == tagDeliveryComplete && len(data) == 4 {
			v.deliveryComplete = int32(binary.BigEndian.Uint32(data))
		}
	})
	if err := r.Complete(); err != nil {
		return v, fmt.Errorf("%w: state value: %v", ErrCorrupt, err)
	}
	v.batches = dst
	for _, sb := range v.batches {
		if sb.first > sb.last || sb.first < 0 {
			return v, fmt.Errorf("%w: state batch %d-%d", ErrCorrupt, sb.first, sb.last)
		}
		switch sb.state {
		case persistAvailable, persistAcked, persistArchiving, persistArchived:
		default:
			return v, fmt.Errorf("%w: delivery state %d", ErrCorrupt, sb.state)
		}
	}
	return v, nil
}

// memberValue is a ShareGroupMemberMetadataValue v0 (flexible): nullable
// RackId, ClientId, ClientHost, []SubscribedTopicNames.
type memberValue struct {
	rack       *string
	clientID   string
	clientHost string
	topics     []string
}

func appendMemberValue(b []byte, v *memberValue) []byte {
	b = kbin.AppendInt16(b, valueVersion)
	b = kbin.AppendCompactNullableString(b, v.rack)
	b = kbin.AppendCompactString(b, v.clientID)
	b = kbin.AppendCompactString(b, v.clientHost)
	b = kbin.AppendCompactArrayLen(b, len(v.topics))
	for _, t := range v.topics {
		b = kbin.AppendCompactString(b, t)
	}
	return kbin.AppendUvarint(b, 0)
}

func decodeMemberValue(val []byte) (memberValue, error) {
	var v memberValue
	r := kbin.Reader{Src: val}
	if ver := r.Int16(); r.Ok() && ver != valueVersion {
		return v, fmt.Errorf("%w: member value version %d", errUnknownVersion, ver)
	}
	v.rack = r.CompactNullableString()
	v.clientID = r.CompactString()
	v.clientHost = r.CompactString()
	n := r.CompactArrayLen()
	if n > 0 && int(n) > len(r.Src) {
		return v, fmt.Errorf("%w: %d topics in %d bytes", ErrCorrupt, n, len(r.Src))
	}
	for i := int32(0); i < n && r.Ok(); i++ {
		v.topics = append(v.topics, r.CompactString())
	}
	readTags(&r, func(uint32, []byte) {})
	if err := r.Complete(); err != nil {
		return v, fmt.Errorf("%w: member value: %v", ErrCorrupt, err)
	}
	slices.Sort(v.topics)
	v.topics = slices.Compact(v.topics)
	return v, nil
}

// groupValue is a ShareGroupMetadataValue v0 (flexible): int32 Epoch,
// int64 MetadataHash.
type groupValue struct {
	epoch int32
	hash  int64
}

func appendGroupValue(b []byte, v groupValue) []byte {
	b = kbin.AppendInt16(b, valueVersion)
	b = kbin.AppendInt32(b, v.epoch)
	b = kbin.AppendInt64(b, v.hash)
	return kbin.AppendUvarint(b, 0)
}

func decodeGroupValue(val []byte) (groupValue, error) {
	var v groupValue
	r := kbin.Reader{Src: val}
	if ver := r.Int16(); r.Ok() && ver != valueVersion {
		return v, fmt.Errorf("%w: group value version %d", errUnknownVersion, ver)
	}
	v.epoch = r.Int32()
	v.hash = r.Int64()
	readTags(&r, func(uint32, []byte) {})
	if err := r.Complete(); err != nil {
		return v, fmt.Errorf("%w: group value: %v", ErrCorrupt, err)
	}
	return v, nil
}

// assignmentValue is a ShareGroupCurrentMemberAssignmentValue v0
// (flexible): int32 MemberEpoch, int32 PreviousMemberEpoch, int8 State,
// []AssignedPartitions{uuid TopicId, []int32 Partitions}.
type assignmentValue struct {
	epoch, prevEpoch int32
	assigned         assignment
}

func appendAssignmentValue(b []byte, v *assignmentValue) []byte {
	b = kbin.AppendInt16(b, valueVersion)
	b = kbin.AppendInt32(b, v.epoch)
	b = kbin.AppendInt32(b, v.prevEpoch)
	b = kbin.AppendInt8(b, 0) // state: stable (share members have nothing to revoke)
	ids := v.assigned.sortedIDs()
	b = kbin.AppendCompactArrayLen(b, len(ids))
	for _, id := range ids {
		b = kbin.AppendUuid(b, id)
		ps := v.assigned[id]
		b = kbin.AppendCompactArrayLen(b, len(ps))
		for _, p := range ps {
			b = kbin.AppendInt32(b, p)
		}
		b = kbin.AppendUvarint(b, 0)
	}
	return kbin.AppendUvarint(b, 0)
}

func decodeAssignmentValue(val []byte) (assignmentValue, error) {
	v := assignmentValue{assigned: assignment{}}
	r := kbin.Reader{Src: val}
	if ver := r.Int16(); r.Ok() && ver != valueVersion {
		return v, fmt.Errorf("%w: assignment value version %d", errUnknownVersion, ver)
	}
	v.epoch = r.Int32()
	v.prevEpoch = r.Int32()
	r.Int8()
	n := r.CompactArrayLen()
	if n > 0 && int(n)*17 > len(r.Src) {
		return v, fmt.Errorf("%w: %d topics in %d bytes", ErrCorrupt, n, len(r.Src))
	}
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		np := r.CompactArrayLen()
		if np > 0 && int(np)*4 > len(r.Src) {
			return v, fmt.Errorf("%w: %d partitions in %d bytes", ErrCorrupt, np, len(r.Src))
		}
		for j := int32(0); j < np && r.Ok(); j++ {
			v.assigned.add(id, r.Int32())
		}
		readTags(&r, func(uint32, []byte) {})
	}
	readTags(&r, func(uint32, []byte) {})
	if err := r.Complete(); err != nil {
		return v, fmt.Errorf("%w: assignment value: %v", ErrCorrupt, err)
	}
	return v, nil
}

// recordKey is a decoded __share_group_state key.
type recordKey struct {
	version int16
	group   string
	tp      TopicPartition // share snapshot and update keys
	member  string         // member keys
}

// decodeKey decodes any key this package writes. Unknown versions return
// the version with errUnknownVersion.
func decodeKey(key []byte) (recordKey, error) {
	var k recordKey
	r := kbin.Reader{Src: key}
	k.version = r.Int16()
	if !r.Ok() {
		return k, fmt.Errorf("%w: key of %d bytes", ErrCorrupt, len(key))
	}
	switch k.version {
	case keyShareSnapshot, keyShareUpdate:
		k.group = r.String()
		k.tp.TopicID = r.Uuid()
		k.tp.Partition = r.Int32()
	case keyMemberMetadata, keyMemberAssignment:
		k.group = r.String()
		k.member = r.String()
	case keyGroupMetadata:
		k.group = r.String()
	default:
		return k, fmt.Errorf("%w: key version %d", errUnknownVersion, k.version)
	}
	if err := r.Complete(); err != nil {
		return k, fmt.Errorf("%w: key version %d: %v", ErrCorrupt, k.version, err)
	}
	if k.group == "" {
		return k, fmt.Errorf("%w: key version %d with an empty group", ErrCorrupt, k.version)
	}
	return k, nil
}
