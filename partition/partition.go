package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

var (
	// ErrCorruptMessage: a batch fails its length or CRC check, or the
	// record set ends in a partial batch (CORRUPT_MESSAGE).
	ErrCorruptMessage = errors.New("partition: corrupt message")
	// ErrInvalidRecord: a batch is well formed but not acceptable, such as
	// an old magic, a control batch from a client, a record count that
	// does not match its offsets or the records present, offset deltas
	// other than 0, 1, 2, ..., or offsets past math.MaxInt64
	// (INVALID_RECORD).
	ErrInvalidRecord = errors.New("partition: invalid record")
	// ErrMessageTooLarge: a batch is larger than max.message.bytes
	// (MESSAGE_TOO_LARGE).
	ErrMessageTooLarge = errors.New("partition: message too large")
	// ErrRecordListTooLarge: a batch is larger than segment.bytes
	// (RECORD_LIST_TOO_LARGE).
	ErrRecordListTooLarge = errors.New("partition: record batch larger than segment.bytes")
	// ErrOutOfOrderSequence: an idempotent batch does not follow the last
	// one of its producer (OUT_OF_ORDER_SEQUENCE_NUMBER).
	ErrOutOfOrderSequence = errors.New("partition: out of order sequence number")
	// ErrInvalidProducerEpoch: the batch's producer epoch is older than
	// the one already seen (INVALID_PRODUCER_EPOCH).
	ErrInvalidProducerEpoch = errors.New("partition: invalid producer epoch")
	// ErrInvalidTxnState: a transactional batch that opens a transaction
	// was not verified with the transaction coordinator (or a marker
	// ended the transaction since), or a producer with a transaction open
	// sent a batch outside it (INVALID_TXN_STATE).
	ErrInvalidTxnState = errors.New("partition: invalid transaction state")
	// ErrCoordinatorFenced: a transaction marker comes from a coordinator
	// epoch lower than that of its producer's last marker here, from a
	// transaction coordinator that a newer one has replaced
	// (TRANSACTION_COORDINATOR_FENCED).
	ErrCoordinatorFenced = errors.New("partition: transaction coordinator fenced")
	// ErrOffsetOutOfRange is log.ErrOffsetOutOfRange.
	ErrOffsetOutOfRange = log.ErrOffsetOutOfRange
	// ErrLogClosed is log.ErrClosed: the partition's log was closed under
	// a call, as when the broker stops.
	ErrLogClosed = log.ErrClosed
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("partition: closed")
)

// Config holds a partition's settings. Zero values mean Kafka's defaults.
type Config struct {
	// Log configures the underlying log.
	Log log.Config
	// MaxMessageBytes is the largest batch accepted. Corresponds to
	// max.message.bytes; default 1048588.
	MaxMessageBytes int
	// Recompress stores every batch compressed with Codec (a
	// record.Codec* value; CodecNone stores them uncompressed): a batch
	// sent with another codec is decompressed and compressed again.
	// Corresponds to compression.type other than "producer" (the default,
	// Recompress false: batches are stored as sent).
	Recompress bool
	Codec      int
	// LogAppendTime makes the broker stamp batches with its own clock.
	// Corresponds to message.timestamp.type=LogAppendTime.
	LogAppendTime bool
	// MinInsyncReplicas: in a cluster, an append is refused
	// (ErrNotEnoughReplicas) while fewer replicas are in sync, and an
	// acks=all wait ends with ErrNotEnoughReplicasAfterAppend if the ISR
	// shrank below it meanwhile. Corresponds to min.insync.replicas;
	// default 1.
	MinInsyncReplicas int
	// ProducerIDExpirationMs forgets an idempotent producer's state after
	// it has not appended for this long. Corresponds to
	// producer.id.expiration.ms; default one day.
	ProducerIDExpirationMs int64
	// Replica marks a replica of a cluster: from Open until BecomeLeader
	// or BecomeFollower gives it a role it neither leads nor follows
	// (produce and fetch get ErrNotLeader). A node that restarts must not
	// take writes as the leader it may no longer be before it has
	// learned its role from the metadata. Read at Open only.
	Replica bool
	// Logger receives warnings. nil discards them.
	Logger *slog.Logger
}

