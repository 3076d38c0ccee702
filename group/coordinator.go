package group

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf16"
)

// Coordinator is the group coordinator of one broker. Create it with New;
// all methods are safe for concurrent use.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	store Store

	quit        chan struct{}  // closed by Close
	compactKick chan struct{}  // one-slot: some partition may need a snapshot
	wg          sync.WaitGroup // background goroutines and running timer callbacks
	parts       []*offsetsPartition
	txn         txnIndex // pending transactional offsets and their guards (txn.go)

	mu struct {
		sync.Mutex
		closed      bool
		groups      map[string]*group
		knownTopics map[string]TopicInfo // topics as of the last TopicsChanged
		// loaded marks the partitions of __consumer_offsets whose
		// groups are in memory (all, unless LoadOnLead).
		loaded []bool
	}
	// loadMu serializes Load and Unload; staging holds the groups a Load
	// is replaying, before they join mu.groups.
	loadMu  sync.Mutex
	staging map[string]*group
}

// New returns a coordinator over cfg.Store after replaying every partition
// of it into memory: groups, members with their generation and assignment,
// KIP-848 member state, and committed offsets. Replayed members get a fresh
// session timeout. A store error during replay is returned; undecodable
// records are skipped with a warning.
func New(cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "group", "node", cfg.NodeID),
		store:       cfg.Store,
		quit:        make(chan struct{}),
		compactKick: make(chan struct{}, 1),
	}
	c.mu.groups = make(map[string]*group)
	c.txn.groups = make(map[txnKey]map[string]struct{})
	c.txn.guards = make(map[txnKey]*txnGuards)
	c.parts = make([]*offsetsPartition, cfg.OffsetsTopicPartitions)
	for i := range c.parts {
		c.parts[i] = &offsetsPartition{id: int32(i), live: make(map[string]Record)}
	}
	start := time.Now()
	c.mu.loaded = make([]bool, len(c.parts))
	for _, part := range c.parts {
		if cfg.LoadOnLead {
			break
		}
		if err := c.replay(part); err != nil {
			return nil, fmt.Errorf("group: replaying __consumer_offsets partition %d: %w", part.id, err)
		}
		c.mu.loaded[part.id] = true
	}
	topics := c.cfg.Topics()
	c.mu.Lock()
	c.mu.knownTopics = topics
	ngroups := len(c.mu.groups)
	c.mu.Unlock()
	c.finishReplay()
	c.indexPendingAfterReplay()
	c.log.Info("coordinator loaded", "groups", ngroups, "elapsed", time.Since(start))

	c.wg.Add(2)
	go c.compactLoop()
	go c.retentionLoop()
	c.kickCompaction()
	return c, nil
}

// Close stops every timer and background goroutine and waits for them. It
// unblocks parked JoinGroup and SyncGroup calls, which answer
// COORDINATOR_NOT_AVAILABLE, as does every call made after Close. Once
// Close returns the coordinator makes no more Store calls, so the server may
// close the store. Close is idempotent and always returns nil.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	groups := make([]*group, 0, len(c.mu.groups))
	for _, g := range c.mu.groups {
		groups = append(groups, g)
	}
	c.mu.Unlock()
	close(c.quit)
	for _, g := range groups {
		g.mu.Lock()
		g.stopTimersLocked()
		g.mu.Unlock()
	}
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

// Partition returns the __consumer_offsets partition that holds group, as
// Kafka computes it: abs(javaStringHashCode(group)) % partitions, with
// Kafka's Utils.abs (math.MinInt32 maps to 0).
func (c *Coordinator) Partition(group string) int32 {
	return partitionFor(group, c.cfg.OffsetsTopicPartitions)
}

