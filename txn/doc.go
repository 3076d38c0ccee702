// Package txn is Ferry's transaction coordinator: transactional ids, their
// producer ids and epochs, the partitions of each ongoing transaction, and
// the two-phase end of a transaction (a durable decision, then a commit or
// abort marker on every partition).
//
// The server package decodes Kafka requests with kmsg and calls the
// Coordinator's methods; each returns the kmsg response to send, built for
// the request's version. The coordinator knows nothing of connections,
// FindCoordinator or partition logs: it is given a Store (the partitions of
// the internal __transaction_state topic), a Markers writer (the broker's
// partitions), a producer-id allocator, and functions that map a group to
// its __consumer_offsets partition and count a topic's partitions.
//
// # Behaviour
//
// Kafka's transaction coordinator (TransactionCoordinator,
// TransactionStateManager and TransactionMetadata of Kafka 4.x) is the
// reference: the same state machine (Empty, Ongoing, PrepareCommit,
// PrepareAbort, CompleteCommit, CompleteAbort), error codes, defaults and
// __transaction_state schema. The cases clients depend on:
//
//   - InitProducerID bumps the epoch of a transactional id, fencing older
//     instances (PRODUCER_FENCED; INVALID_PRODUCER_EPOCH for old request
//     versions). A transaction the previous instance left open is aborted
//     first, with its own epoch bump. KIP-360 (v3+): a producer may resume
//     with its current id and epoch. When the epochs of a producer id run
//     out (32766) a new producer id is allocated.
//   - AddPartitionsToTxn and AddOffsetsToTxn add partitions (the group's
//     __consumer_offsets partition for offsets) to the ongoing transaction,
//     starting it; the state is stored before the answer.
//   - EndTxn stores PrepareCommit or PrepareAbort, writes the marker to
//     every partition of the transaction through Markers, then stores
//     CompleteCommit or CompleteAbort. While markers are being written the
//     id's requests answer CONCURRENT_TRANSACTIONS.
//   - Transaction version 2 (KIP-890, EndTxn v5+): every commit and abort
//     bumps the epoch, which EndTxn returns; the markers carry the bumped
//     epoch, so a late batch of the ended transaction is fenced. Partition
//     leaders add partitions themselves (AddPartitionsImplicitly) for
//     Produce v12+ and TxnOffsetCommit v5+. A retried EndTxn (the epoch
//     before the bump) succeeds; an abort may end a transaction that added
//     no partition.
//   - KIP-890 part 1: leaders verify that a partition is in the producer's
//     transaction before appending a transactional batch of older clients
//     (VerifyPartitions, AddPartitionsToTxn v4+ VerifyOnly).
//   - A transaction open longer than its timeout is aborted by the
//     coordinator (checked every
//     transaction.abort.timed.out.transaction.cleanup.interval.ms), with
//     the epoch bumped so the producer that opened it is fenced.
//   - A transactional id without an open transaction, unused for
//     transactional.id.expiration.ms, is forgotten: a tombstone is written.
//
// Where Ferry differs from Kafka: EndTxn answers after the first attempt at
// every marker and at the Complete record, not as soon as the decision is
// stored, so a producer's next transaction and a read_committed consumer
// see the end at once in the usual case; a marker that fails is retried in
// the background and the answer is still success, as in Kafka. An
// InitProducerID that finds a transaction open waits the same way for its
// abort and then answers, where Kafka answers CONCURRENT_TRANSACTIONS and
// lets the client retry (it still does when the markers fail). On a single
// broker one coordinator serves every __transaction_state partition
// (coordinator epoch 0), so NOT_COORDINATOR and
// COORDINATOR_LOAD_IN_PROGRESS never occur: New returns only after the
// replay. In a cluster (Config.LoadOnLead) the broker calls Load and
// Unload as it comes to lead and stops leading each partition (load.go):
// the ids of a partition not loaded answer NOT_COORDINATOR, those of one
// being replayed COORDINATOR_LOAD_IN_PROGRESS, and the markers carry the
// coordinator epoch Load was given. The transactional-id pattern of ListTransactions v2 is a Go
// regular expression (RE2) that must match the whole id. Two-phase commit
// with an external manager (KIP-939, InitProducerId v6) is not offered.
//
// # Storage layout
//
// Every change of a transactional id is one record of __transaction_state,
// keyed and encoded as Kafka does (kmsg.TxnMetadataKey and
// kmsg.TxnMetadataValue), in the partition Partition(id) picks:
//
//	key   [int16 0][string transactional id]
//	value [int16 1][int64 producer id][int16 epoch][int32 timeout ms][int8 state]
//	      [compact array of [compact string topic][compact array of int32 partition][tags]]
//	      [int64 last update ms][int64 start ms]
//	      [tags: 0 previous producer id, 1 next producer id, 2 client transaction version]
//	nil   tombstone: the id expired
//
// Value version 1 is flexible (compact strings and arrays, tagged fields),
// as Kafka 4.x writes it once transaction.version is 1 or more; version 0
// (int16-length strings, int32-count arrays, no tags) is read too. The
// partitions are null in Empty and an empty array once complete. State
// numbers: 0 Empty, 1 Ongoing, 2 PrepareCommit, 3 PrepareAbort, 4
// CompleteCommit, 5 CompleteAbort.
//
// A record is appended (and fsynced by the Store) before the request that
// caused it is answered; the Complete record alone is appended without
// waiting for the fsync when the Store is a NoSyncAppender (the next
// record of its partition, or the log's background flush, makes it
// durable): no answer depends on it, and a crash that loses it leaves the
// transaction prepared, which New completes again. New replays every partition from its log start,
// so a restarted broker has its transactional ids back with their producer
// ids, epochs, open transactions and timeouts; a transaction found
// PrepareCommit or PrepareAbort (a crash between the decision and its
// Complete record) gets every marker written again, then its Complete
// record, which is why Markers must accept a repeated marker. Each
// partition's records and bytes are counted; once its log holds more than
// twice its live bytes plus 1 MiB, a background goroutine writes the live
// records through Store.Snapshot, which moves the log start past
// everything older, so the topic stays bounded. Records this version
// cannot read are kept live (a snapshot carries them) and skipped with a
// warning.
//
// # Concurrency
//
// Every method is safe for concurrent use. Each transactional id is a
// small state machine guarded by its own mutex, held while its record is
// appended; requests for one id are serialized, requests for different ids
// run in parallel. The markers of a transaction are written by a goroutine
// of the coordinator, without any lock held, at most 16 at once; the
// transaction's state (PrepareCommit or PrepareAbort) keeps other requests
// off it meanwhile (Markers may call the Coordinator, but that
// transaction answers CONCURRENT_TRANSACTIONS until it completes).
// AddPartitionsImplicitly and VerifyPartitions take the id's lock and the
// former appends to the store; their callers (the produce path, the group
// coordinator) must not hold locks that Markers takes.
//
// Lock order: entry.mu (one transactional id), then statePartition.mu
// (read for appends, write for snapshots), then statePartition.liveMu.
// Coordinator.mu is a leaf. Config.PartitionCount and Config.GroupPartition
// are called without coordinator locks held, Config.ProducerIDs sometimes
// with an entry's lock held; none may call the Coordinator.
//
// Three goroutines run in the background (snapshots, the timeout abort,
// the expiry) besides the marker writers. Each load of a partition has a
// context, given to Markers for its transactions; Unload cancels it and
// its marker writers stop; so do those of a transaction whose marker a
// partition refused as fenced (ErrCoordinatorFenced: a coordinator of a
// newer epoch wrote one for the producer), leaving it prepared for the
// coordinator that owns it now, as Kafka does. Close stops them all, cancels every context
// given to Markers, and waits for them and for requests in flight.
// Time comes only from the time package, so tests run under
// testing/synctest.
//
// # Usage
//
//	c, err := txn.New(txn.Config{
//		Store:          transactionStateStore, // __transaction_state partitions
//		Markers:        broker,                // writes control batches, fsynced
//		ProducerIDs:    metadata.NextProducerID,
//		GroupPartition: groups.Partition,
//		PartitionCount: metadata.PartitionCount,
//		Logger:         logger,
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	resp := c.EndTxn(ctx, req) // returns once the markers are written, in the usual case
//	...
//	// Produce v12+, a transactional batch for a partition not yet in the transaction:
//	err = c.AddPartitionsImplicitly(ctx, txnID, producerID, epoch, []txn.TopicPartition{{Topic: t, Partition: p}})
//
//	// In a cluster (Config.LoadOnLead), as this broker's leadership of
//	// __transaction_state partition p starts and stops:
//	err = c.Load(p, leaderEpoch)
//	c.Unload(p)
package txn
