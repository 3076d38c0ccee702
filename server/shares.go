package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/coordstate"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/share"
	"github.com/ferrymq/ferry/shareio"
)

// The share-group engine lives in package share; this file wires it to
// the broker: its Store is the __share_group_state topic (package
// coordstate), its Reader and dead-letter writer come from package
// shareio, and the server keeps what Kafka keeps per connection: the
// share sessions of ShareFetch and ShareAcknowledge, and the ShareFetch
// requests waiting for records.

// shareStateTopic is Kafka's internal topic holding share-group state.
const shareStateTopic = "__share_group_state"

// startShares starts the share coordinator, which replays
// __share_group_state. The topic is created when the first share group
// needs it (ensureShareState), as Kafka creates it, so a broker whose
// clients never use share groups does not have it. In a cluster the
// coordinator replays nothing here: it loads the partitions this broker
// comes to lead (shares_cluster.go).
func (s *Server) startShares() error {
	bs := s.settings()
	parts := int32(bs.int64("share.coordinator.state.topic.num.partitions"))
	if t := s.meta.Topic(shareStateTopic); t != nil {
		parts = t.NumPartitions()
		s.shareState.ready.Store(true)
	}
	s.shareState.partitions = parts
	ms := func(name string) time.Duration { return time.Duration(bs.int64(name)) * time.Millisecond }
	s.shareSessions = newShareSessions(int(bs.int64("group.share.max.share.sessions")))
	s.shareWaiters = newShareWaiters()
	if s.raft != nil {
		s.shareGone = make(chan shareSessionKey, shareGoneQueue)
	}
	var state share.StateClient
	if s.raft != nil {
		state = clusterShareState{s} // shares_cluster.go
	}
	c, err := share.New(share.Config{
		Store:                      shareStore{s, coordstate.New[share.Record](shareStateTopic, s.shareStatePartition)},
		Reader:                     shareio.NewReader(s.meta),
		DLQ:                        shareio.NewDLQWriter(s.meta, s.logger),
		Topics:                     s.shareTopics,
		GroupConfigs:               s.meta.GroupConfigs,
		Available:                  s.shareWaiters.wake,
		MemberGone:                 s.shareMemberGone,
		OtherGroup:                 s.consumerGroupExists,
		Logger:                     s.logger,
		NodeID:                     s.cfg.NodeID,
		LoadOnLead:                 s.raft != nil,
		State:                      state,
		StatePartitions:            parts,
		SessionTimeout:             ms("group.share.session.timeout.ms"),
		MinSessionTimeout:          ms("group.share.min.session.timeout.ms"),
		MaxSessionTimeout:          ms("group.share.max.session.timeout.ms"),
		HeartbeatInterval:          ms("group.share.heartbeat.interval.ms"),
		MinHeartbeatInterval:       ms("group.share.min.heartbeat.interval.ms"),
		MaxHeartbeatInterval:       ms("group.share.max.heartbeat.interval.ms"),
		RecordLockDuration:         ms("group.share.record.lock.duration.ms"),
		MinRecordLockDuration:      ms("group.share.min.record.lock.duration.ms"),
		MaxRecordLockDuration:      ms("group.share.max.record.lock.duration.ms"),
		DeliveryCountLimit:         int(bs.int64("group.share.delivery.count.limit")),
		MinDeliveryCountLimit:      int(bs.int64("group.share.min.delivery.count.limit")),
		MaxDeliveryCountLimit:      int(bs.int64("group.share.max.delivery.count.limit")),
		PartitionMaxRecordLocks:    int(bs.int64("group.share.partition.max.record.locks")),
		PartitionMaxDelayedRecords: int(bs.int64("group.share.partition.max.delayed.records")),
		MaxGroupSize:               int(bs.int64("group.share.max.size")),
		DeliveryBackoff:            ms("group.share.delivery.backoff.ms"),
		DeliveryBackoffMax:         ms("group.share.delivery.backoff.max.ms"),
		DLQTopicPrefix:             dlqPrefix(bs),
	})
	if err != nil {
		return fmt.Errorf("server: start share coordinator: %w", err)
	}
	s.shares = c
	return nil
}