// LeaderEpoch is the partition leader epoch written into every batch. One
// broker leads every partition from the start, so it is 0.
const LeaderEpoch = 0

// DefaultMaxMessageBytes is Kafka's max.message.bytes default.
const DefaultMaxMessageBytes = 1048588

func (c Config) withDefaults() Config {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ProducerIDExpirationMs <= 0 {
		c.ProducerIDExpirationMs = 24 * 3600 * 1000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Log.Logger == nil {
		c.Log.Logger = c.Logger
	}
	return c
}

// Partition is one topic-partition. See the package comment.
type Partition struct {
	log    *log.Log
	logger *slog.Logger

	// counters count the bytes and records in and out (stats.go).
	counters counters

	// mu serializes appends and guards the fields in it.
	mu struct {
		sync.Mutex
		cfg       Config
		producers map[int64]*producer
		// ongoing maps the producers with a transaction open here to
		// its first offset (their producer's txnFirst).
		ongoing ongoingTxns
		// verify holds, per producer id, the guard of a transaction
		// being verified with the coordinator (BeginVerification).
		verify map[int64]*VerificationGuard
		closed bool
		// snapRolls is the log's roll count at the last producer
		// snapshot; a snapshot is written at each roll.
		snapRolls int64
		// loaded: producers holds the state rebuilt at Open, which the
		// log cleaner may use (producerLastOffsets).
		loaded bool
		// snapAt is the log end offset of the newest producer snapshot
		// on disk, if it describes the log as it is (-1 when unknown):
		// Close writes none when the log has not grown since.
		snapAt int64
	}

	// repl is the replication state in a cluster (replica.go); taken
	// after mu, before watch.
	repl replica

	// stable is what the last stable offset is computed from (txn.go).
	stable stableState
	// opened: Open finished, so p.log and stable may be read (by the
	// log cleaner, through log.Config.LastStableOffset).
	opened atomic.Bool

	// watch guards the fetch waiters. It is taken last, after mu and
	// the log's locks (the log wakes waiters from inside Sync).
	watch struct {
		sync.Mutex
		// watchers get a non-blocking send each time the high
		// watermark advances, and at Close.
		watchers map[chan<- struct{}]struct{}
		closed   bool
	}
}

// Open opens the partition stored in dir, recovering its log and rebuilding
// the producer state.
func Open(dir string, cfg Config) (*Partition, error) {
	cfg = cfg.withDefaults()
	p := &Partition{logger: cfg.Logger}
	p.watch.watchers = map[chan<- struct{}]struct{}{}
	cfg.Log.OnDurable = p.durable
	var recovered map[int64]*producer
	cfg.Log.Recovered = func(l *log.Log, from int64) error {
		// An unclean stop: the producers are loaded while the log
		// recovers, rebuilding the aborted-transaction index of the
		// segments it scanned.
		var err error
		recovered, _, err = loadProducers(l, from)
		return err
	}
	cfg.Log.ProducerLastOffsets = p.producerLastOffsets
	cfg.Log.LastStableOffset = func() int64 {
		if !p.opened.Load() {
			return -1 // the cleaner waits for Open
		}
		return p.LastStableOffset()
	}
	cfg.Log.CleanLimit = p.cleanLimit
	l, err := log.Open(dir, cfg.Log)
	if err != nil {
		return nil, err
	}
	p.log = l
	producers, snapAt := recovered, int64(-1)
	if producers == nil {
		if producers, snapAt, err = loadProducers(l, -1); err != nil {
			l.Close()
			return nil, err
		}
	}
	p.mu.Lock()
	p.mu.cfg = cfg
	p.mu.producers, p.mu.loaded, p.mu.snapAt = producers, true, snapAt
	p.mu.verify = map[int64]*VerificationGuard{}
	p.mu.ongoing = ongoingTxns{}
	for id, st := range p.mu.producers {
		if st.txnFirst >= 0 {
			p.mu.ongoing[id] = st.txnFirst
		}
	}
	p.stable.init(p.mu.ongoing)
	p.mu.Unlock()
	if cfg.Replica {
		p.repl.Lock()
		p.repl.on, p.repl.leader, p.repl.epoch = true, false, -1
		p.repl.hw = p.log.LogStartOffset()
		p.repl.Unlock()
	}
	p.opened.Store(true)
	return p, nil
}

// testHookAppended, set by tests, runs in Append after each batch is in
// the log: where a concurrent sync may make it durable.
var testHookAppended func(p *Partition, base int64)

// producerLastOffsets tells the log cleaner the last offset of each
// tracked producer's newest batch, which it keeps (log.Config).
func (p *Partition) producerLastOffsets() (map[int64]int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.mu.loaded {
		return nil, false
	}
	m := make(map[int64]int64, len(p.mu.producers))
	for id, st := range p.mu.producers {
		if b := st.last(); b != nil {
			m[id] = b.last
		}
	}
	return m, true
}

// View is a zero-copy read of whole record batches (see log.View): Data
// aliases a memory-mapped segment and stays valid until Release, which
// must be called exactly once.
type View = log.View

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.log.Dir() }