func partitionFor(group string, n int32) int32 {
	h := javaStringHash(group)
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

// lookupResult says why lockGroup returned no group.
type lookupResult int8

const (
	lookupOK lookupResult = iota
	lookupMissing
	lookupClosed
	lookupOther // the name belongs to another kind of group (Config.OtherGroup)
)

// lockGroup returns the named group with its lock held, creating it first
// if create is set. A group found dead (deleted while we waited for its lock)
// is looked up again.
func (c *Coordinator) lockGroup(name string, create bool) (*group, lookupResult) {
	for {
		c.mu.Lock()
		if c.mu.closed {
			c.mu.Unlock()
			return nil, lookupClosed
		}
		if !c.mu.loaded[c.Partition(name)] {
			c.mu.Unlock()
			return nil, lookupClosed
		}
		g := c.mu.groups[name]
		if g == nil {
			if !create {
				c.mu.Unlock()
				return nil, lookupMissing
			}
			if c.cfg.OtherGroup != nil {
				c.mu.Unlock()
				other, err := c.cfg.OtherGroup(name)
				if err != nil {
					c.log.Warn("asking whether a group ID is taken by another kind of group", "group", name, "err", err)
					return nil, lookupClosed
				}
				if other {
					return nil, lookupOther
				}
				c.mu.Lock()
				if c.mu.closed {
					c.mu.Unlock()
					return nil, lookupClosed
				}
			}
			if g = c.mu.groups[name]; g == nil {
				g = newGroup(name, c.Partition(name))
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

// Exists reports whether a consumer group (classic or KIP-848) of that
// name exists. The server keeps share groups from taking its name.
func (c *Coordinator) Exists(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.mu.closed && c.mu.groups[group] != nil
}

// groupsSnapshot returns the current groups, sorted by name.
func (c *Coordinator) groupsSnapshot() []*group {
	c.mu.Lock()
	gs := make([]*group, 0, len(c.mu.groups))
	for _, g := range c.mu.groups {
		gs = append(gs, g)
	}
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

// removeGroupLocked marks g dead, stops its timers and drops it from the
// coordinator. g.mu is held.
func (c *Coordinator) removeGroupLocked(g *group) {
	g.dead = true
	g.stopTimersLocked()
	c.mu.Lock()
	if c.mu.groups[g.name] == g {
		delete(c.mu.groups, g.name)
	}
	c.mu.Unlock()
}

// maybeDropLocked removes g if it holds nothing at all: a group created by a
// request that then failed. g.mu is held.
func (c *Coordinator) maybeDropLocked(g *group) {
	if g.vacuous() {
		c.removeGroupLocked(g)
	}
}

// afterFuncLocked arms fn to run with g.mu held after d, in the timer slot
// *slot. Re-arming or clearing the slot cancels a pending run, even one
// whose goroutine has already fired and is waiting for the lock. g.mu is
// held.
func (c *Coordinator) afterFuncLocked(g *group, slot **time.Timer, d time.Duration, fn func()) {
	stopTimer(slot)
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		if !c.enter() {
			return
		}
		defer c.wg.Done()
		g.mu.Lock()
		defer g.mu.Unlock()
		if *slot != t || g.dead || c.isClosed() {
			return
		}
		*slot = nil
		fn()
	})
	*slot = t
}

func stopTimer(slot **time.Timer) {
	if *slot != nil {
		(*slot).Stop()
		*slot = nil
	}
}

// uuidString returns a random version-4 UUID in its 36-character text form,
// as java.util.UUID.toString prints it (classic member IDs).
func uuidString() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// kafkaUUID returns a random ID in Kafka's Uuid.toString form: 22 characters
// of unpadded URL-safe base64 (KIP-848 member IDs the server generates).
func kafkaUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func millis(d time.Duration) int32 {
	ms := d.Milliseconds()
	if ms > 1<<31-1 {
		return 1<<31 - 1
	}
	return int32(ms)
}

func msDuration(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }

func strPtr(s string) *string { return &s }

func cloneStrPtr(p *string) *string {
	if p == nil {
		return nil
	}
	s := *p
	return &s
}

func derefStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
