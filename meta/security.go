package meta

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Security metadata: SCRAM credentials, ACLs and client quotas, kept in the
// metadata log like topics and replayed into the image. This package only
// stores them; package auth authenticates and authorizes with them and
// package server validates what clients ask to change.

// ScramCredential is what a server keeps of a SCRAM password (RFC 5802):
// the salt and iteration count the client derives its key with, and the
// StoredKey and ServerKey that prove it. The password itself is never
// kept.
type ScramCredential struct {
	Salt       []byte `json:"salt"`
	Iterations int32  `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// ScramChange sets (Credential non-nil) or removes a user's credential for
// one mechanism ("SCRAM-SHA-256" or "SCRAM-SHA-512").
type ScramChange struct {
	User       string
	Mechanism  string
	Credential *ScramCredential
}

// UserScram describes one credential without its secrets.
type UserScram struct {
	User       string
	Mechanism  string
	Iterations int32
}

// ACL is one access control entry, its fields numbered as Kafka's wire
// numbers them (see the package doc). A value is comparable: two equal
// ACLs are the same entry.
type ACL struct {
	ResourceType int8   `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	PatternType  int8   `json:"pattern_type"`
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Operation    int8   `json:"operation"`
	Permission   int8   `json:"permission"`
}

// QuotaEntityPart is one component of a quota entity: its type ("user",
// "client-id" or "ip") and name; a nil name is the type's default.
type QuotaEntityPart struct {
	Type string  `json:"type"`
	Name *string `json:"name,omitempty"`
}

// QuotaEntity is what a client quota applies to: a user, a client id, or
// both, each named or the default; its parts are sorted by type.
type QuotaEntity []QuotaEntityPart

