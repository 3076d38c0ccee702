package cluster

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/internal/peer"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/raftlog"
)

// Config configures a node's part in the cluster.
type Config struct {
	// Store is the node's metadata, on a replicated log (Raft).
	Store *meta.Store
	Raft  *raftlog.Log
	// NodeID is this node's node.id.
	NodeID int32
	// ControllerOnly: this node is a controller and not a broker
	// (process.roles=controller): it votes in the metadata quorum and
	// acts as the controller while it leads it, but never registers as
	// a broker, so no replica is placed on it and clients are not told
	// of it. Default false: a broker (process.roles=broker, a raft
	// learner, or broker,controller).
	ControllerOnly bool
	// Advertised returns the host and port the other brokers reach
	// this broker's inter-broker listener at ("" until it is known),
	// and the advertised addresses of all its listeners, for clients.
	Advertised func() (string, int32, []meta.Endpoint)
	// Dialer connects a follower to its leader's inter-broker listener
	// (TLS and SASL as that listener needs). Its zero value but a
	// ClientID is plain TCP.
	Dialer peer.Dialer
	// SessionTimeout: the controller fences a broker it has not heard
	// from this long (broker.session.timeout.ms). Default 1s.
	SessionTimeout time.Duration
	// LagMax: a leader removes from the ISR a follower that has not
	// caught up for this long (replica.lag.time.max.ms). Default 30s.
	LagMax time.Duration
	// FetchWait and FetchMaxBytes shape followers' fetches
	// (replica.fetch.wait.max.ms, replica.fetch.max.bytes).
	FetchWait     time.Duration
	FetchMaxBytes int32
	// Unclean allows an out-of-sync replica to become leader when no
	// in-sync one is left (unclean.leader.election.enable), per topic.
	Unclean func(t *meta.Topic) bool
	// LeaderRebalance configures the controller's return of leaderships
	// to preferred replicas (auto.leader.rebalance.enable and
	// leader.imbalance.*). nil means Kafka's defaults: on, checked every
	// 300 s, above 10%.
	LeaderRebalance *LeaderRebalance
	// LeadershipChanged, if set, is called with the partitions of a topic
	// this broker started (leading) or stopped leading, after its
	// replicas took their roles. A partition led again at a new leader
	// epoch (its leadership went elsewhere and came back between two
	// passes) is stopped and started again, so that a coordinator reloads
	// it at its new epoch. The group coordinator follows the partitions of
	// __consumer_offsets with it.
	LeadershipChanged func(topic string, partition int32, leading bool)
	// Logger receives the node's log lines. nil discards them.
	Logger *slog.Logger
}

// Node runs this broker's part of the cluster: it registers the broker,
// gives each local replica its role (leader or follower) from the
// metadata, runs the fetchers of the followers, shrinks the ISR of the
// partitions it leads, and, while its raft node leads the metadata
// quorum, acts as the controller: it fences brokers it lost contact with
// and elects new leaders. See the package comment.
type Node struct {
	cfg    Config
	logger *slog.Logger
	kick   chan struct{}
	quit   chan struct{}
	wg     sync.WaitGroup

	// fetchers are the running fetchers, by leader broker id; owned by
	// the reconcile goroutine.
	fetchers map[int32]*fetcher

	mu struct {
		sync.Mutex
		// passes counts the reconcile passes done; passed is closed
		// and replaced at the end of each.
		passes int64
		passed chan struct{}
		// leading are the partitions this broker leads, at their
		// leader epochs, as the roles last applied; the
		// LeadershipChanged callback follows it.
		leading map[partKey]int32
		// expanding are ISR additions queued by fetches.
		expanding map[partKey][]int32
	}
}

type partKey struct {
	topic     string
	partition int32
}

