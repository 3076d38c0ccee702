package auth

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/ferrymq/ferry/meta"
)

// ResourceType is what an ACL guards, numbered as on the wire.
type ResourceType int8

// Resource types.
const (
	ResourceAny             ResourceType = 1 // filters only
	ResourceTopic           ResourceType = 2
	ResourceGroup           ResourceType = 3
	ResourceCluster         ResourceType = 4
	ResourceTransactionalID ResourceType = 5
	ResourceDelegationToken ResourceType = 6
	ResourceUser            ResourceType = 7
)

// ClusterName is the name of the one cluster resource.
const ClusterName = "kafka-cluster"

// Operation is what a principal does to a resource, numbered as on the
// wire.
type Operation int8

// Operations.
const (
	OpAny             Operation = 1 // filters only
	OpAll             Operation = 2
	OpRead            Operation = 3
	OpWrite           Operation = 4
	OpCreate          Operation = 5
	OpDelete          Operation = 6
	OpAlter           Operation = 7
	OpDescribe        Operation = 8
	OpClusterAction   Operation = 9
	OpDescribeConfigs Operation = 10
	OpAlterConfigs    Operation = 11
	OpIdempotentWrite Operation = 12
	OpCreateTokens    Operation = 13
	OpDescribeTokens  Operation = 14
)

// PatternType says how an ACL's resource name matches, numbered as on the
// wire.
type PatternType int8

// Pattern types.
const (
	PatternAny      PatternType = 1 // filters only
	PatternMatch    PatternType = 2 // filters only: what applies to a name
	PatternLiteral  PatternType = 3
	PatternPrefixed PatternType = 4
)

// Permission allows or denies, numbered as on the wire.
type Permission int8

// Permissions.
const (
	PermissionAny   Permission = 1 // filters only
	PermissionDeny  Permission = 2
	PermissionAllow Permission = 3
)

var resourceNames = map[ResourceType]string{ResourceAny: "ANY", ResourceTopic: "TOPIC", ResourceGroup: "GROUP", ResourceCluster: "CLUSTER", ResourceTransactionalID: "TRANSACTIONAL_ID", ResourceDelegationToken: "DELEGATION_TOKEN", ResourceUser: "USER"}

var operationNames = map[Operation]string{OpAny: "ANY", OpAll: "ALL", OpRead: "READ", OpWrite: "WRITE", OpCreate: "CREATE", OpDelete: "DELETE", OpAlter: "ALTER", OpDescribe: "DESCRIBE", OpClusterAction: "CLUSTER_ACTION", OpDescribeConfigs: "DESCRIBE_CONFIGS", OpAlterConfigs: "ALTER_CONFIGS", OpIdempotentWrite: "IDEMPOTENT_WRITE", OpCreateTokens: "CREATE_TOKENS", OpDescribeTokens: "DESCRIBE_TOKENS"}

var patternNames = map[PatternType]string{PatternAny: "ANY", PatternMatch: "MATCH", PatternLiteral: "LITERAL", PatternPrefixed: "PREFIXED"}

var permissionNames = map[Permission]string{PermissionAny: "ANY", PermissionDeny: "DENY", PermissionAllow: "ALLOW"}

func (t ResourceType) String() string { return nameOr(resourceNames, t) }
func (o Operation) String() string    { return nameOr(operationNames, o) }
func (p PatternType) String() string  { return nameOr(patternNames, p) }
func (p Permission) String() string   { return nameOr(permissionNames, p) }

func nameOr[K ~int8](m map[K]string, k K) string {
	if s, ok := m[k]; ok {
		return s
	}
	return fmt.Sprintf("UNKNOWN(%d)", k)
}

func parseName[K ~int8](m map[K]string, what, s string) (K, error) {
	u := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	for k, name := range m {
		if name == u {
			return k, nil
		}
	}
	return 0, fmt.Errorf("auth: unknown %s %q", what, s)
}

// ParseResourceType parses a resource type's name (TOPIC, GROUP, ...).
func ParseResourceType(s string) (ResourceType, error) {
	return parseName(resourceNames, "resource type", s)
}

// ParseOperation parses an operation's name (READ, WRITE, ...).
func ParseOperation(s string) (Operation, error) { return parseName(operationNames, "operation", s) }

// ParsePatternType parses a pattern type's name (LITERAL, PREFIXED, ...).
func ParsePatternType(s string) (PatternType, error) {
	return parseName(patternNames, "pattern type", s)
}

// ParsePermission parses ALLOW or DENY.
func ParsePermission(s string) (Permission, error) {
	return parseName(permissionNames, "permission", s)
}

// Anonymous is the principal of a connection that did not authenticate.
const Anonymous = "User:ANONYMOUS"

