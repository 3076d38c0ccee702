package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// CreateAcls, v0-v3.
//
// Behavior:
//   - Each creation is checked as Kafka checks it (a known resource type,
//     pattern type, operation and permission, a principal Type:name, the
//     cluster named kafka-cluster): INVALID_REQUEST otherwise. The valid
//     ones are recorded together in the metadata log, fsynced before the
//     answer, and take effect at once; an ACL that exists already is
//     left as it is.
//   - SECURITY_DISABLED without an authorizer; needs ALTER on the cluster.

func init() { regKey(30, 0, 3, handleCreateAcls) }

func handleCreateAcls(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	resp.Results = make([]kmsg.CreateACLsResponseResult, len(req.Creations))
	var code int16
	var msg *string
	switch {
	case s.authz == nil:
		code, msg = kerr.SecurityDisabled.Code, errMsg(aclsDisabled)
	case !r.allowedCluster(auth.OpAlter):
		code = kerr.ClusterAuthorizationFailed.Code
	}
	var acls []meta.ACL
	var at []int
	for i := range req.Creations {
		res := &resp.Results[i]
		*res = kmsg.NewCreateACLsResponseResult()
		if code != 0 {
			res.ErrorCode, res.ErrorMessage = code, msg
			continue
		}
		a := aclOf(&req.Creations[i])
		if err := auth.ValidateACL(a); err != nil {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
			continue
		}
		acls = append(acls, a)
		at = append(at, i)
	}
	if len(acls) == 0 {
		return resp
	}
	r.await(func() kmsg.Response {
		if err := s.meta.CreateACLs(acls); err != nil {
			code, msg := errorCode(err)
			for _, i := range at {
				resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code, msg
			}
		} else {
			s.logger.Info("ACLs created", "by", r.principal, "acls", len(acls))
		}
		return resp
	})
	return nil
}
