package meta

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"

	"crypto/sha256"
	"encoding/base64"
)

// This file holds the metadata of a cluster (Config.Replicated: a
// replicated Log). Topics are placed on brokers: each partition has
// replicas, an in-sync set (ISR), a leader and epochs, recorded in the
// log; brokers register with their advertised addresses and are fenced by
// the controller when it loses contact with them. A node opens only the
// partitions it holds a replica of, when the record naming them commits,
// from Reconcile.

// PartitionState is where a partition's replicas live and who leads it,
// as the metadata log says. Its slices are shared: never modify them.
type PartitionState struct {
	// Replicas are the brokers holding the partition, the preferred
	// leader first.
	Replicas []int32
	// ISR are the replicas in sync with the leader (Kafka's in-sync
	// replica set): an acks=all produce waits for all of them, and only
	// they may become leader (unclean.leader.election.enable=false).
	ISR []int32
	// Leader is the leading broker, -1 when none can lead.
	Leader int32
	// LeaderEpoch grows by one with each change of leader.
	LeaderEpoch int32
	// PartitionEpoch grows by one with every change of the state.
	PartitionEpoch int32
	// Target holds the replicas of a reassignment in progress (nil if
	// none): Replicas holds both the old and the new until the new are
	// in sync. Adding are the replicas of Target that were not replicas
	// before (a cancelled reassignment removes them).
	Target []int32
	Adding []int32
}

// Broker is a registered broker of the cluster.
type Broker struct {
	ID int32
	// Host and Port are the advertised address of its inter-broker
	// listener, which the other brokers dial.
	Host string
	Port int32
	// Endpoints are the advertised addresses of all its Kafka
	// listeners; shared, never modify it.
	Endpoints []Endpoint
	Fenced    bool
	// Rack is the broker's broker.rack, "" when it has none (Kafka's
	// null; records written before racks existed read as none).
	Rack string
}

// Endpoint is the advertised address of one listener of a broker.
type Endpoint struct {
	// Name is the listener's name (listeners), in upper case.
	Name string `json:"name"`
	Host string `json:"host"`
	Port int32  `json:"port"`
}

// Endpoint returns the address of the broker's listener of that name,
// for a client connected to the listener of that name; a broker that
// registered no such listener (or registered before listeners were
// recorded) answers with its inter-broker address.
func (b Broker) Endpoint(name string) (string, int32) {
	for _, e := range b.Endpoints {
		if e.Name == name {
			return e.Host, e.Port
		}
	}
	return b.Host, b.Port
}

// Controller is a registered controller-only node (process.roles=
// controller): not a broker, so never listed to clients, but its Kafka
// listener takes the requests only the quorum's leader can answer
// (DescribeQuorum), which other nodes forward there. Kafka's
// RegisterControllerRecord (KIP-919) has the same purpose.
type Controller struct {
	ID   int32
	Host string
	Port int32
}

