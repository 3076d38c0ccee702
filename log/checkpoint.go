package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/segment"
)

// The checkpoint's layout is in doc.go. To change it, bump
// checkpointVersion, keep decoding every older version (a broker must open
// the directories an older one left) and write only the newest.
const (
	checkpointName = "log.checkpoint"
	// checkpointVersion 2 added the segment count and table; version 1
	// (22 bytes: no count, no table) is still read.
	checkpointVersion = 2
	checkpointHeader  = 22 // version, clean, recovery point, log start, count
	checkpointRow     = 40 // base, size, next offset, max and first timestamp
	checkpointV1Size  = 22
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type checkpoint struct {
	clean         bool
	recoveryPoint int64
	logStart      int64
	// segments describes every segment when clean is set (a version 1
	// checkpoint has none), in base offset order.
	segments []segment.Meta
}

func readCheckpoint(dir string) (checkpoint, error) {
	path := filepath.Join(dir, checkpointName)
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, err
	}
	cp, err := decodeCheckpoint(b)
	if err != nil {
		return checkpoint{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return cp, nil
}

// decodeCheckpoint parses a checkpoint of any version.
func decodeCheckpoint(b []byte) (checkpoint, error) {
	be := binary.BigEndian
	if len(b) < 1 {
		return checkpoint{}, errors.New("empty")
	}
	var body []byte
	switch b[0] {
	case 1:
		if len(b) != checkpointV1Size {
			return checkpoint{}, fmt.Errorf("version 1 of %d bytes", len(b))
		}
		body = b[:18]
	case 2:
		if len(b) < checkpointHeader+4 || (len(b)-checkpointHeader-4)%checkpointRow != 0 {
			return checkpoint{}, fmt.Errorf("version 2 of %d bytes", len(b))
		}
		body = b[:len(b)-4]
	default:
		return checkpoint{}, fmt.Errorf("unknown version %d", b[0])
	}
	if crc32.Checksum(body, castagnoli) != be.Uint32(b[len(body):]) {
		return checkpoint{}, errors.New("bad checksum")
	}
	if b[1] > 1 {
		return checkpoint{}, fmt.Errorf("clean flag %d", b[1])
	}
	cp := checkpoint{
		clean:         b[1] == 1,
		recoveryPoint: int64(be.Uint64(b[2:])),
		logStart:      int64(be.Uint64(b[10:])),
	}
	if cp.recoveryPoint < 0 || cp.logStart < 0 {
		return checkpoint{}, fmt.Errorf("negative offsets %d, %d", cp.recoveryPoint, cp.logStart)
	}
	if b[0] == 1 {
		return cp, nil
	}
	n := int(be.Uint32(b[18:]))
	if n != (len(body)-checkpointHeader)/checkpointRow {
		return checkpoint{}, fmt.Errorf("%d segments in %d bytes", n, len(b))
	}
	if n > 0 && !cp.clean {
		return checkpoint{}, errors.New("segment table in an unclean checkpoint")
	}
	cp.segments = make([]segment.Meta, n)
	for i := range cp.segments {
		r := body[checkpointHeader+i*checkpointRow:]
		m := segment.Meta{
			Base:           int64(be.Uint64(r)),
			Size:           int64(be.Uint64(r[8:])),
			NextOffset:     int64(be.Uint64(r[16:])),
			MaxTimestamp:   int64(be.Uint64(r[24:])),
			FirstTimestamp: int64(be.Uint64(r[32:])),
		}
		if m.Base < 0 || m.Size < 0 || m.Size > math.MaxInt32 || m.NextOffset < m.Base ||
			(m.Size == 0) != (m.NextOffset == m.Base) || (i > 0 && m.Base < cp.segments[i-1].NextOffset) {
			return checkpoint{}, fmt.Errorf("segment row %d: %+v", i, m)
		}
		cp.segments[i] = m
	}
	return cp, nil
}

// encode returns the checkpoint in the current version's layout.
func (cp *checkpoint) encode() []byte {
	be := binary.BigEndian
	b := make([]byte, checkpointHeader, checkpointHeader+len(cp.segments)*checkpointRow+4)
	b[0] = checkpointVersion
	if cp.clean {
		b[1] = 1
	}
	be.PutUint64(b[2:], uint64(cp.recoveryPoint))
	be.PutUint64(b[10:], uint64(cp.logStart))
	be.PutUint32(b[18:], uint32(len(cp.segments)))
	for _, m := range cp.segments {
		b = be.AppendUint64(b, uint64(m.Base))
		b = be.AppendUint64(b, uint64(m.Size))
		b = be.AppendUint64(b, uint64(m.NextOffset))
		b = be.AppendUint64(b, uint64(m.MaxTimestamp))
		b = be.AppendUint64(b, uint64(m.FirstTimestamp))
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// writeCheckpointLocked replaces the checkpoint atomically and durably. A
// clean one describes every segment. Callers hold appendMu (or own the
// log exclusively, as Open does).
func (l *Log) writeCheckpointLocked(clean bool) error {
	return l.writeCheckpointInto(nil, clean)
}

// writeCheckpointInto is writeCheckpointLocked with the syncs left to b
// (nil: synced at once).
func (l *Log) writeCheckpointInto(b *durable.Batch, clean bool) error {
	cp := checkpoint{clean: clean, recoveryPoint: l.appendMu.recoveryPoint, logStart: l.logStart.Load()}
	if clean {
		cp.segments = make([]segment.Meta, len(l.segments))
		for i, s := range l.segments {
			cp.segments[i] = s.Meta()
		}
	}
	l.appendMu.cleanOnDisk = false
	if err := b.WriteFile(filepath.Join(l.dir, checkpointName), cp.encode()); err != nil {
		return err
	}
	if l.appendMu.syncParent {
		// The log's directory is new: its entry in the parent is made
		// durable with the first file that counts.
		if err := b.SyncDir(filepath.Dir(l.dir)); err != nil {
			return err
		}
		l.appendMu.syncParent = false
	}
	l.appendMu.cleanOnDisk = clean
	return nil
}
