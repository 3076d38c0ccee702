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
//	<dir>/00000000000000000000.txnindex   aborted transactions, if any
//	<dir>/00000000000000004096.log        ...
//	<dir>/log.checkpoint                  recovery state, below
//	<dir>/cleaner.checkpoint              compaction state, below
//	<dir>/00000000000000000000.swap       a committed swap (compaction)
//	<dir>/00000000000000000000.log.cleaned  a segment being written by
//	                                      the cleaner (also .index, ...)
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
// The aborted-transaction index (.txnindex, package segment) is kept by
// the caller, which knows transactions: AppendAbortedTxn adds an entry to
// the segment holding the abort marker, AbortedTxns finds those a
// read_committed read overlaps. Recovery removes the index of every
// segment it scans and calls Config.Recovered, which rebuilds it from the
// markers, before the recovery point moves past those segments.
//
// A new log (an empty directory) is created without an fsync: the first
// append writes the checkpoint, which syncs the directory (and the
// parent's entry for it), before the batch can be acknowledged. Callers
// creating many logs at once and needing their creation durable call
// durable.SyncFS once afterwards.
//
// # Compaction
//
// A log whose cleanup.policy has "compact" (Config.Compact) and that has
// a Cleaner keeps only the newest record of each key, as Kafka's log
// cleaner does. The log is split at firstDirty: below it every key
// appears at most once (cleaned); from it to the first uncleanable
// offset it is dirty. The active segment is never cleaned, nor a segment
// whose background seal has not finished, nor (min.compaction.lag.ms) a
// segment whose newest timestamp is younger than that, nor one reaching
// past Config.CleanLimit (a replica's high watermark). A log is due when
// its dirty bytes are more than min.cleanable.dirty.ratio of its bytes,
// when a dirty segment's first timestamp is older than
// max.compaction.lag.ms (the active segment rolls at that age), or when
// the delete horizon of a tombstone or a transaction marker has passed.
//
// A pass maps the key of every dirty record to its newest offset (a
// fixed-memory map of 128-bit key hashes; as much of the dirty part as
// fits, the rest waits for the next pass), then rewrites the segments
// from the start of the log to the end of what it mapped, in groups of
// consecutive segments totalling at most segment.bytes (so segments that
// cleaning shrank are merged), each into one new segment of the group's
// base offset. A record stays if it is the newest of its key, or past
// the mapped part; a record without a key goes. A tombstone stays until
// its delete horizon: the first pass that keeps it gives its batch a
// horizon of delete.retention.ms later (KIP-534: the batch's base
// timestamp becomes the horizon, flagged in its attributes), and the
// first pass after that removes it. A batch some of whose records go is
// rewritten with the same base offset and last offset delta (record
// offsets never change; gaps remain), compressed as it was; the newest
// batch of a producer the partition still tracks stays, empty if need
// be, so its sequence numbers survive. A group from which nothing goes is
// left as it is.
//
// Transactions: a pass maps and cleans nothing at or past the owner's
// last stable offset (Config.LastStableOffset), so a transaction not yet
// decided is left whole. The batches of aborted transactions (found
// through the aborted-transaction index) are not mapped, so they
// supersede no committed record, and are removed. A transaction marker
// (commit or abort) stays while a batch of its transaction stays, even
// one emptied as its producer's newest (a batch without its marker would
// read as a transaction still open); a pass reads the log from its
// start, so it sees every batch of a transaction before the marker. Once
// none stays, the marker is kept until its delete horizon, as a
// tombstone is (the pass that finds it so gives its batch a horizon of
// delete.retention.ms later), and the first pass after that removes it.
// The new segment's .txnindex holds the entries of the segments it
// replaces but those of the abort markers removed. Other control batches
// stay whole.
//
// Swaps are atomic across crashes. A group's new segment is written as
// <base>.log.cleaned (and .index.cleaned, ...), synced, and the
// directory synced. Then, under the append lock, the log's checkpoint is
// marked unclean and a swap manifest <base>.swap is written durably
// (write, fsync, rename, fsync of the directory): that is the commit.
// The old segments are retired (mapped, so readers holding them keep
// their bytes), the old segments after the first are removed, the
// cleaned files renamed over the first's, and the new segment served.
// At the end of the pass the directory is synced, the manifests removed,
// the directory synced again, and cleaner.checkpoint written. Open first
// finishes every swap whose manifest it finds (removing the old
// segments' files and renaming the .cleaned ones: every step may be done
// again), then removes any .cleaned file left, which only copies data
// the log still holds. A crash at any step leaves the old segments or
// the new one, never both and never neither. A manifest that does not
// decode, or names a cleaned .log of another size, keeps the log from
// opening and touches nothing.
//
// <base>.swap (big-endian):
//
//	version u8 (1) | base i64 | size i64 | next offset i64 |
//	n u32 | n × old segment base i64 (base first) |
//	m u8 | m × (length u8, extension) | crc32c u32
//
// cleaner.checkpoint (big-endian, replaced atomically):
//
//	version u8 (1) | first dirty offset i64 | earliest delete horizon
//	i64 (math.MaxInt64: none) | crc32c u32
//
// A missing or unreadable cleaner.checkpoint makes the whole log dirty
// again, which costs a pass and loses nothing.
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
// pick and reference a segment, and run concurrently with appends. A
// cleaning pass holds the log's clean lock and reads and writes without
// appendMu, which it takes only to swap a group in; Close and Delete
// stop a pass and wait for it, and a replica's truncation waits for it
// between PauseCleaning and ResumeCleaning. Config.ProducerLastOffsets
// and Config.CleanLimit are called with the clean lock held and no other. Lock order: clean, then appendMu,
// then segMu, then flusher; a Cleaner's lock is taken with none of a
// log's held.
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