// shareStateTopicConfigs are the configs __share_group_state is created
// with: its records are kept until the coordinator's snapshots move its
// log start (coordstate), never deleted by time or size.
func shareStateTopicConfigs(bs brokerSettings) map[string]*string {
	return map[string]*string{
		"cleanup.policy":    ptr("delete"),
		"retention.ms":      ptr("-1"),
		"retention.bytes":   ptr("-1"),
		"segment.bytes":     ptr(strconv.FormatInt(bs.int64("share.coordinator.state.topic.segment.bytes"), 10)),
		"max.message.bytes": ptr("10485760"),
	}
}

// ensureShareState creates __share_group_state if it does not exist yet.
// Every share API that may write state calls it first, off the reader
// goroutine and with no coordinator lock held (creating a topic tells the
// coordinators that topics changed).
func (s *Server) ensureShareState() error {
	if s.shareState.ready.Load() {
		return nil
	}
	s.shareState.mu.Lock()
	defer s.shareState.mu.Unlock()
	if s.meta.Topic(shareStateTopic) == nil && s.raft != nil {
		return errShareStateStarting // the controller's node creates it (shares_cluster.go)
	}
	if s.meta.Topic(shareStateTopic) == nil {
		_, err := s.meta.CreateTopic(meta.NewTopic{
			Name:              shareStateTopic,
			Partitions:        s.shareState.partitions,
			ReplicationFactor: 1,
			Configs:           shareStateTopicConfigs(s.settings()),
			Internal:          true,
		})
		if err != nil && !errors.Is(err, meta.ErrTopicExists) {
			s.logger.Error("creating "+shareStateTopic, "err", err)
			return err
		}
	}
	s.shareState.ready.Store(true)
	return nil
}

// shareStatePartition returns partition p of __share_group_state.
func (s *Server) shareStatePartition(p int32) (*partition.Partition, error) {
	t := s.meta.Topic(shareStateTopic)
	if t == nil {
		return nil, errShareStateStarting
	}
	return t.Partition(p)
}

// shareStore is the share coordinator's Store: __share_group_state, which
// replays as empty until it exists.
type shareStore struct {
	s *Server
	*coordstate.Store[share.Record]
}

func (st shareStore) Replay(p int32, fn func(int64, share.Record) error) error {
	if st.s.meta.Topic(shareStateTopic) == nil {
		return nil
	}
	return st.Store.Replay(p, fn)
}

// dlqPrefix is errors.deadletterqueue.topic.name.prefix as the engine
// takes it: "-" for none.
func dlqPrefix(bs brokerSettings) string {
	v, _ := bs.Get("errors.deadletterqueue.topic.name.prefix")
	if v == "" {
		return "-"
	}
	return v
}

// stopShares stops the share coordinator (requests in flight are done by
// then).
func (s *Server) stopShares() error {
	if s.shares == nil {
		return nil
	}
	return s.shares.Close()
}

// shareTopics is the engine's view of the topics.
func (s *Server) shareTopics() map[string]share.TopicInfo {
	topics := s.meta.Topics()
	bs := s.meta.Settings()
	m := make(map[string]share.TopicInfo, len(topics))
	for _, t := range topics {
		info := share.TopicInfo{ID: t.ID(), Partitions: t.NumPartitions()}
		if v, _ := bs.TopicValue(t.Configs(), "delivery.delay.ms"); v != "" && v != "0" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				info.DeliveryDelay = time.Duration(n) * time.Millisecond
			}
		}
		m[t.Name()] = info
	}
	return m
}

// shareGroupExists is the group coordinator's group.Config.OtherGroup:
// whether a share group of that name exists, asked before a consumer
// group is created. In a cluster a name this broker's share coordinator
// does not know is asked of the group's share coordinator
// (remoteShareGroupExists).
func (s *Server) shareGroupExists(name string) (bool, error) {
	if s.shares == nil {
		return false, nil
	}
	if s.shares.Exists(name) {
		return true, nil
	}
	if s.raft == nil {
		return false, nil
	}
	return s.remoteShareGroupExists(name)
}

// consumerGroupExists is the share coordinator's share.Config.OtherGroup:
// whether a consumer group (classic or KIP-848) of that name exists,
// asked before a share group is created. In a cluster a name this
// broker's group coordinator does not know is asked of the group's
// coordinator (remoteConsumerGroupExists).
func (s *Server) consumerGroupExists(name string) (bool, error) {
	if s.groups.Exists(name) {
		return true, nil
	}
	if s.raft == nil {
		return false, nil
	}
	return s.remoteConsumerGroupExists(name)
}

