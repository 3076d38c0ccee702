package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DescribeAcls, v0-v3.
//
// Behavior:
//   - Lists the ACLs the filter matches, grouped by resource pattern.
//     The MATCH pattern type lists those that apply to a resource name
//     (literal, wildcard and prefixes).
//   - SECURITY_DISABLED without an authorizer (authorizer.class.name), as
//     Kafka answers; needs DESCRIBE on the cluster.
//
// Version notes:
//   - v0 has no pattern type: its filter is LITERAL.

func init() { regKey(29, 0, 3, handleDescribeAcls) }

// aclFilter turns a request's filter into auth's.
func aclFilter(rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType, principal, host *string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) auth.Filter {
	return auth.Filter{
		ResourceType: auth.ResourceType(rt),
		ResourceName: name,
		PatternType:  auth.PatternType(pt),
		Principal:    principal,
		Host:         host,
		Operation:    auth.Operation(op),
		Permission:   auth.Permission(perm),
	}
}

// aclsDisabled answers an ACL API without an authorizer.
const aclsDisabled = "no authorizer is configured (authorizer.class.name)"

func handleDescribeAcls(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	switch {
	case s.authz == nil:
		resp.ErrorCode, resp.ErrorMessage = kerr.SecurityDisabled.Code, errMsg(aclsDisabled)
		return resp
	case !r.allowedCluster(auth.OpDescribe):
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	f := aclFilter(req.ResourceType, req.ResourceName, req.ResourcePatternType, req.Principal, req.Host, req.Operation, req.PermissionType)
	if err := f.Valid(); err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
		return resp
	}
	type pattern struct {
		rt   int8
		name string
		pt   int8
	}
	index := map[pattern]int{}
	for _, a := range s.meta.ACLs() {
		if !f.Matches(a) {
			continue
		}
		p := pattern{a.ResourceType, a.ResourceName, a.PatternType}
		i, ok := index[p]
		if !ok {
			i = len(resp.Resources)
			index[p] = i
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.ResourceName, kmsg.ACLResourcePatternType(a.PatternType)
			resp.Resources = append(resp.Resources, res)
		}
		ra := kmsg.NewDescribeACLsResponseResourceACL()
		ra.Principal, ra.Host, ra.Operation, ra.PermissionType = a.Principal, a.Host, kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, ra)
	}
	return resp
}

// aclOf turns a creation into an ACL.
func aclOf(c *kmsg.CreateACLsRequestCreation) meta.ACL {
	return meta.ACL{
		ResourceType: int8(c.ResourceType),
		ResourceName: c.ResourceName,
		PatternType:  int8(c.ResourcePatternType),
		Principal:    c.Principal,
		Host:         c.Host,
		Operation:    int8(c.Operation),
		Permission:   int8(c.PermissionType),
	}
}
