package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/partition"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("server: closed")

// Config configures a broker. Zero values mean Kafka's defaults.
type Config struct {
	// DataDir holds every partition, the metadata log and
	// meta.properties. Required.
	DataDir string
	// NodeID is this broker's id (node.id). Default 0.
	NodeID int32
	// AdvertisedAddr is the host:port given to clients in Metadata.
	// Default: the address of the listener passed to Serve.
	AdvertisedAddr string
	// Logger receives the broker's log lines. nil discards them.
	Logger *slog.Logger
	// Props holds broker configs by their Kafka names (num.partitions,
	// log.retention.ms, group.initial.rebalance.delay.ms, ...), as given
	// on the command line or in a properties file.
	Props map[string]string

	// testPartitionConfig, when set, adjusts the settings of every
	// partition before it opens: fault-injection tests set
	// log.Config.WrapFile with it.
	testPartitionConfig func(topic string, cfg *partition.Config)
}

// Server is one Ferry broker.
type Server struct {
	cfg       Config
	logger    *slog.Logger
	clusterID string

	meta     *metaLog
	topics   topics
	brokerMu sync.Mutex // serializes broker config changes
	broker   atomic.Pointer[brokerSettings]
	pids     producerIDs
	sessions *fetchSessions
	groups   *group.Coordinator

	// ctx is cancelled by Close; every goroutine the server starts
	// watches it and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		listeners  map[net.Listener]struct{}
		conns      map[*conn]struct{}
		advertised string
		closed     bool
	}
	closeOnce sync.Once
	closeErr  error
}

// New opens the data directory, replays the metadata log, opens every
// partition (recovering any that were not closed cleanly) and returns a
// broker ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
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
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, logger: cfg.Logger, ctx: ctx, cancel: cancel}
	s.mu.listeners = map[net.Listener]struct{}{}
	s.mu.conns = map[*conn]struct{}{}
	s.mu.advertised = cfg.AdvertisedAddr
	s.topics.byName = map[string]*topic{}
	s.topics.byID = map[[16]byte]*topic{}
	s.broker.Store(&brokerSettings{static: static, dynamic: map[string]string{}})
	s.sessions = newFetchSessions(int(s.settings().int64("max.incremental.fetch.session.cache.slots")))

	start := time.Now()
	var err error
	if s.clusterID, err = loadMetaProperties(cfg.DataDir, cfg.NodeID); err != nil {
		cancel()
		return nil, err
	}
	if s.meta, err = openMetaLog(cfg.DataDir, log.Config{Logger: s.logger}); err != nil {
		cancel()
		return nil, err
	}
	if err := s.loadImage(); err != nil {
		s.closeStorage()
		cancel()
		return nil, err
	}
	if s.topics.get(offsetsTopic) == nil {
		n := int32(s.settings().int64("offsets.topic.num.partitions"))
		seg := s.settings().int64("offsets.topic.segment.bytes")
		cfgs := map[string]*string{
			"cleanup.policy":    ptr("compact"),
			"segment.bytes":     ptr(strconv.FormatInt(seg, 10)),
			"max.message.bytes": ptr("10485760"),
		}
		if _, err := s.createTopic(offsetsTopic, n, 1, cfgs, true, false); err != nil {
			s.closeStorage()
			cancel()
			return nil, fmt.Errorf("server: create %s: %w", offsetsTopic, err)
		}
	}
	if err := s.startGroups(); err != nil {
		s.closeStorage()
		cancel()
		return nil, err
	}
	s.wg.Add(1)
	go s.retentionLoop()
	n := 0
	for _, t := range s.topics.all() {
		n += len(t.partitions())
	}
	s.logger.Info("broker ready", "data_dir", cfg.DataDir, "cluster_id", s.clusterID, "topics", len(s.topics.byName), "partitions", n, "took", time.Since(start))
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// settings returns the current broker configs (never mutate the result).
func (s *Server) settings() *brokerSettings { return s.broker.Load() }

