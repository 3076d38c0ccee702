// Package group is Ferry's consumer-group coordinator: the classic
// JoinGroup/SyncGroup/Heartbeat/LeaveGroup protocol, the KIP-848
// ConsumerGroupHeartbeat protocol with server-side assignment, and the
// committed offsets of every group.
//
// The server package decodes Kafka requests with kmsg and calls the
// Coordinator's methods; each method returns the kmsg response to send, built
// for the request's version. The coordinator knows nothing of connections,
// FindCoordinator or the wire: it is given a Store (the partitions of the
// internal __consumer_offsets topic) and a Topics function (the current topic
// metadata), and it answers.
//
// # Behaviour
//
// Kafka's group coordinator (the KIP-848 "new" coordinator of Kafka 3.7+) is
// the reference: same state machine, same error codes, same defaults and the
// same __consumer_offsets schema. The notable cases clients depend on:
//
//   - A classic group moves Empty → PreparingRebalance → CompletingRebalance →
//     Stable; a new empty group waits group.initial.rebalance.delay.ms for more
//     members before the first generation.
//   - JoinGroup v4+ from an unknown dynamic member answers MEMBER_ID_REQUIRED
//     with a member id; the member is pending until it joins with that id.
//   - Static members (group.instance.id) replace their previous incarnation
//     without a rebalance when the group is Stable and the protocol is
//     unchanged; the old incarnation is fenced with FENCED_INSTANCE_ID.
//   - An OffsetCommit carrying the current generation is accepted while the
//     group is PreparingRebalance (members commit from their revoke callback
//     before rejoining); CompletingRebalance answers REBALANCE_IN_PROGRESS.
//   - A group without members accepts commits with generation -1 (admin tools,
//     standalone consumers); such a commit creates a "simple" group.
//   - OffsetFetch of an unknown group returns offset -1 per requested partition
//     and no error.
//   - A KIP-848 group hands a partition to its new owner only after the old
//     owner stopped reporting it in its heartbeats (incremental revocation).
//   - A KIP-848 member commits a partition it holds with any epoch from the
//     one it got the partition at to its current one (KIP-1251); other
//     partitions and newer epochs answer STALE_MEMBER_EPOCH.
//   - TxnOffsetCommit stores offsets pending in the producer's
//     transaction; the transaction coordinator's commit marker for the
//     group's partition (WriteTxnMarker) makes them the committed offsets,
//     its abort marker drops them. OffsetFetch with require_stable answers
//     UNSTABLE_OFFSET_COMMIT for a partition with a pending offset.
//
// Where Ferry differs from Kafka: a KIP-848 member that rejoins with epoch
// 0 under a member ID the group still knows starts over (its partitions are
// released and reassigned) instead of being fenced until its session ends;
// a classic group cannot be migrated to KIP-848 (or back) while it has
// members (GROUP_ID_NOT_FOUND and INCONSISTENT_GROUP_PROTOCOL answer the
// attempt); group.max.size is not enforced.
//
// # Storage layout
//
// Every change is a record of __consumer_offsets, keyed and encoded as Kafka
// does, in the partition Partition(group) picks. A record key starts with
// an int16 that names its type:
//
//	key version 0, 1   offset commit      [int16 version][string group][string topic][int32 partition]
//	                   value v1 or v3     [int16 v][int64 offset]([int32 leader epoch] v3)[string metadata][int64 commit ts]([int64 expire ts] v1)
//	key version 2      group metadata     [int16 2][string group]
//	                   value v3           classic group: protocol type, generation, protocol, leader,
//	                                      state timestamp, members with subscription and assignment
//	key version 3      KIP-848 group      [int16 3][string group] → group epoch
//	key version 4      subscribed topics  [int16 4][string group] → topic ID, name and partition count per topic
//	key version 5      member metadata    [int16 5][string group][string member] → instance and rack IDs,
//	                                      client ID and host, subscription, rebalance timeout, assignor
//	key version 6      target epoch       [int16 6][string group] → target assignment epoch
//	key version 7      target assignment  [int16 7][string group][string member] → topic ID + partitions
//	key version 8      current assignment [int16 8][string group][string member] → member epoch, previous
//	                                      epoch, state, assigned and pending-revocation partitions, with
//	                                      the epoch each partition was assigned at (KIP-1251)
//	key version 1000   older KIP-848 form [int16 1000][string group] → the whole group; read, never written
//	key version 1001   pending txn offset [int16 1001][string group][int64 producer id][string topic][int32 partition]
//	                                      → [int16 0][int16 epoch][int64 offset][int32 leader epoch][string metadata]
//	                                      [int64 commit ts] (Ferry's own: see below)
//	nil value          tombstone          the key is deleted
//
// Keys and the values of key versions 0 to 2 use Kafka's non-flexible
// encodings (int16-length strings, int32-count arrays, big endian, with
// kmsg); values of key versions 3 to 8 are Kafka's flexible version 0
// (compact strings and arrays, tagged fields), written with kbin in
// consumer_records.go. A KIP-848 change writes only the records whose value
// changed (one member's records for most heartbeats, a target record per
// member whose target moved at an epoch bump) and tombstones those of a
// member that left; a heartbeat that changes nothing writes nothing. A
// group found in the older key-1000 form at start is rewritten in Kafka's
// records at once, and its old record deleted.
//
// Kafka stores a transactional offset as an offset commit record in a
// transactional batch and resolves it with the marker's control batch;
// Ferry's Store appends plain batches, so a pending offset is a record of
// key version 1001, keyed by producer id, and a marker is one batch per
// group holding the committed offsets (on commit) and the pending
// records' tombstones. A TxnGuard from BeginTxnOffsetCommit, taken before
// the server has the transaction coordinator verify a TxnOffsetCommit, is
// refused by TxnOffsetCommit if a marker of the producer came in between,
// as Kafka's verification guard refuses a late transactional batch.
//
// Replay gives the same state whatever order the records come in (a
// snapshot writes them sorted by key): KIP-848 records left without their
// group record (key version 3) or member record (5) are dropped and
// deleted, a classic group record does not replace a KIP-848 group whose
// records are live, and a value that does not decode, or is of a newer
// version, is skipped with a warning so the key keeps its earlier value.
//
// A record is appended (and fsynced by the Store) before the request that
// caused it is answered. New replays every partition from its log start, so
// a restarted broker has its groups, members, epochs, assignments and
// offsets back; members must heartbeat within their session timeout again.
// Compaction goes by bytes (key plus value of each record): when a
// partition's log holds more than twice the bytes of its live records plus
// 1 MiB, a background goroutine rewrites the live records through
// Store.Snapshot, which moves the log start past everything older, so the
// topic stays bounded.
//
// # Concurrency
//
// Every method is safe for concurrent use. Each group is a small state
// machine guarded by its own mutex; requests for one group are serialized,
// requests for different groups run in parallel. JoinGroup and SyncGroup
// park the calling goroutine until the rebalance step completes; they return
// early, with COORDINATOR_NOT_AVAILABLE, when ctx is done or the coordinator
// closes. A group's records are appended while its lock is held, so records
// of one group reach the log in the order their changes were made; appends of
// different groups to one partition may run concurrently (Store must allow
// that) and are ordered only against snapshots of that partition.
//
// Lock order: group.mu, then offsetsPartition.mu (read for appends, write for
// snapshots), then offsetsPartition.liveMu. Coordinator.mu and the index of
// pending transactional offsets (txnIndex.mu, taken under group.mu) are
// leaves: nothing is acquired while they are held. Config.Topics is called with group locks
// held, so it must not call back into the Coordinator.
//
// Timers are time.AfterFunc timers whose callbacks take the group lock and
// check that they are still current; two goroutines run in the background
// (snapshot compaction and offset expiry). Close stops all of them and waits.
// Time comes only from the time package, so tests run under testing/synctest.
//
// # Usage
//
//	c, err := group.New(group.Config{
//		Store:  offsetsStore,             // __consumer_offsets partitions
//		Topics: metadata.TopicInfos,      // name → ID and partition count
//		Logger: logger,
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	ctx = group.WithClientInfo(ctx, group.ClientInfo{ClientID: clientID, Host: "/" + remoteIP})
//	resp := c.JoinGroup(ctx, req) // blocks until the rebalance completes
//	...
//	c.TopicsChanged() // after CreateTopics, DeleteTopics, CreatePartitions
package group
