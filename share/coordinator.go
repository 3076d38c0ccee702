package share

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"
)

// errUnknownVersion marks a record of a key or value version this package
// does not know: kept, not applied.
var errUnknownVersion = errors.New("share: record version not known")

// Coordinator is the share-group engine of one broker. Create it with New;
// all methods are safe for concurrent use.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	store Store
	base  time.Time // origin of the monotonic nanoseconds locks are kept in

	quit        chan struct{}  // closed by Close
	wg          sync.WaitGroup // background goroutines and running timer callbacks
	compactKick chan struct{}  // one-slot: some state partition may need a snapshot
	parts       []*statePart

	timers timerHeap
	dlq    dlqQueue
	topics atomic.Pointer[topicIndex] // topics by ID, as of the last refresh

	// loadMu serializes Load and Unload (Config.LoadOnLead).
	loadMu sync.Mutex
	// acquired holds the share-partitions whose acquisitions' delivery
	// counts are to be written behind (Config.LoadOnLead, load.go).
	acquired struct {
		sync.Mutex
		sps  map[*sharePartition][]stateBatch // and releases to write with them (Config.State)
		kick chan struct{}                    // one-slot
	}

	mu struct {
		sync.Mutex
		closed bool
		groups map[string]*group
		// sps indexes every group's share-partitions, so the fetch path
		// finds one without taking a group lock. Changed with the
		// group's lock held too.
		sps map[spKey]*sharePartition
		// epochs remembers the highest state epoch of every
		// share-partition that ever had state, deleted ones included, so
		// a re-created state never reuses an epoch (see stateValue).
		epochs map[spKey]int32
		// loaded says which state partitions are served here, with
		// Config.LoadOnLead (load.go); nil means all of them.
		loaded []bool
	}
}

// New returns a coordinator over cfg.Store after replaying every partition
// of it (none with Config.LoadOnLead: see Load): groups and their members,
// and the state of every share-partition.
// Members get a fresh session timeout. Records that were acquired when the
// broker stopped come back available with their delivery counts; dead
// letters whose writing was under way are checked with the DLQWriter and
// finished. A store error during replay is returned; undecodable records
// are skipped with a warning.
func New(cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "share", "node", cfg.NodeID),
		clock:       cfg.Clock,
		store:       cfg.Store,
		quit:        make(chan struct{}),
		compactKick: make(chan struct{}, 1),
	}
	c.base = c.clock.Now()
	c.mu.groups = make(map[string]*group)
	c.mu.sps = make(map[spKey]*sharePartition)
	c.mu.epochs = make(map[spKey]int32)
	c.timers.init()
	c.dlq.init()
	c.parts = make([]*statePart, cfg.StatePartitions)
	for i := range c.parts {
		c.parts[i] = newStatePart(int32(i))
	}
	start := time.Now()
	if cfg.LoadOnLead {
		c.mu.loaded = make([]bool, cfg.StatePartitions)
	} else if err := c.replayAll(); err != nil {
		return nil, err
	}
	c.refreshTopics()
	c.log.Info("share coordinator loaded", "groups", len(c.mu.groups), "elapsed", time.Since(start))

	c.wg.Add(3)
	go c.timerLoop()
	go c.dlqLoop()
	go c.compactLoop()
	if cfg.LoadOnLead {
		c.acquired.sps = make(map[*sharePartition][]stateBatch)
		c.acquired.kick = make(chan struct{}, 1)
		c.wg.Add(1)
		go c.acquiredLoop()
	}
	c.kickCompaction()
	return c, nil
}

// Close stops every timer and background goroutine and waits for them.
// Calls made after Close answer COORDINATOR_NOT_AVAILABLE. Dead letters
// not yet written stay archiving in the store and are finished by the next
// New. Once Close returns the coordinator makes no more Store, Reader or
// DLQWriter calls of its own; requests still running may, so the server
// closes it once its requests are done. Close is idempotent and always
// returns nil.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	groups := slices.Collect(maps.Values(c.mu.groups))
	c.mu.Unlock()
	close(c.quit)
	for _, g := range groups {
		g.mu.Lock()
		g.stopTimersLocked()
		g.mu.Unlock()
	}
	c.timers.stop()
	c.wg.Wait()
	return nil
}

