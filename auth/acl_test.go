package auth

import (
	"fmt"
	"testing"

	"github.com/ferrymq/ferry/meta"
)

func acl(rt ResourceType, name string, pt PatternType, principal, host string, op Operation, perm Permission) meta.ACL {
	return meta.ACL{ResourceType: int8(rt), ResourceName: name, PatternType: int8(pt), Principal: principal, Host: host, Operation: int8(op), Permission: int8(perm)}
}

func TestAuthorize(t *testing.T) {
	a := NewAuthorizer(AuthorizerConfig{SuperUsers: []string{"User:admin", " User:ops "}})
	a.Update([]meta.ACL{
		acl(ResourceTopic, "orders", PatternLiteral, "User:alice", "*", OpWrite, PermissionAllow),
		acl(ResourceTopic, "orders", PatternLiteral, "User:alice", "10.0.0.9", OpAll, PermissionDeny),
		acl(ResourceTopic, "logs-", PatternPrefixed, "User:*", "*", OpRead, PermissionAllow),
		acl(ResourceTopic, "logs-secret", PatternPrefixed, "User:bob", "*", OpRead, PermissionDeny),
		acl(ResourceTopic, "*", PatternLiteral, "User:carol", "*", OpDescribe, PermissionAllow),
		acl(ResourceGroup, "g", PatternLiteral, "User:alice", "127.0.0.1", OpRead, PermissionAllow),
		acl(ResourceCluster, ClusterName, PatternLiteral, "User:alice", "*", OpAlterConfigs, PermissionAllow),
		acl(ResourceTopic, "denied-read", PatternLiteral, "User:dave", "*", OpRead, PermissionDeny),
		acl(ResourceTopic, "denied-read", PatternLiteral, "User:dave", "*", OpDescribe, PermissionAllow),
	})
	for _, tc := range []struct {
		principal, host string
		rt              ResourceType
		name            string
		op              Operation
		want            bool
	}{
		{"User:alice", "1.2.3.4", ResourceTopic, "orders", OpWrite, true},
		{"User:alice", "1.2.3.4", ResourceTopic, "orders", OpDescribe, true}, // WRITE implies DESCRIBE
		{"User:alice", "1.2.3.4", ResourceTopic, "orders", OpRead, false},
		{"User:alice", "10.0.0.9", ResourceTopic, "orders", OpWrite, false}, // DENY ALL from that host
		{"User:bob", "1.2.3.4", ResourceTopic, "orders", OpWrite, false},
		{"User:bob", "1.2.3.4", ResourceTopic, "logs-app", OpRead, true},       // prefixed, User:*
		{"User:bob", "1.2.3.4", ResourceTopic, "logs-secret-x", OpRead, false}, // longer prefix DENY
		{"User:eve", "1.2.3.4", ResourceTopic, "logs-secret-x", OpRead, true},
		{"User:bob", "1.2.3.4", ResourceTopic, "logs", OpRead, false},
		{"User:carol", "1.2.3.4", ResourceTopic, "anything", OpDescribe, true}, // wildcard
		{"User:carol", "1.2.3.4", ResourceTopic, "anything", OpRead, false},
		{"User:alice", "127.0.0.1", ResourceGroup, "g", OpRead, true},
		{"User:alice", "127.0.0.2", ResourceGroup, "g", OpRead, false},
		{"User:alice", "1.2.3.4", ResourceCluster, ClusterName, OpDescribeConfigs, true}, // ALTER_CONFIGS implies DESCRIBE_CONFIGS
		{"User:alice", "1.2.3.4", ResourceCluster, ClusterName, OpAlter, false},
		{"User:dave", "1.2.3.4", ResourceTopic, "denied-read", OpDescribe, true}, // a DENY of READ does not deny DESCRIBE
		{"User:dave", "1.2.3.4", ResourceTopic, "denied-read", OpRead, false},
		{"User:admin", "1.2.3.4", ResourceCluster, ClusterName, OpAlter, true},
		{"User:ops", "1.2.3.4", ResourceTopic, "orders", OpDelete, true},
		{"User:alice", "1.2.3.4", ResourceTopic, "no-acls", OpWrite, false},
	} {
		if got := a.Authorize(tc.principal, tc.host, tc.rt, tc.name, tc.op); got != tc.want {
			t.Errorf("%s from %s: %s on %s %q = %v, want %v", tc.principal, tc.host, tc.op, tc.rt, tc.name, got, tc.want)
		}
	}
	open := NewAuthorizer(AuthorizerConfig{AllowIfNoACL: true})
	open.Update([]meta.ACL{acl(ResourceTopic, "orders", PatternLiteral, "User:alice", "*", OpWrite, PermissionAllow)})
	if !open.Authorize("User:bob", "h", ResourceTopic, "other", OpWrite) {
		t.Error("allow.everyone.if.no.acl.found: a topic without ACLs is refused")
	}
	if open.Authorize("User:bob", "h", ResourceTopic, "orders", OpWrite) {
		t.Error("allow.everyone.if.no.acl.found: a topic with ACLs for others is allowed")
	}
}

