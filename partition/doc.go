// Package partition is one topic-partition on this broker: its log, its
// high watermark, the idempotent-producer state, and the channels that wake
// long-polling fetches. It validates produced batches the way Kafka's
// LogValidator does (the header, the CRC, and for uncompressed batches,
// or compressed ones it recompresses, the records themselves against the
// header's count and offset deltas) and reports what is wrong with
// sentinel errors that the server maps to Kafka error codes. A refused
// batch changes nothing: no offset is taken and no error is left sticky.
//
// # Producer state
//
// For each producer id the partition keeps the epoch and the last five
// batches appended (first and last sequence, base offset), as Kafka does,
// to refuse gaps (ErrOutOfOrderSequence) and to answer a retried batch with
// its original offset without storing it twice. The state is snapshotted
// to <offset>.snapshot in the log directory whenever the log starts a new
// segment and at clean close (the newest three are kept), and rebuilt on
// open from the newest snapshot at or below the log end plus the batches
// after it. A snapshot above the recovered log end describes data a crash
// lost and is skipped, so a retried batch is never taken for a duplicate
// of a batch that is gone.
//
// <offset>.snapshot (big-endian), version 3:
//
//	version u8 | offset i64 | count u32 | count × entry | crc32c u32
//	entry: producerId i64 | epoch i16 | txnFirstOffset i64 |
//	       coordinatorEpoch i32 | n u8 |
//	       n × (firstSeq i32 | lastSeq i32 | baseOffset i64 | lastOffset i64)
//
// txnFirstOffset is the first offset of the producer's transaction open
// at the snapshot's offset, -1 if none; coordinatorEpoch that of its last
// marker, -1 if none. Versions 2 (no coordinatorEpoch) and 1 (no
// txnFirstOffset either, written before transactions were stored) are
// still read.
//
// A snapshot is used only when it decodes whole: checksum, offset equal
// to its name's, n at most 5, each producer once, nothing after the
// entries. Otherwise the next older one is tried. Removing a stale
// snapshot at open is followed by an fsync of the directory.
//
// # Transactions
//
// A transactional batch joins its producer's transaction in the
// partition; the first one opens it, and only if the transaction
// coordinator confirmed that the partition is in the producer's
// transaction: the server takes a VerificationGuard (BeginVerification),
// asks the coordinator, then appends with AppendVerified, which refuses
// the batch (ErrInvalidTxnState) if a marker ended the transaction
// meanwhile. A producer with a transaction open sends only transactional
// batches. WriteMarker appends the commit or abort marker (a control
// batch, fsynced before it returns) and moves the producer to the
// marker's epoch: with transaction version 2 the bumped one, which fences
// the ended transaction's batches. The partition remembers the
// coordinator epoch of each producer's last marker (from the control
// record's value, so a follower and a recovery rebuild it from the log)
// and refuses a marker of a lower one with ErrCoordinatorFenced, as
// Kafka does: it comes from a transaction coordinator that a newer one
// has replaced, and could otherwise end the producer's next transaction.
//
// The last stable offset (LastStableOffset) is the first offset of the
// oldest transaction still open, or whose marker is not durable yet,
// capped by the high watermark and never below the log start: what
// read_committed consumers read up to. An abort adds the transaction (its
// producer id, first offset and marker offset) to the aborted-transaction
// index of the segment holding the marker (.txnindex, package segment),
// which AbortedTxns searches for a read_committed fetch. Open
// transactions are in the producer snapshots; after an unclean stop the
// producers are loaded from a snapshot at or below the first segment
// recovery scans, and the index of every scanned segment is rebuilt from
// its markers before the recovery point moves past it. Producers with a
// transaction open are never expired.
//
// # Compaction
//
// On a compacted topic (log.Config.Compact, cleanup.policy with
// "compact") every record must have a key, as Kafka requires: a batch
// holding one without is refused with ErrInvalidRecord
// (INVALID_RECORD), compressed batches decompressed to see. The log's
// cleaner asks the partition for the last offset of each tracked
// producer's newest batch (log.Config.ProducerLastOffsets) and keeps
// that batch, emptied if its records are superseded, so the producer
// state rebuilt from the log after compaction still recognizes retries.
//
// # High watermark
//
// Consumers read only durable records, as Redpanda serves them: the high
// watermark is the log's durable offset, below which every batch has been
// fdatasynced, not the log end in the page cache. A consumer therefore
// never reads, and never commits past, a record that a power cut could
// take back and whose offset a later record could reuse. acks=all batches
// become visible when their fsync returns; acks 0 and 1 batches when the
// log's background flush (flush.max.delay.ms, 10 ms by default) or a later
// fsync covers them. Fetch waiters (Watch) are woken when the high
// watermark advances, not at append.
//
// # Metrics
//
// Stats reports a partition's traffic (bytes and records appended, and
// those fetches sent, which the server counts with CountFetched), its size
// and offsets, read with atomic loads; counting is an atomic add per batch.
// Config.Log.Stats, one per broker (NewStorageStats), counts the fsyncs of
// every partition, and FileCache reports the broker's segment file cache.
// The broker's metrics collector turns them into Prometheus series; this
// package knows nothing of Prometheus.
//
// # Replicas
//
// In a cluster a partition is a replica (replica.go), led by one broker:
// BecomeLeader and BecomeFollower give it its role at a leader epoch,
// which every batch a leader appends carries. The leader's high
// watermark is the smallest durable log end of its in-sync replicas
// (FollowerFetched records each follower's, which it sends once what it
// fetched before is fdatasynced), and SyncReplicated, the answer of an
// acks=all produce, waits for it; a follower appends its leader's
// batches with their offsets (AppendReplica) and cuts a tail its leader
// does not have (TruncateTo), both only while it follows at the epoch
// its fetch was for (a late answer of an old leader must not touch the
// log of a replica that leads now). The leader epoch cache,
// leader-epoch-checkpoint in Kafka's format, records where each epoch
// began and answers OffsetForLeaderEpoch (EndOffsetForEpoch). A
// partition never given a role (a single broker) leads itself at epoch 0
// and writes no epoch cache.
//
// # Concurrency
//
// All methods are safe for concurrent use. Appends and markers are
// serialized by the partition's mutex (mu), which is taken before any lock
// of the log but its clean lock: a cleaning pass holds that one while it
// asks for the producer state (under mu), so mu is never held while the
// log closes, and a replica's truncation takes it (log.PauseCleaning)
// before mu. In a cluster the cleaner cleans only below the high
// watermark. The replication state (repl) is taken after mu. The last
// stable offset's state (stable) has a leaf lock of its own, and the
// waiters' mutex (watch) is taken last: the log wakes waiters (and prunes
// the transactions its sync made durable) from inside Sync, which runs
// under mu at Close. LastStableOffset takes no lock.
//
// # Usage
//
//	p, err := partition.Open(dir, partition.Config{})
//	res, err := p.Append(records)      // raw record set from a produce
//	err = p.Sync()                     // acks=all
//	p.Watch(ch)                        // ch gets a send when the high watermark advances
//	v, err := p.Read(off, 1<<20, true)
//
//	// A transactional batch that may open a transaction:
//	g := p.BeginVerification(producerID, epoch) // nil: already open here
//	// ... the coordinator confirms the partition is in the transaction ...
//	res, err = p.AppendVerified(records, g)
//	off, err := p.WriteMarker(partition.Marker{ProducerID: id, ProducerEpoch: e, Commit: true})
//	lso := p.LastStableOffset()
//	aborted, err := p.AbortedTxns(from, lso)
package partition
