package meta

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Alter is a change to a topic's or the broker's configs.
type Alter struct {
	// Changes maps config names to new values; a nil value removes the
	// key (back to its default).
	Changes map[string]*string
	// Replace removes every key not in Changes too, as AlterConfigs does;
	// otherwise other keys are kept, as IncrementalAlterConfigs does.
	Replace bool
	// ValidateOnly checks the change without making it.
	ValidateOnly bool
}

// AlterTopicConfigs validates a change to a topic's configs, records it
// durably and applies it to the topic's partitions at once.
func (s *Store) AlterTopicConfigs(t *Topic, a Alter) error {
	for k, v := range a.Changes {
		if err := validateTopicConfig(k, v); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	var recs []Record
	for _, e := range editConfigs(t.Configs(), a.Changes, a.Replace) {
		recs = append(recs, Record{Type: TypeConfig, Resource: "topic", Name: t.name, TopicID: TopicIDString(t.id), Key: e.key, Value: e.value})
	}
	if a.ValidateOnly || len(recs) == 0 {
		return nil
	}
	if err := s.log.Propose(recs); err != nil {
		return fmt.Errorf("%w: recording configs: %w", ErrStorage, err)
	}
	return nil
}

// AlterBrokerConfigs validates a change to the dynamic broker configs,
// records it durably and applies it at once. name is this node's id or ""
// (the cluster-wide default); both apply to this broker.
func (s *Store) AlterBrokerConfigs(name string, a Alter) error {
	if name != "" && name != strconv.Itoa(int(s.cfg.NodeID)) {
		return fmt.Errorf("%w: broker %s is not this broker (%d)", ErrInvalidRequest, name, s.cfg.NodeID)
	}
	for k, v := range a.Changes {
		bc, ok := brokerConfigByName[k]
		if !ok {
			return fmt.Errorf("%w: unknown broker config %q", ErrInvalidConfig, k)
		}
		if !bc.dynamic {
			return fmt.Errorf("%w: broker config %s cannot be changed while the broker runs", ErrInvalidRequest, k)
		}
		if v != nil {
			if err := validateBrokerConfig(k, *v); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
			}
		}
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	var recs []Record
	for _, e := range editConfigs(s.Settings().dynamic, a.Changes, a.Replace) {
		recs = append(recs, Record{Type: TypeConfig, Resource: "broker", Key: e.key, Value: e.value})
	}
	if a.ValidateOnly || len(recs) == 0 {
		return nil
	}
	if err := s.log.Propose(recs); err != nil {
		return fmt.Errorf("%w: recording configs: %w", ErrStorage, err)
	}
	s.logger.Info("broker configs changed", "dynamic", fmt.Sprint(s.Settings().dynamic))
	return nil
}

// configEdit is one key changed by editConfigs; a nil value removes it.
type configEdit struct {
	key   string
	value *string
}

// editConfigs returns the edits, in key order, that turn cur into cur
// with changes applied: a nil value removes its key, and with replace
// every key not named is removed too.
func editConfigs(cur map[string]string, changes map[string]*string, replace bool) []configEdit {
	var edits []configEdit
	if replace {
		for k := range cur {
			if _, ok := changes[k]; !ok {
				edits = append(edits, configEdit{key: k})
			}
		}
	}
	for k, v := range changes {
		edits = append(edits, configEdit{key: k, value: v})
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].key < edits[j].key })
	return edits
}

// OpType is an IncrementalAlterConfigs operation, numbered as on the wire.
type OpType int8

// Incremental operations.
const (
	OpSet      OpType = 0
	OpDelete   OpType = 1
	OpAppend   OpType = 2 // list configs only
	OpSubtract OpType = 3 // list configs only
)

// ConfigOp is one operation of IncrementalAlterConfigs.
type ConfigOp struct {
	Name  string
	Op    OpType
	Value *string
}

// IncrementalChanges turns operations into changes for Alter (name to new
// value; nil deletes), reading list configs' current values with current.
func IncrementalChanges(ops []ConfigOp, current func(name string) string) (map[string]*string, error) {
	changes := map[string]*string{}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			return nil, fmt.Errorf("%w: config %s is changed twice", ErrInvalidRequest, op.Name)
		}
		seen[op.Name] = true
		switch op.Op {
		case OpSet:
			if op.Value == nil {
				return nil, fmt.Errorf("%w: SET of %s without a value", ErrInvalidRequest, op.Name)
			}
			changes[op.Name] = op.Value
		case OpDelete:
			changes[op.Name] = nil
		case OpAppend, OpSubtract:
			tc := topicConfigByName[op.Name]
			bc := brokerConfigByName[op.Name]
			if (tc == nil || tc.typ != typeList) && (bc == nil || bc.typ != typeList) {
				return nil, fmt.Errorf("%w: %s is not a list config", ErrInvalidConfig, op.Name)
			}
			var items []string
			if cur := current(op.Name); cur != "" {
				items = strings.Split(cur, ",")
			}
			var value string
			if op.Value != nil {
				value = *op.Value
			}
			for _, v := range strings.Split(value, ",") {
				v = strings.TrimSpace(v)
				if v == "" {
					continue
				}
				i := slices.Index(items, v)
				if op.Op == OpAppend && i < 0 {
					items = append(items, v)
				} else if op.Op == OpSubtract && i >= 0 {
					items = slices.Delete(items, i, i+1)
				}
			}
			joined := strings.Join(items, ",")
			changes[op.Name] = &joined
		default:
			return nil, fmt.Errorf("%w: unknown operation %d on %s", ErrInvalidRequest, op.Op, op.Name)
		}
	}
	return changes, nil
}
