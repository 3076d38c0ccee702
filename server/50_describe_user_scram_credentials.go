package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// DescribeUserScramCredentials, v0.
//
// Behavior:
//   - Lists the SCRAM mechanisms and iteration counts of the users named,
//     or of every user when none is named; never a salt or key.
//   - A user without credentials is RESOURCE_NOT_FOUND; a user named
//     twice DUPLICATE_RESOURCE.
//   - Needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED).

func init() { regKey(50, 0, 0, handleDescribeUserScramCredentials) }

// scramMechanisms numbers the SCRAM mechanisms as the wire does.
var scramMechanisms = map[int8]string{1: auth.ScramSHA256, 2: auth.ScramSHA512}

func scramMechanismNumber(name string) int8 {
	for n, m := range scramMechanisms {
		if m == name {
			return n
		}
	}
	return 0
}

func handleDescribeUserScramCredentials(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !r.allowedCluster(auth.OpDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	byUser := map[string][]kmsg.DescribeUserSCRAMCredentialsResponseResultCredentialInfo{}
	var order []string
	for _, u := range s.meta.ScramUsers() {
		if _, ok := byUser[u.User]; !ok {
			order = append(order, u.User)
		}
		ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
		ci.Mechanism, ci.Iterations = scramMechanismNumber(u.Mechanism), u.Iterations
		byUser[u.User] = append(byUser[u.User], ci)
	}
	if len(req.Users) > 0 {
		order = order[:0]
		seen := map[string]int{}
		for _, u := range req.Users {
			seen[u.Name]++
		}
		answered := map[string]bool{}
		for _, u := range req.Users {
			if answered[u.Name] {
				continue
			}
			answered[u.Name] = true
			res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
			res.User = u.Name
			switch {
			case seen[u.Name] > 1:
				res.ErrorCode = kerr.DuplicateResource.Code
				res.ErrorMessage = errMsg("user named more than once")
			case byUser[u.Name] == nil:
				res.ErrorCode = kerr.ResourceNotFound.Code
				res.ErrorMessage = errMsg("no SCRAM credentials for user " + u.Name)
			default:
				res.CredentialInfos = byUser[u.Name]
			}
			resp.Results = append(resp.Results, res)
		}
		return resp
	}
	for _, u := range order {
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User, res.CredentialInfos = u, byUser[u]
		resp.Results = append(resp.Results, res)
	}
	return resp
}
