package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/partition"
)

// offsetsTopic is Kafka's internal topic holding group offsets.
const offsetsTopic = "__consumer_offsets"

// maxPartitions bounds one topic's partitions: each open partition holds
// files and reserves segment.bytes of address space for its active
// segment, so a request for millions must be refused, not attempted.
const maxPartitions = 10_000

// topic is one topic and its partitions on this broker.
type topic struct {
	name     string
	id       [16]byte
	internal bool
	// configs holds the topic's own config values. Replaced, never
	// mutated, under topics.mu.
	configs map[string]string
	// parts is replaced (never mutated) when partitions are added.
	parts atomic.Pointer[[]*partition.Partition]
}

func (t *topic) partitions() []*partition.Partition { return *t.parts.Load() }

// partition returns partition i, or nil when there is no such partition
// or no topic (t may be nil, as a failed lookup returns).
func (t *topic) partition(i int32) *partition.Partition {
	if t == nil {
		return nil
	}
	ps := t.partitions()
	if i < 0 || int(i) >= len(ps) {
		return nil
	}
	return ps[i]
}

// topics is the broker's topic registry.
type topics struct {
	// adminMu serializes changes: create, delete, add partitions, config
	// changes. It is taken before mu.
	adminMu sync.Mutex
	mu      sync.RWMutex
	byName  map[string]*topic
	byID    map[[16]byte]*topic
}

func (ts *topics) get(name string) *topic {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return ts.byName[name]
}

func (ts *topics) getID(id [16]byte) *topic {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	return ts.byID[id]
}

// all returns every topic, sorted by name.
func (ts *topics) all() []*topic {
	ts.mu.RLock()
	out := make([]*topic, 0, len(ts.byName))
	for _, t := range ts.byName {
		out = append(out, t)
	}
	ts.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// validTopicName applies Kafka's rules for topic names.
func validTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is illegal", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is longer than 249 characters")
	case !legalTopic.MatchString(name):
		return fmt.Errorf("topic name %q has characters other than ASCII alphanumerics, '.', '_' and '-'", name)
	}
	return nil
}

func newTopicID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:])
	}
	return id
}

func partitionDir(dataDir, topic string, p int32) string {
	return filepath.Join(dataDir, topic+"-"+strconv.Itoa(int(p)))
}

// topicError pairs a Kafka error with a message for the client.
type topicError struct {
	err *kerr.Error
	msg string
}

func (e *topicError) Error() string { return e.err.Message + ": " + e.msg }

func newTopicError(err *kerr.Error, format string, args ...any) *topicError {
	return &topicError{err: err, msg: fmt.Sprintf(format, args...)}
}

// errCode returns the Kafka code of an error from the topic functions.
func errCode(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	var te *topicError
	if errors.As(err, &te) {
		return te.err.Code, &te.msg
	}
	msg := err.Error()
	return kerr.UnknownServerError.Code, &msg
}

// createTopic validates and creates a topic: records it in the metadata
// log (durably) and opens its partitions. With validateOnly nothing is
// changed.
func (s *Server) createTopic(name string, partitions int32, replication int16, configs map[string]*string, internal, validateOnly bool) (*topic, error) {
	if err := validTopicName(name); err != nil {
		return nil, newTopicError(kerr.InvalidTopicException, "%v", err)
	}
	if strings.HasPrefix(name, "__cluster_metadata") {
		return nil, newTopicError(kerr.InvalidTopicException, "topic name %q is reserved", name)
	}
	if partitions == -1 {
		partitions = int32(s.settings().int64("num.partitions"))
	}
	if partitions <= 0 {
		return nil, newTopicError(kerr.InvalidPartitions, "number of partitions must be larger than 0")
	}
	if partitions > maxPartitions {
		return nil, newTopicError(kerr.InvalidPartitions, "number of partitions %d is above the limit of %d per topic", partitions, maxPartitions)
	}
	if replication == -1 {
		replication = int16(s.settings().int64("default.replication.factor"))
	}
	if replication <= 0 {
		return nil, newTopicError(kerr.InvalidReplicationFactor, "replication factor must be larger than 0")
	}
	if replication > 1 {
		return nil, newTopicError(kerr.InvalidReplicationFactor, "replication factor %d is larger than the number of brokers (1)", replication)
	}
	set := map[string]string{}
	for k, v := range configs {
		if err := validateTopicConfig(k, v); err != nil {
			return nil, newTopicError(kerr.InvalidConfig, "%v", err)
		}
		if v != nil {
			set[k] = *v
		}
	}
	s.topics.adminMu.Lock()
	defer s.topics.adminMu.Unlock()
	if s.topics.get(name) != nil {
		return nil, newTopicError(kerr.TopicAlreadyExists, "topic %q already exists", name)
	}
	if collides := s.collidingTopic(name); collides != "" {
		return nil, newTopicError(kerr.InvalidTopicException, "topic %q collides with existing topic %q ('.' and '_' are interchangeable in metric names)", name, collides)
	}
	if validateOnly {
		return &topic{name: name}, nil
	}
	t := &topic{name: name, id: newTopicID(), internal: internal, configs: set}
	empty := []*partition.Partition{}
	t.parts.Store(&empty)
	// Partitions first, the record second: a failure leaves nothing
	// behind, and a recorded topic always has its partitions.
	if err := s.openPartitions(t, partitions); err != nil {
		return nil, newTopicError(kerr.KafkaStorageError, "creating partitions: %v", err)
	}
	rec := &metaRecord{Type: metaTopic, Topic: name, TopicID: topicIDString(t.id), Partitions: partitions, Internal: internal, Configs: set}
	if err := s.meta.append(rec); err != nil {
		s.dropPartitions(t.partitions())
		return nil, newTopicError(kerr.KafkaStorageError, "recording topic: %v", err)
	}
	s.topics.mu.Lock()
	s.topics.byName[name] = t
	s.topics.byID[t.id] = t
	s.topics.mu.Unlock()
	s.logger.Info("created topic", "topic", name, "partitions", partitions, "configs", set)
	s.topicsChanged()
	return t, nil
}

