package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Coordinator is the transaction coordinator of one broker. Create it with
// New; all methods are safe for concurrent use.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	store   Store
	markers Markers

	// ctx is handed to Markers; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	quit        chan struct{}  // closed by Close
	compactKick chan struct{}  // one-slot: some partition may need a snapshot
	wg          sync.WaitGroup // requests in flight, marker writers, background loops
	parts       []*statePartition

	// loadMu serializes Load and Unload (Config.LoadOnLead).
	loadMu sync.Mutex

	mu struct {
		sync.Mutex
		closed bool
		txns   map[string]*entry
		// loads holds, per __transaction_state partition, its current
		// load, or nil while it is not loaded (never, unless LoadOnLead).
		loads []*partLoad
		// loading marks the partitions being replayed by Load.
		loading []bool
	}
}

// partLoad is one load of a __transaction_state partition: its entries
// belong to it, and it ends (ctx done) when the partition is unloaded or
// the coordinator closes, which stops its markers and makes its entries
// gone.
type partLoad struct {
	// epoch is the coordinator epoch of the load (the partition's leader
	// epoch when it was loaded; 0 on a single broker), written into the
	// markers.
	epoch  int32
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a coordinator over cfg.Store after replaying every partition
// of it into memory. Transactions a crash left prepared (a PrepareCommit or
// PrepareAbort record without its Complete) are completed in the
// background: their markers are written again to every partition, then the
// Complete record. A store error during replay is returned; undecodable
// records are kept and skipped with a warning.
func New(cfg Config) (*Coordinator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "txn", "node", cfg.NodeID),
		store:       cfg.Store,
		markers:     cfg.Markers,
		quit:        make(chan struct{}),
		compactKick: make(chan struct{}, 1),
	}
	c.mu.txns = make(map[string]*entry)
	c.mu.loads = make([]*partLoad, cfg.TransactionTopicPartitions)
	c.mu.loading = make([]bool, cfg.TransactionTopicPartitions)
	c.parts = make([]*statePartition, cfg.TransactionTopicPartitions)
	for i := range c.parts {
		c.parts[i] = &statePartition{id: int32(i), live: make(map[string]Record)}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	start := time.Now()
	var prepared []*entry
	if !cfg.LoadOnLead {
		for _, part := range c.parts {
			ld := c.newLoad(0)
			loaded := make(map[string]meta)
			if err := c.replay(part, loaded); err != nil {
				c.cancel()
				return nil, fmt.Errorf("txn: replaying __transaction_state partition %d: %w", part.id, err)
			}
			prepared = append(prepared, c.adopt(part.id, ld, loaded)...)
		}
		c.log.Info("coordinator loaded", "transactional_ids", len(c.mu.txns), "prepared", len(prepared), "elapsed", time.Since(start))
	}

	c.wg.Add(3)
	go c.compactLoop()
	go c.abortLoop()
	go c.expireLoop()
	c.completePrepared(prepared)
	c.kickCompaction()
	return c, nil
}

// newLoad starts a load of a partition at coordinator epoch epoch.
func (c *Coordinator) newLoad(epoch int32) *partLoad {
	ld := &partLoad{epoch: epoch}
	ld.ctx, ld.cancel = context.WithCancel(c.ctx)
	return ld
}

// adopt makes the transactional ids replayed from partition p (loaded)
// the coordinator's, as of load ld, and returns those left prepared.
func (c *Coordinator) adopt(p int32, ld *partLoad, loaded map[string]meta) []*entry {
	var prepared []*entry
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, m := range loaded {
		e := &entry{id: id, partition: p, load: ld, m: m}
		c.mu.txns[id] = e
		if m.state.prepared() {
			prepared = append(prepared, e)
		}
	}
	c.mu.loads[p] = ld
	return prepared
}

// completePrepared writes the markers of the transactions a crash or a
// change of coordinator left prepared, then their Complete records.
func (c *Coordinator) completePrepared(prepared []*entry) {
	slices.SortFunc(prepared, func(a, b *entry) int { return strings.Compare(a.id, b.id) })
	for _, e := range prepared {
		e.mu.Lock()
		if !e.goneLocked() && e.m.state.prepared() && e.completion == nil {
			c.log.Info("completing a transaction prepared before the coordinator loaded it", "transactional_id", e.id, "state", e.m.state, "partitions", len(e.m.partitions))
			c.startCompletionLocked(e)
		}
		e.mu.Unlock()
	}
}

