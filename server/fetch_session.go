package server

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Fetch sessions (KIP-227): epoch 0 starts a session (replacing the one
// named by SessionID, if any), epoch -1 fetches without one (closing the
// one named), and epoch N continues session SessionID. A consumer that fetches many partitions
// registers them once and then sends only what changed; the broker answers
// with only the partitions that have news. Sessions live in a bounded
// cache (max.incremental.fetch.session.cache.slots); when it is full the
// least recently used session is evicted, and its owner, finding it gone
// (FETCH_SESSION_ID_NOT_FOUND), starts a new one.

// sessionKey names a partition in a session: by name before Fetch v13, by
// topic id from v13.
type sessionKey struct {
	topic     string
	topicID   [16]byte
	partition int32
}

type sessionPart struct {
	key         sessionKey
	fetchOffset int64
	maxBytes    int32
	// What the client last heard, to decide whether an incremental
	// response must include the partition.
	hw, logStart, lso int64
	errCode           int16
}

type fetchSession struct {
	id int32
	// mu serializes use of a session: one fetch at a time.
	mu       sync.Mutex
	epoch    int32 // the epoch the next request must carry
	order    []*sessionPart
	parts    map[sessionKey]*sessionPart
	lastUsed time.Time
}

func (fs *fetchSession) upsert(k sessionKey, off int64, maxBytes int32) {
	if sp := fs.parts[k]; sp != nil {
		sp.fetchOffset, sp.maxBytes = off, maxBytes
		return
	}
	sp := &sessionPart{key: k, fetchOffset: off, maxBytes: maxBytes, hw: -1, logStart: -1, errCode: -1}
	fs.parts[k] = sp
	fs.order = append(fs.order, sp)
}

func (fs *fetchSession) forget(k sessionKey) {
	if fs.parts[k] == nil {
		return
	}
	delete(fs.parts, k)
	for i, sp := range fs.order {
		if sp.key == k {
			fs.order = append(fs.order[:i], fs.order[i+1:]...)
			break
		}
	}
}

type fetchSessions struct {
	mu  sync.Mutex
	max int
	m   map[int32]*fetchSession
}

func newFetchSessions(max int) *fetchSessions {
	return &fetchSessions{max: max, m: map[int32]*fetchSession{}}
}

// create makes a new session, evicting the least recently used one when
// the cache is full. It returns nil when sessions are disabled.
func (c *fetchSessions) create() *fetchSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= 0 {
		return nil
	}
	if len(c.m) >= c.max {
		var oldest *fetchSession
		for _, fs := range c.m {
			if oldest == nil || fs.lastUsed.Before(oldest.lastUsed) {
				oldest = fs
			}
		}
		delete(c.m, oldest.id)
	}
	var id int32
	for id == 0 || c.m[id] != nil {
		id = rand.Int32()
	}
	// bindSession advances the epoch to 1, the first one a client sends
	// after the full fetch that created the session.
	fs := &fetchSession{id: id, epoch: 0, parts: map[sessionKey]*sessionPart{}, lastUsed: time.Now()}
	c.m[id] = fs
	return fs
}

func (c *fetchSessions) get(id int32) *fetchSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	fs := c.m[id]
	if fs != nil {
		fs.lastUsed = time.Now()
	}
	return fs
}

func (c *fetchSessions) remove(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}
