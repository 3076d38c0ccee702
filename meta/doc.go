// Package meta is the broker's metadata, in the shape of Kafka's KRaft: a
// log of metadata records (topics, partitions, configs, producer-id
// blocks, SCRAM credentials, ACLs, client quotas), the in-memory image replayed from it, and the partitions that
// the image names, opened on this broker. It owns the topic lifecycle
// (create, grow, delete), the topic and broker config definitions with
// Kafka's names, defaults and validation, producer-id blocks and
// meta.properties. It runs the broker's log cleaner (log.Cleaner, from
// the log.cleaner.* configs) for the partitions of topics whose
// cleanup.policy has compact, internal topics excepted: their
// coordinators keep them bounded with snapshots (package coordstate). It knows nothing of the wire protocol: package server
// calls it and turns its errors into Kafka codes.
//
// # The log
//
// Store drives its Log the way an application drives etcd's raft: a
// change is proposed as one entry, and the image changes only when the log
// hands a committed entry to Store's apply function, in log order. A
// single broker's log is a log (package log) in
// <data>/__cluster_metadata-0 with one record batch per entry; an entry is
// committed once fsynced. A cluster's (Config.Replicated) is package
// raftlog's, replicated by go.etcd.io/raft: it commits an entry on a
// quorum, hands over the entries of other nodes the same way, and bounds
// itself with snapshots of the image (Snapshotter; an entry with Snapshot
// set replaces the image).
//
// Each record's key is its type, its value a JSON object (Record):
//
//	key           value (JSON)
//	topic         {"v":1,"topic":name,"topic_id":hex,"partitions":n,"internal":b,"configs":{...}}
//	partitions    {"v":1,"topic":name,"topic_id":hex,"partitions":n}
//	remove_topic  {"v":1,"topic":name,"topic_id":hex}
//	config        {"v":1,"resource":"topic"|"broker","topic_id":hex,"key":k,"value":v|absent}
//	              {"v":1,"resource":"group","name":group,"key":k,"value":v|absent}
//	producer_ids  {"v":1,"next_producer_id":n}
//	scram         {"v":1,"user":u,"mechanism":"SCRAM-SHA-256"|"SCRAM-SHA-512",
//	               "scram":{"salt":b64,"iterations":n,"stored_key":b64,"server_key":b64}}
//	remove_scram  {"v":1,"user":u,"mechanism":m}
//	acl           {"v":1,"acl":{"resource_type":t,"resource_name":s,"pattern_type":p,
//	               "principal":"User:x","host":h,"operation":o,"permission":a}}
//	remove_acl    {"v":1,"acl":{...the same fields}}
//	client_quota  {"v":1,"entity":[{"type":"user"|"client-id"|"ip","name":s|absent}],
//	               "key":"producer_byte_rate",...,"value":"1048576"|absent}
//
// ACL fields are numbered as Kafka's wire numbers them (resource type 2
// topic, 3 group, 4 cluster, 5 transactional id; pattern 3 literal, 4
// prefixed; operation 2 all ... 12 idempotent write; permission 2 deny, 3
// allow). A quota entity name that is absent is the entity type's
// default. SCRAM credentials hold what RFC 5802 lets a server keep: the
// salt, the iteration count, StoredKey and ServerKey, never a password.
//
// A cluster adds (see cluster.go; docs/cluster.md):
//
//	broker            {"v":1,"broker":id,"host":h,"port":p,"fenced":b,"if_registered":b}
//	remove_broker     {"v":1,"broker":id}
//	controller        {"v":1,"controller":id,"host":h,"port":p}
//	topic, partitions + "assignments":[[replica,...],...]
//	partition_change  {"v":1,"topic_id":hex,"partition":i,"leader":id,"leader_epoch":e,
//	                   "partition_epoch":e,"isr":[...],"replicas":[...],
//	                   "target_replicas":[...],"adding_replicas":[...],
//	                   "expect_partition_epoch":e}
//	producer_ids      + "broker":id,"block":n
//
// A partition_change carries the partition's whole new state and applies
// only while the partition epoch is still the one it expects, so two
// changes computed from one state never both apply. A broker record with
// if_registered (the controller's fencing) changes a registered broker
// only: one unregistered (remove_broker) after the fencing was decided
// stays gone. In a cluster a topic
// record whose name is taken is skipped (the first creation wins); a node
// opens only the partitions it holds a replica of, from Reconcile, after
// the record commits.
//
// # The data directory
//
//	<data>/meta.properties          cluster.id and node.id, as Kafka keeps them
//	<data>/__cluster_metadata-0/    the metadata log
//	<data>/<topic>-<partition>/     a partition (package partition), with
//	    partition.metadata          "version: 0\ntopic_id: <hex>\n"
//
// # Lifecycle
//
// A topic's partitions are created and opened before its record is
// proposed, so a recorded topic always has its partitions; if the
// proposal fails, what that creation made is removed, and nothing else.
// A non-empty directory in the way of a new partition (an older topic of
// the same name, or one the metadata log lost) is renamed
// <topic>-<partition>.<id>-stray, never removed.
//
// A start deletes nothing. A partition of the image that cannot be opened
// (a segment that does not parse or open, an index or checkpoint that
// cannot be written, a partition.metadata that is unreadable or names
// another topic, ...) is offline: Topic.Partition returns ErrOffline with
// the reason, which is logged, and its files stay as they are, while every
// other partition serves; a restart once the fault is repaired serves it.
// A partition directory the image does not name is reported and left in
// place. A directory of the image that is gone is created again, empty,
// as Kafka does. Partitions are opened in parallel.
//
// # Concurrency
//
// Every method is safe for concurrent use. Topic lookups take image.mu
// shared; a Topic's configs and partitions are replaced atomically, never
// mutated, so reading them takes no lock. Changes serialize on adminMu;
// producer ids on pids. Lock order: adminMu or pids, then the log's lock,
// then image.mu, then the security image's mu (SCRAM credentials, ACLs
// and client quotas are read without a lock: each change replaces them)
// or the group configs' lock.
//
// # Usage
//
//	st, err := meta.Open(meta.Config{DataDir: dir})
//	t, err := st.CreateTopic(meta.NewTopic{Name: "orders", Partitions: 3, ReplicationFactor: 1})
//	p, err := st.Topic("orders").Partition(0) // a *partition.Partition
//	err = st.Close()
package meta