// Size is the size in bytes of the partition's segments.
func (p *Partition) Size() int64 { return p.log.Size() }

// Walk calls fn for every batch from the one holding offset from to the
// end of the log, until fn returns false. batch aliases the mapping and is
// valid only during the call.
func (p *Partition) Walk(from int64, fn func(batch []byte, h *record.Header) bool) error {
	return p.log.Walk(from, fn)
}

// HighWatermark is the offset up to which consumers may read: with one
// replica, the log's durable offset, below which every batch has been
// fdatasynced. A batch above it is answered to an acks=0 or 1 producer
// but not yet served, so that nothing a consumer sees (and commits past)
// can be lost to a power cut; the log's background flush
// (flush.max.delay.ms) bounds how long it waits. It is never below the
// log start offset (retention may delete segments before they are synced).
func (p *Partition) HighWatermark() int64 {
	durable := max(p.log.DurableOffset(), p.log.LogStartOffset())
	if hw, ok := p.replicatedHW(); ok {
		return max(min(hw, durable), p.log.LogStartOffset())
	}
	return durable
}

// DurableEnd is the end of what is durable in this replica's log: a
// follower fetches from it, which tells its leader it holds everything
// below (a sync that failed leaves it behind the log end).
func (p *Partition) DurableEnd() int64 {
	return min(p.log.NextOffset(), max(p.log.DurableOffset(), p.log.LogStartOffset()))
}

// LogEndOffset is the offset the next record will get. Offsets from the
// high watermark up to it are valid to fetch from but return nothing yet.
func (p *Partition) LogEndOffset() int64 { return p.log.NextOffset() }

// LogStartOffset is the first readable offset.
func (p *Partition) LogStartOffset() int64 { return p.log.LogStartOffset() }

// Config returns the current settings.
func (p *Partition) Config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.cfg
}

// SetConfig applies new settings at once.
func (p *Partition) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	p.mu.Lock()
	p.mu.cfg = cfg
	p.mu.Unlock()
	p.log.SetConfig(cfg.Log)
}

// Result describes a successful append.
type Result struct {
	// BaseOffset is the offset of the first record appended (or, for a
	// duplicate batch, the offset it was stored at originally).
	BaseOffset int64
	// LogAppendTime is the timestamp the broker set, or -1.
	LogAppendTime int64
	// LogStartOffset is the log start offset after the append.
	LogStartOffset int64
	// Duplicate is true when every batch was a retry already stored.
	Duplicate bool
	// NextOffset is the log end after the append (for a duplicate, the
	// end of the original batch): an acks=all produce waits for the
	// high watermark to reach it (SyncReplicated).
	NextOffset int64
	// LeaderEpoch is the leader epoch the batches were written in.
	LeaderEpoch int32
}

// Append validates and appends a produced record set: one or more record
// batches (magic 2) back to back. Either every batch is appended or none
// is. The bytes are modified in place (offsets, and timestamps with
// LogAppendTime) and written as they are, except batches recompressed for
// Config.Recompress, which are written from a copy. A transactional batch
// that would open a transaction is refused (ErrInvalidTxnState): use
// AppendVerified.
func (p *Partition) Append(records []byte) (Result, error) {
	return p.AppendVerified(records, nil)
}

