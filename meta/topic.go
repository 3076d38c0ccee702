package meta

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"

	"github.com/ferrymq/ferry/partition"
)

// Topic is one topic of the image and its partitions on this broker. Its
// name, id and internal flag never change; its configs and partitions are
// replaced, never mutated, so readers need no lock.
type Topic struct {
	name     string
	id       [16]byte
	internal bool
	// configs holds the topic's own config values (not the defaults).
	configs atomic.Pointer[map[string]string]
	// parts holds one slot per partition; it grows by replacement.
	parts atomic.Pointer[[]slot]
	// node is this broker's id; states the partitions' placement and
	// leadership in a cluster (nil on a single node: see State).
	node   int32
	states atomic.Pointer[[]PartitionState]
}

// slot is one partition of a topic: open, or offline with the reason.
type slot struct {
	p   *partition.Partition
	err error // wraps ErrOffline; nil when p is open
}

func newTopic(name string, id [16]byte, internal bool, configs map[string]string) *Topic {
	t := &Topic{name: name, id: id, internal: internal}
	if configs == nil {
		configs = map[string]string{}
	}
	t.configs.Store(&configs)
	t.parts.Store(&[]slot{})
	return t
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// ID is the topic's id (KIP-516).
func (t *Topic) ID() [16]byte { return t.id }

// Internal reports an internal topic (__consumer_offsets, ...): clients
// may not produce to it, delete it or its records, or add partitions.
func (t *Topic) Internal() bool { return t.internal }

// Configs returns the topic's own config values, without defaults. The map
// is shared: never modify it.
func (t *Topic) Configs() map[string]string { return *t.configs.Load() }

// NumPartitions is the topic's partition count, offline ones included.
func (t *Topic) NumPartitions() int32 {
	if t == nil {
		return 0
	}
	return int32(len(*t.parts.Load()))
}

// Partition returns partition i. The error is ErrUnknownTopicOrPartition
// when there is no such partition or no topic (t may be nil, as a failed
// lookup returns), and wraps ErrOffline, with the reason, when the
// partition could not be opened.
func (t *Topic) Partition(i int32) (*partition.Partition, error) {
	if t == nil {
		return nil, ErrUnknownTopicOrPartition
	}
	ps := *t.parts.Load()
	if i < 0 || int(i) >= len(ps) {
		return nil, ErrUnknownTopicOrPartition
	}
	return ps[i].p, ps[i].err
}

// online returns the open partitions with their numbers.
func (t *Topic) online() ([]*partition.Partition, []int32) {
	ps := *t.parts.Load()
	out := make([]*partition.Partition, 0, len(ps))
	ids := make([]int32, 0, len(ps))
	for i, s := range ps {
		if s.p != nil {
			out = append(out, s.p)
			ids = append(ids, int32(i))
		}
	}
	return out, ids
}

var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// ValidTopicName applies Kafka's rules for topic names; the error wraps
// ErrInvalidTopic.
func ValidTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: topic name is empty", ErrInvalidTopic)
	case name == "." || name == "..":
		return fmt.Errorf("%w: topic name %q is illegal", ErrInvalidTopic, name)
	case len(name) > 249:
		return fmt.Errorf("%w: topic name is longer than 249 characters", ErrInvalidTopic)
	case !legalTopic.MatchString(name):
		return fmt.Errorf("%w: topic name %q has characters other than ASCII alphanumerics, '.', '_' and '-'", ErrInvalidTopic, name)
	}
	return nil
}

// partitionDir is the directory of a topic's partition p.
func partitionDir(dataDir, topic string, p int32) string {
	return filepath.Join(dataDir, topic+"-"+strconv.Itoa(int(p)))
}

// offline is the error of a partition that could not be opened.
func offline(err error) error {
	if errors.Is(err, ErrOffline) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrOffline, err)
}