func (s *Server) collidingTopic(name string) string {
	norm := strings.ReplaceAll(name, ".", "_")
	s.topics.mu.RLock()
	defer s.topics.mu.RUnlock()
	for n := range s.topics.byName {
		if n != name && strings.ReplaceAll(n, ".", "_") == norm {
			return n
		}
	}
	return ""
}

// openPartitions opens (creating) partitions len(t.parts) .. n-1 of t.
func (s *Server) openPartitions(t *topic, n int32) error {
	old := t.partitions()
	parts := append([]*partition.Partition(nil), old...)
	cfg := s.partitionConfig(t)
	for i := int32(len(old)); i < n; i++ {
		dir := partitionDir(s.cfg.DataDir, t.name, i)
		err := s.claimPartitionDir(dir, t.id)
		var p *partition.Partition
		if err == nil {
			p, err = partition.Open(dir, cfg)
		}
		if err != nil {
			s.dropPartitions(parts[len(old):])
			os.RemoveAll(dir)
			return fmt.Errorf("open %s: %w", dir, err)
		}
		parts = append(parts, p)
	}
	t.parts.Store(&parts)
	return nil
}

// dropPartitions closes partitions that were opened for a change that
// failed and removes their directories.
func (s *Server) dropPartitions(parts []*partition.Partition) {
	for _, p := range parts {
		if err := p.Delete(); err != nil {
			s.logger.Error("removing a partition of a failed change", "dir", p.Log().Dir(), "err", err)
		}
	}
}

