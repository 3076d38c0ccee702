package group

import (
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// This file holds Kafka's KIP-848 consumer group records of
// __consumer_offsets, encoded as Kafka's group coordinator writes them
// (group-coordinator/src/main/resources/common/message/ConsumerGroup*.json):
// a key is [int16 record type][fields, non-flexible], a value is [int16
// version 0][fields, flexible: compact strings and arrays, a tagged-field
// section after every struct]. kmsg does not have them, so they are
// written with kbin. Fields Ferry does not use are written with Kafka's
// defaults and skipped when read, as are tagged fields it does not know.

// KIP-848 record types (key versions).
const (
	keyConsumerGroupMetadata    int16 = 3 // [group] → group epoch
	keyConsumerGroupPartitions  int16 = 4 // [group] → subscribed topics and their partition counts
	keyConsumerGroupMember      int16 = 5 // [group, member] → member metadata (subscription, client)
	keyConsumerGroupTargetEpoch int16 = 6 // [group] → target assignment epoch
	keyConsumerGroupTarget      int16 = 7 // [group, member] → the member's target assignment
	keyConsumerGroupCurrent     int16 = 8 // [group, member] → the member's epochs, state and assignment

	// keyConsumerGroupLegacy keyed the one self-contained record a KIP-848
	// group was stored as before Ferry wrote Kafka's records. It is read
	// at replay (see consumer_legacy.go) and never written, except as a
	// tombstone once the group is stored in Kafka's records.
	keyConsumerGroupLegacy int16 = 1000
)

// consumerValueVersion is the value version of every KIP-848 record: Kafka
// defines only version 0 and grows the records with tagged fields.
//
// FORMAT MIGRATION: the layouts are Kafka's; follow Kafka. A tagged field
// Kafka adds is skipped here until it is needed. A value of a version this
// broker does not know is skipped at replay like an undecodable one: the
// key keeps the value before it, which a snapshot writes.
const consumerValueVersion int16 = 0

// errNewerVersion marks a value of a version this broker cannot read.
var errNewerVersion = errors.New("group: record value version is newer than this broker reads")

// subTopic is one topic a KIP-848 group subscribes to, as of the group's
// last epoch bump (ConsumerGroupPartitionMetadataValue.Topics).
type subTopic struct {
	name       string
	id         [16]byte
	partitions int32
}

func consumerGroupKey(typ int16, group string) []byte {
	b := make([]byte, 0, 4+len(group))
	b = kbin.AppendInt16(b, typ)
	return kbin.AppendString(b, group)
}

func consumerMemberKey(typ int16, group, member string) []byte {
	b := make([]byte, 0, 6+len(group)+len(member))
	b = kbin.AppendInt16(b, typ)
	b = kbin.AppendString(b, group)
	return kbin.AppendString(b, member)
}

// parseConsumerKey reads a key of type 3 to 8 (and 1000) after its type:
// the group and, for member records, the member ID.
func parseConsumerKey(typ int16, key []byte) (group, member string, err error) {
	r := kbin.Reader{Src: key[2:]}
	group = r.String()
	switch typ {
	case keyConsumerGroupMember, keyConsumerGroupTarget, keyConsumerGroupCurrent:
		member = r.String()
	}
	if err := r.Complete(); err != nil || len(r.Src) != 0 {
		return "", "", fmt.Errorf("%w: consumer group key type %d", ErrCorrupt, typ)
	}
	return group, member, nil
}

// appendNoTags ends a flexible struct with an empty tagged-field section.
func appendNoTags(b []byte) []byte { return append(b, 0) }

// readTags reads a tagged-field section, handing each field's bytes to fn
// (nil skips them all).
func readTags(r *kbin.Reader, fn func(tag uint32, field *kbin.Reader)) {
	n := r.Uvarint()
	for i := uint32(0); i < n && r.Ok(); i++ {
		tag := r.Uvarint()
		size := r.Uvarint()
		if uint64(size) > uint64(len(r.Src)) {
			r.Span(len(r.Src) + 1) // marks r bad
			return
		}
		field := kbin.Reader{Src: r.Span(int(size))}
		if fn != nil {
			fn(tag, &field)
		}
	}
}

// valueReader starts decoding a version-0 value.
func valueReader(v []byte) (kbin.Reader, error) {
	r := kbin.Reader{Src: v}
	switch ver := r.Int16(); {
	case !r.Ok():
		return r, fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(v))
	case ver > consumerValueVersion:
		return r, fmt.Errorf("%w: version %d", errNewerVersion, ver)
	case ver < 0:
		return r, fmt.Errorf("%w: value version %d", ErrCorrupt, ver)
	}
	return r, nil
}

func valueDone(r *kbin.Reader, what string) error {
	if err := r.Complete(); err != nil {
		return fmt.Errorf("%w: %s value: %v", ErrCorrupt, what, err)
	}
	if len(r.Src) != 0 {
		return fmt.Errorf("%w: %s value: %d bytes past its end", ErrCorrupt, what, len(r.Src))
	}
	return nil
}

func compactNullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ConsumerGroupMetadataValue: Epoch int32; tagged MetadataHash (0),
// CreationTimeMs (1).

func encodeGroupEpochValue(epoch int32) []byte {
	b := make([]byte, 0, 7)
	b = kbin.AppendInt16(b, consumerValueVersion)
	b = kbin.AppendInt32(b, epoch)
	return appendNoTags(b)
}

func decodeGroupEpochValue(v []byte) (int32, error) {
	r, err := valueReader(v)
	if err != nil {
		return 0, err
	}
	epoch := r.Int32()
	readTags(&r, nil)
	return epoch, valueDone(&r, "consumer group metadata")
}

// ConsumerGroupPartitionMetadataValue: Topics [TopicId uuid, TopicName
// string, NumPartitions int32, PartitionMetadata [Partition int32, Racks
// []string]].

func encodePartitionsValue(ts []subTopic) []byte {
	b := kbin.AppendInt16(nil, consumerValueVersion)
	b = kbin.AppendCompactArrayLen(b, len(ts))
	for _, t := range ts {
		b = kbin.AppendUuid(b, t.id)
		b = kbin.AppendCompactString(b, t.name)
		b = kbin.AppendInt32(b, t.partitions)
		b = kbin.AppendCompactArrayLen(b, 0) // no rack information
		b = appendNoTags(b)
	}
	return appendNoTags(b)
}

func decodePartitionsValue(v []byte) ([]subTopic, error) {
	r, err := valueReader(v)
	if err != nil {
		return nil, err
	}
	var ts []subTopic
	n := r.CompactArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		var t subTopic
		t.id = r.Uuid()
		t.name = r.CompactString()
		t.partitions = r.Int32()
		np := r.CompactArrayLen()
		for j := int32(0); j < np && r.Ok(); j++ {
			r.Int32()
			nr := r.CompactArrayLen()
			for k := int32(0); k < nr && r.Ok(); k++ {
				r.CompactString()
			}
			readTags(&r, nil)
		}
		readTags(&r, nil)
		ts = append(ts, t)
	}
	readTags(&r, nil)
	if err := valueDone(&r, "consumer group partition metadata"); err != nil {
		return nil, err
	}
	slices.SortFunc(ts, func(a, b subTopic) int { return cmpString(a.name, b.name) })
	return slices.CompactFunc(ts, func(a, b subTopic) bool { return a.name == b.name }), nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ConsumerGroupMemberMetadataValue: InstanceId string?, RackId string?,
// ClientId string, ClientHost string, SubscribedTopicNames []string,
// SubscribedTopicRegex string?, RebalanceTimeoutMs int32, ServerAssignor
// string?; tagged ClassicMemberMetadata (0), which Ferry never writes: its
// KIP-848 groups have no classic members.

func encodeMemberValue(m *memberMeta) []byte {
	b := make([]byte, 0, 32+len(m.clientID)+len(m.clientHost))
	b = kbin.AppendInt16(b, consumerValueVersion)
	b = kbin.AppendCompactNullableString(b, m.instanceID)
	b = kbin.AppendCompactNullableString(b, m.rackID)
	b = kbin.AppendCompactString(b, m.clientID)
	b = kbin.AppendCompactString(b, m.clientHost)
	b = kbin.AppendCompactArrayLen(b, len(m.topicNames))
	for _, t := range m.topicNames {
		b = kbin.AppendCompactString(b, t)
	}
	b = kbin.AppendCompactNullableString(b, m.regex)
	b = kbin.AppendInt32(b, m.rebalanceTimeout)
	b = kbin.AppendCompactNullableString(b, compactNullable(m.serverAssignor))
	return appendNoTags(b)
}

func decodeMemberValue(v []byte) (memberMeta, error) {
	var m memberMeta
	r, err := valueReader(v)
	if err != nil {
		return m, err
	}
	m.instanceID = r.CompactNullableString()
	m.rackID = r.CompactNullableString()
	m.clientID = r.CompactString()
	m.clientHost = r.CompactString()
	n := r.CompactArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		m.topicNames = append(m.topicNames, r.CompactString())
	}
	m.regex = r.CompactNullableString()
	m.rebalanceTimeout = r.Int32()
	m.serverAssignor = derefStr(r.CompactNullableString())
	readTags(&r, nil)
	if err := valueDone(&r, "consumer group member metadata"); err != nil {
		return memberMeta{}, err
	}
	m.topicNames = slices.Compact(slices.Sorted(slices.Values(m.topicNames)))
	return m, nil
}

// ConsumerGroupTargetAssignmentMetadataValue: AssignmentEpoch int32; tagged
// AssignmentTimestamp (0).

func encodeTargetEpochValue(epoch int32) []byte {
	return encodeGroupEpochValue(epoch) // the same layout: int32 and tags
}

func decodeTargetEpochValue(v []byte) (int32, error) {
	r, err := valueReader(v)
	if err != nil {
		return 0, err
	}
	epoch := r.Int32()
	readTags(&r, nil)
	return epoch, valueDone(&r, "consumer group target assignment metadata")
}

