// Package coordstate keeps a coordinator's state in the partitions of an
// internal topic (__consumer_offsets for consumer groups;
// __transaction_state and __share_group_state for the transaction and
// share-group coordinators), the way Kafka keeps it: key/value records
// appended in batches, fsynced before the coordinator answers, replayed at
// start, and kept bounded by snapshots of the live state.
//
// A Store is generic over the coordinator's record type, any struct of a
// Key and a Value byte slice (group.Record, ...), so each coordinator uses
// it through its own Store interface without knowing this package.
//
// # Layout
//
// Each Append is one uncompressed record batch (magic 2, no producer id)
// in the partition's log: all of its records are stored, or none. A
// record's key and value are the coordinator's bytes, as given; a nil
// value is a tombstone. A snapshot appends the live records in batches of
// at most 1 MiB, fsyncs them and only then advances the partition's log
// start offset to the first of them, so a crash in between leaves the old
// records readable and the replay sees them followed by the snapshot.
//
// # Concurrency
//
// Every method is safe for concurrent use. Appends to one partition are
// serialized by the partition; a coordinator must not Append to a
// partition while it snapshots it.
//
// # Usage
//
//	st := coordstate.New[group.Record]("__consumer_offsets", topic.Partition)
//	off, err := st.Append(p, recs)               // durable when it returns
//	off, err = st.AppendNoSync(p, recs)          // durable with the next Append (or flush)
//	err = st.Replay(p, func(off int64, r group.Record) error { ... })
//	err = st.Snapshot(p, live)                   // compacts partition p
package coordstate