// ValidateACL checks an ACL to be created, as Kafka does: a known resource
// type, pattern type, operation and permission (none of the filter-only
// values), a principal of the form Type:name, a non-empty resource name
// and host, and the cluster resource named kafka-cluster.
func ValidateACL(a meta.ACL) error {
	switch {
	case ResourceType(a.ResourceType) < ResourceTopic || ResourceType(a.ResourceType) > ResourceUser:
		return fmt.Errorf("invalid resource type %s", ResourceType(a.ResourceType))
	case PatternType(a.PatternType) != PatternLiteral && PatternType(a.PatternType) != PatternPrefixed:
		return fmt.Errorf("invalid pattern type %s", PatternType(a.PatternType))
	case Operation(a.Operation) < OpAll || Operation(a.Operation) > OpDescribeTokens:
		return fmt.Errorf("invalid operation %s", Operation(a.Operation))
	case Permission(a.Permission) != PermissionAllow && Permission(a.Permission) != PermissionDeny:
		return fmt.Errorf("invalid permission %s", Permission(a.Permission))
	case a.ResourceName == "":
		return fmt.Errorf("empty resource name")
	case a.Host == "":
		return fmt.Errorf("empty host")
	case ResourceType(a.ResourceType) == ResourceCluster && a.ResourceName != ClusterName:
		return fmt.Errorf("the cluster resource is named %s, not %q", ClusterName, a.ResourceName)
	case PatternType(a.PatternType) == PatternPrefixed && a.ResourceName == "*":
		return fmt.Errorf("a prefixed pattern cannot be the wildcard *")
	}
	if typ, name, ok := strings.Cut(a.Principal, ":"); !ok || typ == "" || name == "" {
		return fmt.Errorf("principal %q is not of the form Type:name", a.Principal)
	}
	return nil
}

// Filter selects ACLs, as DescribeAcls and DeleteAcls do: a nil string or
// an ANY value matches everything; PatternMatch matches the ACLs that
// apply to ResourceName (literal, the wildcard, and prefixes of it).
type Filter struct {
	ResourceType ResourceType
	ResourceName *string
	PatternType  PatternType
	Principal    *string
	Host         *string
	Operation    Operation
	Permission   Permission
}

// Matches reports whether the filter selects a.
func (f *Filter) Matches(a meta.ACL) bool {
	if f.ResourceType != ResourceAny && ResourceType(a.ResourceType) != f.ResourceType {
		return false
	}
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil && *f.Host != a.Host {
		return false
	}
	if f.Operation != OpAny && Operation(a.Operation) != f.Operation {
		return false
	}
	if f.Permission != PermissionAny && Permission(a.Permission) != f.Permission {
		return false
	}
	pt := PatternType(a.PatternType)
	switch f.PatternType {
	case PatternAny:
		return f.ResourceName == nil || *f.ResourceName == a.ResourceName
	case PatternMatch:
		if f.ResourceName == nil {
			return true
		}
		name := *f.ResourceName
		switch pt {
		case PatternLiteral:
			return a.ResourceName == name || a.ResourceName == "*"
		case PatternPrefixed:
			return strings.HasPrefix(name, a.ResourceName)
		}
		return false
	default:
		return pt == f.PatternType && (f.ResourceName == nil || *f.ResourceName == a.ResourceName)
	}
}

// Valid reports whether the filter's values are known.
func (f *Filter) Valid() error {
	switch {
	case f.ResourceType < ResourceAny || f.ResourceType > ResourceUser:
		return fmt.Errorf("invalid resource type %s", f.ResourceType)
	case f.PatternType < PatternAny || f.PatternType > PatternPrefixed:
		return fmt.Errorf("invalid pattern type %s", f.PatternType)
	case f.Operation < OpAny || f.Operation > OpDescribeTokens:
		return fmt.Errorf("invalid operation %s", f.Operation)
	case f.Permission < PermissionAny || f.Permission > PermissionAllow:
		return fmt.Errorf("invalid permission %s", f.Permission)
	}
	return nil
}

// AuthorizerConfig configures an Authorizer.
type AuthorizerConfig struct {
	// SuperUsers may do everything (super.users, "User:a;User:b").
	SuperUsers []string
	// AllowIfNoACL allows an operation on a resource that no ACL names at
	// all (allow.everyone.if.no.acl.found). Default false, as Kafka's.
	AllowIfNoACL bool
}

// Authorizer decides whether a principal may do an operation on a
// resource, from the ACLs of the metadata image, as Kafka's
// StandardAuthorizer does:
//
//   - a super user may do everything;
//   - the ACLs that apply are those of the resource type whose pattern
//     names the resource: literally, by the wildcard "*", or by a prefix;
//     of those, the ones of the principal (or User:*), the host (or *)
//     and the operation (or ALL) count;
//   - a DENY that counts denies; otherwise an ALLOW that counts allows.
//     An ALLOW of READ, WRITE, DELETE or ALTER allows DESCRIBE too, and
//     one of ALTER_CONFIGS allows DESCRIBE_CONFIGS;
//   - with no ACL applying to the resource at all, the answer is
//     AllowIfNoACL.
//
// Authorize allocates nothing and takes no lock; Update swaps the index
// atomically. It is safe for concurrent use.
type Authorizer struct {
	super        map[string]bool
	allowIfNoACL bool
	index        atomic.Pointer[aclIndex]
}

