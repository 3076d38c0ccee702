package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/coordstate"
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/raftlog"
)

// A broker is a node of a cluster when controller.quorum.voters is set:
// its metadata log is replicated (package raftlog), its partitions are
// replicas led by one broker each (package partition), and package
// cluster runs its part (registration, roles, fetchers, the controller).
// This file wires them; the handlers ask s.cluster what they need.

// raftDir is the directory of the replicated metadata log.
const raftDir = "__raft"

// openMeta opens the metadata store: on the local log, or, with
// controller.quorum.voters, on the replicated one.
func (s *Server) openMeta(mc meta.Config) error {
	voters := strings.TrimSpace(s.cfg.Props["controller.quorum.voters"])
	if voters == "" {
		if err := s.checkBootstrapServers(); err != nil {
			return err
		}
		var err error
		s.meta, err = meta.Open(mc)
		return err
	}
	broker, controller, err := s.processRoles()
	if err != nil {
		return err
	}
	vs, err := raftlog.ParseVoters(voters)
	if err != nil {
		return err
	}
	voter := slices.ContainsFunc(vs, func(v raftlog.Voter) bool { return v.NodeID == s.cfg.NodeID })
	listen := s.cfg.ControllerListen
	if listen == "" {
		// Kafka's way: a listener named in controller.listener.names.
		if listen, err = ControllerListenerAddr(s.cfg.Props); err != nil {
			return err
		}
	}
	switch {
	case !controller && voter:
		return fmt.Errorf("process.roles=broker: node.id %d is in controller.quorum.voters, which lists the controllers only (a voter removed with RemoveRaftVoter is retired: a new broker-only node needs a node.id of its own)", s.cfg.NodeID)
	case !controller && (listen != "" || s.cfg.controllerListener != nil):
		return errors.New("process.roles=broker: a broker-only node has no controller listener (-controller-listen, or a listener of controller.listener.names in listeners)")
	case controller && !voter && listen == "" && s.cfg.controllerListener == nil:
		roles := "broker,controller"
		if !broker {
			roles = "controller"
		}
		return fmt.Errorf("process.roles=%s: node.id %d is not in controller.quorum.voters, and has no controller listener (-controller-listen, or a listener of controller.listener.names in listeners): a controller to be added as a voter (AddRaftVoter) needs one", roles, s.cfg.NodeID)
	}
	if mc.ClusterID, err = clusterID(s.cfg.DataDir, s.cfg.Props["cluster.id"], vs); err != nil {
		return err
	}
	mc.Replicated = true
	mc.Changed = s.clusterChanged
	ms := func(name, def string) time.Duration {
		v, ok := s.cfg.Props[name]
		if !ok {
			v = def
		}
		var n int64
		fmt.Sscan(v, &n)
		return time.Duration(n) * time.Millisecond
	}
	serverTLS, dialTLS, err := s.controllerTLS()
	if err != nil {
		return err
	}
	rl, err := raftlog.Open(raftlog.Config{
		ServerTLS:       serverTLS,
		DialTLS:         dialTLS,
		Dir:             filepath.Join(s.cfg.DataDir, raftDir),
		NodeID:          s.cfg.NodeID,
		Voters:          vs,
		Learner:         !controller,
		ListenAddr:      listen,
		Listener:        s.cfg.controllerListener,
		ClusterID:       mc.ClusterID,
		ElectionTimeout: ms("controller.quorum.election.timeout.ms", "1000"),
		Logger:          s.logger,
	})
	if err != nil {
		return err
	}
	mc.Log = rl
	if s.meta, err = meta.Open(mc); err != nil {
		rl.Close()
		return err
	}
	if !broker && slices.ContainsFunc(s.meta.Brokers(), func(b meta.Broker) bool { return b.ID == s.cfg.NodeID }) {
		// Its broker record would stay, unfenced while it votes, and
		// keep its replicas and leaderships.
		s.meta.Close()
		return fmt.Errorf("process.roles=controller: node %d is registered as a broker in the metadata; a node's roles cannot drop broker once it has joined", s.cfg.NodeID)
	}
	s.raft = rl
	return nil
}