// AppendVerified is Append for a record set whose transactional batches
// were verified with the transaction coordinator under guard (from
// BeginVerification; nil when none was needed). A transactional batch
// that opens its producer's transaction here is appended only if guard
// is still the producer's current one: a marker since BeginVerification
// (the transaction ended meanwhile) refuses it with ErrInvalidTxnState.
func (p *Partition) AppendVerified(records []byte, guard *VerificationGuard) (Result, error) {
	res := Result{BaseOffset: -1, LogAppendTime: -1}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed {
		return res, ErrClosed
	}
	leader, epoch := p.Leader()
	if !leader {
		return res, ErrNotLeader
	}
	res.LeaderEpoch = epoch
	cfg := &p.mu.cfg
	// Validate every batch before appending any.
	var hdrs [4]record.Header
	var bs [4][]byte
	headers, batches := hdrs[:0], bs[:0]
	for rest := records; len(rest) > 0; {
		var h record.Header
		if err := validate(rest, &h, cfg); err != nil {
			return res, err
		}
		batch := rest[:h.Size()]
		rest = rest[h.Size():]
		if cfg.Recompress && h.Codec() != cfg.Codec {
			var err error
			if batch, err = recompress(batch, &h, cfg); err != nil {
				return res, err
			}
		}
		headers, batches = append(headers, h), append(batches, batch)
	}
	if len(headers) == 0 {
		return res, fmt.Errorf("%w: empty record set", ErrCorruptMessage)
	}
	// Offsets must not pass math.MaxInt64: the log's next offset is
	// stable here, appends being serialized by mu.
	next := p.log.NextOffset()
	for i := range headers {
		if n := int64(headers[i].LastOffsetDelta) + 1; next > math.MaxInt64-n {
			return res, fmt.Errorf("%w: %d records at offset %d would pass the largest offset", ErrInvalidRecord, n, next)
		}
		next += int64(headers[i].LastOffsetDelta) + 1
	}
	// Idempotence checks, in order, against a scratch copy of the state.
	var dup [4]int64
	dups := dup[:0]
	for i := range headers {
		off, isDup, err := p.checkSequenceLocked(&headers[i], headers[:i])
		if err != nil {
			return res, err
		}
		if isDup {
			dups = append(dups, off)
		}
	}
	if len(dups) == len(headers) {
		res.BaseOffset, res.Duplicate = dups[0], true
		res.LogStartOffset = p.log.LogStartOffset()
		res.NextOffset = dups[len(dups)-1] + int64(headers[len(headers)-1].LastOffsetDelta) + 1
		return res, nil
	}

	if len(dups) > 0 {
		// A mix of retried and new batches in one request cannot happen
		// with a well-behaved producer.
		return res, fmt.Errorf("%w: retried and new batches mixed", ErrOutOfOrderSequence)
	}
	for i := range headers {
		if err := p.checkTxnLocked(&headers[i], headers[:i], guard); err != nil {
			return res, err
		}
	}
	now := int64(-1)
	if cfg.LogAppendTime {
		now = time.Now().UnixMilli()
		res.LogAppendTime = now
	}
	for i := range headers {
		h, batch := &headers[i], batches[i]
		record.SetLeaderEpoch(batch, epoch)
		if now >= 0 {
			record.SetLogAppendTime(batch, now)
			h.MaxTimestamp = now
		}
		// A batch that opens a transaction holds the last stable offset
		// before it is appended: once in the log, a group commit may make
		// it durable (the high watermark passes it) at any moment, and a
		// read_committed fetch in between must not read it.
		opens := p.opensTxnLocked(h)
		if opens {
			p.stable.begin(p.log.NextOffset())
		}
		base, err := p.log.Append(batch, h)
		if err != nil {
			if opens {
				p.stable.forget(p.mu.ongoing)
			}
			if errors.Is(err, log.ErrBatchTooLarge) {
				err = fmt.Errorf("%w: %v", ErrRecordListTooLarge, err)
			}
			return res, err
		}
		if testHookAppended != nil {
			testHookAppended(p, base)
		}
		if i == 0 {
			res.BaseOffset = base
		}
		p.counters.bytesIn.Add(int64(len(batch)))
		p.counters.recordsIn.Add(int64(h.RecordCount))
		if h.ProducerID >= 0 {
			if _, started := recordBatch(p.mu.producers, h); started {
				p.beginTxnLocked(h.ProducerID, h.BaseOffset)
			}
		}
	}
	res.LogStartOffset = p.log.LogStartOffset()
	res.NextOffset = p.log.NextOffset()
	if epoch > LeaderEpoch || p.Replicated() {
		p.notify() // followers fetch up to the log end
	}
	p.maybeSnapshotLocked()
	return res, nil
}

