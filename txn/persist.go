package txn

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record versions.
const (
	// keyVersion is the only key version Kafka defines for
	// __transaction_state (TransactionLogKey v0).
	keyVersion int16 = 0
	// valueVersion is the value version written: Kafka's TransactionLogValue
	// v1, flexible, with the tagged fields PreviousProducerId (0),
	// NextProducerId (1) and ClientTransactionVersion (2) that Kafka 4.x
	// writes once transaction.version is 1 or more.
	//
	// FORMAT MIGRATION: the layout is Kafka's; follow Kafka. New fields
	// arrive as tagged fields of version 1, which older readers skip. A
	// value this package cannot read (a version it does not know, or bad
	// bytes) is kept (a snapshot carries it) and its transactional id keeps
	// the state replayed before it.
	valueVersion int16 = 1
)

func recordKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	return k.AppendTo(nil)
}

// encodeValue encodes m as a TransactionLogValue.
func encodeValue(m *meta) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID = m.producerID
	v.ProducerEpoch = m.epoch
	v.TimeoutMillis = m.timeoutMs
	v.State = kmsg.TransactionState(m.state)
	if m.state != stateEmpty {
		v.Topics = []kmsg.TxnMetadataValueTopic{}
		for i, tp := range m.partitions {
			if i == 0 || tp.Topic != m.partitions[i-1].Topic {
				t := kmsg.NewTxnMetadataValueTopic()
				t.Topic = tp.Topic
				v.Topics = append(v.Topics, t)
			}
			t := &v.Topics[len(v.Topics)-1]
			t.Partitions = append(t.Partitions, tp.Partition)
		}
	}
	v.LastUpdateTimestamp = m.updateMs
	v.StartTimestamp = m.startMs
	v.PreviousProducerID = m.prevProducerID
	v.NextProducerID = m.nextProducerID
	v.ClientTransactionVersion = m.clientTV
	return v.AppendTo(nil)
}

// errNewerValue marks a value of a version this package does not know.
var errNewerValue = fmt.Errorf("%w: value version unknown", ErrCorrupt)

// decodeKey returns the transactional id of a record key.
func decodeKey(key []byte) (string, error) {
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return "", fmt.Errorf("%w: key: %v", ErrCorrupt, err)
	}
	if k.Version != keyVersion {
		return "", fmt.Errorf("%w: key version %d", ErrCorrupt, k.Version)
	}
	if k.TransactionalID == "" {
		return "", fmt.Errorf("%w: empty transactional id", ErrCorrupt)
	}
	return k.TransactionalID, nil
}