// checkBootstrapServers refuses controller.quorum.bootstrap.servers
// (KIP-853's dynamic quorum) unless it names this node's own controller
// listener alone, as the single-node server.properties Kafka ships does:
// the nodes of a cluster list their controllers in
// controller.quorum.voters, and a node started with bootstrap servers
// alone would run as a broker on its own, unknown to the others.
func (s *Server) checkBootstrapServers() error {
	v := strings.TrimSpace(s.cfg.Props["controller.quorum.bootstrap.servers"])
	if v == "" {
		return nil
	}
	own := s.cfg.ControllerListen
	if own == "" {
		var err error
		if own, err = ControllerListenerAddr(s.cfg.Props); err != nil {
			return err
		}
	}
	var addrs []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 1 && own != "" && sameLocalAddr(addrs[0], own) {
		return nil
	}
	return fmt.Errorf("controller.quorum.bootstrap.servers=%s: a dynamic metadata quorum (KIP-853) is not supported; list the controllers in controller.quorum.voters (id@host:port,...), or, for a single broker, name only its own controller listener or leave the setting out", v)
}

// sameLocalAddr reports whether host:port a names the listener at b:
// the same port, and b's host or one that means this machine (a
// loopback address, localhost, this host's name).
func sameLocalAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	local := func(h string) bool {
		switch h {
		case "", "localhost", "0.0.0.0", "::":
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	host, _ := os.Hostname()
	return ah == bh || local(ah) || ah == host
}

// processRoles parses process.roles: broker, controller or both (the
// default of a node of a cluster).
func (s *Server) processRoles() (broker, controller bool, err error) {
	v := strings.TrimSpace(s.cfg.Props["process.roles"])
	if v == "" {
		return true, true, nil
	}
	for _, r := range strings.Split(v, ",") {
		switch strings.TrimSpace(r) {
		case "broker":
			broker = true
		case "controller":
			controller = true
		default:
			return false, false, fmt.Errorf("process.roles %q: want broker, controller or broker,controller", v)
		}
	}
	return broker, controller, nil
}

// startCluster starts this node's part in the cluster (after the group
// coordinator, which follows the leadership of __consumer_offsets).
func (s *Server) startCluster() {
	if s.raft == nil {
		return
	}
	bs := s.settings()
	rl := s.raft
	broker, _, _ := s.processRoles() // checked by openMeta
	s.cluster = cluster.Start(cluster.Config{
		Store:          s.meta,
		Raft:           rl,
		NodeID:         s.cfg.NodeID,
		ControllerOnly: !broker,
		Advertised:     s.advertisedListeners,
		Dialer:         s.replicaDialer,
		SessionTimeout: time.Duration(bs.int64("broker.session.timeout.ms")) * time.Millisecond,
		LagMax:         time.Duration(bs.int64("replica.lag.time.max.ms")) * time.Millisecond,
		FetchWait:      time.Duration(bs.int64("replica.fetch.wait.max.ms")) * time.Millisecond,
		FetchMaxBytes:  int32(bs.int64("replica.fetch.max.bytes")),
		Unclean: func(t *meta.Topic) bool {
			v, _ := s.meta.Settings().TopicValue(t.Configs(), "unclean.leader.election.enable")
			return v == "true"
		},
		LeaderRebalance: &cluster.LeaderRebalance{
			Enable:              bs.bool("auto.leader.rebalance.enable"),
			Interval:            time.Duration(bs.int64("leader.imbalance.check.interval.seconds")) * time.Second,
			PerBrokerPercentage: int(bs.int64("leader.imbalance.per.broker.percentage")),
		},
		LeadershipChanged: s.leadershipChanged,
		Logger:            s.logger,
	})
	s.wg.Add(4)
	go s.shareGoneLoop()
	go s.createInternalTopic(offsetsTopicSpec())
	go s.createInternalTopic(s.txnStateTopicSpec())
	go s.createInternalTopic(s.shareStateTopicSpec())
}

// startClusterGroups starts the group coordinator of a cluster node: it
// loads the partitions of __consumer_offsets this broker leads, as it
// comes to lead them.
func (s *Server) startClusterGroups() error {
	n := int32(s.settings().int64("offsets.topic.num.partitions"))
	if t := s.meta.Topic(offsetsTopic); t != nil {
		n = t.NumPartitions()
	}
	part := func(p int32) (*partition.Partition, error) { return s.meta.Topic(offsetsTopic).Partition(p) }
	c, err := s.newGroupCoordinator(coordstate.New[group.Record](offsetsTopic, part), n, true)
	if err != nil {
		return err
	}
	s.groups = c
	return nil
}

// leadershipChanged is told by the cluster node of the partitions this
// broker starts or stops leading: the group coordinator loads and
// unloads those of __consumer_offsets, the transaction coordinator those
// of __transaction_state, the share coordinator those of
// __share_group_state.
func (s *Server) leadershipChanged(topic string, p int32, leading bool) {
	if topic == transactionStateTopic {
		s.txnLeadershipChanged(p, leading)
		return
	}
	if topic == shareStateTopic {
		s.shareLeadershipChanged(p, leading)
		return
	}
	if topic != offsetsTopic {
		s.shareDataLeadershipChanged(topic, p, leading)
	}
	if topic != offsetsTopic || s.groups == nil {
		return
	}
	if !leading {
		s.groups.Unload(p)
		return
	}
	if err := s.groups.Load(p); err != nil {
		s.logger.Error("loading group coordinator partition failed", "partition", p, "err", err)
	}
}

// internalTopic is an internal topic a cluster creates: its name, the
// broker configs of its replication factor and (if any) of its
// min.insync.replicas, its partition count and its topic configs.
type internalTopic struct {
	name         string
	rfConfig     string
	minISRConfig string
	partitions   func(bs brokerSettings) int32
	configs      func(bs brokerSettings) map[string]*string
	// created, if set, is called once the topic exists.
	created func()
}

// createInternalTopic creates it once the cluster has a controller and
// its brokers have registered (or after 10 s, with those there are), with
// its replication factor capped by the live brokers; only the controller
// proposes it, and a node that finds it made returns.
func (s *Server) createInternalTopic(it internalTopic) {
	defer s.wg.Done()
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if s.meta.Topic(it.name) != nil {
			if it.created != nil {
				it.created()
			}
			return
		}
		if !s.raft.IsLeader() {
			continue
		}
		live := 0
		for _, b := range s.meta.Brokers() {
			if !b.Fenced {
				live++
			}
		}
		bs := s.settings()
		// The brokers to wait for: every node the metadata log knows
		// (voters and broker-only learners); a controller-only voter
		// never registers, and then the wait below ends it.
		want := min(int(bs.int64(it.rfConfig)), len(s.raft.Voters())+len(s.raft.Learners()))
		if live == 0 || (live < want && time.Since(start) < 10*time.Second) {
			continue
		}
		rf := min(want, live)
		configs := it.configs(bs)
		if it.minISRConfig != "" {
			configs["min.insync.replicas"] = ptr(strconv.Itoa(min(int(bs.int64(it.minISRConfig)), rf)))
		}
		_, err := s.meta.CreateTopic(meta.NewTopic{
			Name:              it.name,
			Partitions:        it.partitions(bs),
			ReplicationFactor: int16(rf),
			Configs:           configs,
			Internal:          true,
		})
		if err != nil && codeOf(err) != kerr.TopicAlreadyExists.Code {
			s.logger.Warn("creating "+it.name+" failed; retrying", "err", err)
		}
	}
}