func TestFilter(t *testing.T) {
	lit := acl(ResourceTopic, "orders", PatternLiteral, "User:a", "*", OpRead, PermissionAllow)
	wild := acl(ResourceTopic, "*", PatternLiteral, "User:a", "*", OpRead, PermissionAllow)
	pre := acl(ResourceTopic, "ord", PatternPrefixed, "User:a", "*", OpRead, PermissionAllow)
	grp := acl(ResourceGroup, "orders", PatternLiteral, "User:b", "*", OpRead, PermissionDeny)
	name := "orders"
	p := "User:a"
	for _, tc := range []struct {
		f    Filter
		want [4]bool
	}{
		{Filter{ResourceAny, nil, PatternAny, nil, nil, OpAny, PermissionAny}, [4]bool{true, true, true, true}},
		{Filter{ResourceTopic, &name, PatternAny, nil, nil, OpAny, PermissionAny}, [4]bool{true, false, false, false}},
		{Filter{ResourceTopic, &name, PatternMatch, nil, nil, OpAny, PermissionAny}, [4]bool{true, true, true, false}},
		{Filter{ResourceAny, nil, PatternPrefixed, nil, nil, OpAny, PermissionAny}, [4]bool{false, false, true, false}},
		{Filter{ResourceAny, nil, PatternAny, &p, nil, OpAny, PermissionAny}, [4]bool{true, true, true, false}},
		{Filter{ResourceAny, nil, PatternAny, nil, nil, OpAny, PermissionDeny}, [4]bool{false, false, false, true}},
	} {
		for i, a := range []meta.ACL{lit, wild, pre, grp} {
			if got := tc.f.Matches(a); got != tc.want[i] {
				t.Errorf("filter %+v on %+v = %v", tc.f, a, got)
			}
		}
	}
}

func TestValidateACL(t *testing.T) {
	good := acl(ResourceTopic, "t", PatternLiteral, "User:a", "*", OpRead, PermissionAllow)
	if err := ValidateACL(good); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*meta.ACL){
		func(a *meta.ACL) { a.ResourceType = int8(ResourceAny) },
		func(a *meta.ACL) { a.PatternType = int8(PatternMatch) },
		func(a *meta.ACL) { a.Operation = int8(OpAny) },
		func(a *meta.ACL) { a.Permission = int8(PermissionAny) },
		func(a *meta.ACL) { a.Principal = "alice" },
		func(a *meta.ACL) { a.ResourceName = "" },
		func(a *meta.ACL) { a.ResourceType, a.ResourceName = int8(ResourceCluster), "c" },
		func(a *meta.ACL) { a.PatternType, a.ResourceName = int8(PatternPrefixed), "*" },
	} {
		a := good
		mod(&a)
		if err := ValidateACL(a); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

// BenchmarkAuthorize is the cost of one decision with n ACLs in the
// image, a tenth of them prefixed, for a principal allowed by a literal
// ACL and one matching none.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		a := NewAuthorizer(AuthorizerConfig{SuperUsers: []string{"User:admin"}})
		acls := make([]meta.ACL, 0, n)
		for i := range n {
			pt := PatternLiteral
			if i%10 == 0 {
				pt = PatternPrefixed
			}
			acls = append(acls, acl(ResourceTopic, fmt.Sprintf("topic-%d", i), pt, fmt.Sprintf("User:u%d", i%50), "*", OpWrite, PermissionAllow))
		}
		a.Update(acls)
		b.Run(fmt.Sprintf("acls=%d/allowed", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !a.Authorize("User:u1", "127.0.0.1", ResourceTopic, "topic-1", OpWrite) {
					b.Fatal("denied")
				}
			}
		})
		b.Run(fmt.Sprintf("acls=%d/no-match", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if a.Authorize("User:x", "127.0.0.1", ResourceTopic, "other-topic-name", OpRead) {
					b.Fatal("allowed")
				}
			}
		})
	}
}
