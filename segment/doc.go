// Package segment stores one segment of a partition log: a .log file of
// record batches and two sparse, memory-mapped indexes. It knows offsets,
// byte positions and timestamps; it knows nothing of topics or the network.
//
// # Files
//
// A segment whose first offset is B is three files named by B zero-padded
// to 20 digits, as Kafka names them:
//
//	00000000000000000000.log        record batches (magic 2), back to back,
//	                                exactly as the producer sent them with the
//	                                broker-assigned base offset written in
//	00000000000000000000.index      offset index, 8-byte entries
//	00000000000000000000.timeindex  time index, 12-byte entries
//
// Offset index entry (big-endian):
//
//	0       4        8
//	+-------+--------+
//	| rel   | pos    |   rel = batch base offset - B (uint32)
//	+-------+--------+   pos = byte position of that batch in .log (uint32)
//
// Time index entry (big-endian):
//
//	0                8       12
//	+----------------+-------+
//	| timestamp      | rel   |   timestamp = largest max timestamp of any
//	+----------------+-------+   batch so far (int64); rel = base offset - B
//	                             of the batch that carried it (uint32)
//
// A segment holding abort markers of transactions also has
//
//	00000000000000000000.txnindex   aborted transactions, 34-byte entries
//
// in Kafka's layout (big-endian):
//
//	0     2               10              18              26              34
//	+-----+---------------+---------------+---------------+---------------+
//	| ver | producer id   | first offset  | last offset   | last stable   |
//	+-----+---------------+---------------+---------------+---------------+
//	ver = 0; first offset = the transaction's first offset in the partition
//	(possibly in an earlier segment); last offset = its abort marker's, in
//	this segment; last stable = the partition's last stable offset once it
//	was aborted (a search for offsets below X stops at the first entry
//	whose last stable offset is at or past X).
//
// Entries are appended by the caller (AppendAbortedTxn) with plain writes
// as markers are appended, read when first needed and kept in memory, and
// the file is synced when the segment is sealed or closed. Recovery
// (OpenOptions.Recover) removes it: the caller rebuilds it from the
// markers, since an entry's first offset comes from producer state the
// segment does not know.
//
// An offset index entry is added for a batch when at least
// index.interval.bytes of log have been written since the last entry; a time
// index entry is added with it when the largest timestamp grew, and once more
// when the segment is sealed. Lookups binary-search the mapped index for the
// greatest entry at or below the target and then walk batch headers forward.
//
// The active segment keeps its index entries in memory, at most
// segment.index.bytes of each index (a full index makes the log roll).
// Sealing or closing a segment writes both index files with plain writes
// and syncs them, so a cleanly closed segment's entry count is its file
// size divided by the entry size; a sealed segment then maps them
// read-only. Nothing is ever written through a mapping: on a full file
// system a write returns ENOSPC instead of faulting on an unbacked page.
// Loading a cleanly closed segment checks its indexes against the log
// (entries in order and inside the log, whole batches from the last entry
// to the end) and rebuilds them from a scan if the check fails. A segment
// opened for recovery ignores its index files and rebuilds them from a
// scan of the log.
//
// # Cleaned segments
//
// The log cleaner writes a new segment with a Builder: batches in offset
// order, some of them rewritten with fewer records and with gaps between
// their offsets, under the temporary names FileName(base, ext) +
// CleanedSuffix. Its owner renames the files into place and opens the
// segment from the Meta the Builder returns. A segment whose files are
// about to be renamed over or removed while readers hold it is first
// retired (Retire): it maps everything it has and never opens its files
// by path again, so those readers keep reading the bytes they were
// promised.
//
// # Open files and mappings
//
// A segment opens what it needs when it needs it: .log for writing while
// it takes appends or syncs, a read-only mapping of .log (and, once sealed,
// of its index files) while it is read. A FileCache shared by all segments
// of a broker bounds what idle segments keep open and evicts the least
// recently used; its Stats report what it holds and has evicted. A segment opened from the Meta its log recorded at a
// clean close touches none of its files until it is first read (or, the
// active one, appended to), when its indexes are checked. So a broker opens
// thousands of partitions quickly and holds files and mappings in
// proportion to what is being used, not to what is stored.
//
// # Format version
//
// FormatVersion names this layout. To change it, bump the constant, keep a
// reader for the old layout, and convert (or rebuild indexes) on open; the
// .log format is Kafka's and does not change.
//
// # Concurrency
//
// One goroutine appends (the owning log serializes appends, rolls and
// seals). Any number of goroutines may call Read, FindTimestamp, Walk and
// the accessors concurrently with the appender. A reader must hold a
// reference (Acquire) while it reads and while it uses a slice returned by
// Read: a segment referenced by anyone but its owner is never unmapped by
// the FileCache, and the last Release unmaps it, so a slice stays valid
// until the Release that matches its Acquire, even if the segment is
// deleted meanwhile. Reads never reach past the bytes appended, so a
// mapping is never touched beyond the end of its file. Lock order: a
// segment's mu, its idxMu, then the FileCache's lock (which only tries
// segment locks).
//
// # Usage
//
//	s, err := segment.Create(dir, 0, cfg)
//	err = s.Append(batch, &hdr)        // hdr from record.Validate, offset set
//	if s.Acquire() {
//	    b, err := s.Read(off, 1<<20)   // zero-copy view of whole batches
//	    conn.Write(b)
//	    s.Release()
//	}
package segment