func (c *Coordinator) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// enter registers a timer callback with c.wg unless the coordinator is
// closed. A true return must be paired with c.wg.Done.
func (c *Coordinator) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// nowMono returns nanoseconds since the coordinator started, on the
// monotonic clock; nowMs the wall clock in ms since the epoch.
func (c *Coordinator) now() (mono, ms int64) {
	t := c.clock.Now()
	return int64(t.Sub(c.base)), t.UnixMilli()
}

// Partition returns the __share_group_state partition that holds the
// membership records of group: abs(javaStringHashCode(group)) % partitions,
// the partition the group's coordinator owns.
func (c *Coordinator) Partition(group string) int32 {
	return partitionFor(group, c.cfg.StatePartitions)
}

// statePartitionFor returns the partition of a share-partition's state
// records, as Kafka's share coordinator picks it: the hash of
// "group:topicID:partition", topic ID in Kafka's base64 form.
func statePartitionFor(k spKey, n int32) int32 {
	return partitionFor(k.group+":"+kafkaUUID(k.tp.TopicID)+":"+strconv.Itoa(int(k.tp.Partition)), n)
}

func partitionFor(s string, n int32) int32 {
	h := javaStringHash(s)
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % n
}

// javaStringHash is Java's String.hashCode over the UTF-16 code units of s.
func javaStringHash(s string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(s)) {
		h = 31*h + int32(u)
	}
	return h
}

// kafkaUUID renders a UUID as Kafka's Uuid.toString does: unpadded
// URL-safe base64.
func kafkaUUID(id [16]byte) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// lookupResult says why lockGroup returned no group.
type lookupResult int8

const (
	lookupOK lookupResult = iota
	lookupMissing
	lookupClosed
	lookupOther // the name belongs to a consumer group
)

// lockGroup returns the named group with its lock held, creating it if
// create is set. A group found dead is looked up again.
func (c *Coordinator) lockGroup(name string, create bool) (*group, lookupResult) {
	for {
		c.mu.Lock()
		if c.mu.closed {
			c.mu.Unlock()
			return nil, lookupClosed
		}
		g := c.mu.groups[name]
		if g == nil {
			if !create {
				c.mu.Unlock()
				return nil, lookupMissing
			}
			c.mu.Unlock()
			if c.cfg.OtherGroup != nil {
				other, err := c.cfg.OtherGroup(name)
				if err != nil {
					c.log.Warn("asking whether a group ID is taken by a consumer group", "group", name, "err", err)
					return nil, lookupClosed
				}
				if other {
					return nil, lookupOther
				}
			}
			c.mu.Lock()
			if c.mu.closed {
				c.mu.Unlock()
				return nil, lookupClosed
			}
			if g = c.mu.groups[name]; g == nil {
				g = c.newGroup(name)
				c.mu.groups[name] = g
			}
		}
		c.mu.Unlock()
		g.mu.Lock()
		if g.dead {
			g.mu.Unlock()
			continue
		}
		if c.isClosed() {
			g.mu.Unlock()
			return nil, lookupClosed
		}
		return g, lookupOK
	}
}

// findGroup returns the named group without locking it, or nil.
func (c *Coordinator) findGroup(name string) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil
	}
	return c.mu.groups[name]
}

// groupsSnapshot returns the current groups, sorted by name.
func (c *Coordinator) groupsSnapshot() []*group {
	c.mu.Lock()
	gs := slices.Collect(maps.Values(c.mu.groups))
	c.mu.Unlock()
	slices.SortFunc(gs, func(a, b *group) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return gs
}

// lookup returns the group and share-partition of k, or nils.
func (c *Coordinator) lookup(k spKey) (*group, *sharePartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil, nil
	}
	return c.mu.groups[k.group], c.mu.sps[k]
}

// addSPLocked makes sp one of g's share-partitions. g.mu is held.
func (c *Coordinator) addSPLocked(g *group, sp *sharePartition) {
	g.sps[sp.key.tp] = sp
	c.mu.Lock()
	c.mu.sps[sp.key] = sp
	c.mu.Unlock()
}

