// Package cluster is a broker's part in a cluster of `ferry serve` nodes:
// what runs beside the wire protocol once controller.quorum.voters is set.
// It sits above meta (the metadata, on the replicated log of package
// raftlog) and partition (each replica's data), and below server, which
// asks it for the controller, starts it and stops it. It is a package of
// its own because it is a concern of its own: it talks to other brokers
// (the followers' fetches, as a Kafka client), which meta may not.
//
// # Shape
//
// Kafka's: one metadata quorum (raft, in package raftlog) holds the
// topics, the brokers and, for every partition, its replicas, in-sync
// replicas (ISR), leader and epochs; the data is replicated by followers
// fetching from their leader through the Fetch API (ReplicaID set),
// keeping the leader's offsets and leader epochs. A Node runs four loops:
//
//   - registration: the broker records itself and its advertised
//     address in the metadata once its raft node has caught up, and again
//     whenever the metadata does not show it so (a restart, an
//     UnregisterBroker). A controller-only node (process.roles=controller,
//     Config.ControllerOnly) never registers as a broker: no replica is
//     placed on it and clients are not told of it; it votes, acts as the
//     controller while it leads the quorum, and registers its Kafka
//     listener as a controller (meta.Controller), where other nodes
//     forward what only the quorum's leader answers (DescribeQuorum). A broker-only node (process.roles=broker) is a broker whose
//     raft node is a learner (package raftlog): all of this applies to it
//     but the controller's part, as it never leads the quorum.
//   - reconcile: on every metadata change (and twice a second) it opens
//     the replicas placed on this broker (meta.Store.Reconcile), gives
//     each its role from the metadata (partition.BecomeLeader or
//     BecomeFollower, at the recorded leader epoch), hands followers to
//     the fetcher of their leader, tells the server which partitions it
//     now leads or stopped leading (the coordinators load and unload
//     their internal partitions; one led again at a new leader epoch is
//     both), and, for the partitions it leads, proposes ISR changes: out
//     the followers that have not caught up for replica.lag.time.max.ms,
//     in those that caught up (partition.FollowerFetched says so), and
//     hands leadership over if its own log has a write error (a full
//     disk). A node that restarted does nothing of this until its raft
//     node has caught up with the quorum, so it never acts on a stale
//     view.
//   - fetchers (fetcher.go): one per leader broker, one Fetch for all the
//     partitions followed there. A partition first asks its leader
//     (OffsetForLeaderEpoch) where the leader's log of its newest epoch
//     ends and truncates past it (KIP-101/279); then it fetches from its
//     log end, appends (partition.AppendReplica), fdatasyncs and fetches
//     again: the offset of each fetch tells the leader that everything
//     below it is durable on the follower.
//   - controller (controller.go): only on the node whose raft node leads
//     the quorum. It fences brokers it has not heard from for
//     broker.session.timeout.ms (every voter and learner answers the
//     leader's raft heartbeats each tick), elects new leaders from the
//     ISR, takes fenced brokers out of ISRs and completes reassignments;
//     every leader.imbalance.check.interval.seconds it moves leaderships
//     back to preferred replicas (rebalance.go), as Kafka's
//     auto.leader.rebalance.enable does.
//
// Every change to a partition is a record of the metadata log,
// conditional on the partition epoch it was computed from, so the
// leader's ISR changes and the controller's elections never overwrite
// each other: the loser is dropped and recomputed.
//
// # Guarantees
//
// An acks=all produce is answered once the high watermark (the smallest
// durable log end of the ISR, package partition) passes it, with at
// least min.insync.replicas in the ISR; a new leader is always taken from
// the ISR (unless unclean.leader.election.enable), so it holds every
// acknowledged record; consumers read up to the high watermark only, so
// they never see a record a leader change could take back; a follower
// truncates what its new leader does not have before fetching.
//
// # Concurrency
//
// Each loop is one goroutine owned by the Node; Close stops them and the
// fetchers and waits. The reconcile goroutine owns the fetchers; a
// fetcher's partitions are swapped under its mutex. Calls into meta and
// partition take their locks; none of this package's locks is held
// across them.
package cluster
