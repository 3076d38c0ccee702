package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/internal/durable"
	"github.com/ferrymq/ferry/segment"
)

// The layouts of the swap manifest and of cleaner.checkpoint are in
// doc.go. To change one, bump its version, keep reading the older ones
// and write only the newest.
const (
	swapExt              = ".swap"
	swapVersion          = 1
	cleanerCheckpoint    = "cleaner.checkpoint"
	cleanerCkptVersion   = 1
	cleanerCkptSize      = 1 + 8 + 8 + 4
	maxSwapManifestBytes = 1 << 20
)

// swapManifest records a committed replacement of segments by one cleaned
// segment of the same base: once it is durable the swap is decided, and
// Open finishes it whatever step a crash stopped it at.
type swapManifest struct {
	base int64 // base offset of the new segment and of the first old one
	size int64 // size of the new segment's .log
	next int64 // next offset of the new segment (segment.Meta)
	// old lists the bases of the segments replaced, base first.
	old []int64
	// exts lists the extensions of the new segment's files.
	exts []string
}

func swapPath(dir string, base int64) string {
	return filepath.Join(dir, segment.FileName(base, swapExt))
}

func (m *swapManifest) encode() []byte {
	be := binary.BigEndian
	b := []byte{swapVersion}
	b = be.AppendUint64(b, uint64(m.base))
	b = be.AppendUint64(b, uint64(m.size))
	b = be.AppendUint64(b, uint64(m.next))
	b = be.AppendUint32(b, uint32(len(m.old)))
	for _, o := range m.old {
		b = be.AppendUint64(b, uint64(o))
	}
	b = append(b, byte(len(m.exts)))
	for _, e := range m.exts {
		b = append(b, byte(len(e)))
		b = append(b, e...)
	}
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSwapManifest parses a manifest; anything but a whole one of a
// known version, with its checksum, is an error.
func decodeSwapManifest(b []byte) (swapManifest, error) {
	be := binary.BigEndian
	var m swapManifest
	if len(b) < 1+24+4+1+4 || b[0] != swapVersion {
		return m, errors.New("bad version or length")
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return m, errors.New("bad checksum")
	}
	b = b[1 : len(b)-4]
	m.base, m.size, m.next = int64(be.Uint64(b)), int64(be.Uint64(b[8:])), int64(be.Uint64(b[16:]))
	n := be.Uint32(b[24:])
	b = b[28:]
	if uint64(n)*8 > uint64(len(b)) || n == 0 {
		return m, fmt.Errorf("%d old segments in %d bytes", n, len(b))
	}
	for range n {
		m.old = append(m.old, int64(be.Uint64(b)))
		b = b[8:]
	}
	if len(b) < 1 {
		return m, errors.New("truncated")
	}
	ne := int(b[0])
	b = b[1:]
	for range ne {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return m, errors.New("truncated")
		}
		m.exts = append(m.exts, string(b[1:1+int(b[0])]))
		b = b[1+int(b[0]):]
	}
	if len(b) != 0 {
		return m, fmt.Errorf("%d bytes after the manifest", len(b))
	}
	if m.base < 0 || m.size < 0 || m.size > math.MaxInt32 || m.next < m.base || m.old[0] != m.base ||
		!slices.IsSorted(m.old) || !slices.Contains(m.exts, ".log") {
		return m, fmt.Errorf("inconsistent manifest %+v", m)
	}
	for _, e := range m.exts {
		if !slices.Contains(segment.Extensions[:], e) {
			return m, fmt.Errorf("unknown extension %q", e)
		}
	}
	return m, nil
}