// Close stops the background work and waits for it and for the requests in
// flight, which answer COORDINATOR_NOT_AVAILABLE or finish what they
// stored; so does every call made after Close. Markers still unwritten stay
// so in the store's prepared records, and the next New writes them. Once
// Close returns the coordinator makes no more Store or Markers calls, so
// the server may close them. Close is idempotent and always returns nil.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	c.mu.Unlock()
	close(c.quit)
	c.cancel()
	c.wg.Wait()
	return nil
}

// enter registers work (a request, a marker writer) with c.wg unless the
// coordinator is closed. A true return must be paired with c.wg.Done.
func (c *Coordinator) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// Partition returns the __transaction_state partition that holds a
// transactional id, as Kafka computes it:
// abs(javaStringHashCode(id)) % partitions, with Kafka's Utils.abs
// (math.MinInt32 maps to 0).
func (c *Coordinator) Partition(transactionalID string) int32 {
	return partitionFor(transactionalID, c.cfg.TransactionTopicPartitions)
}

func partitionFor(id string, n int32) int32 {
	h := javaStringHash(id)
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

// lockEntry returns the entry of id with its lock held, or nil when the id
// is unknown. An entry found gone (expired or unloaded while we waited for
// its lock) is looked up again. The error is NOT_COORDINATOR when the id's
// partition is not loaded here, COORDINATOR_LOAD_IN_PROGRESS while it is
// being loaded.
func (c *Coordinator) lockEntry(id string) (*entry, *kerr.Error) {
	p := c.Partition(id)
	for {
		c.mu.Lock()
		if err := c.ownsLocked(p); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		e := c.mu.txns[id]
		c.mu.Unlock()
		if e == nil {
			return nil, nil
		}
		e.mu.Lock()
		if !e.goneLocked() {
			return e, nil
		}
		e.mu.Unlock()
	}
}

// ownsLocked returns nil when partition p of __transaction_state is
// loaded, or the error its transactional ids answer. c.mu is held.
func (c *Coordinator) ownsLocked(p int32) *kerr.Error {
	switch {
	case c.mu.loads[p] != nil:
		return nil
	case c.mu.loading[p]:
		return kerr.CoordinatorLoadInProgress
	}
	return kerr.NotCoordinator
}

// lockOrCreate returns the entry of id with its lock held, creating it
// first, with a new producer id and epoch -1 and no record stored, as Kafka
// does for a transactional id it has not seen.
func (c *Coordinator) lockOrCreate(id string, timeoutMs int32) (*entry, *kerr.Error) {
	p := c.Partition(id)
	for {
		if e, err := c.lockEntry(id); e != nil || err != nil {
			return e, err
		}
		pid, kerrv := c.newProducerID()
		if kerrv != nil {
			return nil, kerrv
		}
		c.mu.Lock()
		if err := c.ownsLocked(p); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if c.mu.txns[id] == nil {
			c.mu.txns[id] = &entry{id: id, partition: p, load: c.mu.loads[p], m: meta{
				producerID:     pid,
				prevProducerID: noProducerID,
				nextProducerID: noProducerID,
				epoch:          noProducerEpoch,
				lastEpoch:      noProducerEpoch,
				timeoutMs:      timeoutMs,
				state:          stateEmpty,
				startMs:        -1,
				updateMs:       nowMs(),
			}}
		}
		c.mu.Unlock()
	}
}

// newProducerID allocates a producer id, mapping a failure to the error the
// request answers.
func (c *Coordinator) newProducerID() (int64, *kerr.Error) {
	pid, err := c.cfg.ProducerIDs()
	if err != nil {
		c.log.Warn("allocating a producer id", "err", err)
		var ke *kerr.Error
		if errors.As(err, &ke) {
			return 0, ke
		}
		return 0, kerr.CoordinatorNotAvailable
	}
	return pid, nil
}

// entries returns the current entries, sorted by transactional id.
func (c *Coordinator) entries() []*entry {
	c.mu.Lock()
	es := slices.Collect(maps.Values(c.mu.txns))
	c.mu.Unlock()
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.id, b.id) })
	return es
}

// removeLocked drops e, whose lock is held, from the coordinator.
func (c *Coordinator) removeLocked(e *entry) {
	e.dead = true
	c.mu.Lock()
	if c.mu.txns[e.id] == e {
		delete(c.mu.txns, e.id)
	}
	c.mu.Unlock()
}

func nowMs() int64 { return time.Now().UnixMilli() }

// code returns the error code of a *kerr.Error, 0 for nil.
func code(e *kerr.Error) int16 {
	if e == nil {
		return 0
	}
	return e.Code
}

// asError returns e as an error, nil (not a typed nil) when e is nil.
func asError(e *kerr.Error) error {
	if e == nil {
		return nil
	}
	return e
}