func (c Config) withDefaults() Config {
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = time.Second
	}
	if c.LagMax <= 0 {
		c.LagMax = 30 * time.Second
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 500 * time.Millisecond
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 1 << 20
	}
	if c.Unclean == nil {
		c.Unclean = func(*meta.Topic) bool { return false }
	}
	if c.LeaderRebalance == nil {
		c.LeaderRebalance = &LeaderRebalance{Enable: true, Interval: 300 * time.Second, PerBrokerPercentage: 10}
	} else if c.LeaderRebalance.Interval <= 0 {
		r := *c.LeaderRebalance
		r.Interval = 300 * time.Second
		c.LeaderRebalance = &r
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Start starts the node's goroutines; Close stops them.
func Start(cfg Config) *Node {
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, logger: cfg.Logger.With("component", "cluster"), kick: make(chan struct{}, 1), quit: make(chan struct{}), fetchers: map[int32]*fetcher{}}
	n.mu.leading = map[partKey]int32{}
	n.mu.expanding = map[partKey][]int32{}
	n.mu.passed = make(chan struct{})
	n.wg.Add(3)
	go n.registerLoop()
	go n.reconcileLoop()
	go n.controllerLoop()
	return n
}

// Kick tells the node that the metadata changed. It never blocks.
func (n *Node) Kick() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Close stops the node's goroutines and fetchers and waits for them.
func (n *Node) Close() {
	select {
	case <-n.quit:
		return
	default:
	}
	close(n.quit)
	n.wg.Wait()
}

func (n *Node) sleep(d time.Duration) bool {
	select {
	case <-n.quit:
		return false
	case <-time.After(d):
		return true
	}
}

// IsBroker reports whether this node is a broker (not ControllerOnly).
func (n *Node) IsBroker() bool { return !n.cfg.ControllerOnly }

// ControllerID is the node.id of the controller (the metadata quorum's
// leader), -1 while there is none.
func (n *Node) ControllerID() int32 { return n.cfg.Raft.LeaderID() }

// registerLoop registers this broker (a controller-only node: its Kafka
// listener, as a controller), and again whenever the metadata does not
// show it registered with its current address (a restart, a new address,
// an UnregisterBroker).
func (n *Node) registerLoop() {
	defer n.wg.Done()
	what, register := "broker", n.cfg.Store.RegisterBroker
	if n.cfg.ControllerOnly {
		what = "controller"
		register = func(host string, port int32, _ []meta.Endpoint) error {
			return n.cfg.Store.RegisterController(host, port)
		}
	}
	for {
		host, port, endpoints := n.cfg.Advertised()
		if host != "" && n.cfg.Raft.CaughtUp() && !n.registered(host, port, endpoints) {
			if err := register(host, port, endpoints); err != nil {
				n.logger.Warn(what+" registration failed; retrying", "err", err)
			} else {
				n.logger.Info(what+" registered", "host", host, "port", port, "listeners", endpoints)
			}
		}
		if !n.sleep(200 * time.Millisecond) {
			return
		}
	}
}

// registered reports whether the metadata shows this node registered at
// host:port with endpoints and its broker.rack: as a broker, or,
// controller-only, as a controller (at host:port only).
func (n *Node) registered(host string, port int32, endpoints []meta.Endpoint) bool {
	if n.cfg.ControllerOnly {
		return slices.Contains(n.cfg.Store.Controllers(), meta.Controller{ID: n.cfg.NodeID, Host: host, Port: port})
	}
	rack := n.cfg.Store.Rack()
	return slices.ContainsFunc(n.cfg.Store.Brokers(), func(b meta.Broker) bool {
		return b.ID == n.cfg.NodeID && b.Host == host && b.Port == port && slices.Equal(b.Endpoints, endpoints) && b.Rack == rack
	})
}

// reconcileLoop makes the local replicas follow the metadata: on every
// change, and every half second for the ISR checks.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	defer func() {
		for id, f := range n.fetchers {
			f.stop()
			delete(n.fetchers, id)
		}
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-n.quit:
			return
		case <-n.kick:
		case <-tick.C:
		}
		if !n.cfg.Raft.CaughtUp() {
			// A node that restarted acts only once it has the metadata
			// its peers have: it might otherwise lead with a stale view.
			continue
		}
		n.cfg.Store.Reconcile()
		n.applyRoles()
		n.shrinkISRs()
		n.expandISRs()
		n.mu.Lock()
		n.mu.passes++
		close(n.mu.passed)
		n.mu.passed = make(chan struct{})
		n.mu.Unlock()
	}
}

