package server

import (
	"github.com/ferrymq/ferry/auth"
)

// Authorization. When authorizer.class.name names an authorizer
// (security.go), every request is checked against the ACLs of the
// metadata image as Kafka checks it: each handler states what it needs in
// one line,
//
//	if !r.allowed(auth.ResourceTopic, name, auth.OpWrite) { ... TOPIC_AUTHORIZATION_FAILED ... }
//
// and answers with Kafka's code for that resource
// (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
// CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
// Without an authorizer allowed is true and costs one nil check: the
// default broker lets everyone do everything, as Kafka without an
// authorizer does. TestAuthorizerCoversEveryAPI fails for an API that no
// test shows refused to a principal without ACLs.

// allowed reports whether the request's principal, from the connection's
// address, may do op on the resource.
func (r *request) allowed(rt auth.ResourceType, name string, op auth.Operation) bool {
	az := r.c.s.authz
	return az == nil || az.Authorize(r.principal, r.c.host, rt, name, op)
}

// allowedCluster is allowed for the cluster resource.
func (r *request) allowedCluster(op auth.Operation) bool {
	return r.allowed(auth.ResourceCluster, auth.ClusterName, op)
}

// resourceOperations are the operations Kafka lists as authorized for
// each resource type (DescribeCluster, Metadata, DescribeGroups with
// authorized operations).
var resourceOperations = map[auth.ResourceType][]auth.Operation{
	auth.ResourceTopic:   {auth.OpRead, auth.OpWrite, auth.OpCreate, auth.OpDelete, auth.OpAlter, auth.OpDescribe, auth.OpDescribeConfigs, auth.OpAlterConfigs},
	auth.ResourceGroup:   {auth.OpRead, auth.OpDelete, auth.OpDescribe, auth.OpDescribeConfigs, auth.OpAlterConfigs},
	auth.ResourceCluster: {auth.OpCreate, auth.OpAlter, auth.OpDescribe, auth.OpClusterAction, auth.OpDescribeConfigs, auth.OpAlterConfigs, auth.OpIdempotentWrite, auth.OpCreateTokens, auth.OpDescribeTokens},
}

// authorizedOperations is the bit field of the operations the principal
// may do on a resource (bit n for operation n), as Kafka answers when a
// client asks for authorized operations.
func (r *request) authorizedOperations(rt auth.ResourceType, name string) int32 {
	var bits int32
	for _, op := range resourceOperations[rt] {
		if r.allowed(rt, name, op) {
			bits |= 1 << op
		}
	}
	return bits
}

// allowedAny reports whether the principal may do op on some resource of
// type rt (Kafka's authorizeByResourceType).
func (r *request) allowedAny(rt auth.ResourceType, op auth.Operation) bool {
	az := r.c.s.authz
	return az == nil || az.AuthorizeAny(r.principal, r.c.host, rt, op)
}

// splitAllowed splits items into those ok allows and the rest, keeping
// their order: the topics or groups of a request the principal may act on,
// and those answered with an authorization error.
func splitAllowed[T any](items []T, ok func(T) bool) (kept, denied []T) {
	for _, it := range items {
		if ok(it) {
			kept = append(kept, it)
		} else {
			denied = append(denied, it)
		}
	}
	return kept, denied
}
