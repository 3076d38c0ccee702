package meta

import (
	"fmt"
	"maps"
	"sync"
)

// groupConfigs holds the dynamic configs of groups (Kafka's GROUP config
// resource: share.record.lock.duration.ms, ...), set with
// IncrementalAlterConfigs and kept in the metadata log as config records
// of resource "group". A group's map is replaced, never mutated.
type groupConfigs struct {
	mu     sync.RWMutex
	byName map[string]map[string]string
}

// GroupConfigs returns the configs set on group, name to value; nil if
// none. The map must not be modified.
func (s *Store) GroupConfigs(group string) map[string]string {
	s.groups.mu.RLock()
	defer s.groups.mu.RUnlock()
	return s.groups.byName[group]
}

// AlterGroupConfigs validates a change to a group's configs with validate
// (the coordinator owning the configs knows their rules; nil values,
// which remove a config, are not passed to it), records it durably and
// applies it at once. Replace and ValidateOnly act as for topics.
func (s *Store) AlterGroupConfigs(group string, a Alter, validate func(name, value string) error) error {
	if group == "" {
		return fmt.Errorf("%w: empty group name", ErrInvalidRequest)
	}
	for k, v := range a.Changes {
		if v == nil {
			continue
		}
		if err := validate(k, *v); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	var recs []Record
	for _, e := range editConfigs(s.GroupConfigs(group), a.Changes, a.Replace) {
		recs = append(recs, Record{Type: TypeConfig, Resource: "group", Name: group, Key: e.key, Value: e.value})
	}
	if a.ValidateOnly || len(recs) == 0 {
		return nil
	}
	if err := s.log.Propose(recs); err != nil {
		return fmt.Errorf("%w: recording configs: %w", ErrStorage, err)
	}
	return nil
}

// applyGroupConfig applies a config record of a group.
func (s *Store) applyGroupConfig(r *Record) {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if s.groups.byName == nil {
		s.groups.byName = make(map[string]map[string]string)
	}
	cfgs := maps.Clone(s.groups.byName[r.Name])
	if cfgs == nil {
		cfgs = make(map[string]string)
	}
	setOrDelete(cfgs, r.Key, r.Value)
	if len(cfgs) == 0 {
		delete(s.groups.byName, r.Name)
		return
	}
	s.groups.byName[r.Name] = cfgs
}