// applySwap moves the files of a committed swap into place: it removes
// the old segments after the first, renames each of the new segment's
// files from its .cleaned name over the old one's and removes the old
// segment's files the new one does not have. Every step may have been
// done already by an earlier attempt (a crash between them): it is
// idempotent. hook is called between steps (tests only; nil: none).
func applySwap(dir string, m *swapManifest, hook func(cleanStep) bool) (err error) {
	path := func(base int64, ext string) string { return filepath.Join(dir, segment.FileName(base, ext)) }
	for _, o := range m.old[1:] {
		for _, ext := range segment.Extensions {
			if err := os.Remove(path(o, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if hook != nil && hook(stepOldRemoved) {
		return errCrashed
	}
	for _, ext := range segment.Extensions { // .log first
		p := path(m.base, ext)
		if !slices.Contains(m.exts, ext) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		if err := os.Rename(p+segment.CleanedSuffix, p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if ext == ".log" && hook != nil && hook(stepLogRenamed) {
			return errCrashed
		}
	}
	return nil
}

// recoverSwaps, at Open, finishes every swap whose manifest is in dir (whose
// entries are ents) and
// then removes what an unfinished cleaning left: files with the .cleaned
// suffix that no manifest names, which copy data the log still holds. It
// returns how many swaps it finished (the log's checkpoint then no longer
// describes its segments) and how many files it removed. A manifest that does not decode, or whose new
// .log is not the size it says, is an error and nothing is touched: a
// swap is never half undone.
func recoverSwaps(dir string, ents []os.DirEntry) (swapped, removed int, err error) {
	var manifests []swapManifest
	var names []string
	for _, e := range ents {
		stem, ok := strings.CutSuffix(e.Name(), swapExt)
		if !ok || len(stem) != 20 {
			continue
		}
		if _, err := strconv.ParseInt(stem, 10, 64); err != nil {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err == nil && len(b) > maxSwapManifestBytes {
			err = errors.New("too large")
		}
		var m swapManifest
		if err == nil {
			m, err = decodeSwapManifest(b)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%w: swap manifest %s: %v", ErrCorrupt, p, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, segment.FileName(m.base, ".log")+segment.CleanedSuffix)); err == nil && fi.Size() != m.size {
			return 0, 0, fmt.Errorf("%w: swap manifest %s names a .log of %d bytes, %d found", ErrCorrupt, p, m.size, fi.Size())
		}
		manifests = append(manifests, m)
		names = append(names, p)
	}
	for i := range manifests {
		if err := applySwap(dir, &manifests[i], nil); err != nil {
			return 0, 0, err
		}
	}
	if len(manifests) > 0 {
		// The renames are durable before the manifests go.
		if err := syncDir(dir); err != nil {
			return 0, 0, err
		}
		for _, p := range names {
			if err := os.Remove(p); err != nil {
				return 0, 0, err
			}
		}
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), segment.CleanedSuffix) {
			err := os.Remove(filepath.Join(dir, e.Name()))
			if err == nil {
				removed++
			} else if !errors.Is(err, os.ErrNotExist) {
				return 0, 0, err
			}
		}
	}
	if len(manifests) > 0 || removed > 0 {
		if err := syncDir(dir); err != nil {
			return 0, 0, err
		}
	}
	return len(manifests), removed, nil
}

// cleanerState is what cleaner.checkpoint holds.
type cleanerState struct {
	firstDirty int64 // every key below it appears at most once
	horizon    int64 // earliest delete horizon of a tombstone or marker kept; MaxInt64: none
}

func (cs cleanerState) encode() []byte {
	be := binary.BigEndian
	b := []byte{cleanerCkptVersion}
	b = be.AppendUint64(b, uint64(cs.firstDirty))
	b = be.AppendUint64(b, uint64(cs.horizon))
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeCleanerState(b []byte) (cleanerState, error) {
	be := binary.BigEndian
	if len(b) != cleanerCkptSize || b[0] != cleanerCkptVersion {
		return cleanerState{}, errors.New("bad version or length")
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return cleanerState{}, errors.New("bad checksum")
	}
	cs := cleanerState{firstDirty: int64(be.Uint64(b[1:])), horizon: int64(be.Uint64(b[9:]))}
	if cs.firstDirty < 0 {
		return cleanerState{}, fmt.Errorf("first dirty offset %d", cs.firstDirty)
	}
	return cs, nil
}

// readCleanerState reads cleaner.checkpoint; a log never cleaned has
// none, and is dirty from its start.
func readCleanerState(dir string) (cleanerState, error) {
	b, err := os.ReadFile(filepath.Join(dir, cleanerCheckpoint))
	if err != nil {
		return cleanerState{horizon: math.MaxInt64}, err
	}
	cs, err := decodeCleanerState(b)
	if err != nil {
		return cleanerState{horizon: math.MaxInt64}, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Join(dir, cleanerCheckpoint), err)
	}
	return cs, nil
}

func writeCleanerState(dir string, cs cleanerState) error {
	return durable.WriteFile(filepath.Join(dir, cleanerCheckpoint), cs.encode())
}
