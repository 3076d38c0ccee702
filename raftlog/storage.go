package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/ferrymq/ferry/internal/durable"
)

// The on-disk layout is described in doc.go. To change it, bump
// formatVersion, keep reading every older version and write only the
// newest.
const formatVersion = 1

const (
	recEntry     = 1 // a raftpb.Entry
	recHardState = 2 // a raftpb.HardState
	walPrefix    = "wal-"
	snapPrefix   = "snap-"
	maxRecord    = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a WAL or snapshot file that does not decode.
var ErrCorrupt = errors.New("raftlog: corrupt")

// disk is the durable state of one node: the newest snapshot and the
// write-ahead log of entries and hard states after it. It is used by the
// node's goroutine only.
type disk struct {
	dir string
	// wal is the file appended to; seq its sequence number.
	wal *os.File
	w   *bufio.Writer
	seq uint64
	buf []byte // record encoding, reused
}

// loaded is what openDisk recovered.
type loaded struct {
	snap    *pb.Snapshot // nil if none
	hard    *pb.HardState
	entries []*pb.Entry
}

// openDisk reads dir (creating it) and returns the state found. A torn
// record at the end of the newest WAL file (a crash mid-write) is cut
// off; anything else that does not decode is an error, never removed.
func openDisk(dir string) (*disk, *loaded, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	d := &disk{dir: dir}
	ld := &loaded{}
	snaps, wals, err := d.list()
	if err != nil {
		return nil, nil, err
	}
	// The newest snapshot that decodes; an older one is kept on disk
	// until a newer one is durable, so a torn newest one falls back.
	for i := len(snaps) - 1; i >= 0; i-- {
		s, err := readSnapshot(filepath.Join(dir, snapName(snaps[i])))
		if err == nil {
			ld.snap = s
			break
		}
		if i == 0 {
			return nil, nil, err
		}
	}
	var snapIndex uint64
	if ld.snap != nil {
		snapIndex = ld.snap.GetMetadata().GetIndex()
	}
	for i, seq := range wals {
		last := i == len(wals)-1
		if err := d.replayWAL(seq, last, snapIndex, ld); err != nil {
			return nil, nil, err
		}
	}
	d.seq = 1
	if len(wals) > 0 {
		d.seq = wals[len(wals)-1]
	}
	f, err := os.OpenFile(filepath.Join(dir, walName(d.seq)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	d.wal, d.w = f, bufio.NewWriterSize(f, 64<<10)
	if len(wals) == 0 {
		if err := durable.SyncDir(dir); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return d, ld, nil
}

// list returns the snapshot indexes and WAL sequence numbers in dir, in
// order.
func (d *disk) list() (snaps, wals []uint64, err error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, ".snap"):
			if n, err := strconv.ParseUint(strings.TrimSuffix(name[len(snapPrefix):], ".snap"), 16, 64); err == nil {
				snaps = append(snaps, n)
			}
		case strings.HasPrefix(name, walPrefix):
			if n, err := strconv.ParseUint(name[len(walPrefix):], 16, 64); err == nil {
				wals = append(wals, n)
			}
		}
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i] < snaps[j] })
	sort.Slice(wals, func(i, j int) bool { return wals[i] < wals[j] })
	return snaps, wals, nil
}

func walName(seq uint64) string    { return fmt.Sprintf("%s%016x", walPrefix, seq) }
func snapName(index uint64) string { return fmt.Sprintf("%s%016x.snap", snapPrefix, index) }

// replayWAL reads one WAL file into ld. Entries at or below snapIndex are
// covered by the snapshot; an entry replaces every entry at or after its
// index (a new leader overwrote an uncommitted tail).
func (d *disk) replayWAL(seq uint64, last bool, snapIndex uint64, ld *loaded) error {
	path := filepath.Join(d.dir, walName(seq))
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	pos := 0
	for pos < len(b) {
		typ, data, n, err := decodeRecord(b[pos:])
		if err != nil {
			if last {
				// A torn write at the end: cut it off before appending.
				if terr := os.Truncate(path, int64(pos)); terr != nil {
					return terr
				}
				return nil
			}
			return fmt.Errorf("%w: %s at %d: %v", ErrCorrupt, path, pos, err)
		}
		pos += n
		switch typ {
		case recEntry:
			e := &pb.Entry{}
			if err := proto.Unmarshal(data, e); err != nil {
				return fmt.Errorf("%w: %s at %d: %v", ErrCorrupt, path, pos, err)
			}
			idx := e.GetIndex()
			if idx <= snapIndex {
				continue
			}
			// Drop entries at or after idx: this one replaces them.
			for len(ld.entries) > 0 && ld.entries[len(ld.entries)-1].GetIndex() >= idx {
				ld.entries = ld.entries[:len(ld.entries)-1]
			}
			if len(ld.entries) > 0 && ld.entries[len(ld.entries)-1].GetIndex()+1 != idx {
				return fmt.Errorf("%w: %s: entry %d follows %d", ErrCorrupt, path, idx, ld.entries[len(ld.entries)-1].GetIndex())
			}
			if len(ld.entries) == 0 && idx != snapIndex+1 {
				return fmt.Errorf("%w: %s: first entry %d after snapshot %d", ErrCorrupt, path, idx, snapIndex)
			}
			ld.entries = append(ld.entries, e)
		case recHardState:
			hs := &pb.HardState{}
			if err := proto.Unmarshal(data, hs); err != nil {
				return fmt.Errorf("%w: %s at %d: %v", ErrCorrupt, path, pos, err)
			}
			ld.hard = hs
		}
	}
	return nil
}