// claimPartitionDir makes sure dir belongs to the topic with id: a
// directory left by a deleted topic of the same name is removed first.
// The id is kept in partition.metadata, as Kafka keeps it.
func (s *Server) claimPartitionDir(dir string, id [16]byte) error {
	want := "version: 0\ntopic_id: " + topicIDString(id) + "\n"
	meta := filepath.Join(dir, "partition.metadata")
	have, err := os.ReadFile(meta)
	if err == nil && string(have) == want {
		return nil
	}
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("removing partition directory of an older topic", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if _, err := os.Stat(dir); err == nil {
		// A directory with data but no metadata file: an older topic too.
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			s.logger.Warn("removing partition directory with no topic id", "dir", dir)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFileSync(meta, []byte(want)); err != nil {
		return err
	}
	return syncDir(s.cfg.DataDir)
}

// partitionConfig resolves a topic's configs into partition settings.
func (s *Server) partitionConfig(t *topic) partition.Config {
	s.topics.mu.RLock()
	overrides := t.configs
	s.topics.mu.RUnlock()
	cfg := s.settings().partitionConfig(overrides)
	cfg.Logger = s.logger.With("topic", t.name)
	if f := s.cfg.testPartitionConfig; f != nil {
		f(t.name, &cfg)
	}
	return cfg
}

// applyConfigs pushes a topic's current configs to its partitions.
func (s *Server) applyConfigs(t *topic) {
	cfg := s.partitionConfig(t)
	for _, p := range t.partitions() {
		p.SetConfig(cfg)
	}
}

// deleteTopic removes a topic: durably from the metadata log, then its
// partitions and their data.
func (s *Server) deleteTopic(t *topic) error {
	s.topics.adminMu.Lock()
	defer s.topics.adminMu.Unlock()
	if s.topics.get(t.name) != t {
		return newTopicError(kerr.UnknownTopicOrPartition, "topic %q does not exist", t.name)
	}
	if t.internal {
		return newTopicError(kerr.TopicAuthorizationFailed, "internal topic %q cannot be deleted", t.name)
	}
	if !s.settings().bool("delete.topic.enable") {
		return newTopicError(kerr.TopicDeletionDisabled, "delete.topic.enable is false")
	}
	if err := s.meta.append(&metaRecord{Type: metaRemoveTopic, Topic: t.name, TopicID: topicIDString(t.id)}); err != nil {
		return newTopicError(kerr.KafkaStorageError, "recording deletion: %v", err)
	}
	s.topics.mu.Lock()
	delete(s.topics.byName, t.name)
	delete(s.topics.byID, t.id)
	s.topics.mu.Unlock()
	var errs []error
	for _, p := range t.partitions() {
		if err := p.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	s.logger.Info("deleted topic", "topic", t.name)
	s.topicsChanged()
	if len(errs) > 0 {
		s.logger.Error("removing topic data", "topic", t.name, "err", errors.Join(errs...))
	}
	return nil
}

// addPartitions grows a topic to n partitions.
func (s *Server) addPartitions(t *topic, n int32, validateOnly bool) error {
	if t.internal {
		return newTopicError(kerr.InvalidRequest, "the partitions of internal topic %q cannot change", t.name)
	}
	s.topics.adminMu.Lock()
	defer s.topics.adminMu.Unlock()
	cur := int32(len(t.partitions()))
	if n <= cur {
		return newTopicError(kerr.InvalidPartitions, "topic %q has %d partitions; the new count %d must be larger", t.name, cur, n)
	}
	if n > maxPartitions {
		return newTopicError(kerr.InvalidPartitions, "number of partitions %d is above the limit of %d per topic", n, maxPartitions)
	}
	if validateOnly {
		return nil
	}
	old := t.partitions()
	if err := s.openPartitions(t, n); err != nil {
		return newTopicError(kerr.KafkaStorageError, "creating partitions: %v", err)
	}
	if err := s.meta.append(&metaRecord{Type: metaPartitions, Topic: t.name, TopicID: topicIDString(t.id), Partitions: n}); err != nil {
		added := t.partitions()[len(old):]
		t.parts.Store(&old)
		s.dropPartitions(added)
		return newTopicError(kerr.KafkaStorageError, "recording partitions: %v", err)
	}
	s.topicsChanged()
	return nil
}

// setTopicConfigs replaces (replace) or edits a topic's configs; nil
// values remove keys. It validates, records durably and applies at once.
func (s *Server) setTopicConfigs(t *topic, changes map[string]*string, replace, validateOnly bool) error {
	for k, v := range changes {
		if err := validateTopicConfig(k, v); err != nil {
			return newTopicError(kerr.InvalidConfig, "%v", err)
		}
	}
	s.topics.adminMu.Lock()
	defer s.topics.adminMu.Unlock()
	s.topics.mu.RLock()
	next, edits := editConfigs(t.configs, changes, replace)
	s.topics.mu.RUnlock()
	var recs []*metaRecord
	for _, e := range edits {
		recs = append(recs, &metaRecord{Type: metaConfig, Resource: "topic", Name: t.name, TopicID: topicIDString(t.id), Key: e.key, Value: e.value})
	}
	if validateOnly || len(recs) == 0 {
		return nil
	}
	if err := s.meta.append(recs...); err != nil {
		return newTopicError(kerr.KafkaStorageError, "recording configs: %v", err)
	}
	s.topics.mu.Lock()
	t.configs = next
	s.topics.mu.Unlock()
	s.applyConfigs(t)
	return nil
}

// configEdit is one key changed by editConfigs; a nil value removes it.
type configEdit struct {
	key   string
	value *string
}

// editConfigs applies changes to a copy of cur: a nil value removes its
// key, and with replace every key not named is removed too. It returns the
// new set and the edits, in key order, to record in the metadata log.
func editConfigs(cur map[string]string, changes map[string]*string, replace bool) (map[string]string, []configEdit) {
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]string{}
	}
	var edits []configEdit
	if replace {
		for k := range cur {
			if _, ok := changes[k]; !ok {
				edits = append(edits, configEdit{key: k})
				delete(next, k)
			}
		}
	}
	for k, v := range changes {
		edits = append(edits, configEdit{key: k, value: v})
		if v == nil {
			delete(next, k)
		} else {
			next[k] = *v
		}
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].key < edits[j].key })
	return next, edits
}

func writeFileSync(path string, data []byte) error { return durable.WriteFile(path, data) }

func syncDir(dir string) error { return durable.SyncDir(dir) }
