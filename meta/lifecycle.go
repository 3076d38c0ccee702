package meta

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Assignments, in a cluster, places each partition's replicas
	// (CreateTopics with a replica assignment); nil places them on the
	// unfenced brokers round robin.
	Assignments [][]int32
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
	if nt.ReplicationFactor > 1 && !s.cfg.Replicated {
		return nil, fmt.Errorf("%w: replication factor %d is larger than the number of brokers (1)", ErrInvalidReplicationFactor, nt.ReplicationFactor)
	}
	set := map[string]string{}
	for k, v := range nt.Configs {
		if err := validateTopicConfig(k, v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
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
	start := time.Now()
	if s.cfg.Replicated {
		return s.createTopicReplicated(nt, set)
	}
	t := newTopic(nt.Name, newTopicID(), nt.Internal, set)
	t.node = s.cfg.NodeID
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
	s.logger.Info("created topic", "topic", nt.Name, "partitions", nt.Partitions, "configs", set, "took", time.Since(start))
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

// createPartitions creates and opens partitions from .. to-1 of a topic
// being created or grown. Their directories and files are made without a
// sync each, in parallel, and then made durable together (syncCreated:
// one syncfs(2) on Linux); only then may the caller record them. On
// failure it removes what it made, and only that, and returns the error.
func (s *Store) createPartitions(t *Topic, from, to int32) ([]slot, error) {
	cfg := s.partitionConfig(t)
	n := int(to - from)
	dirs := make([]string, n)
	made := make([]bool, n) // the directory was made by this call
	added := make([]slot, n)
	errs := make([]error, n)
	parallel(n, func(k int) {
		dir := partitionDir(s.cfg.DataDir, t.name, from+int32(k))
		dirs[k] = dir
		if err := s.newPartitionDir(dir, t.id); err != nil {
			errs[k] = fmt.Errorf("create %s: %w", dir, err)
			return
		}
		made[k] = true
		p, err := s.openPart(dir, partitionLogger(cfg, from+int32(k)))
		if err != nil {
			errs[k] = fmt.Errorf("open %s: %w", dir, err)
			return
		}
		added[k] = slot{p: p}
	})
	var err error
	for _, e := range errs {
		if e != nil {
			err = e
			break
		}
	}
	if err == nil {
		synced := time.Now()
		err = syncCreated(s.cfg.DataDir, dirs)
		s.logger.Debug("partitions made durable", "topic", t.name, "partitions", n, "sync_took", time.Since(synced))
	}
	if err != nil {
		for k := range n {
			if added[k].p == nil && made[k] {
				if rerr := os.RemoveAll(dirs[k]); rerr != nil {
					s.logger.Error("removing a partition of a failed change", "dir", dirs[k], "err", rerr)
				}
			}
		}
		s.dropPartitions(added)
		return nil, err
	}
	return added, nil
}

// parallel calls fn(0) .. fn(n-1) on up to openWorkers goroutines and
// returns once every call has.
func parallel(n int, fn func(i int)) { parallelN(openWorkers, n, fn) }

// parallelN is parallel on up to workers goroutines.
func parallelN(workers, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// dropPartitions closes partitions that were created for a change that
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

// partitionMetadata is the content of partition.metadata, which names the
// topic a partition directory belongs to, as Kafka's does.
func partitionMetadata(id [16]byte) []byte {
	return []byte("version: 0\ntopic_id: " + TopicIDString(id) + "\n")
}

// parsePartitionMetadata reads the topic id from partition.metadata.
func parsePartitionMetadata(b []byte) ([16]byte, error) {
	props := ParseProperties(string(b))
	if v := props["version"]; v != "0" {
		return [16]byte{}, fmt.Errorf("partition.metadata: version %q is not 0", v)
	}
	return ParseTopicID(props["topic_id"])
}

// newPartitionDir creates dir for a new partition of the topic with id,
// with its partition.metadata, not yet durably: the caller syncs
// (syncCreated) before anything depends on it. A non-empty directory
// already there (left by an older topic of the same name, or by a topic
// the metadata log does not know) is moved aside, never removed: it is
// renamed <topic>-<partition>.<id>-stray, as Kafka names a log its
// metadata does not know, where an operator can find it.
func (s *Store) newPartitionDir(dir string, id [16]byte) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		if fi, lerr := os.Lstat(dir); lerr == nil && fi.IsDir() && os.Remove(dir) == nil {
			// It was an empty directory: nothing to keep.
			err = os.Mkdir(dir, 0o755)
		} else {
			err = s.moveAside(dir)
			if err == nil {
				err = os.Mkdir(dir, 0o755)
			}
		}
	}
	if err != nil {
		return err
	}
	// A new file in a new directory: no rename is needed to replace an
	// old one atomically, and syncCreated makes it durable.
	return os.WriteFile(filepath.Join(dir, "partition.metadata"), partitionMetadata(id), 0o644)
}

// moveAside renames a directory that is in the way of a new partition.
func (s *Store) moveAside(dir string) error {
	owner, err := os.ReadFile(filepath.Join(dir, "partition.metadata"))
	id, perr := parsePartitionMetadata(owner)
	if err != nil || perr != nil {
		id = newTopicID()
	}
	aside := dir + "." + TopicIDString(id) + "-stray"
	if err := os.Rename(dir, aside); err != nil {
		return err
	}
	s.logger.Warn("moved a partition directory the metadata does not know out of the way of a new partition", "dir", filepath.Base(dir), "now", filepath.Base(aside))
	return syncDir(s.cfg.DataDir)
}

// checkPartitionDir makes sure the directory of a partition the image
// names belongs to the topic with id before it is opened at start. It
// never removes anything: a directory that names another topic, or holds
// files but no partition.metadata, or cannot be read, is an error (the
// partition stays offline, its files as they are). A directory that is
// gone is created again, empty, as Kafka does for a log it should have.
func (s *Store) checkPartitionDir(dir string, id [16]byte) error {
	path := filepath.Join(dir, "partition.metadata")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		got, err := parsePartitionMetadata(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if got != id {
			return fmt.Errorf("%s names topic id %s, not %s: the directory belongs to another topic", path, TopicIDString(got), TopicIDString(id))
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.logger.Warn("partition directory missing; creating it empty", "dir", dir)
		if err := s.newPartitionDir(dir, id); err != nil {
			return err
		}
		return syncCreated(s.cfg.DataDir, []string{dir})
	case err != nil:
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			return fmt.Errorf("%s holds %s but no partition.metadata", dir, e.Name())
		}
	}
	// Empty: a creation stopped before it wrote partition.metadata.
	if err := writeFileSync(path, partitionMetadata(id)); err != nil {
		return err
	}
	return nil
}

// openWorkers bounds the partitions opened at once at start.
const openWorkers = 16

// closeWorkers bounds the partitions closed at once at shutdown. A close
// writes a few small files and syncs nothing (Store.Close).
const closeWorkers = 16

// openImage opens the partitions of every topic replayed from the log. A
// partition that cannot be opened is offline: its error is logged and
// answered for it, and nothing of it is touched. A partition directory
// the image does not name is reported and left where it is.
func (s *Store) openImage() {
	type job struct {
		t *Topic
		i int32
	}
	topics := s.Topics()
	var jobs []job
	live := map[string]bool{MetadataDir: true}
	for _, t := range topics {
		for i := range t.NumPartitions() {
			jobs = append(jobs, job{t, i})
			live[filepath.Base(partitionDir(s.cfg.DataDir, t.name, i))] = true
		}
	}
	slots := make([]slot, len(jobs))
	parallel(len(jobs), func(k int) {
		if s.cfg.Replicated && !s.hosts(jobs[k].t.State(jobs[k].i)) {
			slots[k] = slot{err: ErrNotReplica}
			return
		}
		slots[k] = s.openPartition(jobs[k].t, jobs[k].i)
	})
	k := 0
	for _, t := range topics {
		n := int(t.NumPartitions())
		parts := slots[k : k+n : k+n]
		t.parts.Store(&parts)
		k += n
	}
	ents, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		s.logger.Error("listing the data directory", "err", err)
		return
	}
	for _, e := range ents {
		if e.IsDir() && !live[e.Name()] && partitionDirName.MatchString(e.Name()) {
			s.logger.Warn("partition directory not in the metadata; left in place", "dir", e.Name())
		}
	}
}

