package meta

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/internal/dirlock"
	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/partition"
)

// Config configures a Store. Zero values mean Kafka's defaults.
type Config struct {
	// DataDir holds every partition, the metadata log and
	// meta.properties. Required.
	DataDir string
	// NodeID is this broker's id (node.id). Default 0.
	NodeID int32
	// Props holds static broker configs by their Kafka names, as given on
	// the command line or in a properties file. Unknown names are kept
	// and ignored, as Kafka does; known ones are validated.
	Props map[string]string
	// Log holds the metadata records. nil opens the local log in
	// DataDir/__cluster_metadata-0.
	Log Log
	// TopicsChanged, if set, is called after a topic is created, grows or
	// is deleted (not during Open).
	TopicsChanged func()
	// SecurityChanged, if set, is called after SCRAM credentials, ACLs or
	// client quotas change (not during Open).
	SecurityChanged func()
	// Logger receives the store's log lines. nil discards them.
	Logger *slog.Logger
	// Replicated marks a node of a cluster: Log is replicated, topics
	// are placed on the registered brokers, and this node opens only the
	// partitions it holds a replica of (Reconcile).
	Replicated bool
	// ClusterID, when set, is the cluster's id, which every node shares
	// (written to meta.properties at the first start, checked after).
	ClusterID string
	// Changed, if set, is called after each change the log applies
	// (cluster nodes reconcile their partitions); it must not block.
	Changed func()
	// AdjustPartition, if set, changes the settings of every partition
	// before it opens or its configs change. For fault-injection tests
	// (log.Config.WrapFile).
	AdjustPartition func(topic string, cfg *partition.Config)
}

// Store is this broker's metadata: the log of metadata records, the image
// replayed from it (topics, partitions, configs, producer-id blocks), and
// the partitions the image names, opened. Create it with Open; every
// method is safe for concurrent use.
type Store struct {
	cfg       Config
	logger    *slog.Logger
	clusterID string
	// lock keeps the data directory to this process until Close.
	lock *dirlock.Lock
	log  Log

	// adminMu serializes changes: create, delete, add partitions, config
	// changes. It is taken before the log's lock and image.mu.
	adminMu sync.Mutex

	image struct {
		// mu guards the maps; apply takes it to change them.
		mu     sync.RWMutex
		byName map[string]*Topic
		byID   map[[16]byte]*Topic
		// pending holds topics whose partitions were opened for a
		// proposal in flight; applying its record adopts them.
		pending map[[16]byte]*Topic
		// pendingParts holds partitions opened for a proposal to grow a
		// topic; applying its record adopts them.
		pendingParts map[[16]byte][]slot
		// brokers are the registered brokers (a cluster).
		brokers map[int32]Broker
		// controllers are the registered controller-only nodes, at
		// their Kafka listeners (a cluster).
		controllers map[int32]Controller
		// pidBlocks is where each broker's last block of producer ids
		// starts (a cluster).
		pidBlocks map[int32]int64
		// removed holds deleted topics whose partitions Reconcile has
		// yet to delete (a cluster).
		removed []*Topic
	}
	// applyMu serializes apply with the end of Open (openImage).
	applyMu sync.Mutex
	// ready is set once Open has opened the image's partitions.
	ready atomic.Bool
	// reconcileMu serializes Reconcile with itself and Close.
	reconcileMu sync.Mutex
	// settings holds the broker configs; replaced, never mutated.
	settings atomic.Pointer[Settings]
	// reservedPIDs: producer ids below it are reserved in the log.
	reservedPIDs atomic.Int64
	// groups holds the dynamic group configs (group.go).
	groups groupConfigs
	// sec holds SCRAM credentials, ACLs and client quotas (security.go).
	sec securityImage
	// replayed is set once Open's replay is done.
	replayed atomic.Bool

	pids struct {
		// mu serializes NextProducerID; taken before the log's lock.
		sync.Mutex
		next int64 // the next id to hand out
		end  int64 // a cluster: the end of this broker's block
	}

	closed atomic.Bool

	// cleaner compacts the partitions of topics whose cleanup.policy has
	// compact, but internal ones (their coordinators snapshot them); nil
	// with log.cleaner.enable false.
	cleaner *log.Cleaner

	// storageStats counts the fsyncs of every partition of the store.
	storageStats *partition.StorageStats

	// openPart opens a partition: partition.Open, but for tests that
	// inject a failure.
	openPart func(dir string, cfg partition.Config) (*partition.Partition, error)
}