// shareSessionKey names a share session: one per member per broker.
type shareSessionKey struct{ group, member string }

// shareSession is the set of partitions a member fetches from this
// broker (KIP-932's share session), with the epoch its next request must
// carry.
type shareSession struct {
	key shareSessionKey
	// mu serializes the session's requests: one at a time (TryLock from
	// the reader; a second concurrent request gets
	// INVALID_SHARE_SESSION_EPOCH). It guards the fields below.
	mu    sync.Mutex
	epoch int32
	order []share.TopicPartition
	// parts maps each partition of the session to whether it must appear
	// in the next response even without data (it just joined).
	parts map[share.TopicPartition]bool
	next  int // where the next fetch starts acquiring, for fairness
}

func (ss *shareSession) add(tp share.TopicPartition) {
	if _, ok := ss.parts[tp]; !ok {
		ss.parts[tp] = true
		ss.order = append(ss.order, tp)
	}
}

func (ss *shareSession) forget(tp share.TopicPartition) {
	if _, ok := ss.parts[tp]; !ok {
		return
	}
	delete(ss.parts, tp)
	for i, o := range ss.order {
		if o == tp {
			ss.order = append(ss.order[:i], ss.order[i+1:]...)
			break
		}
	}
}

// bump advances the epoch after a request succeeded, as the client does.
func (ss *shareSession) bump() {
	ss.epoch++
	if ss.epoch <= 0 {
		ss.epoch = 1
	}
}

// shareSessions is the share session cache, bounded by
// group.share.max.share.sessions. Each session is bound to the connection
// that last used it: when that connection closes, the session ends and
// the records its member holds on its partitions are released at once.
type shareSessions struct {
	mu     sync.Mutex
	max    int
	byKey  map[shareSessionKey]*shareSession
	conns  map[*shareSession]*conn
	byConn map[*conn]map[*shareSession]struct{}
}

func newShareSessions(max int) *shareSessions {
	return &shareSessions{
		max:    max,
		byKey:  make(map[shareSessionKey]*shareSession),
		conns:  make(map[*shareSession]*conn),
		byConn: make(map[*conn]map[*shareSession]struct{}),
	}
}

// get returns the session of key and binds it to c, or nil.
func (sc *shareSessions) get(key shareSessionKey, c *conn) *shareSession {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ss := sc.byKey[key]
	if ss != nil {
		sc.bindLocked(ss, c)
	}
	return ss
}

func (sc *shareSessions) bindLocked(ss *shareSession, c *conn) {
	if old := sc.conns[ss]; old != c {
		if old != nil {
			delete(sc.byConn[old], ss)
			if len(sc.byConn[old]) == 0 {
				delete(sc.byConn, old)
			}
		}
		sc.conns[ss] = c
		if sc.byConn[c] == nil {
			sc.byConn[c] = make(map[*shareSession]struct{})
		}
		sc.byConn[c][ss] = struct{}{}
	}
}

func (sc *shareSessions) removeLocked(ss *shareSession) {
	if sc.byKey[ss.key] == ss {
		delete(sc.byKey, ss.key)
	}
	if c := sc.conns[ss]; c != nil {
		delete(sc.byConn[c], ss)
		if len(sc.byConn[c]) == 0 {
			delete(sc.byConn, c)
		}
	}
	delete(sc.conns, ss)
}

// create starts a new session for key, bound to c, replacing and
// returning the one it had (nil if none). It returns a nil session when
// the cache is full.
func (sc *shareSessions) create(key shareSessionKey, c *conn) (ss, old *shareSession) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if old = sc.byKey[key]; old != nil {
		sc.removeLocked(old)
	}
	if len(sc.byKey) >= sc.max {
		return nil, old
	}
	ss = &shareSession{key: key, parts: make(map[share.TopicPartition]bool)}
	sc.byKey[key] = ss
	sc.bindLocked(ss, c)
	return ss, old
}

// remove ends ss if it is still the session of its key.
func (sc *shareSessions) remove(ss *shareSession) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.byKey[ss.key] == ss {
		sc.removeLocked(ss)
	}
}

