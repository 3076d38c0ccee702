// Package record parses and validates the header of a Kafka record batch
// (magic 2) without copying the records inside it (a produced batch's
// records are walked, not decoded, to check them), rewrites the
// broker-assigned fields in place, builds small uncompressed batches for
// the broker's own internal logs, converts message sets of the older
// formats v0/v1 (Produce v0-v2) into batches v2 (legacy.go), and rewrites
// a batch with only some of its records for the log cleaner (retain.go:
// RawRecords, Retain, and CheckKeys for compacted topics). Compression
// codecs (codec.go) are used only off the hot path: by that conversion, by
// recompression for a topic's compression.type (which also checks the
// records it decompresses) and by lookups inside a compressed batch.
//
// # Layout
//
// A record batch v2, all integers big-endian:
//
//	offset  size  field
//	     0     8  baseOffset            (assigned by the broker)
//	     8     4  batchLength           (bytes after this field)
//	    12     4  partitionLeaderEpoch  (assigned by the broker)
//	    16     1  magic                 (2)
//	    17     4  crc                   (CRC32C of bytes 21..end)
//	    21     2  attributes            (bits 0-2 codec, 3 timestamp type,
//	                                     4 transactional, 5 control,
//	                                     6 delete horizon: KIP-534)
//	    23     4  lastOffsetDelta
//	    27     8  baseTimestamp
//	    35     8  maxTimestamp
//	    43     8  producerId
//	    51     2  producerEpoch
//	    53     4  baseSequence
//	    57     4  recordCount
//	    61     …  records (possibly compressed)
//
// The CRC covers attributes through the end of the batch, so the base offset
// and the partition leader epoch can be rewritten in place without computing
// a new checksum.
//
// A produced batch holds recordCount = lastOffsetDelta+1 records with
// offset deltas 0, 1, 2, ... (Validate, CheckRecords). A batch the log
// cleaner rewrote keeps its lastOffsetDelta but may hold fewer records,
// with gaps in their deltas, or none at all (ValidateStored); with the
// delete horizon bit set, baseTimestamp is the time after which the
// cleaner may remove its tombstones, and record timestamps are still
// baseTimestamp plus their delta.
//
// # Concurrency
//
// Every function is pure: it reads or writes only the slice it is given and
// is safe to call from any goroutine. No function panics on any input.
//
// # Usage
//
//	h, err := record.Parse(batch)     // header fields, bounds checked
//	h, err = record.Validate(batch)   // plus CRC and record count
//	err = record.CheckRecords(&h, batch) // a produced batch: its records
//	record.SetBaseOffset(batch, 42)   // in place, CRC unaffected
package record
