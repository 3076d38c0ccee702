package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/internal/peer"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/raftlog"
	"github.com/ferrymq/ferry/share"
	"github.com/ferrymq/ferry/txn"
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
	// AdvertisedAddr is the host:port given to clients of the first
	// listener in Metadata, unless advertised.listeners names it.
	// Default: see listener.go.
	AdvertisedAddr string
	// ControllerListen is where the controller listener (the metadata
	// quorum's raft transport) binds when controller.quorum.voters is
	// set. Default: this node's address in the voters.
	ControllerListen string
	// Logger receives the broker's log lines. nil discards them.
	Logger *slog.Logger
	// Props holds broker configs by their Kafka names (num.partitions,
	// log.retention.ms, group.initial.rebalance.delay.ms, listeners,
	// ssl.*, ...), as given on the command line or in a properties file.
	Props map[string]string

	// controllerListener, when set, is the controller listener to use
	// (tests listen on free ports first).
	controllerListener net.Listener

	// testPartitionConfig, when set, adjusts the settings of every
	// partition before it opens: fault-injection tests set
	// log.Config.WrapFile with it.
	testPartitionConfig func(topic string, cfg *partition.Config)
}

// Server is one Ferry broker.
type Server struct {
	cfg    Config
	logger *slog.Logger

	meta     *meta.Store
	raft     *raftlog.Log  // the replicated metadata log; nil on a single node
	cluster  *cluster.Node // this node's part of the cluster; nil on a single node
	sessions *fetchSessions
	groups   *group.Coordinator
	txn      *txn.Coordinator // transactions (txn.go)
	peers    *peer.Pool       // to other brokers of a cluster: markers, transaction checks (txn_cluster.go)
	limits   *connLimits      // connection counts and the request budget (limits.go)

	// listeners are the configured listeners (listener.go); the first is
	// the one Serve serves.
	listeners []*listener
	// interBroker is the listener the brokers of a cluster talk to
	// each other on (interbroker.go); replicaDialer and peerDialer
	// connect to the others' (followers' fetches; s.peers).
	interBroker   *listener
	replicaDialer peer.Dialer
	peerDialer    peer.Dialer
	// authz decides what principals may do (authorize.go); nil when no
	// authorizer is configured, and then everyone may do everything.
	authz *auth.Authorizer
	// authFailures slows down failed authentications per address.
	authFailures authFailures
	// quotas measures clients against their quotas (quota.go).
	quotas *quotas
	// stats counts requests and connections for the metrics (stats.go).
	stats *serverStats

	// Share groups (shares.go): the engine, the share sessions of
	// ShareFetch and ShareAcknowledge, the ShareFetch requests waiting.
	shares        *share.Coordinator
	shareSessions *shareSessions
	shareWaiters  *shareWaiters
	shareState    struct {
		mu         sync.Mutex  // serializes creating __share_group_state
		ready      atomic.Bool // __share_group_state exists
		partitions int32       // its partition count
	}
	// shareGone queues the share members this broker's share coordinator
	// removed, for the other brokers to release their records (a
	// cluster: shares_cluster.go); nil on one broker.
	shareGone chan shareSessionKey

	// started is set once New has set every field the metadata callbacks
	// (clusterChanged, topicsChanged) read: in a cluster the metadata log
	// applies entries, and calls them, while New still runs.
	started atomic.Bool

	// ctx is cancelled by Close; every goroutine the server starts
	// watches it and is counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopCtx is cancelled when Shutdown begins, before the drain:
	// requests to other brokers end with it (peerRequest), so that a
	// stopping broker waits for no other.
	stopCtx context.Context
	stopNow context.CancelFunc

	mu struct {
		sync.Mutex
		listeners map[net.Listener]*endpoint
		conns     map[*conn]struct{}
		closed    bool
	}
	closeOnce sync.Once
	closeErr  error
}

// New opens the data directory, replays the metadata log, opens every
// partition (recovering any that were not closed cleanly), starts the
// group coordinator and returns a broker ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	s := &Server{cfg: cfg, logger: cfg.Logger, stats: newServerStats()}
	s.stopCtx, s.stopNow = context.WithCancel(context.Background())
	s.mu.listeners = map[net.Listener]*endpoint{}
	s.mu.conns = map[*conn]struct{}{}
	err := s.openMeta(meta.Config{
		DataDir:         cfg.DataDir,
		NodeID:          cfg.NodeID,
		Props:           cfg.Props,
		TopicsChanged:   s.topicsChanged,
		SecurityChanged: s.securityChanged,
		Logger:          s.logger,
		AdjustPartition: cfg.testPartitionConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.sessions = newFetchSessions(int(s.settings().int64("max.incremental.fetch.session.cache.slots")))
	if s.limits, err = newConnLimits(s.settings()); err != nil {
		s.closeStorage()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.startSecurity(); err != nil {
		s.closeStorage()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.startGroups(); err != nil {
		s.closeStorage()
		return nil, err
	}
	if err := s.startTxn(); err != nil {
		s.closeStorage()
		return nil, err
	}
	if err := s.startShares(); err != nil {
		s.closeStorage()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.startSchedulers()
	s.startCluster()
	s.started.Store(true)
	s.clusterChanged() // what changed while New ran
	n := 0
	topics := s.meta.Topics()
	for _, t := range topics {
		n += int(t.NumPartitions())
	}
	s.logger.Info("broker ready", "data_dir", cfg.DataDir, "cluster_id", s.meta.ClusterID(), "topics", len(topics), "partitions", n, "took", time.Since(start))
	return s, nil
}

// ParseProperties parses a Java properties file, as given to
// `ferry serve -config`.
func ParseProperties(s string) map[string]string { return meta.ParseProperties(s) }

// Close stops accepting, closes every connection once its requests in
// flight are answered, stops background work and closes every log
// cleanly. It is idempotent.
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
		// A stopping broker waits for no follower: writes waiting for
		// the in-sync replicas (acks=all produces, coordinator state)
		// fail now with a retriable error instead of holding the
		// drain for the replication timeout; nor for another broker:
		// requests to them end (peerRequest).
		s.meta.StopWaiting()
		s.stopNow()
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

// closeStorage stops the coordinators, then closes every partition and
// the metadata log.
func (s *Server) closeStorage() error {
	var errs []error
	if err := s.stopShares(); err != nil {
		errs = append(errs, err)
	}
	if err := s.stopTxn(); err != nil {
		errs = append(errs, err)
	}
	s.closeCluster()
	if err := s.stopGroups(); err != nil {
		errs = append(errs, err)
	}
	if err := s.meta.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