// appendTopicPartitions writes a as [TopicId uuid, Partitions []int32] in
// topic ID order; with epochs, each topic also carries the tagged
// AssignmentEpochs (0) of the current-assignment record, aligned with its
// partitions.
func appendTopicPartitions(b []byte, a assignment, epochs map[tpKey]int32) []byte {
	ids := a.sortedIDs()
	b = kbin.AppendCompactArrayLen(b, len(ids))
	for _, id := range ids {
		ps := a[id]
		b = kbin.AppendUuid(b, id)
		b = kbin.AppendCompactArrayLen(b, len(ps))
		for _, p := range ps {
			b = kbin.AppendInt32(b, p)
		}
		if epochs == nil {
			b = appendNoTags(b)
			continue
		}
		b = kbin.AppendUvarint(b, 1) // one tagged field
		b = kbin.AppendUvarint(b, 0) // AssignmentEpochs
		b = kbin.AppendUvarint(b, uint32(kbin.UvarintLen(uint32(len(ps)+1))+4*len(ps)))
		b = kbin.AppendCompactArrayLen(b, len(ps))
		for _, p := range ps {
			b = kbin.AppendInt32(b, epochs[tpKey{id, p}])
		}
	}
	return b
}

// readTopicPartitions reads what appendTopicPartitions wrote. Partitions
// come back sorted and deduplicated; with epochs non-nil, each partition's
// assignment epoch is stored there (0 when the record has none).
func readTopicPartitions(r *kbin.Reader, epochs map[tpKey]int32) assignment {
	a := assignment{}
	n := r.CompactArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		np := r.CompactArrayLen()
		ps := make([]int32, 0, max(np, 0))
		for j := int32(0); j < np && r.Ok(); j++ {
			ps = append(ps, r.Int32())
		}
		var at []int32
		readTags(r, func(tag uint32, f *kbin.Reader) {
			if tag != 0 {
				return
			}
			ne := f.CompactArrayLen()
			for j := int32(0); j < ne && f.Ok(); j++ {
				at = append(at, f.Int32())
			}
			if !f.Ok() || len(at) != len(ps) {
				at = nil // unusable: the partitions keep epoch 0
			}
		})
		if epochs != nil {
			for j, p := range ps {
				e := int32(0)
				if at != nil {
					e = at[j]
				}
				epochs[tpKey{id, p}] = e
			}
		}
		ps = append(a[id], ps...)
		slices.Sort(ps)
		if ps = slices.Compact(ps); len(ps) > 0 {
			a[id] = ps
		}
	}
	return a
}

// ConsumerGroupTargetAssignmentMemberValue: TopicPartitions [TopicId uuid,
// Partitions []int32].

func encodeTargetValue(a assignment) []byte {
	b := kbin.AppendInt16(make([]byte, 0, 8+24*len(a)), consumerValueVersion)
	b = appendTopicPartitions(b, a, nil)
	return appendNoTags(b)
}

func decodeTargetValue(v []byte) (assignment, error) {
	r, err := valueReader(v)
	if err != nil {
		return nil, err
	}
	a := readTopicPartitions(&r, nil)
	readTags(&r, nil)
	if err := valueDone(&r, "consumer group target assignment member"); err != nil {
		return nil, err
	}
	return a, nil
}

// currentAssignment is the content of a ConsumerGroupCurrentMemberAssignmentValue:
// MemberEpoch int32, PreviousMemberEpoch int32, State int8,
// AssignedPartitions and PartitionsPendingRevocation as TopicPartitions
// [TopicId uuid, Partitions []int32, tagged AssignmentEpochs []int32 (0)].
type currentAssignment struct {
	epoch, prevEpoch int32
	state            memberState
	assigned         assignment
	pendingRevoke    assignment
	assignedAt       map[tpKey]int32
}

func encodeCurrentValue(m *cmember) []byte {
	b := kbin.AppendInt16(make([]byte, 0, 16+32*(len(m.assigned)+len(m.pendingRevoke))), consumerValueVersion)
	b = kbin.AppendInt32(b, m.epoch)
	b = kbin.AppendInt32(b, m.prevEpoch)
	b = kbin.AppendInt8(b, int8(m.state))
	at := m.assignedAt
	if at == nil {
		at = map[tpKey]int32{}
	}
	b = appendTopicPartitions(b, m.assigned, at)
	b = appendTopicPartitions(b, m.pendingRevoke, at)
	return appendNoTags(b)
}

func decodeCurrentValue(v []byte) (currentAssignment, error) {
	var ca currentAssignment
	r, err := valueReader(v)
	if err != nil {
		return ca, err
	}
	ca.epoch = r.Int32()
	ca.prevEpoch = r.Int32()
	ca.state = memberState(r.Int8())
	ca.assignedAt = make(map[tpKey]int32)
	ca.assigned = readTopicPartitions(&r, ca.assignedAt)
	ca.pendingRevoke = readTopicPartitions(&r, ca.assignedAt)
	readTags(&r, nil)
	if err := valueDone(&r, "consumer group current member assignment"); err != nil {
		return currentAssignment{}, err
	}
	return ca, nil
}
