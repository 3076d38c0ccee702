package meta

import (
	"encoding/hex"
	"fmt"
)

// Record format version: FormatVersion is written in every record ("v"). A
// reader must accept every older version; add fields with zero values that
// keep the old meaning, and bump the version only for a change that does
// not.
const FormatVersion = 1

// RecordType is a metadata record's kind; it is the record's key in the
// log.
type RecordType string

// Metadata record types.
const (
	TypeTopic       RecordType = "topic"        // a topic was created
	TypePartitions  RecordType = "partitions"   // a topic's partition count grew
	TypeConfig      RecordType = "config"       // a topic, broker or group config was set or removed
	TypeRemoveTopic RecordType = "remove_topic" // a topic was deleted
	TypeProducerIDs RecordType = "producer_ids" // a block of producer ids was reserved
	// In a cluster (a replicated log) only:
	TypeBroker          RecordType = "broker"           // a broker registered, or was fenced or unfenced
	TypeRemoveBroker    RecordType = "remove_broker"    // a broker was unregistered (UnregisterBroker)
	TypeController      RecordType = "controller"       // a controller-only node registered its Kafka listener
	TypePartitionChange RecordType = "partition_change" // a partition's leader, ISR or replicas changed
	TypeScram           RecordType = "scram"            // a user's SCRAM credential was set
	TypeRemoveScram     RecordType = "remove_scram"     // a user's SCRAM credential was removed
	TypeACL             RecordType = "acl"              // an ACL was created
	TypeRemoveACL       RecordType = "remove_acl"       // an ACL was deleted
	TypeClientQuota     RecordType = "client_quota"     // a client quota was set or removed
)

// Record is one change to the metadata: its key in the log is Type, its
// value this struct as JSON. Which fields are set depends on Type.
type Record struct {
	// V is the format version the record was written with.
	V int `json:"v"`
	// Type is the kind of change (the record's key).
	Type RecordType `json:"-"`

	// Topic names the topic (topic, partitions, remove_topic).
	Topic string `json:"topic,omitempty"`
	// TopicID is the topic's id in hex (topic, partitions, remove_topic,
	// and config of a topic).
	TopicID string `json:"topic_id,omitempty"`
	// Partitions is the partition count (topic, partitions).
	Partitions int32 `json:"partitions,omitempty"`
	// Internal marks an internal topic such as __consumer_offsets.
	Internal bool `json:"internal,omitempty"`
	// Configs holds a new topic's own config values.
	Configs map[string]string `json:"configs,omitempty"`

	// Resource is "topic", "broker" or "group" (config).
	Resource string `json:"resource,omitempty"`
	// Name is the topic's name for a topic config (informational), the
	// group's for a group config.
	Name string `json:"name,omitempty"`
	// Key is the config changed; Value its new value, nil to remove it.
	Key   string  `json:"key,omitempty"`
	Value *string `json:"value,omitempty"`

	// NextProducerID: producer ids below it are reserved (producer_ids).
	NextProducerID int64 `json:"next_producer_id,omitempty"`

	// The fields below are written in a cluster only.

	// Assignments lists each partition's replicas, by broker id (topic:
	// every partition; partitions: the new ones).
	Assignments [][]int32 `json:"assignments,omitempty"`
	// Block is the size of a block of producer ids reserved for Broker
	// (producer_ids): it starts where the previous block ended.
	Block int64 `json:"block,omitempty"`

	// Broker is the broker a record is about (broker, remove_broker,
	// producer_ids).
	Broker *int32 `json:"broker,omitempty"`
	// Controller is the controller-only node a controller record is
	// about.
	Controller *int32 `json:"controller,omitempty"`
	// Host and Port are its advertised inter-broker listener, where
	// the other brokers reach it (broker), or its Kafka listener
	// (controller).
	Host string `json:"host,omitempty"`
	Port int32  `json:"port,omitempty"`
	// Endpoints are its advertised listeners, by name (broker): a
	// client is told the brokers' addresses on the listener it is on.
	// Records written before there were endpoints have none.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Rack is a broker's broker.rack (broker); absent for none.
	Rack string `json:"rack,omitempty"`
	// Fenced: the controller lost contact with it (broker).
	Fenced bool `json:"fenced,omitempty"`
	// IfRegistered makes a broker record a change of its fencing only:
	// it applies to a broker still registered and does not register one
	// that was unregistered meanwhile (the controller's fencing).
	IfRegistered bool `json:"if_registered,omitempty"`

	// Partition is the partition a partition_change is about; the fields
	// after it are its new state, whole.
	Partition      *int32  `json:"partition,omitempty"`
	Leader         *int32  `json:"leader,omitempty"`
	LeaderEpoch    int32   `json:"leader_epoch,omitempty"`
	PartitionEpoch int32   `json:"partition_epoch,omitempty"`
	ISR            []int32 `json:"isr,omitempty"`
	Replicas       []int32 `json:"replicas,omitempty"`
	// Target is a reassignment's target replicas, until it completes;
	// Adding those of them that were not replicas before it.
	Target []int32 `json:"target_replicas,omitempty"`
	Adding []int32 `json:"adding_replicas,omitempty"`
	// ExpectEpoch, when set, makes the change conditional: it applies
	// only if the partition epoch is still this (a change computed from
	// an older state is dropped, as Kafka's AlterPartition is refused).
	ExpectEpoch *int32 `json:"expect_partition_epoch,omitempty"`
	// User and Mechanism name a SCRAM credential (scram, remove_scram);
	// Scram is the credential (scram).
	User      string           `json:"user,omitempty"`
	Mechanism string           `json:"mechanism,omitempty"`
	Scram     *ScramCredential `json:"scram,omitempty"`

	// ACL is the ACL created or deleted (acl, remove_acl).
	ACL *ACL `json:"acl,omitempty"`

	// Entity names a client quota's entity (client_quota); the quota is
	// Key, its value Value as a decimal number, nil to remove it.
	Entity QuotaEntity `json:"entity,omitempty"`
}

// TopicIDString is the hex form of a topic id, as records and
// partition.metadata hold it.
func TopicIDString(id [16]byte) string { return hex.EncodeToString(id[:]) }

// ParseTopicID parses the hex form of a topic id.
func ParseTopicID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("meta: bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}
