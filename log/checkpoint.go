package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/durable"
)

const (
	checkpointName    = "log.checkpoint"
	checkpointVersion = 1
	checkpointSize    = 22
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type checkpoint struct {
	clean         bool
	recoveryPoint int64
	logStart      int64
}

func readCheckpoint(dir string) (checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if err != nil {
		return checkpoint{}, err
	}
	if len(b) != checkpointSize || b[0] != checkpointVersion ||
		crc32.Checksum(b[:checkpointSize-4], castagnoli) != binary.BigEndian.Uint32(b[checkpointSize-4:]) {
		return checkpoint{}, fmt.Errorf("%w: %s", ErrCorrupt, filepath.Join(dir, checkpointName))
	}
	return checkpoint{
		clean:         b[1] == 1,
		recoveryPoint: int64(binary.BigEndian.Uint64(b[2:])),
		logStart:      int64(binary.BigEndian.Uint64(b[10:])),
	}, nil
}

// writeCheckpointLocked replaces the checkpoint atomically and durably.
// Callers hold appendMu (or own the log exclusively, as Open does).
func (l *Log) writeCheckpointLocked(clean bool) error {
	var b [checkpointSize]byte
	b[0] = checkpointVersion
	if clean {
		b[1] = 1
	}
	binary.BigEndian.PutUint64(b[2:], uint64(l.appendMu.recoveryPoint))
	binary.BigEndian.PutUint64(b[10:], uint64(l.logStart.Load()))
	binary.BigEndian.PutUint32(b[18:], crc32.Checksum(b[:18], castagnoli))
	return durable.WriteFile(filepath.Join(l.dir, checkpointName), b[:])
}