// Settle returns once this node has reconciled its replicas with the
// metadata it holds now (a pass that started after the call has ended),
// or when ctx ends. CreateTopics waits for it, so that a client that
// creates a topic and uses it at once finds its partitions led: every
// node applies the same record at about the same time, and does the same
// work for it.
func (n *Node) Settle(done <-chan struct{}) {
	n.mu.Lock()
	target := n.mu.passes + 2
	n.mu.Unlock()
	n.Kick()
	for {
		n.mu.Lock()
		if n.mu.passes >= target {
			n.mu.Unlock()
			return
		}
		ch := n.mu.passed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return
		case <-n.quit:
			return
		}
	}
}

// applyRoles gives every local replica its role from the metadata and
// assigns followers to the fetcher of their leader.
func (n *Node) applyRoles() {
	self := n.cfg.NodeID
	want := map[int32]map[partKey]*fetchPart{} // leader → partitions
	leading := map[partKey]int32{}             // → leader epoch
	brokers := map[int32]meta.Broker{}
	for _, b := range n.cfg.Store.Brokers() {
		brokers[b.ID] = b
	}
	for _, t := range n.cfg.Store.Topics() {
		for i := range t.NumPartitions() {
			p, err := t.Partition(i)
			if err != nil {
				continue
			}
			st := t.State(i)
			k := partKey{t.Name(), i}
			switch {
			case st.Leader == self:
				if was, epoch := p.Leader(); !was || epoch != st.LeaderEpoch || !p.Replicated() {
					n.logger.Debug("leading partition", "topic", t.Name(), "partition", i, "epoch", st.LeaderEpoch, "isr", st.ISR)
				}
				if err := p.BecomeLeader(self, st.LeaderEpoch, st.ISR, st.Replicas); err != nil {
					n.logger.Error("becoming leader failed", "topic", t.Name(), "partition", i, "err", err)
					continue
				}
				leading[k] = st.LeaderEpoch
			default:
				if err := p.BecomeFollower(self, st.LeaderEpoch); err != nil {
					n.logger.Error("becoming follower failed", "topic", t.Name(), "partition", i, "err", err)
					continue
				}
				if st.Leader < 0 {
					continue
				}
				if want[st.Leader] == nil {
					want[st.Leader] = map[partKey]*fetchPart{}
				}
				want[st.Leader][k] = &fetchPart{topic: t.Name(), partition: i, p: p, epoch: st.LeaderEpoch}
			}
		}
	}
	for id, f := range n.fetchers {
		if want[id] == nil {
			f.stop()
			delete(n.fetchers, id)
		}
	}
	for id, parts := range want {
		b := brokers[id]
		f := n.fetchers[id]
		if f != nil && f.addr != addr(b) {
			f.stop()
			f = nil
		}
		if f == nil {
			f = n.startFetcher(id, addr(b))
			n.fetchers[id] = f
		}
		f.assign(parts)
	}
	n.mu.Lock()
	started, stopped := leadershipChanges(n.mu.leading, leading)
	n.mu.leading = leading
	n.mu.Unlock()
	if cb := n.cfg.LeadershipChanged; cb != nil {
		for _, k := range stopped {
			cb(k.topic, k.partition, false)
		}
		for _, k := range started {
			cb(k.topic, k.partition, true)
		}
	}
}

// leadershipChanges compares the partitions led before and now, at their
// leader epochs: a partition led now and not before, or at another epoch
// (its leadership went elsewhere and came back meanwhile), is started; one
// led before and not now, or at another epoch, is stopped.
func leadershipChanges(before, now map[partKey]int32) (started, stopped []partKey) {
	for k, epoch := range now {
		if was, ok := before[k]; !ok || was != epoch {
			started = append(started, k)
		}
	}
	for k, was := range before {
		if epoch, ok := now[k]; !ok || was != epoch {
			stopped = append(stopped, k)
		}
	}
	return started, stopped
}

