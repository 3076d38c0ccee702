package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DeleteAcls, v0-v3.
//
// Behavior:
//   - Each filter deletes the ACLs it matches (as DescribeAcls matches
//     them) and lists them; the deletions of every filter are recorded
//     together in the metadata log, fsynced before the answer.
//   - SECURITY_DISABLED without an authorizer; needs ALTER on the cluster.

func init() { regKey(31, 0, 3, handleDeleteAcls) }

func handleDeleteAcls(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	var code int16
	var msg *string
	switch {
	case s.authz == nil:
		code, msg = kerr.SecurityDisabled.Code, errMsg(aclsDisabled)
	case !r.allowedCluster(auth.OpAlter):
		code = kerr.ClusterAuthorizationFailed.Code
	}
	current := s.meta.ACLs()
	var doomed []meta.ACL
	deleted := map[meta.ACL]bool{}
	for i, rf := range req.Filters {
		res := &resp.Results[i]
		*res = kmsg.NewDeleteACLsResponseResult()
		if code != 0 {
			res.ErrorCode, res.ErrorMessage = code, msg
			continue
		}
		f := aclFilter(rf.ResourceType, rf.ResourceName, rf.ResourcePatternType, rf.Principal, rf.Host, rf.Operation, rf.PermissionType)
		if err := f.Valid(); err != nil {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
			continue
		}
		for _, a := range current {
			if !f.Matches(a) {
				continue
			}
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.ResourceName, kmsg.ACLResourcePatternType(a.PatternType)
			m.Principal, m.Host, m.Operation, m.PermissionType = a.Principal, a.Host, kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
			res.MatchingACLs = append(res.MatchingACLs, m)
			if !deleted[a] {
				deleted[a] = true
				doomed = append(doomed, a)
			}
		}
	}
	if len(doomed) == 0 {
		return resp
	}
	r.await(func() kmsg.Response {
		if err := s.meta.DeleteACLs(doomed); err != nil {
			code, msg := errorCode(err)
			for i := range resp.Results {
				if resp.Results[i].ErrorCode == 0 {
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
					resp.Results[i].MatchingACLs = nil
				}
			}
		} else {
			s.logger.Info("ACLs deleted", "by", r.principal, "acls", len(doomed))
		}
		return resp
	})
	return nil
}