// decodeValue decodes a TransactionLogValue of version 0 or 1 and checks
// what the coordinator relies on.
func decodeValue(b []byte) (meta, error) {
	if len(b) >= 2 && int16(b[0])<<8|int16(b[1]) > valueVersion {
		return meta{}, errNewerValue
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(b); err != nil {
		return meta{}, fmt.Errorf("%w: value: %v", ErrCorrupt, err)
	}
	if v.Version < 0 {
		return meta{}, fmt.Errorf("%w: value version %d", ErrCorrupt, v.Version)
	}
	m := meta{
		producerID:     v.ProducerID,
		prevProducerID: noProducerID,
		nextProducerID: noProducerID,
		epoch:          v.ProducerEpoch,
		lastEpoch:      noProducerEpoch,
		timeoutMs:      v.TimeoutMillis,
		state:          state(v.State),
		startMs:        v.StartTimestamp,
		updateMs:       v.LastUpdateTimestamp,
	}
	if v.Version >= 1 {
		m.prevProducerID = v.PreviousProducerID
		m.nextProducerID = v.NextProducerID
		m.clientTV = v.ClientTransactionVersion
	}
	switch {
	case m.state < stateEmpty || m.state > stateCompleteAbort:
		return meta{}, fmt.Errorf("%w: state %d", ErrCorrupt, m.state)
	case m.producerID < 0:
		return meta{}, fmt.Errorf("%w: producer id %d", ErrCorrupt, m.producerID)
	case m.epoch < 0:
		return meta{}, fmt.Errorf("%w: producer epoch %d", ErrCorrupt, m.epoch)
	}
	if m.state != stateEmpty {
		for _, t := range v.Topics {
			if t.Topic == "" {
				return meta{}, fmt.Errorf("%w: empty topic name", ErrCorrupt)
			}
			for _, p := range t.Partitions {
				if p < 0 {
					return meta{}, fmt.Errorf("%w: partition %d", ErrCorrupt, p)
				}
				m.partitions = append(m.partitions, TopicPartition{t.Topic, p})
			}
		}
		m.partitions = sortedUnique(m.partitions)
	}
	if m.state == stateCompleteCommit || m.state == stateCompleteAbort {
		m.partitions = nil // Kafka writes none; ignore any
	}
	if m.clientTV >= 2 && m.state >= statePrepareCommit && m.state <= stateCompleteAbort && m.epoch > 0 &&
		(m.nextProducerID == noProducerID || m.state.prepared()) && m.prevProducerID == m.producerID {
		// The end of a transaction version 2 transaction bumped the
		// epoch (prepareEnd): the producer that ended it had the one
		// before, and a KIP-360 InitProducerID of it, retried after its
		// coordinator moved (the answer to its EndTxn lost), is a retry.
		m.lastEpoch = m.epoch - 1
	}
	return m, nil
}

// statePartition is the coordinator's view of one __transaction_state
// partition: the live records (latest value per key) a snapshot would
// write, and how many bytes the log holds.
type statePartition struct {
	id int32

	// mu is held for reading around an Append and the update of live that
	// follows, and for writing around a Snapshot, so a snapshot never
	// misses a record that is in the log.
	mu sync.RWMutex

	liveMu    sync.Mutex
	live      map[string]Record // key → latest record; guarded by liveMu
	liveBytes int64             // key and value bytes of live; guarded by liveMu
	logBytes  int64             // key and value bytes in the log from its start; guarded by liveMu
	retryAt   int64             // after a failed snapshot, do not retry below this many log bytes
}

func recordBytes(r Record) int64 { return int64(len(r.Key) + len(r.Value)) }

// applyLive records recs (already in the log) in the live set.
func (p *statePartition) applyLive(recs []Record) {
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	for _, r := range recs {
		k := string(r.Key)
		if old, ok := p.live[k]; ok {
			p.liveBytes -= recordBytes(old)
			delete(p.live, k)
		}
		if r.Value != nil {
			p.live[k] = r
			p.liveBytes += recordBytes(r)
		}
		p.logBytes += recordBytes(r)
	}
}

func (p *statePartition) needsSnapshotLocked(slack int64) bool {
	return p.logBytes > 2*p.liveBytes+slack && p.logBytes >= p.retryAt
}

// persistLocked makes value (nil: a tombstone) the stored state of e, whose
// lock is held, and returns once it is durable.
func (c *Coordinator) persistLocked(e *entry, value []byte) error {
	return c.persistSyncLocked(e, value, true)
}

// persistSyncLocked is persistLocked, or, with sync false and a Store that
// is a NoSyncAppender, the same without waiting for durability.
func (c *Coordinator) persistSyncLocked(e *entry, value []byte, sync bool) error {
	rec := Record{Key: recordKey(e.id), Value: value}
	part := c.parts[e.partition]
	part.mu.RLock()
	var err error
	if ns, ok := c.store.(NoSyncAppender); ok && !sync {
		_, err = ns.AppendNoSync(e.partition, []Record{rec})
	} else {
		_, err = c.store.Append(e.partition, []Record{rec})
	}
	if err == nil {
		part.applyLive([]Record{rec})
	}
	part.liveMu.Lock()
	snap := part.needsSnapshotLocked(c.cfg.compactSlack)
	part.liveMu.Unlock()
	part.mu.RUnlock()
	if err != nil {
		c.log.Warn("appending to __transaction_state", "partition", e.partition, "transactional_id", e.id, "err", err)
		return err
	}
	if snap {
		c.kickCompaction()
	}
	return nil
}

// transitionLocked stores n as e's state and adopts it once durable. e.mu
// is held.
func (c *Coordinator) transitionLocked(e *entry, n meta) error {
	return c.transitionSyncLocked(e, n, true)
}

// transitionSyncLocked is transitionLocked, without waiting for
// durability when sync is false (see NoSyncAppender).
func (c *Coordinator) transitionSyncLocked(e *entry, n meta, sync bool) error {
	if err := c.persistSyncLocked(e, encodeValue(&n), sync); err != nil {
		return err
	}
	e.m = n
	return nil
}

func (c *Coordinator) kickCompaction() {
	select {
	case c.compactKick <- struct{}{}:
	default:
	}
}

// compactLoop snapshots partitions whose log grew well past their live
// size.
func (c *Coordinator) compactLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.quit:
			return
		case <-c.compactKick:
			for _, part := range c.parts {
				select {
				case <-c.quit:
					return
				default:
				}
				if c.Loaded(part.id) {
					c.snapshotPartition(part)
				}
			}
		}
	}
}