// removeSPLocked forgets sp. g.mu is held.
func (c *Coordinator) removeSPLocked(g *group, sp *sharePartition) {
	delete(g.sps, sp.key.tp)
	c.mu.Lock()
	if c.mu.sps[sp.key] == sp {
		delete(c.mu.sps, sp.key)
	}
	c.mu.Unlock()
}

// Exists reports whether a share group of that name exists. The server
// refuses to make it a consumer group (GROUP_ID_NOT_FOUND), as Kafka does.
func (c *Coordinator) Exists(group string) bool { return c.findGroup(group) != nil }

// nextEpoch returns a state epoch for a new or reset state of k, above
// every epoch k had.
func (c *Coordinator) nextEpoch(k spKey) int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.epochs[k]
	if ok {
		e++
	}
	c.mu.epochs[k] = e
	return e
}

// noteEpoch records that k had state epoch e.
func (c *Coordinator) noteEpoch(k spKey, e int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.mu.epochs[k]; !ok || e > cur {
		c.mu.epochs[k] = e
	}
}

// knownEpoch returns the highest state epoch k had, and whether it had any.
func (c *Coordinator) knownEpoch(k spKey) (int32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.epochs[k]
	return e, ok
}

// groupConfig returns the resolved config of g.
func (c *Coordinator) groupConfig(g *group) *groupConfig {
	if p := g.cfg.Load(); p != nil {
		return p
	}
	var over map[string]string
	if c.cfg.GroupConfigs != nil {
		over = c.cfg.GroupConfigs(g.name)
	}
	gc := c.resolveGroupConfig(g.name, over)
	g.cfg.Store(&gc)
	return &gc
}

// GroupConfigChanged tells the coordinator that the dynamic configs of
// group changed (IncrementalAlterConfigs on its GROUP resource). New
// values apply from the next request: a lock taken before keeps its
// duration, a record released before keeps its backoff.
func (c *Coordinator) GroupConfigChanged(group string) {
	if g := c.findGroup(group); g != nil {
		g.cfg.Store(nil)
	}
}

// GroupConfigsChanged is GroupConfigChanged for every group: in a cluster
// a group's configs may change through any broker, and reach this one
// with the metadata log.
func (c *Coordinator) GroupConfigsChanged() {
	c.mu.Lock()
	gs := slices.Collect(maps.Values(c.mu.groups))
	c.mu.Unlock()
	for _, g := range gs {
		g.cfg.Store(nil)
	}
}

// dlqEnabled reports whether records g gives up on are dead-lettered.
func (c *Coordinator) dlqEnabled(gc *groupConfig) bool {
	return c.cfg.DLQ != nil && gc.dlqTopic != ""
}

// topicIndex maps topic IDs to topics, so the fetch path finds a topic
// without calling Config.Topics.
type topicIndex map[[16]byte]topicEntry

type topicEntry struct {
	name string
	info TopicInfo
}

// refreshTopics rebuilds the topic index from Config.Topics and returns
// the topics.
func (c *Coordinator) refreshTopics() map[string]TopicInfo {
	topics := c.cfg.Topics()
	idx := make(topicIndex, len(topics))
	for name, t := range topics {
		idx[t.ID] = topicEntry{name, t}
	}
	c.topics.Store(&idx)
	return topics
}

// topic returns the name and info of the topic with id, refreshing the
// index once if it does not know the ID (a topic created since).
func (c *Coordinator) topic(id [16]byte) (string, TopicInfo, bool) {
	if e, ok := (*c.topics.Load())[id]; ok {
		return e.name, e.info, true
	}
	c.refreshTopics()
	e, ok := (*c.topics.Load())[id]
	return e.name, e.info, ok
}

// topicByID returns the name and info of the topic with id.
func topicByID(topics map[string]TopicInfo, id [16]byte) (string, TopicInfo, bool) {
	for name, t := range topics {
		if t.ID == id {
			return name, t, true
		}
	}
	return "", TopicInfo{}, false
}

func millis(d time.Duration) int32 {
	ms := d.Milliseconds()
	if ms > 1<<31-1 {
		return 1<<31 - 1
	}
	return int32(ms)
}

// atomicConfig is the cached resolved config of a group.
type atomicConfig = atomic.Pointer[groupConfig]

func strPtr(s string) *string { return &s }
