// Package share is Ferry's share-group engine: the queues of KIP-932.
// Members of a share group take records from the same partitions, each
// record goes to one member at a time, locked to it until the member
// acknowledges it (accept, release, reject) or the lock expires, and a
// record that keeps coming back is given up on and, if the group has a
// dead-letter topic, copied there (KIP-1191). Beyond Kafka, a record can
// be held back until a time it names, a topic can delay all its records,
// and released records come back after a backoff.
//
// The server decodes Kafka requests with kmsg and calls the Coordinator:
// ShareGroupHeartbeat, ShareGroupDescribe, DescribeShareGroupOffsets,
// AlterShareGroupOffsets and DeleteShareGroupOffsets take and return kmsg
// messages; ShareFetch and ShareAcknowledge, whose share sessions the
// server keeps, call Acquire per partition, AcknowledgeAll (or
// Acknowledge) for their acknowledgements and ReleaseSession when a
// session closes; ListGroups, DescribeGroups and DeleteGroups ask
// ListGroups, DescribeGroup and DeleteGroup for the share groups, and
// Exists keeps consumer groups from taking a share group's name. The engine knows no
// connection and no disk of its own: it is given a Store (the partitions
// of the internal __share_group_state topic), a Reader (batch headers of
// the partition logs), a DLQWriter (appends to dead-letter topics), a
// Topics function and optionally a Clock.
//
// # Behaviour
//
// Kafka 4.2's share groups are the reference: same requests, error codes,
// config names, defaults and __share_group_state records. The notable
// cases:
//
//   - A member joins with member epoch 0 and a client-generated member
//     ID, heartbeats with its epoch every share.heartbeat.interval.ms, and
//     leaves with -1; a member silent for share.session.timeout.ms is
//     removed. Either way its acquired records are released at once.
//   - The "simple" assignor gives every subscribed partition to at least
//     one member, evenly; when members outnumber partitions, partitions
//     are shared. Nothing is revoked: a member takes its new assignment
//     on its next heartbeat, at the group epoch.
//   - A partition's state starts when a member is first assigned it, at
//     share.auto.offset.reset: latest (the default), earliest, or
//     by_duration:<ISO 8601 duration>.
//   - Acquire takes whole batches (MaxRecords is a soft limit unless
//     Strict) and hands back AcquiredRecords ranges with delivery counts.
//     Records stay locked to the member for share.record.lock.duration.ms;
//     then they are released. At most group.share.partition.max.record.locks
//     records from the start offset on are in flight.
//   - An acknowledgement batch accepts (1), releases (2), rejects (3),
//     gap-acknowledges (0) or, with IsRenewAck, renews (4) records the
//     member holds; every batch of a partition is checked first and
//     nothing changes if one is wrong (INVALID_REQUEST for a malformed
//     batch or offsets past what was acquired, INVALID_RECORD_STATE for
//     records the member does not hold). Offsets below the start offset
//     are complete and skipped. The outcome is durable before the answer.
//   - A record released share.delivery.count.limit times, by
//     acknowledgement, lock expiry or a member leaving, is archived; so is
//     a rejected one. With errors.deadletterqueue.topic.name set (it must
//     start with errors.deadletterqueue.topic.name.prefix, "dlq.", and not
//     with "__"), it is written there first, with the HeaderDLQ* headers
//     and, unless errors.deadletterqueue.copy.record.enable is false, its
//     key, value and headers (Kafka's default is false, Ferry's true).
//     Gap-acknowledged records and records deleted by retention are
//     archived without a dead letter.
//   - With share.isolation.level=read_committed, records are read up to
//     the last stable offset and aborted transactions are skipped
//     (Reader.AbortedTransactions): a record of an open transaction is
//     not delivered until its transaction is decided, nor are records
//     after it, and a record of an aborted transaction never is.
//   - Control batches are never delivered.
//
// Delays, which Kafka does not have: a record whose HeaderDeliverAt header
// ("ferry-deliver-at": decimal ms since the epoch) is in the future is not
// delivered before then; a topic's delivery.delay.ms delays its records
// that long after their batch's max timestamp; and a record released after
// its n-th delivery waits share.delivery.backoff.ms × 2^(n-1), at most
// share.delivery.backoff.max.ms (default 0: no backoff, as in Kafka). The
// other records of a batch are delivered meanwhile. Delayed records do
// not count against max.record.locks but are bounded by
// group.share.partition.max.delayed.records. Plain consumers and
// consumer groups see every record at once.
//
// Where Ferry differs from Kafka otherwise: a member that joins again with
// epoch 0 under a member ID the group knows carries on as that member
// (Kafka fences it until its session ends); share-group membership is
// kept in __share_group_state beside the partition state (see below);
// the start offset of a partition is set when it is first assigned or
// first fetched, not through InitializeShareGroupState; a record's
// delivery count is stored when it is acknowledged, released or written
// with another change, so after a crash it may be one lower, as in Kafka;
// dead letters are never written twice and never lost (Kafka's may be
// duplicated); GROUP_MAX_SIZE_REACHED applies group.share.max.size, and
// group.share.max.groups is not enforced.
//
// # Storage layout
//
// Every change is a record of __share_group_state. A key starts with an
// int16 naming its type; strings are int16-length prefixed, UUIDs 16
// bytes, all big endian (Kafka's non-flexible key encoding). Values are
// Kafka's flexible version 0: an int16 version, compact strings and
// arrays (uvarint length+1), and a tagged-field section after every
// struct.
//
//	key 0  ShareSnapshotKey   [int16 0][string group][uuid topic][int32 partition]
//	       value              int32 snapshot epoch, int32 state epoch, int32 leader epoch,
//	                          int64 start offset, int64 create ms, int64 write ms,
//	                          []StateBatch; tag 0: int32 delivery-complete count
//	key 1  ShareUpdateKey     [int16 1][string group][uuid topic][int32 partition]
//	       value              int32 snapshot epoch, int32 leader epoch,
//	                          int64 start offset, []StateBatch
//	StateBatch                int64 first offset, int64 last offset, int8 state
//	                          (0 available, 2 acknowledged, 3 archiving, 4 archived),
//	                          int16 delivery count; Ferry tags:
//	                          100 int64 not-before ms (a delay), 101 int8 Reason
//	key 10 member metadata    [int16 10][string group][string member]
//	       value              nullable rack, client ID, client host, []subscribed topics
//	key 11 group metadata     [int16 11][string group] → int32 group epoch, int64 metadata hash
//	key 14 member assignment  [int16 14][string group][string member]
//	       value              int32 epoch, int32 previous epoch, int8 state,
//	                          []{uuid topic, []int32 partitions}
//	nil value                 tombstone
//
// Keys 0 and 1 are Kafka's share-coordinator records and live in the
// partition of "group:topicID:partition", as Kafka places them; 10, 11
// and 14 are the layouts Kafka's group coordinator writes to
// __consumer_offsets, kept here, in the partition of the group, so that
// one store, one replay and one compaction hold everything a share group
// is: its members and their records' states, with no ordering to keep
// between two internal topics. The target assignment is recomputed from
// the members at replay (the assignor is deterministic), not stored.
//
// A ShareSnapshot replaces a partition's state; a ShareUpdate changes the
// batches it lists. Replay is order-independent for updates: the start
// offset only moves forward, an offset never goes from complete (2, 4) or
// archiving (3) back to available, and among available states the higher
// delivery count wins, so records written concurrently may reach the log
// in any order. An update whose snapshot epoch is not the state's (Ferry
// writes the state epoch there; AlterShareGroupOffsets bumps it) is
// ignored. Acquired records are stored as available with their delivery
// count, which is what they become after a restart.
//
// Acknowledgements are appended, and fsynced by the Store, before they are
// answered; the runs they change are frozen meanwhile, so other
// acknowledgements, of the same partition too, share the store's group
// commit. Releases (lock expiry, a member leaving, a share session
// closing) take effect at once and are written behind: losing one to a
// crash costs only delivery-count accuracy.
//
// A record given up on with a dead-letter topic goes through three
// durable steps: its archiving state (3) is stored, its dead letter is
// written, its archived state (4) is stored. Until the last, the record
// is never delivered and the start offset waits for it. A restart finds
// it archiving, asks DLQWriter.DeadLettersWritten what was written, writes
// the rest and archives it: a record ends up in exactly one of the queue
// and the dead-letter topic.
//
// When a partition's log holds more than twice the bytes of its last
// snapshot plus Config.SnapshotSlack, a background goroutine writes the
// live state (a ShareSnapshot per share-partition, the live membership
// records) through Store.Snapshot, which moves the log start past the
// rest.
//
// # In a cluster
//
// With Config.LoadOnLead, New replays nothing: the server calls Load when
// its broker starts to lead a partition of __share_group_state and Unload
// when it stops (load.go). A loaded partition brings back the groups whose
// membership records it holds and the share-partitions whose state it
// holds, as New does for every partition; Unload drops them without
// writing (their acquired records are the new leader's to hand out
// again). Membership requests for a group whose partition is not loaded
// answer NOT_COORDINATOR; Acquire and Acknowledge of a share-partition
// whose state partition is not loaded, NOT_LEADER_OR_FOLLOWER. Nothing is
// written to a partition that is not loaded (no initialization, no
// snapshot). The delivery counts of acquisitions are written behind by a
// fourth goroutine, so records acquired on a lost leader come back on the
// next one with their counts (on one broker they are written with the
// next change of the share-partition).
//
// With Config.State as well (the server's cluster), serving and storage
// split as in Kafka (remote.go): a share-partition is served by the
// broker whose Reader leads its data partition (ErrNotLeader:
// NOT_LEADER_OR_FOLLOWER), which reads its state from the leader of its
// state partition (ReadShareGroupState) at the first Acquire or
// Acknowledge, writes every change there (WriteShareGroupState, through
// StateClient; acknowledgements before they are answered, the rest
// behind, from the fourth goroutine), and drops it without writing on
// StopServing or when its leader epoch moved. A loaded state partition
// serves membership as above and keeps, instead of served
// share-partitions, a view of every state written to it, from which it
// answers reads and writes snapshots. Records carry the writer's leader
// epoch; once a newer leader read the state, older ones are fenced
// (ErrFenced); a write built on an older state epoch than the stored
// one (the state was reset or deleted since) is refused too
// (ErrStateFenced). The group's coordinator initializes the partitions it
// assigns, resets and deletes state (AlterShareGroupOffsets,
// DeleteShareGroupOffsets, DeleteGroups) through the state partitions'
// leaders, with administrative snapshots (remote_admin.go); a data
// partition's leader drops what it holds of a reset state when a member
// starts a share session there (Revalidate) or when its write is refused,
// and releases at once the records of a member its coordinator removed
// (ReleaseMember).
//
// # Concurrency
//
// Every method is safe for concurrent use. Each group has a mutex for its
// membership; each share-partition has its own, so fetches and
// acknowledgements of different partitions never wait for each other, and
// the fetch path takes no group lock. Each __share_group_state partition
// has an RWMutex held for reading around an append and the in-memory
// commit after it, and for writing around a snapshot.
//
// Lock order: group.mu, then statePart.mu, then sharePartition.mu, then
// the leaves: Coordinator.mu, statePart.liveMu, the timer heap's and the
// dead-letter queue's mutexes. Config.Topics, GroupConfigs and OtherGroup
// may be called with locks held and must not call the Coordinator;
// Reader methods are called with a share-partition's lock held. Available
// and MemberGone are called with no lock held, and DLQWriter methods from
// the dead-letter goroutine with none held.
//
// Lock expiries and delays are kept in one heap ordered by each
// share-partition's next deadline and served by one goroutine and one
// Clock timer, at the exact deadline, with no timer per record. Three
// goroutines run in the background (deadlines, dead letters, compaction;
// a fourth with Config.LoadOnLead writes acquisitions behind)
// and one Clock timer per member measures its session. Close stops all of
// them and waits. Time comes only from the Clock (by default the time
// package), so tests run under testing/synctest.
//
// # Usage
//
//	c, err := share.New(share.Config{
//		Store:        shareStateStore,  // __share_group_state partitions
//		Reader:       partitions,       // batch headers, offsets
//		DLQ:          deadLetters,      // appends to dead-letter topics
//		Topics:       metadata.ShareTopics,
//		GroupConfigs: metadata.GroupConfigs,
//		Available:    fetchWaiters.WakeShare,
//		MemberGone:   shareSessions.DropMember,
//		OtherGroup:   groups.Exists,
//		Logger:       logger,
//	})
//	if err != nil { ... }
//	defer c.Close()
//
//	resp := c.ShareGroupHeartbeat(share.WithClientInfo(ctx, ci), req)
//	ranges, kerr := c.Acquire(share.AcquireOptions{Group: g, Member: m, Partition: tp, MaxRecords: 500}, nil)
//	c.AcknowledgeAll(g, m, acks, req.IsRenewAck) // acks[i].Err: each partition's outcome
//	c.TopicsChanged() // after CreateTopics, DeleteTopics, CreatePartitions, delivery.delay.ms changes
//
//	// In a cluster (Config.LoadOnLead), from the leadership callbacks:
//	err = c.Load(p) // this broker leads partition p of __share_group_state
//	c.Unload(p)     // it no longer does
//	c.StopServing(tp) // with Config.State: it no longer leads data partition tp
//	resp := c.WriteShareGroupState(req) // and ReadShareGroupState: requests from other brokers
package share