func (c *Coordinator) snapshotPartition(part *statePartition) {
	part.mu.Lock()
	defer part.mu.Unlock()
	part.liveMu.Lock()
	if !part.needsSnapshotLocked(c.cfg.compactSlack) {
		part.liveMu.Unlock()
		return
	}
	keys := slices.Sorted(maps.Keys(part.live))
	recs := make([]Record, len(keys))
	for i, k := range keys {
		recs[i] = part.live[k]
	}
	before := part.logBytes
	part.liveMu.Unlock()

	start := time.Now()
	err := c.store.Snapshot(part.id, recs)
	part.liveMu.Lock()
	defer part.liveMu.Unlock()
	if err != nil {
		part.retryAt = part.logBytes + c.cfg.compactSlack
		c.log.Warn("snapshotting __transaction_state", "partition", part.id, "err", err)
		return
	}
	part.logBytes = part.liveBytes
	part.retryAt = 0
	c.log.Info("snapshotted __transaction_state", "partition", part.id, "bytes_before", before, "live_bytes", part.liveBytes, "records", len(recs), "elapsed", time.Since(start))
}

// replay loads one partition into loaded (transactional id → state). It
// runs in New, before anything else can touch the coordinator. Every
// record stays live until a later one replaces it, so a snapshot never
// drops a record this version cannot read.
func (c *Coordinator) replay(part *statePartition, loaded map[string]meta) error {
	return c.store.Replay(part.id, func(offset int64, r Record) error {
		rec := Record{Key: bytes.Clone(r.Key)}
		if r.Value != nil {
			rec.Value = bytes.Clone(r.Value)
		}
		part.applyLive([]Record{rec})
		id, err := decodeKey(rec.Key)
		if err != nil {
			c.log.Warn("keeping unreadable __transaction_state record", "partition", part.id, "offset", offset, "err", err)
			return nil
		}
		if want := c.Partition(id); want != part.id {
			// Written with another partition count: its state may be older
			// than what the right partition holds, so it is not loaded.
			c.log.Warn("keeping a record of a transactional id in another __transaction_state partition than its own; was transaction.state.log.num.partitions changed?",
				"transactional_id", id, "partition", part.id, "expected", want)
			return nil
		}
		if rec.Value == nil {
			delete(loaded, id)
			return nil
		}
		m, err := decodeValue(rec.Value)
		if err != nil {
			c.log.Warn("keeping unreadable __transaction_state value; the transactional id keeps its previous state", "partition", part.id, "offset", offset, "transactional_id", id, "err", err)
			return nil
		}
		loaded[id] = m
		return nil
	})
}
