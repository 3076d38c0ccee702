// Package raftlog is the metadata log of a cluster: a meta.Log whose
// entries are replicated by go.etcd.io/raft (v3) across the voters named
// by controller.quorum.voters. The consensus is the library's; this
// package gives it durable storage, a transport and the driving loop, the
// way etcd's raftexample does, and turns its committed entries into
// meta.Entry values for the store.
//
// A proposal made on any node reaches the leader (raft forwards it) and
// Propose returns once the entry is committed and applied on the node
// that proposed it. A proposal raft loses (the leader changed while it
// was in flight) is proposed again, with the same id, after two election
// timeouts; an id applied recently is not applied again. The quorum's
// leader is the cluster's controller (package cluster acts on it).
//
// # Learners
//
// A broker-only node (process.roles=broker) is a raft learner
// (Config.Learner): it receives and applies the log, and its proposals
// are forwarded to the leader like a follower's, but it never votes nor
// leads, so its death never costs the quorum a vote. Its node.id is not
// in controller.quorum.voters. It joins by connecting: it dials every
// voter (it has no listener of its own), and the voters' leader proposes
// a ConfChange AddLearnerNode for every connected node that is not a
// member yet, again each second until it is. The change is an entry of
// the log, so it survives restarts in the WAL and, after it, in every
// snapshot's configuration; applying it takes a snapshot at once, as a
// new learner far behind is sent the leader's snapshot and raft ignores
// one whose configuration does not name its receiver. A fresh learner
// does not bootstrap: it starts empty and gets the log, configuration
// changes included, or that snapshot from the leader. Learners stay
// members when they go away (the leader's messages to them are dropped
// until they return), until RemoveLearner takes one out (a ConfChange
// RemoveNode, proposed from any node until applied; UnregisterBroker);
// one that connects again afterwards is added again.
//
// # Changing the voters
//
// AddVoter promotes a learner that runs a controller listener (a
// controller whose node.id is not a voter: until it is one it dials the
// voters as a learner does) with a ConfChange AddNode whose Context is
// its controller address; RemoveVoter proposes RemoveNode, a leader
// removing itself handing its leadership over first. Both run on the
// leader only (ErrNotLeader elsewhere), one at a time (ErrChangePending
// while raft would drop the change), never removing the last voter. The
// address book (which address each voter listens at) is built from
// controller.quorum.voters, the snapshot's book and the configuration
// entries applied (voters.go), so a node restarted with the first voter
// list finds the voters added since. Messages from a removed voter are
// dropped and it is not added back as a learner when it connects: one
// that never learned of its removal cannot disrupt the quorum, and its
// node.id is retired.
//
// # Describing the quorum
//
// Quorum, on the leader, gives each voter's and learner's log end (raft's
// match index), when the leader last heard from it, and when its log last
// reached the leader's end (noted at each tick); other nodes return
// ErrNotLeader (DescribeQuorum forwards to the leader).
//
// # Entries
//
// A normal entry's data is JSON: {"id":u64,"records":[record...]}, each
// record a meta.Record with its "type" (the same fields as the local
// log's values). Conf-change entries are raft's own: the voter list given
// at the first start (each entry's Context the voter's address, in
// clusters started since voters can change), the learners added since,
// and the voters added (Context: the address) and removed.
//
// # Disk
//
// <data>/__raft/ holds:
//
//	wal-<seq, 16 hex digits>     write-ahead log: records back to back
//	snap-<index, 16 hex>.snap    a snapshot: crc32c u32 | raftpb.Snapshot
//
// A WAL record (big-endian):
//
//	length u32 | crc32c u32 | type u8 | data
//
// length and the CRC-32C cover type and data; type 1 is a raftpb.Entry,
// type 2 a raftpb.HardState (both protobuf). Entries and the hard state of
// each Ready are appended and fdatasynced before any message of that
// Ready is sent, as raft requires. At open, the newest snapshot that
// decodes is loaded, then every WAL file in order: a later entry replaces
// those at and after its index (an uncommitted tail a new leader
// overwrote); a torn record at the end of the newest file is cut off;
// anything else that does not decode is an error and nothing is removed.
//
// # Snapshots
//
// Once SnapshotEntries entries are applied since the last snapshot, the
// image (meta.Store's, as records) is taken at the applied index and
// written durably; the in-memory log keeps a tenth of that behind it for
// followers a little behind, and the WAL is rewritten as a new file (hard
// state and the entries after the snapshot) made durable before the older
// files and all but the two newest snapshots are removed. A follower too
// far behind receives the leader's snapshot, which replaces its image.
// Snapshot data is JSON: {"v":1,"records":[record...],
// "voters":[{"id":n,"addr":"host:port"}...],"removed":[n...]}, the last two
// absent in snapshots written before voters could change (their voters
// are controller.quorum.voters, none removed).
//
// # Transport
//
// Plain TCP on the controller listener (the address of this node in
// controller.quorum.voters), not the Kafka listener: raft must run before
// the broker serves (a node replays and catches up first), its traffic
// stays out of the client request budgets and limits, and a quorum can
// be firewalled apart from clients. Framing is in transport.go: a hello
// naming the sender and the cluster id, then length-prefixed
// raftpb.Message protobufs. Each voter keeps one outgoing connection per
// voter, dialed at its address in the address book; a learner's
// connection to a voter carries both directions, and so does that of a
// controller not yet a voter (it also listens: once it is a voter the
// others dial it). A
// message that cannot be queued or written is dropped and raft is told
// the peer is unreachable (raft retries).
//
// # Concurrency
//
// One goroutine (run) owns the raw node, the storage, the WAL and the
// address book; apply is called from it, in log order. Propose,
// LeaderID, LastContact, CaughtUp, Voters, Learners, Quorum,
// RemoveLearner, AddVoter and RemoveVoter are safe from any goroutine
// (Quorum and the changes hand their work to run). Close stops the
// goroutine and the transport and waits for them.
//
// # Usage
//
//	voters, err := raftlog.ParseVoters("1@h1:9093,2@h2:9093,3@h3:9093")
//	l, err := raftlog.Open(raftlog.Config{Dir: dir, NodeID: 1, Voters: voters, ClusterID: id})
//	// a broker-only node: NodeID 4, not a voter
//	l, err := raftlog.Open(raftlog.Config{Dir: dir, NodeID: 4, Voters: voters, Learner: true, ClusterID: id})
//	// a controller to add as a voter: NodeID 5, its own listener
//	l, err := raftlog.Open(raftlog.Config{Dir: dir, NodeID: 5, Voters: voters, ListenAddr: "h5:9093", ClusterID: id})
//	err = leader.AddVoter(ctx, 5, "h5:9093") // once it caught up as a learner
//	st, err := meta.Open(meta.Config{DataDir: data, NodeID: 1, Log: l})
package raftlog