// decodeRecord parses one WAL record: length u32 | crc32c u32 | type u8 |
// data, the length and checksum covering type and data.
func decodeRecord(b []byte) (typ byte, data []byte, n int, err error) {
	if len(b) < 9 {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	l := binary.BigEndian.Uint32(b)
	if l < 1 || l > maxRecord {
		return 0, nil, 0, fmt.Errorf("record length %d", l)
	}
	if uint64(len(b)) < 8+uint64(l) {
		return 0, nil, 0, io.ErrUnexpectedEOF
	}
	body := b[8 : 8+l]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return 0, nil, 0, errors.New("checksum mismatch")
	}
	return body[0], body[1:], int(8 + l), nil
}

// appendRecord adds one record to d.buf.
func (d *disk) appendRecord(typ byte, m proto.Message) error {
	start := len(d.buf)
	d.buf = append(d.buf, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	var err error
	d.buf, err = proto.MarshalOptions{}.MarshalAppend(d.buf, m)
	if err != nil {
		d.buf = d.buf[:start]
		return err
	}
	body := d.buf[start+8:]
	binary.BigEndian.PutUint32(d.buf[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(d.buf[start+4:], crc32.Checksum(body, castagnoli))
	return nil
}

// save appends the hard state (if any) and entries to the WAL and, with
// sync, fdatasyncs it before returning.
func (d *disk) save(hs *pb.HardState, ents []*pb.Entry, sync bool) error {
	d.buf = d.buf[:0]
	for _, e := range ents {
		if err := d.appendRecord(recEntry, e); err != nil {
			return err
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := d.appendRecord(recHardState, hs); err != nil {
			return err
		}
	}
	if len(d.buf) == 0 {
		return nil
	}
	if _, err := d.w.Write(d.buf); err != nil {
		return err
	}
	if err := d.w.Flush(); err != nil {
		return err
	}
	if sync {
		return durable.SyncData(d.wal)
	}
	return nil
}

// saveSnapshot writes snap durably as snap-<index>.snap: crc32c u32 |
// raftpb.Snapshot.
func (d *disk) saveSnapshot(snap *pb.Snapshot) error {
	b, err := proto.Marshal(snap)
	if err != nil {
		return err
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), crc32.Checksum(b, castagnoli))
	out = append(out, b...)
	return durable.WriteFile(filepath.Join(d.dir, snapName(snap.GetMetadata().GetIndex())), out)
}

func readSnapshot(path string) (*pb.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 || crc32.Checksum(b[4:], castagnoli) != binary.BigEndian.Uint32(b) {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrCorrupt, path)
	}
	s := &pb.Snapshot{}
	if err := proto.Unmarshal(b[4:], s); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return s, nil
}

// compact starts a new WAL file holding hs and ents (the entries after the
// snapshot just saved), makes it durable, and only then removes the older
// WAL files and every snapshot but the newest two. A crash at any point
// leaves a state that opens: the old files are removed after the new ones
// are durable.
func (d *disk) compact(snapIndex uint64, hs *pb.HardState, ents []*pb.Entry) error {
	next := d.seq + 1
	f, err := os.OpenFile(filepath.Join(d.dir, walName(next)), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	old := d.wal
	d.wal, d.w, d.seq = f, bufio.NewWriterSize(f, 64<<10), next
	if err := d.save(hs, ents, true); err != nil {
		return err
	}
	if err := durable.SyncDir(d.dir); err != nil {
		return err
	}
	old.Close()
	snaps, wals, err := d.list()
	if err != nil {
		return err
	}
	for _, seq := range wals {
		if seq < next {
			if err := os.Remove(filepath.Join(d.dir, walName(seq))); err != nil {
				return err
			}
		}
	}
	for i, idx := range snaps {
		if i < len(snaps)-2 && idx < snapIndex {
			if err := os.Remove(filepath.Join(d.dir, snapName(idx))); err != nil {
				return err
			}
		}
	}
	return durable.SyncDir(d.dir)
}

func (d *disk) close() error {
	if d.wal == nil {
		return nil
	}
	err := d.w.Flush()
	if cerr := d.wal.Close(); err == nil {
		err = cerr
	}
	d.wal = nil
	return err
}