// dropMember ends the session of a member that left its group (its
// records are released by the engine).
func (sc *shareSessions) dropMember(group, member string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if ss := sc.byKey[shareSessionKey{group, member}]; ss != nil {
		sc.removeLocked(ss)
	}
}

// takeConn ends and returns the sessions bound to c.
func (sc *shareSessions) takeConn(c *conn) []*shareSession {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var out []*shareSession
	for ss := range sc.byConn[c] {
		out = append(out, ss)
	}
	for _, ss := range out {
		sc.removeLocked(ss)
	}
	return out
}

// len returns the number of sessions.
func (sc *shareSessions) len() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.byKey)
}

// releaseSession releases the records ss's member holds on ss's
// partitions. ss is no longer in the cache.
func (s *Server) releaseSession(ss *shareSession, locked bool) {
	if !locked {
		ss.mu.Lock()
		defer ss.mu.Unlock()
	}
	if len(ss.order) > 0 {
		s.shares.ReleaseSession(ss.key.group, ss.key.member, append([]share.TopicPartition(nil), ss.order...))
	}
}

// shareConnClosed ends the share sessions of a connection that closed,
// releasing their records at once. Every request of the connection has
// been answered.
func (s *Server) shareConnClosed(c *conn) {
	if s.shareSessions == nil {
		return
	}
	for _, ss := range s.shareSessions.takeConn(c) {
		s.releaseSession(ss, false)
	}
}

// shareWaitKey names what a parked ShareFetch waits for: records of a
// partition becoming available to a group.
type shareWaitKey struct {
	group string
	tp    share.TopicPartition
}

// shareWaiters wakes parked ShareFetch requests when the engine makes
// records available other than by new data (released, lock expired,
// delay passed); new data wakes them through partition.Watch.
type shareWaiters struct {
	mu sync.Mutex
	m  map[shareWaitKey]map[chan struct{}]struct{}
}

func newShareWaiters() *shareWaiters {
	return &shareWaiters{m: make(map[shareWaitKey]map[chan struct{}]struct{})}
}

func (w *shareWaiters) add(keys []shareWaitKey, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if w.m[k] == nil {
			w.m[k] = make(map[chan struct{}]struct{})
		}
		w.m[k][ch] = struct{}{}
	}
}

func (w *shareWaiters) remove(keys []shareWaitKey, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		delete(w.m[k], ch)
		if len(w.m[k]) == 0 {
			delete(w.m, k)
		}
	}
}

// wake is share.Config.Available: it never blocks.
func (w *shareWaiters) wake(group string, tp share.TopicPartition) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[shareWaitKey{group, tp}] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// shareCall runs a share coordinator call off the reader goroutine, with
// the client's ID and host for ShareGroupHeartbeat. A call that may write
// state (writes) first makes sure __share_group_state exists; if it cannot
// be created the answer is COORDINATOR_NOT_AVAILABLE.
func shareCall[Req kmsg.Request, Resp kmsg.Response](s *Server, r *request, writes bool, fn func(context.Context, Req) Resp) kmsg.Response {
	req := r.kreq.(Req)
	ctx := share.WithClientInfo(r.c.ctx, share.ClientInfo{ClientID: r.clientID, Host: "/" + r.c.remoteIP()})
	r.await(func() kmsg.Response {
		if writes {
			if err := s.ensureShareState(); err != nil {
				resp := req.ResponseKind()
				setErrorCode(resp, kerr.CoordinatorNotAvailable)
				return resp
			}
		}
		return fn(ctx, req)
	})
	return nil
}

// setErrorCode sets the top-level error of a share API response that
// writes state.
func setErrorCode(resp kmsg.Response, e *kerr.Error) {
	switch r := resp.(type) {
	case *kmsg.ShareGroupHeartbeatResponse:
		r.ErrorCode = e.Code
	case *kmsg.AlterShareGroupOffsetsResponse:
		r.ErrorCode = e.Code
	case *kmsg.DeleteShareGroupOffsetsResponse:
		r.ErrorCode = e.Code
	}
}

// resourceGroup is the GROUP config resource type (KIP-848, KIP-932).
const resourceGroup = 32