// Key is a string that identifies the entity, the same for any order of
// its parts.
func (e QuotaEntity) Key() string {
	parts := make([]string, len(e))
	for i, p := range e {
		if p.Name == nil {
			parts[i] = p.Type + "\x00"
		} else {
			parts[i] = p.Type + "=" + *p.Name
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "\x01")
}

// sorted returns a copy of e with its parts sorted by type.
func (e QuotaEntity) sorted() QuotaEntity {
	out := slices.Clone(e)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// ClientQuota is the quotas set for one entity: quota name
// (producer_byte_rate, consumer_byte_rate, request_percentage, ...) to
// value.
type ClientQuota struct {
	Entity QuotaEntity
	Values map[string]float64
}

// QuotaChange sets (Value non-nil) or removes one quota of an entity.
type QuotaChange struct {
	Entity QuotaEntity
	Key    string
	Value  *float64
}

// securityImage is the security part of the image. Its maps are replaced
// on each change, never mutated, so readers load them without a lock.
type securityImage struct {
	// scram maps user, then mechanism, to the credential.
	scram atomic.Pointer[map[string]map[string]ScramCredential]
	// acls is every ACL, sorted; a change replaces the slice.
	acls atomic.Pointer[[]ACL]
	// quotas maps QuotaEntity.Key to the entity's quotas.
	quotas atomic.Pointer[map[string]ClientQuota]
	// mu serializes apply's changes to the pointers above; it is taken
	// after image.mu.
	mu sync.Mutex
}

func (si *securityImage) init() {
	si.scram.Store(&map[string]map[string]ScramCredential{})
	si.acls.Store(&[]ACL{})
	si.quotas.Store(&map[string]ClientQuota{})
}

// applySecurity applies one security record; it reports whether r was
// one.
func (s *Store) applySecurity(r *Record) bool {
	si := &s.sec
	switch r.Type {
	case TypeScram, TypeRemoveScram:
		si.mu.Lock()
		defer si.mu.Unlock()
		old := *si.scram.Load()
		m := make(map[string]map[string]ScramCredential, len(old)+1)
		for u, byMech := range old {
			m[u] = byMech
		}
		byMech := make(map[string]ScramCredential, len(old[r.User])+1)
		for k, v := range old[r.User] {
			byMech[k] = v
		}
		if r.Type == TypeScram && r.Scram != nil {
			byMech[r.Mechanism] = *r.Scram
		} else {
			delete(byMech, r.Mechanism)
		}
		if len(byMech) == 0 {
			delete(m, r.User)
		} else {
			m[r.User] = byMech
		}
		si.scram.Store(&m)
	case TypeACL, TypeRemoveACL:
		if r.ACL == nil {
			return true
		}
		si.mu.Lock()
		defer si.mu.Unlock()
		old := *si.acls.Load()
		i, found := slices.BinarySearchFunc(old, *r.ACL, compareACL)
		var acls []ACL
		switch {
		case r.Type == TypeACL && !found:
			acls = slices.Insert(slices.Clone(old), i, *r.ACL)
		case r.Type == TypeRemoveACL && found:
			acls = slices.Delete(slices.Clone(old), i, i+1)
		default:
			return true
		}
		si.acls.Store(&acls)
	case TypeClientQuota:
		si.mu.Lock()
		defer si.mu.Unlock()
		old := *si.quotas.Load()
		m := make(map[string]ClientQuota, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		key := r.Entity.Key()
		cq := ClientQuota{Entity: r.Entity.sorted(), Values: map[string]float64{}}
		for k, v := range old[key].Values {
			cq.Values[k] = v
		}
		if r.Value == nil {
			delete(cq.Values, r.Key)
		} else if v, err := strconv.ParseFloat(*r.Value, 64); err == nil {
			cq.Values[r.Key] = v
		}
		if len(cq.Values) == 0 {
			delete(m, key)
		} else {
			m[key] = cq
		}
		si.quotas.Store(&m)
	default:
		return false
	}
	return true
}

// compareACL orders ACLs for the sorted list.
func compareACL(a, b ACL) int {
	if c := int(a.ResourceType) - int(b.ResourceType); c != 0 {
		return c
	}
	if c := strings.Compare(a.ResourceName, b.ResourceName); c != 0 {
		return c
	}
	if c := int(a.PatternType) - int(b.PatternType); c != 0 {
		return c
	}
	if c := strings.Compare(a.Principal, b.Principal); c != 0 {
		return c
	}
	if c := strings.Compare(a.Host, b.Host); c != 0 {
		return c
	}
	if c := int(a.Operation) - int(b.Operation); c != 0 {
		return c
	}
	return int(a.Permission) - int(b.Permission)
}

// ScramCredential returns a user's credential for a mechanism.
func (s *Store) ScramCredential(user, mechanism string) (ScramCredential, bool) {
	c, ok := (*s.sec.scram.Load())[user][mechanism]
	return c, ok
}

// ScramUsers lists every SCRAM credential without its secrets, sorted by
// user and mechanism.
func (s *Store) ScramUsers() []UserScram {
	var out []UserScram
	for u, byMech := range *s.sec.scram.Load() {
		for m, c := range byMech {
			out = append(out, UserScram{User: u, Mechanism: m, Iterations: c.Iterations})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Mechanism < out[j].Mechanism
	})
	return out
}

// AlterScramCredentials records the changes as one entry: all of them or
// none.
func (s *Store) AlterScramCredentials(changes []ScramChange) error {
	recs := make([]Record, 0, len(changes))
	for _, c := range changes {
		if c.User == "" {
			return fmt.Errorf("%w: empty user name", ErrInvalidRequest)
		}
		if c.Credential != nil {
			recs = append(recs, Record{Type: TypeScram, User: c.User, Mechanism: c.Mechanism, Scram: c.Credential})
		} else {
			recs = append(recs, Record{Type: TypeRemoveScram, User: c.User, Mechanism: c.Mechanism})
		}
	}
	return s.proposeSecurity(recs, "recording SCRAM credentials")
}

// ACLs returns every ACL, sorted. The slice is shared: never modify it. A
// change replaces it, so a caller may keep it as a consistent view.
func (s *Store) ACLs() []ACL { return *s.sec.acls.Load() }

// CreateACLs records the ACLs not present yet, as one entry.
func (s *Store) CreateACLs(acls []ACL) error {
	cur := s.ACLs()
	var recs []Record
	for i := range acls {
		if _, found := slices.BinarySearchFunc(cur, acls[i], compareACL); !found {
			recs = append(recs, Record{Type: TypeACL, ACL: &acls[i]})
		}
	}
	return s.proposeSecurity(recs, "recording ACLs")
}

// DeleteACLs records the removal of the ACLs given, as one entry. Those
// that do not exist are ignored.
func (s *Store) DeleteACLs(acls []ACL) error {
	recs := make([]Record, 0, len(acls))
	for i := range acls {
		recs = append(recs, Record{Type: TypeRemoveACL, ACL: &acls[i]})
	}
	return s.proposeSecurity(recs, "deleting ACLs")
}

// ClientQuotas returns every entity with quotas, keyed by
// QuotaEntity.Key. The map is shared: never modify it.
func (s *Store) ClientQuotas() map[string]ClientQuota { return *s.sec.quotas.Load() }

// AlterClientQuotas records the changes as one entry.
func (s *Store) AlterClientQuotas(changes []QuotaChange) error {
	recs := make([]Record, 0, len(changes))
	for _, c := range changes {
		r := Record{Type: TypeClientQuota, Entity: c.Entity.sorted(), Key: c.Key}
		if c.Value != nil {
			v := strconv.FormatFloat(*c.Value, 'g', -1, 64)
			r.Value = &v
		}
		recs = append(recs, r)
	}
	return s.proposeSecurity(recs, "recording client quotas")
}

// proposeSecurity proposes recs as one entry, serialized with the other
// changes.
func (s *Store) proposeSecurity(recs []Record, what string) error {
	if len(recs) == 0 {
		return nil
	}
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.log.Propose(recs); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStorage, what, err)
	}
	return nil
}