// maybeSnapshotLocked writes a producer snapshot when the log started a
// new segment since the last one, so that recovery after a crash walks at
// most the segments since, not the whole log.
func (p *Partition) maybeSnapshotLocked() {
	if r := p.log.Rolls(); r != p.mu.snapRolls {
		p.mu.snapRolls = r
		at := p.log.NextOffset()
		if err := writeProducerSnapshot(nil, p.log.Dir(), at, p.mu.producers); err != nil {
			p.logger.Warn("producer snapshot failed; recovery will scan more of the log", "err", err)
		} else {
			p.mu.snapAt = at
		}
	}
}

// recompress rewrites a validated batch with the topic's codec
// (compression.type) and parses its new header into h.
func recompress(batch []byte, h *record.Header, cfg *Config) ([]byte, error) {
	out, err := record.Recompress(batch, cfg.Codec)
	switch {
	case errors.Is(err, record.ErrCorrupt):
		return nil, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if err := record.ParseInto(out, h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	if err := checkSize(h, cfg); err != nil {
		return nil, fmt.Errorf("%w (compressed with compression.type)", err)
	}
	return out, nil
}

// checkSize checks a batch against max.message.bytes and segment.bytes;
// the latter here, before anything of the record set is appended.
func checkSize(h *record.Header, cfg *Config) error {
	if h.Size() > cfg.MaxMessageBytes {
		return fmt.Errorf("%w: batch of %d bytes, max.message.bytes is %d", ErrMessageTooLarge, h.Size(), cfg.MaxMessageBytes)
	}
	if seg := cfg.Log.SegmentBytes; seg > 0 && int64(h.Size()) > seg {
		return fmt.Errorf("%w: batch of %d bytes, segment.bytes is %d", ErrRecordListTooLarge, h.Size(), seg)
	}
	return nil
}

func validate(b []byte, h *record.Header, cfg *Config) error {
	if err := record.ParseInto(b, h); err != nil {
		switch {
		case errors.Is(err, record.ErrMagic):
			return fmt.Errorf("%w: %v (only magic 2 batches are accepted)", ErrInvalidRecord, err)
		default:
			return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
		}
	}
	if err := checkSize(h, cfg); err != nil {
		return err
	}
	err := record.Check(h, b)
	if err == nil {
		err = record.CheckRecords(h, b)
	}
	if err != nil {
		if errors.Is(err, record.ErrInvalid) {
			return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		}
		return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	if h.IsControl() {
		return fmt.Errorf("%w: control batches cannot be produced", ErrInvalidRecord)
	}
	if h.ProducerID >= 0 && h.BaseSequence < 0 {
		return fmt.Errorf("%w: producer %d sent base sequence %d", ErrInvalidRecord, h.ProducerID, h.BaseSequence)
	}
	if h.IsTransactional() && h.ProducerID < 0 {
		return fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
	}
	if cfg.Log.Compact {
		// As Kafka's LogValidator: a compacted topic keeps records by
		// key, so every record must have one.
		if err := record.CheckKeys(h, b); err != nil {
			if errors.Is(err, record.ErrCorrupt) {
				return fmt.Errorf("%w: %v", ErrCorruptMessage, err)
			}
			return fmt.Errorf("%w: compacted topic cannot accept a record without a key: %v", ErrInvalidRecord, err)
		}
	}
	return nil
}

// Sync returns once everything appended so far is durable.
//
// On the leader of a cluster it also waits (up to 30 s) for the in-sync
// replicas to hold them, so that what a coordinator stores survives a
// change of leader; on a follower it is the local sync.
func (p *Partition) Sync() error {
	p.repl.Lock()
	leader, epoch := p.repl.on && p.repl.leader, p.repl.epoch
	p.repl.Unlock()
	if !leader {
		return p.log.Sync()
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicationTimeout)
	defer cancel()
	return p.SyncReplicated(ctx, epoch, p.log.NextOffset())
}

// SyncLocal returns once everything appended so far is durable in this
// replica's log, whatever its role: a follower syncs what it fetched
// before its next fetch tells the leader it holds it.
func (p *Partition) SyncLocal() error { return p.log.Sync() }

// Watch registers ch to receive a non-blocking send each time the high
// watermark advances (records become durable, not when they are
// appended) and at Close. A waiter registers, then reads, then waits on
// ch, so no advance between the read and the wait is missed. One channel
// may watch many partitions; give it a buffer of 1.
func (p *Partition) Watch(ch chan<- struct{}) {
	p.watch.Lock()
	defer p.watch.Unlock()
	if p.watch.closed {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	p.watch.watchers[ch] = struct{}{}
}

// Unwatch removes a channel registered with Watch.
func (p *Partition) Unwatch(ch chan<- struct{}) {
	p.watch.Lock()
	defer p.watch.Unlock()
	delete(p.watch.watchers, ch)
}

// durable is told by the log that its durable offset advanced (after a
// sync, log.Config.OnDurable, before the syncing callers return): the
// leader's high watermark may rise with it; watchers wake.
func (p *Partition) durable() {
	p.repl.Lock()
	p.recomputeHWLocked()
	p.repl.Unlock()
	p.notify()
}

// notify wakes every watcher: the high watermark advanced (or, on a
// leader of a cluster, the log end, which followers fetch up to).
func (p *Partition) notify() {
	p.stable.durable(p.log.DurableOffset())
	p.watch.Lock()
	defer p.watch.Unlock()
	for ch := range p.watch.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// closeWatchers wakes every watcher a last time; later ones are woken as
// they register.
func (p *Partition) closeWatchers() {
	p.watch.Lock()
	p.watch.closed = true
	p.watch.Unlock()
	p.notify()
}

// Read returns batches starting at off up to the high watermark; see
// log.Log.Read. The caller releases the view.
func (p *Partition) Read(off int64, maxBytes int, minOne bool) (View, error) {
	return p.log.Read(off, p.HighWatermark(), maxBytes, minOne)
}

// ReadTo is Read bounded by hw, a high watermark the caller read before
// (and reports with the data), so nothing past it is returned.
func (p *Partition) ReadTo(off, hw int64, maxBytes int, minOne bool) (View, error) {
	return p.log.Read(off, hw, maxBytes, minOne)
}

// DeleteRecords advances the log start offset to off; -1 means the high
// watermark. It returns the new log start offset.
func (p *Partition) DeleteRecords(off int64) (int64, error) {
	if off == -1 {
		off = p.HighWatermark()
	}
	if off < 0 || off > p.HighWatermark() {
		return 0, fmt.Errorf("%w: %d is past the high watermark %d", ErrOffsetOutOfRange, off, p.HighWatermark())
	}
	if err := p.log.DeleteRecords(off); err != nil {
		return 0, err
	}
	return p.log.LogStartOffset(), nil
}

// EnforceRetention applies retention.ms and retention.bytes.
func (p *Partition) EnforceRetention(now time.Time) (int, error) {
	return p.log.EnforceRetention(now)
}

// Close writes the producer snapshot and closes the log cleanly. It wakes
// any waiter. Close is idempotent.
func (p *Partition) Close() error { return p.CloseInto(nil) }

// CloseInto is Close with every sync left to b (durable.Batch), which
// the caller commits once it has closed every partition: one syncfs for
// all of them instead of several fsyncs each. A nil b is Close.
func (p *Partition) CloseInto(b *durable.Batch) error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	p.closeWatchers()
	var errs []error
	if p.log.Err() == nil {
		var err error
		if b == nil {
			err = p.log.Sync()
		}
		if at := p.log.NextOffset(); err == nil && at != p.mu.snapAt {
			err = writeProducerSnapshot(b, p.log.Dir(), at, p.mu.producers)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Unlock()
	// Not under mu: closing the log waits for a cleaning pass, which
	// may be asking for the producers (producerLastOffsets). Appends
	// are refused already.
	if err := p.log.CloseInto(b); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Delete closes the partition and removes its directory.
func (p *Partition) Delete() error {
	p.mu.Lock()
	if !p.mu.closed {
		p.mu.closed = true
		p.closeWatchers()
	}
	p.mu.Unlock()
	return p.log.Delete()
}
