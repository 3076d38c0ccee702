package server

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// The metadata log is a log (package log) in <data>/__cluster_metadata-0
// holding one record per change to topics, partitions, configs and
// producer-id blocks, in the shape of KRaft's metadata log. Each record's
// key is its type and its value a JSON object (metaRecord). At start the
// broker replays the log into its in-memory image; every change is
// appended and fsynced before the request that made it is answered.
//
// Format version: metaVersion is written in every record ("v"). A reader
// must accept every older version; add fields with zero values that keep
// the old meaning, and bump the version only for a change that does not.
const (
	metaDir     = "__cluster_metadata-0"
	metaVersion = 1
)

// Metadata record types.
const (
	metaTopic       = "topic"        // a topic was created
	metaPartitions  = "partitions"   // a topic's partition count grew
	metaConfig      = "config"       // a topic or broker config was set or removed
	metaRemoveTopic = "remove_topic" // a topic was deleted
	metaProducerIDs = "producer_ids" // a block of producer ids was reserved
)

// metaRecord is the value of one metadata record.
type metaRecord struct {
	V    int    `json:"v"`
	Type string `json:"-"`

	// topic, partitions, remove_topic
	Topic      string            `json:"topic,omitempty"`
	TopicID    string            `json:"topic_id,omitempty"` // hex
	Partitions int32             `json:"partitions,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
	Configs    map[string]string `json:"configs,omitempty"`

	// config: Resource is "topic" or "broker"; Value nil removes the key.
	Resource string  `json:"resource,omitempty"`
	Name     string  `json:"name,omitempty"`
	Key      string  `json:"key,omitempty"`
	Value    *string `json:"value,omitempty"`

	// producer_ids: ids below NextProducerID are reserved.
	NextProducerID int64 `json:"next_producer_id,omitempty"`
}

func topicIDString(id [16]byte) string { return hex.EncodeToString(id[:]) }

func parseTopicID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// metaLog appends metadata records durably.
type metaLog struct {
	mu  sync.Mutex
	log *log.Log
	buf []byte
}

func openMetaLog(dataDir string, cfg log.Config) (*metaLog, error) {
	cfg.RetentionMs = -1
	cfg.Compact = true
	cfg.SegmentBytes = 64 << 20
	l, err := log.Open(filepath.Join(dataDir, metaDir), cfg)
	if err != nil {
		return nil, fmt.Errorf("open metadata log: %w", err)
	}
	return &metaLog{log: l}, nil
}

// replay calls fn for every record in order.
func (m *metaLog) replay(fn func(r *metaRecord) error) error {
	var ferr error
	err := m.log.Walk(m.log.LogStartOffset(), func(batch []byte, h *record.Header) bool {
		ferr = record.ForEach(batch, func(rec *record.Record) error {
			var r metaRecord
			if err := json.Unmarshal(rec.Value, &r); err != nil {
				return fmt.Errorf("metadata record at %d: %w", h.BaseOffset+int64(rec.OffsetDelta), err)
			}
			r.Type = string(rec.Key)
			return fn(&r)
		})
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// append writes records as one batch and fsyncs it.
func (m *metaLog) append(recs ...*metaRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		r.V = metaVersion
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		rs[i] = record.Record{Key: []byte(r.Type), Value: v}
	}
	m.buf = record.AppendBatch(m.buf[:0], record.Batch{
		BaseTimestamp: time.Now().UnixMilli(),
		ProducerID:    -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: rs,
	})
	h, err := record.Validate(m.buf)
	if err != nil {
		return err
	}
	if _, err := m.log.Append(m.buf, &h); err != nil {
		return err
	}
	return m.log.Sync()
}

func (m *metaLog) close() error { return m.log.Close() }