// Controllers returns the registered controller-only nodes, by id.
func (s *Store) Controllers() []Controller {
	s.image.mu.RLock()
	out := make([]Controller, 0, len(s.image.controllers))
	for _, c := range s.image.controllers {
		out = append(out, c)
	}
	s.image.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RegisterController records this controller-only node and the address
// of its Kafka listener. It registers each time it starts, and again if
// its address changes.
func (s *Store) RegisterController(host string, port int32) error {
	id := s.cfg.NodeID
	return s.log.Propose([]Record{{Type: TypeController, Controller: &id, Host: host, Port: port}})
}

// Replicated reports a node of a cluster (a replicated metadata log).
func (s *Store) Replicated() bool { return s.cfg.Replicated }

// Brokers returns the registered brokers, by id. On a single node it is
// this broker, with no address (the server knows its own).
func (s *Store) Brokers() []Broker {
	if !s.cfg.Replicated {
		return []Broker{{ID: s.cfg.NodeID}}
	}
	s.image.mu.RLock()
	out := make([]Broker, 0, len(s.image.brokers))
	for _, b := range s.image.brokers {
		out = append(out, b)
	}
	s.image.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// State returns partition i's state. On a single node this broker holds
// the only replica and leads it at epoch 0.
func (t *Topic) State(i int32) PartitionState {
	if st := t.states.Load(); st != nil && int(i) < len(*st) && i >= 0 {
		return (*st)[i]
	}
	one := []int32{t.node}
	return PartitionState{Replicas: one, ISR: one, Leader: t.node}
}

// States returns every partition's state (see State).
func (t *Topic) States() []PartitionState {
	n := t.NumPartitions()
	out := make([]PartitionState, n)
	for i := range n {
		out[i] = t.State(i)
	}
	return out
}

// setState replaces partition i's state; the caller holds image.mu.
func (t *Topic) setStateLocked(i int32, st PartitionState) {
	old := t.states.Load()
	var cur []PartitionState
	if old != nil {
		cur = *old
	}
	next := make([]PartitionState, max(len(cur), int(i)+1))
	copy(next, cur)
	next[i] = st
	t.states.Store(&next)
}

// RegisterBroker records this broker, the address of its inter-broker
// listener and those of all its listeners, and its rack (Rack),
// unfenced. A broker registers each time it starts.
func (s *Store) RegisterBroker(host string, port int32, endpoints []Endpoint) error {
	id := s.cfg.NodeID
	return s.log.Propose([]Record{{Type: TypeBroker, Broker: &id, Host: host, Port: port, Endpoints: endpoints, Rack: s.Rack()}})
}

// Rack is this broker's rack: its static broker.rack, "" for none.
func (s *Store) Rack() string {
	v, _ := s.Settings().Get("broker.rack")
	return v
}

// UnregisterBroker removes broker id from the metadata, as Kafka's
// UnregisterBroker does: it is no longer listed, placed on or fenced. Its
// partitions keep it among their replicas (it may come back: a broker
// that starts registers again); the controller takes it out of their
// ISRs and leaderships as it does a fenced broker's. It returns
// ErrBrokerNotRegistered if the broker is not registered.
func (s *Store) UnregisterBroker(id int32) error {
	if !slices.ContainsFunc(s.Brokers(), func(b Broker) bool { return b.ID == id }) {
		return fmt.Errorf("%w: broker %d", ErrBrokerNotRegistered, id)
	}
	return s.log.Propose([]Record{{Type: TypeRemoveBroker, Broker: &id}})
}

// PartitionChange is a new state for one partition, proposed on the
// condition that its partition epoch is still Expect.
type PartitionChange struct {
	Topic     *Topic
	Partition int32
	Expect    int32
	State     PartitionState
}

// ChangePartitions records new partition states in one entry. Each change
// applies only if the partition's epoch is still the one expected;
// callers compute the new state from State and bump the epochs
// (NextState).
func (s *Store) ChangePartitions(cs []PartitionChange) error {
	return s.ChangeCluster(nil, cs)
}

// ChangeCluster records fencing changes of brokers (their Fenced field
// the new state) and partition changes (as ChangePartitions) in one
// entry.
func (s *Store) ChangeCluster(fences []Broker, cs []PartitionChange) error {
	if len(cs) == 0 && len(fences) == 0 {
		return nil
	}
	recs := make([]Record, 0, len(fences)+len(cs))
	for _, b := range fences {
		id := b.ID
		recs = append(recs, Record{Type: TypeBroker, Broker: &id, Host: b.Host, Port: b.Port, Endpoints: b.Endpoints, Rack: b.Rack, Fenced: b.Fenced, IfRegistered: true})
	}
	for _, c := range cs {
		p, leader, expect := c.Partition, c.State.Leader, c.Expect
		recs = append(recs, Record{Type: TypePartitionChange, Topic: c.Topic.name, TopicID: TopicIDString(c.Topic.id), Partition: &p,
			Leader: &leader, LeaderEpoch: c.State.LeaderEpoch, PartitionEpoch: c.State.PartitionEpoch,
			ISR: c.State.ISR, Replicas: c.State.Replicas, Target: c.State.Target, Adding: c.State.Adding, ExpectEpoch: &expect})
	}
	return s.log.Propose(recs)
}

// NextState returns st changed to leader, isr and replicas (nil keeps
// them) with its epochs advanced: the partition epoch always, the leader
// epoch when the leader changes.
func NextState(st PartitionState, leader int32, isr, replicas, target []int32) PartitionState {
	n := st
	if isr != nil {
		n.ISR = isr
	}
	if replicas != nil {
		n.Replicas = replicas
	}
	n.Target = target
	if target == nil {
		n.Adding = nil
	}
	if leader != st.Leader {
		n.Leader = leader
		n.LeaderEpoch++
	}
	n.PartitionEpoch++
	return n
}

// applyClusterLocked applies the records of a cluster; the caller holds
// image.mu. It reports whether the record was one of them.
func (s *Store) applyClusterLocked(r *Record) (bool, error) {
	switch r.Type {
	case TypeBroker:
		if r.Broker == nil {
			return true, nil
		}
		old, ok := s.image.brokers[*r.Broker]
		if !ok && r.IfRegistered {
			return true, nil // unregistered since the fencing was decided
		}
		rack, endpoints := r.Rack, r.Endpoints
		if r.IfRegistered {
			// A fencing change written by a node that knew no racks or
			// endpoints keeps the broker's.
			if rack == "" {
				rack = old.Rack
			}
			if len(endpoints) == 0 {
				endpoints = old.Endpoints
			}
		}
		s.image.brokers[*r.Broker] = Broker{ID: *r.Broker, Host: r.Host, Port: r.Port, Endpoints: endpoints, Fenced: r.Fenced, Rack: rack}
		return true, nil
	case TypeRemoveBroker:
		if r.Broker != nil {
			delete(s.image.brokers, *r.Broker)
		}
		return true, nil
	case TypeController:
		if r.Controller != nil {
			s.image.controllers[*r.Controller] = Controller{ID: *r.Controller, Host: r.Host, Port: r.Port}
		}
		return true, nil
	case TypePartitionChange:
		id, err := ParseTopicID(r.TopicID)
		if err != nil {
			return true, err
		}
		t := s.image.byID[id]
		if t == nil || r.Partition == nil || *r.Partition < 0 || *r.Partition >= t.NumPartitions() {
			return true, nil
		}
		cur := t.State(*r.Partition)
		if r.ExpectEpoch != nil && *r.ExpectEpoch != cur.PartitionEpoch {
			return true, nil // computed from an older state: dropped
		}
		leader := int32(-1)
		if r.Leader != nil {
			leader = *r.Leader
		}
		t.setStateLocked(*r.Partition, PartitionState{Replicas: r.Replicas, ISR: r.ISR, Leader: leader, LeaderEpoch: r.LeaderEpoch, PartitionEpoch: r.PartitionEpoch, Target: r.Target, Adding: r.Adding})
		return true, nil
	case TypeProducerIDs:
		if r.Block <= 0 || r.Broker == nil {
			return false, nil
		}
		start := s.reservedPIDs.Load()
		s.reservedPIDs.Store(start + r.Block)
		s.image.pidBlocks[*r.Broker] = start
		return true, nil
	}
	return false, nil
}

// initStates sets the states of partitions from .. of t from their
// assignments: each led by its first replica, all in sync, epoch 0.
func (t *Topic) initStatesLocked(from int32, assignments [][]int32) {
	for k, reps := range assignments {
		if len(reps) == 0 {
			continue
		}
		t.setStateLocked(from+int32(k), PartitionState{Replicas: reps, ISR: reps, Leader: reps[0]})
	}
}

// restoreLocked empties the image for a snapshot that replaces it (the
// caller applies its records next): topics the snapshot does not name are
// removed, as if deleted; those it names keep their open partitions.
func (s *Store) restoreLocked(recs []Record) {
	keep := map[string]bool{}
	for i := range recs {
		if recs[i].Type == TypeTopic {
			keep[recs[i].TopicID] = true
		}
	}
	for id, t := range s.image.byID {
		if !keep[TopicIDString(id)] {
			delete(s.image.byID, id)
			if s.image.byName[t.name] == t {
				delete(s.image.byName, t.name)
			}
			s.image.removed = append(s.image.removed, t)
		}
	}
	s.image.brokers = map[int32]Broker{}
	s.image.controllers = map[int32]Controller{}
	s.sec.mu.Lock()
	s.sec.init()
	s.sec.mu.Unlock()
	old := s.settings.Load()
	s.settings.Store(&Settings{static: old.static, dynamic: map[string]string{}})
}

// snapshotRecords returns the image as records that rebuild it (for a
// replicated log's snapshots).
func (s *Store) snapshotRecords() []Record {
	s.image.mu.RLock()
	defer s.image.mu.RUnlock()
	var recs []Record
	for _, b := range s.image.brokers {
		id := b.ID
		recs = append(recs, Record{Type: TypeBroker, Broker: &id, Host: b.Host, Port: b.Port, Endpoints: b.Endpoints, Rack: b.Rack, Fenced: b.Fenced})
	}
	for _, c := range s.image.controllers {
		id := c.ID
		recs = append(recs, Record{Type: TypeController, Controller: &id, Host: c.Host, Port: c.Port})
	}
	names := slices.Sorted(maps.Keys(s.image.byName))
	for _, name := range names {
		t := s.image.byName[name]
		n := t.NumPartitions()
		recs = append(recs, Record{Type: TypeTopic, Topic: t.name, TopicID: TopicIDString(t.id), Partitions: n, Internal: t.internal, Configs: t.Configs()})
		for i := range n {
			st := t.State(i)
			p, leader := i, st.Leader
			recs = append(recs, Record{Type: TypePartitionChange, Topic: t.name, TopicID: TopicIDString(t.id), Partition: &p,
				Leader: &leader, LeaderEpoch: st.LeaderEpoch, PartitionEpoch: st.PartitionEpoch, ISR: st.ISR, Replicas: st.Replicas, Target: st.Target, Adding: st.Adding})
		}
	}
	for k, v := range s.Settings().dynamic {
		recs = append(recs, Record{Type: TypeConfig, Resource: "broker", Key: k, Value: &v})
	}
	recs = append(recs, Record{Type: TypeProducerIDs, NextProducerID: s.reservedPIDs.Load()})
	// SCRAM credentials, ACLs and client quotas.
	for user, byMech := range *s.sec.scram.Load() {
		for mech, c := range byMech {
			recs = append(recs, Record{Type: TypeScram, User: user, Mechanism: mech, Scram: &c})
		}
	}
	for _, a := range *s.sec.acls.Load() {
		recs = append(recs, Record{Type: TypeACL, ACL: &a})
	}
	for _, q := range *s.sec.quotas.Load() {
		for k, v := range q.Values {
			val := strconv.FormatFloat(v, 'g', -1, 64)
			recs = append(recs, Record{Type: TypeClientQuota, Entity: q.Entity, Key: k, Value: &val})
		}
	}
	return recs
}

// assign places n partitions of rf replicas each on the unfenced
// brokers, round robin from a random broker, as Kafka does without racks
// (with racks: placement.go).
func (s *Store) assign(n int32, rf int16) ([][]int32, error) {
	var live []int32
	var liveBrokers []Broker
	for _, b := range s.Brokers() {
		if !b.Fenced {
			live = append(live, b.ID)
			liveBrokers = append(liveBrokers, b)
		}
	}
	if int(rf) > len(live) {
		return nil, fmt.Errorf("%w: replication factor %d is larger than the number of available brokers (%d)", ErrInvalidReplicationFactor, rf, len(live))
	}
	if order, rackOf, racks := rackAlternated(liveBrokers); order != nil {
		return assignByRack(order, rackOf, racks, n, rf), nil
	}
	start := rand.IntN(len(live))
	shift := rand.IntN(len(live))
	out := make([][]int32, n)
	for i := range int(n) {
		reps := make([]int32, rf)
		first := (start + i) % len(live)
		reps[0] = live[first]
		for j := 1; j < int(rf); j++ {
			// Followers shift with each full round, so that no two
			// brokers always follow each other.
			k := (first + 1 + (shift+i/len(live)+j-1)%max(len(live)-1, 1)) % len(live)
			for slices.Contains(reps[:j], live[k]) {
				k = (k + 1) % len(live)
			}
			reps[j] = live[k]
		}
		out[i] = reps
	}
	return out, nil
}

// checkAssignments checks replica assignments given by a client: every
// broker registered, none twice in a partition, as many replicas in each.
func (s *Store) checkAssignments(asg [][]int32) error {
	known := map[int32]bool{}
	for _, b := range s.Brokers() {
		known[b.ID] = true
	}
	for i, reps := range asg {
		if len(reps) == 0 || len(reps) != len(asg[0]) {
			return fmt.Errorf("%w: partition %d has %d replicas", ErrInvalidReplicationFactor, i, len(reps))
		}
		for j, b := range reps {
			if !known[b] {
				return fmt.Errorf("%w: broker %d does not exist", ErrInvalidRequest, b)
			}
			if slices.Contains(reps[:j], b) {
				return fmt.Errorf("%w: broker %d named twice for partition %d", ErrInvalidRequest, b, i)
			}
		}
	}
	return nil
}

// createTopicReplicated records a new topic with its placement; the nodes
// holding its replicas create them when the record commits (Reconcile).
func (s *Store) createTopicReplicated(nt NewTopic, set map[string]string) (*Topic, error) {
	asg := nt.Assignments
	if asg != nil {
		if err := s.checkAssignments(asg); err != nil {
			return nil, err
		}
	} else {
		var err error
		if asg, err = s.assign(nt.Partitions, nt.ReplicationFactor); err != nil {
			return nil, err
		}
	}
	id := newTopicID()
	rec := Record{Type: TypeTopic, Topic: nt.Name, TopicID: TopicIDString(id), Partitions: nt.Partitions, Internal: nt.Internal, Configs: set, Assignments: asg}
	if err := s.log.Propose([]Record{rec}); err != nil {
		return nil, fmt.Errorf("%w: recording topic: %w", ErrStorage, err)
	}
	t := s.Topic(nt.Name)
	if t == nil || t.id != id {
		// Another node created a topic of that name first.
		return nil, fmt.Errorf("%w: topic %q already exists", ErrTopicExists, nt.Name)
	}
	s.logger.Info("created topic", "topic", nt.Name, "partitions", nt.Partitions, "replication_factor", nt.ReplicationFactor, "configs", set)
	s.topicsChanged()
	return t, nil
}

// addPartitionsReplicated records the new partitions of t with their
// placement, each of as many replicas as partition 0 has.
func (s *Store) addPartitionsReplicated(t *Topic, n int32) error {
	rf := int16(len(t.State(0).Replicas))
	asg, err := s.assign(n-t.NumPartitions(), max(rf, 1))
	if err != nil {
		return err
	}
	if err := s.log.Propose([]Record{{Type: TypePartitions, Topic: t.name, TopicID: TopicIDString(t.id), Partitions: n, Assignments: asg}}); err != nil {
		return fmt.Errorf("%w: recording partitions: %w", ErrStorage, err)
	}
	s.topicsChanged()
	return nil
}

// nextProducerIDReplicated reserves a block of producer ids for this
// broker through the log; the block starts where the cluster's last
// one ended. The caller holds pids.
func (s *Store) reserveProducerIDsReplicated() error {
	id := s.cfg.NodeID
	if err := s.log.Propose([]Record{{Type: TypeProducerIDs, Broker: &id, Block: producerIDBlock}}); err != nil {
		return fmt.Errorf("%w: reserving producer ids: %w", ErrStorage, err)
	}
	s.image.mu.RLock()
	start := s.image.pidBlocks[id]
	s.image.mu.RUnlock()
	s.pids.next, s.pids.end = start, start+producerIDBlock
	return nil
}

// hosts reports whether this broker holds a replica of a partition in
// state st (or will, by a reassignment in progress).
func (s *Store) hosts(st PartitionState) bool {
	return slices.Contains(st.Replicas, s.cfg.NodeID) || slices.Contains(st.Target, s.cfg.NodeID)
}

// Reconcile makes this broker's partitions match the image: it opens (or
// creates) the replicas newly placed here, and deletes those of deleted
// topics and those moved away. A node of a cluster calls it after the
// image changes (Config.Changed); on a single node it does nothing.
func (s *Store) Reconcile() {
	if !s.cfg.Replicated {
		return
	}
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	if s.closed.Load() || !s.ready.Load() {
		return
	}
	s.image.mu.Lock()
	removed := s.image.removed
	s.image.removed = nil
	s.image.mu.Unlock()
	for _, t := range removed {
		for i, sl := range *t.parts.Load() {
			if sl.p == nil {
				continue
			}
			if err := sl.p.Delete(); err != nil {
				s.logger.Error("removing a partition of a deleted topic", "topic", t.name, "partition", i, "err", err)
			}
		}
		s.logger.Info("deleted topic", "topic", t.name)
	}
	changed := len(removed) > 0
	for _, t := range s.Topics() {
		parts := *t.parts.Load()
		for i := range parts {
			st := t.State(int32(i))
			want := s.hosts(st)
			sl := parts[i]
			switch {
			case want && sl.p == nil && errors.Is(sl.err, ErrNotReplica):
				dir := partitionDir(s.cfg.DataDir, t.name, int32(i))
				if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
					if err := s.newPartitionDir(dir, t.id); err == nil {
						err = syncCreated(s.cfg.DataDir, []string{dir})
					}
				}
				t.setSlot(&s.image.mu, int32(i), s.openPartition(t, int32(i)))
				changed = true
			case !want && sl.p != nil:
				s.logger.Info("replica moved away; deleting it", "topic", t.name, "partition", i)
				if err := sl.p.Delete(); err != nil {
					s.logger.Error("removing a replica moved away", "topic", t.name, "partition", i, "err", err)
				}
				t.setSlot(&s.image.mu, int32(i), slot{err: ErrNotReplica})
				changed = true
			}
		}
	}
	if changed {
		s.topicsChanged()
	}
}

// errPending marks a partition of a cluster not opened yet: Reconcile
// opens it if this broker holds a replica.
var errPending = fmt.Errorf("%w: not opened yet", ErrNotReplica)

// markPending turns the slots not opened yet into errPending (a cluster).
func (t *Topic) markPending() {
	parts := slices.Clone(*t.parts.Load())
	for i := range parts {
		if parts[i].p == nil && errors.Is(parts[i].err, errNotOpened) {
			parts[i].err = errPending
		}
	}
	t.parts.Store(&parts)
}

// setSlot replaces slot i under mu.
func (t *Topic) setSlot(mu interface {
	Lock()
	Unlock()
}, i int32, sl slot) {
	mu.Lock()
	defer mu.Unlock()
	parts := slices.Clone(*t.parts.Load())
	if int(i) < len(parts) {
		parts[i] = sl
		t.parts.Store(&parts)
	}
}

// ClusterIDFromVoters derives a cluster id from controller.quorum.voters,
// so that the nodes given the same voters agree on it without a separate
// formatting step.
func ClusterIDFromVoters(voters string) string {
	sum := sha256.Sum256([]byte("ferry cluster " + voters))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// Reassign starts moving partition i of t to the replicas target (their
// order the preferred one), or with target nil cancels a reassignment in
// progress. The new replicas join, catch up and enter the ISR; the
// controller then drops the old ones (package cluster).
func (s *Store) Reassign(t *Topic, i int32, target []int32) error {
	if i < 0 || i >= t.NumPartitions() {
		return fmt.Errorf("%w: partition %d of %q", ErrUnknownTopicOrPartition, i, t.name)
	}
	st := t.State(i)
	var next PartitionState
	if target == nil {
		if st.Target == nil {
			return fmt.Errorf("%w: no reassignment in progress for %s-%d", ErrNoReassignment, t.name, i)
		}
		drop := func(r int32) bool { return slices.Contains(st.Adding, r) }
		replicas := slices.DeleteFunc(slices.Clone(st.Replicas), drop)
		isr := slices.DeleteFunc(slices.Clone(st.ISR), drop)
		leader := st.Leader
		if drop(leader) && len(isr) > 0 {
			leader = isr[0]
		}
		next = NextState(st, leader, isr, replicas, nil)
	} else {
		if err := s.checkAssignments([][]int32{target}); err != nil {
			return err
		}
		replicas := slices.Clone(st.Replicas)
		var adding []int32
		for _, r := range target {
			if !slices.Contains(replicas, r) {
				replicas = append(replicas, r)
				adding = append(adding, r)
			}
		}
		next = NextState(st, st.Leader, nil, replicas, slices.Clone(target))
		next.Adding = adding
	}
	return s.ChangePartitions([]PartitionChange{{Topic: t, Partition: i, Expect: st.PartitionEpoch, State: next}})
}