// offsetsTopicSpec is __consumer_offsets in a cluster, with
// offsets.topic.replication.factor replicas at most.
func offsetsTopicSpec() internalTopic {
	return internalTopic{
		name:       offsetsTopic,
		rfConfig:   "offsets.topic.replication.factor",
		partitions: func(bs brokerSettings) int32 { return int32(bs.int64("offsets.topic.num.partitions")) },
		configs: func(bs brokerSettings) map[string]*string {
			return map[string]*string{
				"cleanup.policy":    ptr("compact"),
				"segment.bytes":     ptr(strconv.FormatInt(bs.int64("offsets.topic.segment.bytes"), 10)),
				"max.message.bytes": ptr("10485760"),
			}
		},
	}
}

// clusterID is the cluster's id: the one in meta.properties once the
// node started (its voters may have changed since), else cluster.id,
// else, as every node of a new cluster does, the id derived from the
// voters. A node joining a cluster whose voters changed since it started
// needs cluster.id (ferry cluster info shows it).
func clusterID(dataDir, given string, vs []raftlog.Voter) (string, error) {
	given = strings.TrimSpace(given)
	kept, err := meta.ReadClusterID(dataDir)
	switch {
	case err != nil:
		return "", fmt.Errorf("meta.properties: %w", err)
	case kept != "" && given != "" && kept != given:
		return "", fmt.Errorf("cluster.id %s: %s/meta.properties belongs to cluster %s", given, dataDir, kept)
	case kept != "":
		return kept, nil
	case given != "":
		return given, nil
	}
	return meta.ClusterIDFromVoters(normalizeVoters(vs)), nil
}