// Open opens the data directory: it reads (or writes) meta.properties,
// replays the metadata log into the image and opens every partition the
// image names, recovering any that were not closed cleanly.
func Open(cfg Config) (*Store, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("meta: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	static := maps.Clone(cfg.Props)
	if static == nil {
		static = map[string]string{}
	}
	for k, v := range static {
		if err := validateBrokerConfig(k, v); err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	// One broker per data directory: a second one would write beside
	// the first and corrupt both.
	lock, err := dirlock.Acquire(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	s := newStore(cfg, static)
	s.lock = lock
	if s.clusterID, err = loadMetaProperties(cfg.DataDir, cfg.NodeID, cfg.ClusterID); err != nil {
		lock.Release()
		return nil, err
	}
	s.log = cfg.Log
	if s.log == nil {
		if s.log, err = openLocalLog(cfg.DataDir, s.logger); err != nil {
			lock.Release()
			return nil, err
		}
	}
	if sn, ok := s.log.(Snapshotter); ok {
		sn.SetSnapshotSource(s.snapshotRecords)
	}
	if err := s.log.Replay(s.apply); err != nil {
		s.log.Close()
		lock.Release()
		return nil, fmt.Errorf("meta: replay metadata log: %w", err)
	}
	s.applyMu.Lock()
	if !cfg.Replicated {
		s.pids.next = s.reservedPIDs.Load()
	}
	s.replayed.Store(true)
	s.startCleaner()
	s.openImage()
	s.ready.Store(true)
	s.applyMu.Unlock()
	return s, nil
}

// startCleaner starts the log cleaner the broker configs ask for.
func (s *Store) startCleaner() {
	bs := s.Settings()
	if !bs.Bool("log.cleaner.enable") || bs.Int64("log.cleaner.threads") <= 0 {
		return
	}
	s.cleaner = log.NewCleaner(log.CleanerConfig{
		Threads:             int(bs.Int64("log.cleaner.threads")),
		DedupeBufferSize:    max(bs.Int64("log.cleaner.dedupe.buffer.size"), 1),
		LoadFactor:          bs.Float64("log.cleaner.io.buffer.load.factor"),
		IOMaxBytesPerSecond: bs.Float64("log.cleaner.io.max.bytes.per.second"),
		Backoff:             max(time.Duration(bs.Int64("log.cleaner.backoff.ms"))*time.Millisecond, time.Millisecond),
		Logger:              s.logger,
	})
}

// newStore returns a store with an empty image and no log.
func newStore(cfg Config, static map[string]string) *Store {
	s := &Store{cfg: cfg, logger: cfg.Logger, openPart: partition.Open, storageStats: partition.NewStorageStats()}
	s.image.byName = map[string]*Topic{}
	s.image.byID = map[[16]byte]*Topic{}
	s.image.pending = map[[16]byte]*Topic{}
	s.image.pendingParts = map[[16]byte][]slot{}
	s.image.brokers = map[int32]Broker{}
	s.image.controllers = map[int32]Controller{}
	s.image.pidBlocks = map[int32]int64{}
	s.settings.Store(&Settings{static: static, dynamic: map[string]string{}})
	s.sec.init()
	return s
}

// StorageStats counts the fsyncs of every partition of the store, for
// the broker's metrics.
func (s *Store) StorageStats() *partition.StorageStats { return s.storageStats }

// partitionLogger names partition i in the log lines of a partition
// opened with cfg, besides its topic, so every storage error says which
// partition (and, from the log and segment, which file) failed.
func partitionLogger(cfg partition.Config, i int32) partition.Config {
	cfg.Logger = cfg.Logger.With("partition", i)
	return cfg
}

// ClusterID is the cluster id from meta.properties.
func (s *Store) ClusterID() string { return s.clusterID }

// NodeID is this broker's id.
func (s *Store) NodeID() int32 { return s.cfg.NodeID }

// DataDir is the data directory.
func (s *Store) DataDir() string { return s.cfg.DataDir }

// Settings returns the current broker configs. Never modify the result; it
// stays valid (unchanged) after a config change replaces it.
func (s *Store) Settings() *Settings { return s.settings.Load() }

// Topic returns the topic of that name, or nil.
func (s *Store) Topic(name string) *Topic {
	s.image.mu.RLock()
	defer s.image.mu.RUnlock()
	return s.image.byName[name]
}

// TopicByID returns the topic with that id, or nil.
func (s *Store) TopicByID(id [16]byte) *Topic {
	s.image.mu.RLock()
	defer s.image.mu.RUnlock()
	return s.image.byID[id]
}

// Topics returns every topic, sorted by name.
func (s *Store) Topics() []*Topic {
	s.image.mu.RLock()
	out := make([]*Topic, 0, len(s.image.byName))
	for _, t := range s.image.byName {
		out = append(out, t)
	}
	s.image.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// StopWaiting fails the waits of every open partition for its in-sync
// replicas (partition.StopWaiting): the broker is stopping, and what
// waits for followers now would hold its Close for the replication
// timeout.
func (s *Store) StopWaiting() {
	for _, t := range s.Topics() {
		ps, _ := t.online()
		for _, p := range ps {
			p.StopWaiting()
		}
	}
}

// apply changes the image by one committed entry. The log calls it in log
// order, during Replay and for every entry committed after.
func (s *Store) apply(e Entry) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var changed []*Topic
	brokerChanged, securityChanged := false, false
	s.image.mu.Lock()
	if e.Snapshot {
		s.restoreLocked(e.Records)
		brokerChanged, securityChanged = true, true
	}
	for i := range e.Records {
		r := &e.Records[i]
		if s.cfg.Replicated {
			done, err := s.applyClusterLocked(r)
			if err != nil {
				s.image.mu.Unlock()
				return err
			}
			if done {
				continue
			}
		}
		switch r.Type {
		case TypeTopic:
			id, err := ParseTopicID(r.TopicID)
			if err != nil {
				s.image.mu.Unlock()
				return err
			}
			if s.cfg.Replicated {
				if old := s.image.byName[r.Topic]; old != nil {
					// A retried record, a snapshot of a known topic, or
					// a second creation of the name: the first stays.
					if old.id == id && e.Snapshot {
						cfgs := r.Configs
						if cfgs == nil {
							cfgs = map[string]string{}
						}
						old.configs.Store(&cfgs)
						changed = append(changed, old)
						if r.Partitions > old.NumPartitions() {
							old.grow(r.Partitions, nil)
							old.markPending()
						}
					}
					continue
				}
			}
			t := s.image.pending[id]
			delete(s.image.pending, id)
			if t == nil {
				t = newTopic(r.Topic, id, r.Internal, r.Configs)
				t.node = s.cfg.NodeID
				t.grow(r.Partitions, nil)
				t.initStatesLocked(0, r.Assignments)
				if s.cfg.Replicated {
					t.markPending()
				}
			}
			// Ids and names are unique; a log that says otherwise (from
			// a damaged disk) has its later record win.
			if old := s.image.byName[t.name]; old != nil {
				delete(s.image.byID, old.id)
			}
			if old := s.image.byID[id]; old != nil && s.image.byName[old.name] == old {
				delete(s.image.byName, old.name)
			}
			s.image.byName[t.name] = t
			s.image.byID[id] = t
		case TypePartitions:
			id, err := ParseTopicID(r.TopicID)
			if err != nil {
				s.image.mu.Unlock()
				return err
			}
			added := s.image.pendingParts[id]
			delete(s.image.pendingParts, id)
			if t := s.image.byID[id]; t != nil && r.Partitions > t.NumPartitions() {
				t.initStatesLocked(t.NumPartitions(), r.Assignments)
				t.grow(r.Partitions, added)
				if s.cfg.Replicated {
					t.markPending()
				}
			}
		case TypeRemoveTopic:
			id, err := ParseTopicID(r.TopicID)
			if err != nil {
				s.image.mu.Unlock()
				return err
			}
			if t := s.image.byID[id]; t != nil {
				delete(s.image.byID, id)
				if s.image.byName[t.name] == t {
					delete(s.image.byName, t.name)
				}
				if s.cfg.Replicated {
					s.image.removed = append(s.image.removed, t)
				}
			}
		case TypeConfig:
			if r.Resource == "group" {
				s.applyGroupConfig(r)
				continue
			}
			if r.Resource == "broker" {
				old := s.settings.Load()
				dynamic := maps.Clone(old.dynamic)
				setOrDelete(dynamic, r.Key, r.Value)
				s.settings.Store(&Settings{static: old.static, dynamic: dynamic})
				brokerChanged = true
				continue
			}
			id, err := ParseTopicID(r.TopicID)
			if err != nil {
				s.image.mu.Unlock()
				return err
			}
			if t := s.image.byID[id]; t != nil {
				cfgs := maps.Clone(t.Configs())
				setOrDelete(cfgs, r.Key, r.Value)
				t.configs.Store(&cfgs)
				changed = append(changed, t)
			}
		case TypeProducerIDs:
			if r.NextProducerID > s.reservedPIDs.Load() {
				s.reservedPIDs.Store(r.NextProducerID)
			}
		default:
			if s.applySecurity(r) {
				securityChanged = true
				continue
			}
			s.logger.Warn("unknown metadata record type; skipped", "type", r.Type)
		}
	}
	s.image.mu.Unlock()
	if securityChanged && s.cfg.SecurityChanged != nil && s.replayed.Load() {
		s.cfg.SecurityChanged()
	}
	if brokerChanged {
		changed = s.Topics()
	}
	for _, t := range changed {
		s.applyConfigs(t)
	}
	if s.cfg.Changed != nil {
		s.cfg.Changed()
	}
	return nil
}

func setOrDelete(m map[string]string, k string, v *string) {
	if v == nil {
		delete(m, k)
	} else {
		m[k] = *v
	}
}

// grow extends t to n partitions, taking the slots of added (opened for
// the change) and leaving the rest to be opened.
func (t *Topic) grow(n int32, added []slot) {
	old := *t.parts.Load()
	parts := make([]slot, len(old), n)
	copy(parts, old)
	for i := int32(len(old)); i < n; i++ {
		if k := int(i) - len(old); k < len(added) {
			parts = append(parts, added[k])
		} else {
			parts = append(parts, slot{err: errNotOpened})
		}
	}
	t.parts.Store(&parts)
}

// errNotOpened marks a slot replayed from the log and not opened yet.
var errNotOpened = fmt.Errorf("%w: not opened yet", ErrOffline)

// partitionConfig resolves a topic's configs into partition settings.
func (s *Store) partitionConfig(t *Topic) partition.Config {
	cfg := s.Settings().partitionConfig(t.Configs())
	cfg.Replica = s.cfg.Replicated
	cfg.Logger = s.logger.With("topic", t.name)
	if !t.internal {
		cfg.Log.Cleaner = s.cleaner
	}
	cfg.Log.Stats = s.storageStats
	if f := s.cfg.AdjustPartition; f != nil {
		f(t.name, &cfg)
	}
	return cfg
}

// applyConfigs pushes a topic's current configs to its open partitions.
func (s *Store) applyConfigs(t *Topic) {
	ps, _ := t.online()
	if len(ps) == 0 {
		return
	}
	cfg := s.partitionConfig(t)
	for _, p := range ps {
		p.SetConfig(cfg)
	}
	if s.cleaner != nil && cfg.Log.Compact {
		s.cleaner.Wake() // it may be due now
	}
}

// EnforceRetention applies retention.ms and retention.bytes to every open
// partition, and forgets idle producers (producer.id.expiration.ms).
func (s *Store) EnforceRetention(now time.Time) {
	for _, t := range s.Topics() {
		ps, ids := t.online()
		for i, p := range ps {
			if n := p.ExpireProducers(now); n > 0 {
				s.logger.Debug("expired idle producers", "topic", t.name, "partition", ids[i], "producers", n)
			}
			n, err := p.EnforceRetention(now)
			if err != nil {
				s.logger.Error("retention failed", "topic", t.name, "partition", ids[i], "err", err)
			} else if n > 0 {
				s.logger.Info("retention deleted segments", "topic", t.name, "partition", ids[i], "segments", n, "log_start_offset", p.LogStartOffset())
			}
		}
	}
}

// Close closes every partition and the metadata log. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// Wait for a change in progress; later ones see closed.
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	if s.cleaner != nil {
		s.cleaner.Close() // passes in progress stop; nothing is lost
	}
	// Each close writes index files, a producer snapshot and a clean
	// checkpoint, which would cost several fsyncs apiece: they are left
	// to one batch, made durable with one syncfs before the checkpoints
	// take their names and one after (durable.Batch), so that 25,000
	// partitions stop in seconds. The closes themselves run in parallel.
	batch := new(durable.Batch)
	type closing struct {
		p    *partition.Partition
		name string
	}
	var all []closing
	for _, t := range s.Topics() {
		ps, ids := t.online()
		for i, p := range ps {
			all = append(all, closing{p, fmt.Sprintf("%s-%d", t.name, ids[i])})
		}
	}
	errs := make([]error, len(all)+2)
	parallelN(closeWorkers, len(all), func(i int) {
		if err := all[i].p.CloseInto(batch); err != nil {
			errs[i] = fmt.Errorf("close %s: %w", all[i].name, err)
		}
	})
	if err := batch.Commit(s.cfg.DataDir); err != nil {
		// The checkpoints that did not take their names leave those
		// partitions to be recovered at the next start.
		errs[len(all)] = fmt.Errorf("making the closed partitions durable: %w", err)
	}
	if err := s.log.Close(); err != nil {
		errs[len(all)+1] = err
	}
	s.lock.Release()
	return errors.Join(errs...)
}

func writeFileSync(path string, data []byte) error { return durable.WriteFile(path, data) }

func syncDir(dir string) error { return durable.SyncDir(dir) }
