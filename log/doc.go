// Package log stores one partition: a directory of segments (package
// segment) in offset order, the last of which takes appends. It assigns
// offsets, rolls segments, applies retention, makes appends durable with
// group-committed fdatasync, and recovers from an unclean stop. It knows
// nothing of topics or the wire protocol.
//
// # Directory
//
//	<dir>/00000000000000000000.log        segment files, named by base
//	<dir>/00000000000000000000.index      offset (package segment)
//	<dir>/00000000000000000000.timeindex
//	<dir>/00000000000000004096.log        ...
//	<dir>/log.checkpoint                  recovery state, below
//
// log.checkpoint (big-endian, replaced atomically by write, fsync, rename,
// fsync of the directory), version 2:
//
//	0        1        2                10               18       22
//	+--------+--------+----------------+----------------+--------+
//	|version | clean  | recovery point | log start off. | count  |
//	+--------+--------+----------------+----------------+--------+
//	| count rows of 40 bytes, one per segment in offset order:   |
//	| base, size, next offset, max timestamp, first timestamp    |
//	| (int64 each; segment.Meta)                                 |
//	+--------+---------------------------------------------------+
//	| crc32c | of everything before it                           |
//	+--------+
//
// The rows are written only with clean set (count is 0 otherwise): a clean
// open takes each segment's size, offsets and timestamps from them, so it
// reads no segment file but the active one's indexes. Version 1 (22 bytes:
// no count, no rows) is still read; its logs open as before, reading every
// segment's indexes once.
//
// clean is 1 only while the log is closed cleanly; the first append after
// Open clears it (durably) before writing. The recovery point is an offset
// below which every segment is sealed and synced with its indexes. When
// Open finds clean unset, every segment at or past the recovery point is
// scanned batch by batch, indexes are rebuilt and a torn or corrupt tail is
// truncated before the log takes appends. A cleanly closed log opens in time
// proportional to its number of segments, not its bytes, and maps nothing:
// segments are mapped when first read (package segment, FileCache).
//
// A new log (an empty directory) is created without an fsync: the first
// append writes the checkpoint, which syncs the directory (and the
// parent's entry for it), before the batch can be acknowledged. Callers
// creating many logs at once and needing their creation durable call
// durable.SyncFS once afterwards.
//
// # Durability
//
// Append writes to the page cache. Sync returns once every batch appended
// before the call is on disk: one fdatasync runs at a time, and every
// caller waiting when it finishes whose data it covered is released by it
// (group commit). DurableOffset is the offset below which everything is on
// disk; Config.OnDurable is told each time it advances. A batch that no
// caller syncs is synced in the background at most flush.max.delay.ms
// (FlushMaxDelayMs) after it is appended; flush.messages and flush.ms add
// flushes as in Kafka. A failed write or fsync is sticky: every later Append and Sync
// returns it until the log is reopened, so nothing is acknowledged that was
// not stored. Reads keep working after such an error.
//
// Config.Stats, one shared by every log of a broker, counts each fsync
// round's latency, the bytes it made durable and the batches it covered
// (the group commit's size), for the broker's metrics. Counting costs two
// plain additions per append, under the append lock, and three atomic
// adds per fsync.
//
// # Concurrency
//
// Every method is safe for concurrent use. Appends, rolls, retention and
// DeleteRecords serialize on one lock; reads take a shared lock only to
// pick and reference a segment, and run concurrently with appends. Lock
// order: appendMu, then segMu, then flusher.
//
// # Usage
//
//	l, err := log.Open(dir, log.Config{})
//	base, err := l.Append(batch, &hdr)   // hdr from record.Validate
//	err = l.Sync()                       // acks=all
//	v, err := l.Read(base, l.NextOffset(), 1<<20, true)
//	conn.Write(v.Data)
//	v.Release()
package log