// normalizeVoters writes voters in one order and form, so that every
// node derives the same cluster id however its list was spelled.
func normalizeVoters(vs []raftlog.Voter) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%d@%s", v.NodeID, v.Addr)
	}
	return strings.Join(parts, ",")
}

// clusterChanged is meta's Changed callback: the metadata changed.
func (s *Server) clusterChanged() {
	if !s.started.Load() {
		return // New tells everyone once it is done
	}
	if c := s.cluster; c != nil {
		c.Kick()
	}
	s.topicsChanged()
	if s.shares != nil {
		s.shares.GroupConfigsChanged() // altered through another broker, maybe
	}
}

// advertisedListeners is the address of this broker's inter-broker
// listener, as the other brokers are told (the broker registers it once
// that listener serves), and the advertised addresses of every listener
// it serves, for the clients of each.
func (s *Server) advertisedListeners() (string, int32, []meta.Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var host string
	var port int32
	var eps []meta.Endpoint
	for _, l := range s.listeners {
		for _, ep := range s.mu.listeners {
			if ep.l != l {
				continue
			}
			if l == s.interBroker {
				host, port = ep.host, ep.port
			}
			eps = append(eps, meta.Endpoint{Name: l.Name, Host: ep.host, Port: ep.port})
			break
		}
	}
	return host, port, eps
}

// controllerID is the controller clients are told of (Metadata,
// DescribeCluster): this broker on a single node; in a cluster the
// metadata quorum's leader when it is a broker. A controller-only leader
// is not among the brokers clients know, and a client sends its admin
// requests to the controller it is told of, so then, as Kafka's KRaft
// brokers do, it is told of a live broker: this one if it is a broker,
// else the first. Every broker takes admin requests (they are proposed
// to the quorum from wherever they arrive).
func (s *Server) controllerID() int32 {
	if s.cluster == nil {
		return s.cfg.NodeID
	}
	leader := s.cluster.ControllerID()
	first := int32(-1)
	for _, b := range s.meta.Brokers() {
		if b.Fenced || b.Host == "" {
			continue
		}
		if b.ID == leader {
			return leader
		}
		if first < 0 {
			first = b.ID
		}
		if b.ID == s.cfg.NodeID {
			first = b.ID
		}
	}
	if first < 0 {
		return leader
	}
	return first
}

// closeCluster stops the node's cluster work before the storage closes.
func (s *Server) closeCluster() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// clusterCoordinator answers FindCoordinator for a group in a cluster:
// the leader of the group's partition of __consumer_offsets, as Kafka.
func (s *Server) clusterCoordinator(group string) (int32, string, int32, int16, *string) {
	t := s.meta.Topic(offsetsTopic)
	if t == nil || s.groups == nil {
		msg := "the group coordinator is starting"
		return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
	}
	st := t.State(s.groups.Partition(group))
	for _, b := range s.meta.Brokers() {
		if b.ID == st.Leader && !b.Fenced && b.Host != "" {
			return b.ID, b.Host, b.Port, 0, nil
		}
	}
	msg := "the partition of the group has no leader"
	return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
}
