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
	TypeScram       RecordType = "scram"        // a user's SCRAM credential was set
	TypeRemoveScram RecordType = "remove_scram" // a user's SCRAM credential was removed
	TypeACL         RecordType = "acl"          // an ACL was created
	TypeRemoveACL   RecordType = "remove_acl"   // an ACL was deleted
	TypeClientQuota RecordType = "client_quota" // a client quota was set or removed
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