// aclIndex is the ACLs arranged for lookups. It is never changed once
// built.
type aclIndex struct {
	// literal holds the literal ACLs (the wildcard "*" among them) by
	// resource type and name.
	literal map[resourceKey][]meta.ACL
	// prefixed holds the prefixed ACLs by resource type and prefix;
	// prefixLens lists, per resource type, the prefix lengths present.
	prefixed   map[resourceKey][]meta.ACL
	prefixLens map[ResourceType][]int
}

type resourceKey struct {
	typ  ResourceType
	name string
}

// NewAuthorizer returns an authorizer with no ACLs.
func NewAuthorizer(cfg AuthorizerConfig) *Authorizer {
	a := &Authorizer{super: map[string]bool{}, allowIfNoACL: cfg.AllowIfNoACL}
	for _, u := range cfg.SuperUsers {
		if u = strings.TrimSpace(u); u != "" {
			a.super[u] = true
		}
	}
	a.Update(nil)
	return a
}

// Update replaces the ACLs the authorizer decides by.
func (a *Authorizer) Update(acls []meta.ACL) {
	ix := &aclIndex{literal: map[resourceKey][]meta.ACL{}, prefixed: map[resourceKey][]meta.ACL{}, prefixLens: map[ResourceType][]int{}}
	for _, acl := range acls {
		k := resourceKey{ResourceType(acl.ResourceType), acl.ResourceName}
		switch PatternType(acl.PatternType) {
		case PatternLiteral:
			ix.literal[k] = append(ix.literal[k], acl)
		case PatternPrefixed:
			if _, ok := ix.prefixed[k]; !ok {
				lens := ix.prefixLens[k.typ]
				n := len(acl.ResourceName)
				found := false
				for _, l := range lens {
					found = found || l == n
				}
				if !found {
					ix.prefixLens[k.typ] = append(lens, n)
				}
			}
			ix.prefixed[k] = append(ix.prefixed[k], acl)
		}
	}
	a.index.Store(ix)
}

// IsSuperUser reports whether principal is in super.users.
func (a *Authorizer) IsSuperUser(principal string) bool { return a.super[principal] }

// Authorize reports whether principal, connected from host (an IP
// address), may do op on the resource of type rt named name.
func (a *Authorizer) Authorize(principal, host string, rt ResourceType, name string, op Operation) bool {
	if a.super[principal] {
		return true
	}
	ix := a.index.Load()
	var v verdict
	v.add(ix.literal[resourceKey{rt, name}], principal, host, op)
	if name != "*" {
		v.add(ix.literal[resourceKey{rt, "*"}], principal, host, op)
	}
	for _, n := range ix.prefixLens[rt] {
		if n <= len(name) {
			v.add(ix.prefixed[resourceKey{rt, name[:n]}], principal, host, op)
		}
	}
	switch {
	case v.denied:
		return false
	case v.allowed:
		return true
	}
	return !v.any && a.allowIfNoACL
}

// verdict gathers what the applying ACLs say.
type verdict struct {
	any, allowed, denied bool
}

func (v *verdict) add(acls []meta.ACL, principal, host string, op Operation) {
	for i := range acls {
		acl := &acls[i]
		v.any = true
		if acl.Principal != principal && acl.Principal != "User:*" {
			continue
		}
		if acl.Host != host && acl.Host != "*" {
			continue
		}
		aop := Operation(acl.Operation)
		if Permission(acl.Permission) == PermissionDeny {
			if aop == op || aop == OpAll {
				v.denied = true
			}
			continue
		}
		if aop == op || aop == OpAll || implies(aop, op) {
			v.allowed = true
		}
	}
}

// implies reports whether allowing have allows want too.
func implies(have, want Operation) bool {
	switch want {
	case OpDescribe:
		return have == OpRead || have == OpWrite || have == OpDelete || have == OpAlter
	case OpDescribeConfigs:
		return have == OpAlterConfigs
	}
	return false
}

// AuthorizeAny reports whether principal, from host, may do op on some
// resource of type rt, as Kafka's authorizeByResourceType answers (an
// idempotent producer needs WRITE on some topic): a super user may; an
// ALLOW that counts, on any name, allows unless a DENY of the principal
// covers every name (the wildcard, or the empty prefix); with no ACL of
// that type at all the answer is AllowIfNoACL. It walks every ACL of the
// type: use it for rare requests only.
func (a *Authorizer) AuthorizeAny(principal, host string, rt ResourceType, op Operation) bool {
	if a.super[principal] {
		return true
	}
	ix := a.index.Load()
	var v verdict
	var any bool
	for _, m := range []map[resourceKey][]meta.ACL{ix.literal, ix.prefixed} {
		for k, acls := range m {
			if k.typ != rt {
				continue
			}
			any = true
			var one verdict
			one.add(acls, principal, host, op)
			v.allowed = v.allowed || one.allowed
			if one.denied && (k.name == "*" && PatternType(acls[0].PatternType) == PatternLiteral || k.name == "") {
				v.denied = true
			}
		}
	}
	switch {
	case v.denied:
		return false
	case v.allowed:
		return true
	}
	return !any && a.allowIfNoACL
}
