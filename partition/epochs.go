package partition

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/internal/durable"
)

// epochFile is the leader epoch cache of a replicated partition, in
// Kafka's leader-epoch-checkpoint format: a version line (0), a count
// line, then one "epoch startOffset" line per epoch, oldest first. It is
// written (atomically, durably) only in a cluster, when a new epoch
// begins or the log is truncated; a single broker never writes it.
const epochFile = "leader-epoch-checkpoint"

// epochEntry says that leader epoch Epoch wrote its first record at
// StartOffset.
type epochEntry struct {
	Epoch       int32
	StartOffset int64
}

// epochCache is the ordered list of a partition's leader epochs and the
// offset each began at, as Kafka's LeaderEpochFileCache. Its owner
// serializes calls.
type epochCache struct {
	dir     string
	entries []epochEntry
	// unsaved: the file does not hold entries yet (they changed, and
	// the save failed or has not happened); saveIfChanged writes it, so
	// that a retried BecomeLeader or a later fetch records an epoch a
	// save failed to (on a full disk, say).
	unsaved bool
}

func loadEpochs(dir string) (*epochCache, error) {
	c := &epochCache{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, epochFile))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "0" {
		return nil, fmt.Errorf("%w: %s: not version 0", ErrCorruptMessage, epochFile)
	}
	n, err := strconv.Atoi(strings.TrimSpace(lines[1]))
	if err != nil || n != len(lines)-2 {
		return nil, fmt.Errorf("%w: %s: bad count", ErrCorruptMessage, epochFile)
	}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: %s: bad line %q", ErrCorruptMessage, epochFile, l)
		}
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: %s: bad line %q", ErrCorruptMessage, epochFile, l)
		}
		c.entries = append(c.entries, epochEntry{int32(e), o})
	}
	return c, nil
}

// assignSaved is assign, then saveIfChanged.
func (c *epochCache) assignSaved(epoch int32, offset int64) error {
	c.assign(epoch, offset)
	return c.saveIfChanged()
}

// saveIfChanged writes the cache if the file does not hold it.
func (c *epochCache) saveIfChanged() error {
	if !c.unsaved {
		return nil
	}
	return c.save()
}

func (c *epochCache) save() error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "0\n%d\n", len(c.entries))
	for _, e := range c.entries {
		fmt.Fprintf(&sb, "%d %d\n", e.Epoch, e.StartOffset)
	}
	if err := durable.WriteFile(filepath.Join(c.dir, epochFile), []byte(sb.String())); err != nil {
		return err
	}
	c.unsaved = false
	return nil
}

// latest is the newest epoch, -1 if none.
func (c *epochCache) latest() int32 {
	if len(c.entries) == 0 {
		return -1
	}
	return c.entries[len(c.entries)-1].Epoch
}

// assign records that epoch begins at offset, if it is newer than the
// latest. It reports whether the cache changed.
func (c *epochCache) assign(epoch int32, offset int64) bool {
	if epoch <= c.latest() {
		return false
	}
	// An older epoch that began at or after offset wrote nothing that
	// is kept.
	for len(c.entries) > 0 && c.entries[len(c.entries)-1].StartOffset >= offset {
		c.entries = c.entries[:len(c.entries)-1]
	}
	c.entries = append(c.entries, epochEntry{epoch, offset})
	c.unsaved = true
	return true
}

// truncateFromEnd drops the epochs that began at or after end (the log
// was truncated to end).
func (c *epochCache) truncateFromEnd(end int64) bool {
	n := len(c.entries)
	for len(c.entries) > 0 && c.entries[len(c.entries)-1].StartOffset >= end {
		c.entries = c.entries[:len(c.entries)-1]
	}
	if len(c.entries) != n {
		c.unsaved = true
		return true
	}
	return false
}

// endOffsetFor answers OffsetForLeaderEpoch as Kafka's
// LeaderEpochFileCache does: for the latest epoch, the log end; for an
// older one, the largest epoch at or below it and the start offset of the
// first epoch after it; for one newer than any, (-1, -1).
func (c *epochCache) endOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	if epoch < 0 || len(c.entries) == 0 {
		return -1, -1
	}
	if epoch == c.latest() {
		return epoch, logEnd
	}
	for i, e := range c.entries {
		if e.Epoch > epoch {
			if i == 0 {
				return epoch, e.StartOffset
			}
			return c.entries[i-1].Epoch, e.StartOffset
		}
	}
	return -1, -1
}
