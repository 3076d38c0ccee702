// Package shareio connects the share-group engine (package share) to the
// broker's storage: a Reader over the partitions of the metadata image
// (offsets, batch headers, the ferry-deliver-at header of delayed
// records) and a DLQWriter that appends dead letters to the groups'
// dead-letter topics. It is a package of its own because it needs both
// meta and partition, which the engine must not know and the server
// (the wire protocol only) must not hold the logic of.
//
// # Reading
//
// Batch headers are read in place from the memory-mapped segments
// (partition.Walk), without copying. A batch may carry the delivery-time
// header when it is compressed (its records cannot be seen without
// decompressing them) or when its uncompressed records contain the
// header's name; only such batches are decoded, once each, when the
// engine first reads them. For share.isolation.level=read_committed
// the last stable offset and the aborted transactions are the
// partition's (partition.LastStableOffset, AbortedTxns), as a
// read_committed Fetch reads them.
//
// # Dead letters
//
// A group's dead letters go to partition (source partition mod the
// partition count) of its errors.deadletterqueue.topic.name, which must
// have errors.deadletterqueue.group.enable=true (KIP-1191). A missing
// topic is created, with that config and num.partitions partitions, when
// the broker's errors.deadletterqueue.auto.create.topics.enable is true;
// otherwise, or when the topic does not allow dead letters, the write is
// refused for good (share.ErrDeadLetterRejected). Each dead letter is one
// record: with copy.record, the source record's key, value and headers,
// then the __dlq.errors.* headers; without, the headers alone; a source
// offset that no longer exists gets the headers alone. Records are
// appended in source-offset order, in batches of at most the topic's
// max.message.bytes, each fsynced before the next, so what a failure or a
// crash leaves written is a prefix of the run, which DeadLettersWritten
// finds by reading the dead-letter partition's records.
//
// # Concurrency
//
// Both types are safe for concurrent use and hold no lock of their own
// across a call into meta or partition.
//
// # Usage
//
//	r := shareio.NewReader(metaStore)
//	w := shareio.NewDLQWriter(metaStore, logger)
//	c, err := share.New(share.Config{Reader: r, DLQ: w, ...})
package shareio
