package meta

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ferrymq/ferry/partition"
)

// maxPartitions bounds one topic's partitions: each open partition holds
// files and reserves segment.bytes of address space for its active
// segment, so a request for millions must be refused, not attempted.
const maxPartitions = 10_000

// NewTopic describes a topic to create.
type NewTopic struct {
	// Name is the topic's name (Kafka's rules: ValidTopicName).
	Name string
	// Partitions is the partition count; -1 means num.partitions.
	Partitions int32
	// ReplicationFactor is the replica count; -1 means
	// default.replication.factor. One broker holds at most one.
	ReplicationFactor int16
	// Configs holds the topic's own configs; nil values are ignored.
	Configs map[string]*string
	// Internal marks a topic of the broker's own (__consumer_offsets).
	Internal bool
}

// check validates nt, fills in the defaults and returns its configs.
func (s *Store) check(nt *NewTopic) (map[string]string, error) {
	if err := ValidTopicName(nt.Name); err != nil {
		return nil, err
	}
	if strings.HasPrefix(nt.Name, "__cluster_metadata") {
		return nil, fmt.Errorf("%w: topic name %q is reserved", ErrInvalidTopic, nt.Name)
	}
	if nt.Partitions == -1 {
		nt.Partitions = int32(s.Settings().Int64("num.partitions"))
	}
	if nt.Partitions <= 0 {
		return nil, fmt.Errorf("%w: number of partitions must be larger than 0", ErrInvalidPartitions)
	}
	if nt.Partitions > maxPartitions {
		return nil, fmt.Errorf("%w: number of partitions %d is above the limit of %d per topic", ErrInvalidPartitions, nt.Partitions, maxPartitions)
	}
	if nt.ReplicationFactor == -1 {
		nt.ReplicationFactor = int16(s.Settings().Int64("default.replication.factor"))
	}
	if nt.ReplicationFactor <= 0 {
		return nil, fmt.Errorf("%w: replication factor must be larger than 0", ErrInvalidReplicationFactor)
	}
	if nt.ReplicationFactor > 1 {
		return nil, fmt.Errorf("%w: replication factor %d is larger than the number of brokers (1)", ErrInvalidReplicationFactor, nt.ReplicationFactor)
	}
	set := map[string]string{}
	for k, v := range nt.Configs {
		if err := validateTopicConfig(k, v); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if v != nil {
			set[k] = *v
		}
	}
	if s.Topic(nt.Name) != nil {
		return nil, fmt.Errorf("%w: topic %q already exists", ErrTopicExists, nt.Name)
	}
	if collides := s.collidingTopic(nt.Name); collides != "" {
		return nil, fmt.Errorf("%w: topic %q collides with existing topic %q ('.' and '_' are interchangeable in metric names)", ErrInvalidTopic, nt.Name, collides)
	}
	return set, nil
}

// ValidateTopic checks that CreateTopic(nt) would be accepted, creating
// nothing.
func (s *Store) ValidateTopic(nt NewTopic) error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	_, err := s.check(&nt)
	return err
}

// CreateTopic validates and creates a topic: it opens its partitions, then
// records it durably in the metadata log.
func (s *Store) CreateTopic(nt NewTopic) (*Topic, error) {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return nil, ErrClosed
	}
	set, err := s.check(&nt)
	if err != nil {
		return nil, err
	}
	t := newTopic(nt.Name, newTopicID(), nt.Internal, set)
	// Partitions first, the record second: a failure leaves nothing
	// behind, and a recorded topic always has its partitions.
	added, err := s.createPartitions(t, 0, nt.Partitions)
	if err != nil {
		return nil, fmt.Errorf("%w: creating partitions: %w", ErrStorage, err)
	}
	t.grow(nt.Partitions, added)
	s.image.mu.Lock()
	s.image.pending[t.id] = t
	s.image.mu.Unlock()
	rec := Record{Type: TypeTopic, Topic: nt.Name, TopicID: TopicIDString(t.id), Partitions: nt.Partitions, Internal: nt.Internal, Configs: set}
	err = s.log.Propose([]Record{rec})
	s.image.mu.Lock()
	delete(s.image.pending, t.id)
	s.image.mu.Unlock()
	if err != nil {
		s.dropPartitions(added)
		return nil, fmt.Errorf("%w: recording topic: %w", ErrStorage, err)
	}
	s.logger.Info("created topic", "topic", nt.Name, "partitions", nt.Partitions, "configs", set)
	s.topicsChanged()
	return t, nil
}

func (s *Store) topicsChanged() {
	if s.cfg.TopicsChanged != nil {
		s.cfg.TopicsChanged()
	}
}

func (s *Store) collidingTopic(name string) string {
	norm := strings.ReplaceAll(name, ".", "_")
	s.image.mu.RLock()
	defer s.image.mu.RUnlock()
	for n := range s.image.byName {
		if n != name && strings.ReplaceAll(n, ".", "_") == norm {
			return n
		}
	}
	return ""
}

func newTopicID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		rand.Read(id[:])
	}
	return id
}