// openPartition opens partition i of t at start.
func (s *Store) openPartition(t *Topic, i int32) slot {
	dir := partitionDir(s.cfg.DataDir, t.name, i)
	err := s.checkPartitionDir(dir, t.id)
	var p *partition.Partition
	if err == nil {
		p, err = s.openPart(dir, partitionLogger(s.partitionConfig(t), i))
	}
	if err != nil {
		s.logger.Error("partition offline: it could not be opened, and is left as it is; a restart once the fault is repaired serves it", "topic", t.name, "partition", i, "dir", dir, "err", err)
		return slot{err: offline(err)}
	}
	return slot{p: p}
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
	if s.cfg.Replicated {
		// Every node deletes its replicas when it applies the record
		// (Reconcile).
		s.topicsChanged()
		return nil
	}
	var errs []error
	for i, sl := range *t.parts.Load() {
		if sl.p == nil {
			// Offline: what is there may not even be this topic's.
			s.logger.Warn("partition of a deleted topic was offline; its directory is left in place", "topic", t.name, "partition", i, "dir", partitionDir(s.cfg.DataDir, t.name, int32(i)))
			continue
		}
		if err := sl.p.Delete(); err != nil {
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
	if s.cfg.Replicated {
		return s.addPartitionsReplicated(t, n)
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