// groupConfigSynonyms maps each share group config to the broker config
// that gives its default, if any.
var groupConfigSynonyms = map[string]string{
	share.GroupSessionTimeout:     "group.share.session.timeout.ms",
	share.GroupHeartbeatInterval:  "group.share.heartbeat.interval.ms",
	share.GroupRecordLockDuration: "group.share.record.lock.duration.ms",
	share.GroupDeliveryCountLimit: "group.share.delivery.count.limit",
	share.GroupDeliveryBackoff:    "group.share.delivery.backoff.ms",
	share.GroupDeliveryBackoffMax: "group.share.delivery.backoff.max.ms",
}

// groupConfigType is the DescribeConfigs type of a group config.
func groupConfigType(name string) kmsg.ConfigType {
	switch name {
	case share.GroupDLQCopyRecord:
		return kmsg.ConfigTypeBoolean
	case share.GroupAutoOffsetReset, share.GroupIsolationLevel, share.GroupDLQTopic:
		return kmsg.ConfigTypeString
	}
	return kmsg.ConfigTypeInt
}

// validateGroupConfig checks a group config value: only share group
// configs exist on this broker.
func (s *Server) validateGroupConfig(name, value string) error {
	if _, ok := s.shares.GroupConfigDefaults()[name]; !ok {
		return fmt.Errorf("unknown group config %q", name)
	}
	return s.shares.ValidateGroupConfig(name, value)
}

// describeGroupConfigs answers DescribeConfigs for a GROUP resource: every
// share group config, set (source GROUP_CONFIG) or not (the broker's).
func (s *Server) describeGroupConfigs(group string, o meta.DescribeOptions) []kmsg.DescribeConfigsResponseResourceConfig {
	set := s.meta.GroupConfigs(group)
	defaults := s.shares.GroupConfigDefaults()
	bs := s.meta.Settings()
	var want map[string]bool
	if o.Keys != nil {
		want = make(map[string]bool, len(o.Keys))
		for _, k := range o.Keys {
			want[k] = true
		}
	}
	names := slices.Sorted(maps.Keys(defaults))
	out := make([]kmsg.DescribeConfigsResponseResourceConfig, 0, len(names))
	for _, name := range names {
		if want != nil && !want[name] {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = name
		c.ConfigType = groupConfigType(name)
		broker := groupConfigSynonyms[name]
		v, ok := set[name]
		switch {
		case ok:
			c.Source = kmsg.ConfigSourceGroupConfig
		case broker != "":
			var src meta.ConfigSource
			v, src = bs.Get(broker)
			c.Source = kmsg.ConfigSource(src)
		default:
			v = defaults[name]
			c.Source = kmsg.ConfigSourceDefaultConfig
		}
		c.Value = kmsg.StringPtr(v)
		c.IsDefault = c.Source == kmsg.ConfigSourceDefaultConfig
		if o.Synonyms {
			if ok {
				c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: name, Value: kmsg.StringPtr(v), Source: kmsg.ConfigSourceGroupConfig})
			}
			if broker != "" {
				bv, src := bs.Get(broker)
				c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: broker, Value: kmsg.StringPtr(bv), Source: kmsg.ConfigSource(src)})
			} else {
				c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: name, Value: kmsg.StringPtr(defaults[name]), Source: kmsg.ConfigSourceDefaultConfig})
			}
		}
		out = append(out, c)
	}
	return out
}

// alterGroupConfigs applies IncrementalAlterConfigs operations to a
// group's configs and tells the share coordinator.
func (s *Server) alterGroupConfigs(group string, ops []meta.ConfigOp, validateOnly bool) error {
	for _, op := range ops {
		if _, ok := s.shares.GroupConfigDefaults()[op.Name]; !ok {
			return fmt.Errorf("%w: unknown group config %q", kerr.InvalidConfig, op.Name)
		}
	}
	current := s.meta.GroupConfigs(group)
	changes, err := meta.IncrementalChanges(ops, func(k string) string { return current[k] })
	if err != nil {
		return err
	}
	if err := s.meta.AlterGroupConfigs(group, meta.Alter{Changes: changes, ValidateOnly: validateOnly}, s.validateGroupConfig); err != nil {
		return err
	}
	if !validateOnly {
		s.shares.GroupConfigChanged(group)
	}
	return nil
}