// loadImage replays the metadata log and opens every partition it names.
// Partition directories that belong to no topic are removed.
func (s *Server) loadImage() error {
	type img struct {
		name       string
		id         [16]byte
		partitions int32
		internal   bool
		configs    map[string]string
	}
	byID := map[[16]byte]*img{}
	dynamic := map[string]string{}
	var nextPID int64
	err := s.meta.replay(func(r *metaRecord) error {
		switch r.Type {
		case metaTopic:
			id, err := parseTopicID(r.TopicID)
			if err != nil {
				return err
			}
			cfgs := r.Configs
			if cfgs == nil {
				cfgs = map[string]string{}
			}
			byID[id] = &img{name: r.Topic, id: id, partitions: r.Partitions, internal: r.Internal, configs: cfgs}
		case metaPartitions:
			id, err := parseTopicID(r.TopicID)
			if err != nil {
				return err
			}
			if t := byID[id]; t != nil && r.Partitions > t.partitions {
				t.partitions = r.Partitions
			}
		case metaRemoveTopic:
			id, err := parseTopicID(r.TopicID)
			if err != nil {
				return err
			}
			delete(byID, id)
		case metaConfig:
			if r.Resource == "broker" {
				if r.Value == nil {
					delete(dynamic, r.Key)
				} else {
					dynamic[r.Key] = *r.Value
				}
				return nil
			}
			id, err := parseTopicID(r.TopicID)
			if err != nil {
				return err
			}
			if t := byID[id]; t != nil {
				if r.Value == nil {
					delete(t.configs, r.Key)
				} else {
					t.configs[r.Key] = *r.Value
				}
			}
		case metaProducerIDs:
			nextPID = max(nextPID, r.NextProducerID)
		default:
			s.logger.Warn("unknown metadata record type; skipped", "type", r.Type)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("server: replay metadata log: %w", err)
	}
	old := s.settings()
	s.broker.Store(&brokerSettings{static: old.static, dynamic: dynamic})
	s.pids.next, s.pids.reserved = nextPID, nextPID
	live := map[string]bool{}
	for _, ti := range byID {
		t := &topic{name: ti.name, id: ti.id, internal: ti.internal, configs: ti.configs}
		empty := []*partition.Partition{}
		t.parts.Store(&empty)
		if err := s.openPartitions(t, ti.partitions); err != nil {
			return fmt.Errorf("server: open topic %s: %w", ti.name, err)
		}
		s.topics.byName[t.name] = t
		s.topics.byID[t.id] = t
		for i := int32(0); i < ti.partitions; i++ {
			live[filepath.Base(partitionDir(s.cfg.DataDir, t.name, i))] = true
		}
	}
	ents, err := os.ReadDir(s.cfg.DataDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == metaDir || live[e.Name()] || !partitionDirName.MatchString(e.Name()) {
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

// loadMetaProperties reads (or writes, on first start) meta.properties:
// the cluster id and node id of this data directory, as Kafka keeps them.
func loadMetaProperties(dir string, nodeID int32) (string, error) {
	path := filepath.Join(dir, "meta.properties")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var id [16]byte
		rand.Read(id[:])
		clusterID := base64.RawURLEncoding.EncodeToString(id[:])
		content := fmt.Sprintf("#\n#Written by ferry\nversion=1\ncluster.id=%s\nnode.id=%d\n", clusterID, nodeID)
		if err := writeFileSync(path, []byte(content)); err != nil {
			return "", err
		}
		return clusterID, syncDir(dir)
	}
	if err != nil {
		return "", err
	}
	props := parseProperties(string(b))
	id := props["cluster.id"]
	if id == "" {
		return "", fmt.Errorf("server: %s has no cluster.id", path)
	}
	if n, ok := props["node.id"]; ok && n != strconv.Itoa(int(nodeID)) {
		return "", fmt.Errorf("server: %s belongs to node.id %s, this broker is %d", path, n, nodeID)
	}
	return id, nil
}

// parseProperties reads Java properties: key=value or key: value lines,
// # and ! comments.
func parseProperties(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			m[line] = ""
			continue
		}
		m[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return m
}

// ParseProperties parses a Java properties file, as given to
// `ferry serve -config`.
func ParseProperties(s string) map[string]string { return parseProperties(s) }

// Serve accepts connections on ln until Close, then returns
// ErrServerClosed. Temporary accept errors are retried with a backoff.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	if s.mu.advertised == "" {
		s.mu.advertised = ln.Addr().String()
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		delay = 0
		s.startConn(c)
	}
}

// Addr returns the address advertised to clients.
func (s *Server) advertisedAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.advertised
}

// Close stops accepting, closes every connection once its requests in
// flight are answered (or at once if ctx-bounded shutdown is not needed),
// stops background work and closes every log cleanly. It is idempotent.
func (s *Server) Close() error {
	return s.Shutdown(context.Background())
}

// Shutdown is Close with a deadline for requests in flight: when ctx is
// done, connections are closed without waiting further.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		for ln := range s.mu.listeners {
			ln.Close()
		}
		conns := make([]*conn, 0, len(s.mu.conns))
		for c := range s.mu.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		// Let requests in flight finish, then close connections.
		for _, c := range conns {
			c.beginDrain()
		}
		for _, c := range conns {
			c.awaitDrained(ctx)
		}
		s.cancel()
		s.wg.Wait()
		s.closeErr = s.closeStorage()
		s.logger.Info("broker stopped")
	})
	return s.closeErr
}

// closeStorage closes the coordinator, every partition and the metadata
// log.
func (s *Server) closeStorage() error {
	var errs []error
	if err := s.stopGroups(); err != nil {
		errs = append(errs, err)
	}
	for _, t := range s.topics.all() {
		for _, p := range t.partitions() {
			if err := p.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", t.name, err))
			}
		}
	}
	if s.meta != nil {
		if err := s.meta.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retentionLoop applies retention every log.retention.check.interval.ms.
func (s *Server) retentionLoop() {
	defer s.wg.Done()
	interval := time.Duration(s.settings().int64("log.retention.check.interval.ms")) * time.Millisecond
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.enforceRetention(now)
		}
	}
}

func (s *Server) enforceRetention(now time.Time) {
	for _, t := range s.topics.all() {
		for i, p := range t.partitions() {
			if n := p.ExpireProducers(now); n > 0 {
				s.logger.Debug("expired idle producers", "topic", t.name, "partition", i, "producers", n)
			}
			n, err := p.EnforceRetention(now)
			if err != nil {
				s.logger.Error("retention failed", "topic", t.name, "partition", i, "err", err)
			} else if n > 0 {
				s.logger.Info("retention deleted segments", "topic", t.name, "partition", i, "segments", n, "log_start_offset", p.LogStartOffset())
			}
		}
	}
}

// producerIDs hands out producer ids from blocks reserved durably in the
// metadata log, so no id is given twice across restarts.
type producerIDs struct {
	mu       sync.Mutex
	next     int64
	reserved int64 // ids below it are reserved
}

const producerIDBlock = 1000

func (s *Server) nextProducerID() (int64, error) {
	s.pids.mu.Lock()
	defer s.pids.mu.Unlock()
	if s.pids.next >= s.pids.reserved {
		end := s.pids.next + producerIDBlock
		if err := s.meta.append(&metaRecord{Type: metaProducerIDs, NextProducerID: end}); err != nil {
			return 0, err
		}
		s.pids.reserved = end
	}
	id := s.pids.next
	s.pids.next++
	return id, nil
}
