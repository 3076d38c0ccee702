package meta

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferrymq/ferry/log"
	"github.com/ferrymq/ferry/record"
)

// Entry is a set of records committed together: all of them or none.
type Entry struct {
	// Offset is the entry's position in the log (the offset of its first
	// record), set by the log.
	Offset int64
	// Records are the changes, applied in order.
	Records []Record
	// Snapshot marks an entry that holds the whole image (a replicated
	// log's snapshot): the image becomes exactly what Records describe.
	Snapshot bool
}

// Snapshotter is implemented by a Log that bounds itself with snapshots
// of the image (a replicated log). Store calls SetSnapshotSource before
// Replay with a function that returns the image as records; the log calls
// it from the goroutine that applies entries, so the image it returns is
// the one after the last entry applied.
type Snapshotter interface {
	SetSnapshotSource(func() []Record)
}

// Log holds the metadata records in order. Store drives it the way an
// application drives etcd's raft: it proposes entries, and it changes its
// image only when the log hands it a committed entry, through the apply
// function given to Replay, in log order. The local log commits an entry
// once it is fsynced; a replicated log commits it once a quorum holds it,
// and hands over entries proposed by other nodes the same way, so that it
// can replace the local one without a change to Store's callers.
type Log interface {
	// Replay calls apply for every committed entry, in order, and keeps
	// apply to call for each entry committed later. Store calls it once,
	// before any Propose; an error from apply stops the replay and is
	// returned.
	Replay(apply func(Entry) error) error
	// Propose appends recs as one entry and returns once the entry is
	// committed and apply has returned for it, so the caller sees its
	// effect in the image. An error means the entry was not acknowledged:
	// it may still survive (written but not synced), and then it is
	// applied at the next start.
	Propose(recs []Record) error
	// Close stops the log; Propose fails after it.
	Close() error
}

// MetadataDir is the directory of the local metadata log in the data
// directory, named as KRaft names its log.
const MetadataDir = "__cluster_metadata-0"

// localLog is the Log of a single broker: a log (package log) in
// <data>/__cluster_metadata-0, one record batch per entry, each record's
// key its type and its value the Record as JSON. An entry is committed
// once its batch is fsynced.
type localLog struct {
	// mu serializes proposals, so entries are appended and applied in
	// order, and guards the fields in it.
	mu struct {
		sync.Mutex
		apply func(Entry) error
		buf   []byte // batch encoding, reused
	}
	log *log.Log
}

// openLocalLog opens (creating) the metadata log of dataDir.
func openLocalLog(dataDir string, logger *slog.Logger) (*localLog, error) {
	l, err := log.Open(filepath.Join(dataDir, MetadataDir), log.Config{
		RetentionMs:  -1,
		NoDelete:     true,
		SegmentBytes: 64 << 20,
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("meta: open metadata log: %w", err)
	}
	return &localLog{log: l}, nil
}

func (m *localLog) Replay(apply func(Entry) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.apply = apply
	var ferr error
	err := m.log.Walk(m.log.LogStartOffset(), func(batch []byte, h *record.Header) bool {
		e := Entry{Offset: h.BaseOffset}
		ferr = record.ForEach(batch, func(rec *record.Record) error {
			r, err := decodeRecord(rec.Key, rec.Value)
			if err != nil {
				return fmt.Errorf("meta: record at %d: %w", h.BaseOffset+int64(rec.OffsetDelta), err)
			}
			e.Records = append(e.Records, r)
			return nil
		})
		if ferr == nil {
			ferr = apply(e)
		}
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// decodeRecord decodes one record of the local log.
func decodeRecord(key, value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return r, err
	}
	r.Type = RecordType(key)
	return r, nil
}

func (m *localLog) Propose(recs []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := make([]record.Record, len(recs))
	for i := range recs {
		recs[i].V = FormatVersion
		v, err := json.Marshal(&recs[i])
		if err != nil {
			return err
		}
		rs[i] = record.Record{Key: []byte(recs[i].Type), Value: v}
	}
	m.mu.buf = record.AppendBatch(m.mu.buf[:0], record.Batch{
		BaseTimestamp: time.Now().UnixMilli(),
		ProducerID:    -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: rs,
	})
	h, err := record.Validate(m.mu.buf)
	if err != nil {
		return err
	}
	off, err := m.log.Append(m.mu.buf, &h)
	if err != nil {
		return err
	}
	if err := m.log.Sync(); err != nil {
		return err
	}
	if m.mu.apply == nil {
		return nil
	}
	return m.mu.apply(Entry{Offset: off, Records: recs})
}

func (m *localLog) Close() error { return m.log.Close() }