func addr(b meta.Broker) string {
	if b.Host == "" {
		return ""
	}
	return joinHostPort(b.Host, b.Port)
}

// shrinkISRs removes from the ISR of the partitions this broker leads
// the followers that fell behind for longer than LagMax.
func (n *Node) shrinkISRs() {
	now := time.Now()
	var changes []meta.PartitionChange
	for _, t := range n.cfg.Store.Topics() {
		for i := range t.NumPartitions() {
			st := t.State(i)
			if st.Leader != n.cfg.NodeID {
				continue
			}
			p, err := t.Partition(i)
			if err != nil {
				continue
			}
			if err := p.Err(); err != nil && len(st.ISR) > 1 {
				// A replica that cannot write (a full disk) stops
				// leading: the next in-sync replica takes over.
				isr := slices.DeleteFunc(slices.Clone(st.ISR), func(r int32) bool { return r == n.cfg.NodeID })
				leader := isr[0]
				for _, r := range st.Replicas {
					if slices.Contains(isr, r) {
						leader = r
						break
					}
				}
				n.logger.Warn("leader cannot write; handing leadership over", "topic", t.Name(), "partition", i, "leader", leader, "err", err)
				changes = append(changes, meta.PartitionChange{Topic: t, Partition: i, Expect: st.PartitionEpoch, State: meta.NextState(st, leader, isr, nil, st.Target)})
				continue
			}
			lag := p.LaggingReplicas(now, n.cfg.LagMax)
			if len(lag) == 0 {
				continue
			}
			isr := slices.DeleteFunc(slices.Clone(st.ISR), func(r int32) bool { return slices.Contains(lag, r) })
			n.logger.Info("shrinking ISR", "topic", t.Name(), "partition", i, "isr", st.ISR, "new_isr", isr)
			changes = append(changes, meta.PartitionChange{Topic: t, Partition: i, Expect: st.PartitionEpoch, State: meta.NextState(st, st.Leader, isr, nil, st.Target)})
		}
	}
	if err := n.cfg.Store.ChangePartitions(changes); err != nil {
		n.logger.Warn("ISR change failed", "err", err)
	}
}

// FollowerCaughtUp queues follower id of a partition this broker leads
// for the ISR: the leader counts it in the high watermark from now on
// (partition.ExpandingISR) and records it in the metadata.
func (n *Node) FollowerCaughtUp(topic string, part int32, p *partition.Partition, id int32) {
	p.ExpandingISR(id)
	n.mu.Lock()
	k := partKey{topic, part}
	if !slices.Contains(n.mu.expanding[k], id) {
		n.mu.expanding[k] = append(n.mu.expanding[k], id)
	}
	n.mu.Unlock()
	n.Kick()
}

func (n *Node) expandISRs() {
	n.mu.Lock()
	queued := n.mu.expanding
	n.mu.expanding = map[partKey][]int32{}
	n.mu.Unlock()
	var changes []meta.PartitionChange
	for k, ids := range queued {
		t := n.cfg.Store.Topic(k.topic)
		if t == nil {
			continue
		}
		st := t.State(k.partition)
		if st.Leader != n.cfg.NodeID {
			continue
		}
		isr := slices.Clone(st.ISR)
		for _, id := range ids {
			if !slices.Contains(isr, id) && (slices.Contains(st.Replicas, id) || slices.Contains(st.Target, id)) {
				isr = append(isr, id)
			}
		}
		if len(isr) == len(st.ISR) {
			continue
		}
		n.logger.Info("expanding ISR", "topic", k.topic, "partition", k.partition, "isr", st.ISR, "new_isr", isr)
		changes = append(changes, meta.PartitionChange{Topic: t, Partition: k.partition, Expect: st.PartitionEpoch, State: meta.NextState(st, st.Leader, isr, nil, st.Target)})
	}
	if err := n.cfg.Store.ChangePartitions(changes); err != nil {
		n.logger.Warn("ISR change failed", "err", err)
	}
}

func joinHostPort(host string, port int32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}