// createPartitions opens (creating) partitions from .. to-1 of t. On
// failure it removes what it created and returns the error.
func (s *Store) createPartitions(t *Topic, from, to int32) ([]slot, error) {
	cfg := s.partitionConfig(t)
	var added []slot
	for i := from; i < to; i++ {
		dir := partitionDir(s.cfg.DataDir, t.name, i)
		err := s.claimPartitionDir(dir, t.id)
		var p *partition.Partition
		if err == nil {
			p, err = partition.Open(dir, cfg)
		}
		if err != nil {
			s.dropPartitions(added)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("open %s: %w", dir, err)
		}
		added = append(added, slot{p: p})
	}
	return added, nil
}

// dropPartitions closes partitions that were opened for a change that
// failed and removes their directories.
func (s *Store) dropPartitions(parts []slot) {
	for _, sl := range parts {
		if sl.p == nil {
			continue
		}
		if err := sl.p.Delete(); err != nil {
			s.logger.Error("removing a partition of a failed change", "dir", sl.p.Dir(), "err", err)
		}
	}
}

// claimPartitionDir makes sure dir belongs to the topic with id: a
// directory left by a deleted topic of the same name is removed first.
// The id is kept in partition.metadata, as Kafka keeps it.
func (s *Store) claimPartitionDir(dir string, id [16]byte) error {
	want := "version: 0\ntopic_id: " + TopicIDString(id) + "\n"
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

// openImage opens the partitions of every topic replayed from the log.
// Partition directories that belong to no topic are removed.
func (s *Store) openImage() error {
	live := map[string]bool{}
	for _, t := range s.Topics() {
		n := t.NumPartitions()
		t.parts.Store(&[]slot{})
		added, err := s.createPartitions(t, 0, n)
		if err != nil {
			return fmt.Errorf("meta: open topic %s: %w", t.name, err)
		}
		t.grow(n, added)
		for i := int32(0); i < n; i++ {
			live[filepath.Base(partitionDir(s.cfg.DataDir, t.name, i))] = true
		}
	}
	ents, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == MetadataDir || live[e.Name()] || !partitionDirName.MatchString(e.Name()) {
			continue
		}
		s.logger.Warn("removing partition directory of a deleted topic", "dir", e.Name())
		if err := os.RemoveAll(filepath.Join(s.cfg.DataDir, e.Name())); err != nil {
			return err
		}
	}
	return syncDir(s.cfg.DataDir)
}

var partitionDirName = regexp.MustCompile(`^[a-zA-Z0-9._-]+-[0-9]+$`)

// DeleteTopic removes a topic: durably from the metadata log, then its
// partitions and their data.
func (s *Store) DeleteTopic(t *Topic) error {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if s.Topic(t.name) != t {
		return fmt.Errorf("%w: topic %q does not exist", ErrUnknownTopicOrPartition, t.name)
	}
	if t.internal {
		return fmt.Errorf("%w: internal topic %q cannot be deleted", ErrInternalTopic, t.name)
	}
	if !s.Settings().Bool("delete.topic.enable") {
		return fmt.Errorf("%w: delete.topic.enable is false", ErrDeletionDisabled)
	}
	if err := s.log.Propose([]Record{{Type: TypeRemoveTopic, Topic: t.name, TopicID: TopicIDString(t.id)}}); err != nil {
		return fmt.Errorf("%w: recording deletion: %w", ErrStorage, err)
	}
	var errs []error
	for _, sl := range *t.parts.Load() {
		if sl.p != nil {
			if err := sl.p.Delete(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.logger.Info("deleted topic", "topic", t.name)
	s.topicsChanged()
	if len(errs) > 0 {
		s.logger.Error("removing topic data", "topic", t.name, "err", errors.Join(errs...))
	}
	return nil
}

// AddPartitions grows a topic to n partitions. With validateOnly it only
// checks that it could.
func (s *Store) AddPartitions(t *Topic, n int32, validateOnly bool) error {
	if t.internal {
		return fmt.Errorf("%w: the partitions of internal topic %q cannot change", ErrInvalidRequest, t.name)
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	cur := t.NumPartitions()
	if n <= cur {
		return fmt.Errorf("%w: topic %q has %d partitions; the new count %d must be larger", ErrInvalidPartitions, t.name, cur, n)
	}
	if n > maxPartitions {
		return fmt.Errorf("%w: number of partitions %d is above the limit of %d per topic", ErrInvalidPartitions, n, maxPartitions)
	}
	if validateOnly {
		return nil
	}
	added, err := s.createPartitions(t, cur, n)
	if err != nil {
		return fmt.Errorf("%w: creating partitions: %w", ErrStorage, err)
	}
	s.image.mu.Lock()
	s.image.pendingParts[t.id] = added
	s.image.mu.Unlock()
	err = s.log.Propose([]Record{{Type: TypePartitions, Topic: t.name, TopicID: TopicIDString(t.id), Partitions: n}})
	s.image.mu.Lock()
	delete(s.image.pendingParts, t.id)
	s.image.mu.Unlock()
	if err != nil {
		s.dropPartitions(added)
		return fmt.Errorf("%w: recording partitions: %w", ErrStorage, err)
	}
	s.topicsChanged()
	return nil
}
