package server

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// AlterUserScramCredentials, v0.
//
// Behavior:
//   - Upsertions carry the salt and the salted password (Hi(password,
//     salt, i)); the broker keeps the salt, iterations, StoredKey and
//     ServerKey in the metadata log, fsynced before the answer.
//   - Each user gets one result: UNSUPPORTED_SASL_MECHANISM for an
//     unknown mechanism, UNACCEPTABLE_CREDENTIAL for an empty name, salt
//     or password or iterations outside 4096-16384, DUPLICATE_RESOURCE when
//     the request changes the same user and mechanism twice,
//     RESOURCE_NOT_FOUND for deleting a credential that does not exist.
//     The changes of every user without an error are recorded together.
//   - Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED for
//     every user).

func init() { regKey(51, 0, 0, handleAlterUserScramCredentials) }

func handleAlterUserScramCredentials(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	type userResult struct {
		code    int16
		msg     string
		changes []meta.ScramChange
	}
	results := map[string]*userResult{}
	var order []string
	result := func(user string) *userResult {
		if res, ok := results[user]; ok {
			return res
		}
		res := &userResult{}
		results[user] = res
		order = append(order, user)
		return res
	}
	fail := func(res *userResult, code *kerr.Error, msg string) {
		if res.code == 0 {
			res.code, res.msg = code.Code, msg
		}
	}
	allowed := r.allowedCluster(auth.OpAlter)
	seen := map[[2]string]bool{}
	check := func(user string, mech int8) (*userResult, string, bool) {
		res := result(user)
		name := scramMechanisms[mech]
		switch {
		case !allowed:
			fail(res, kerr.ClusterAuthorizationFailed, "")
		case user == "":
			fail(res, kerr.UnacceptableCredential, "empty user name")
		case name == "":
			fail(res, kerr.UnsupportedSaslMechanism, fmt.Sprintf("unknown SCRAM mechanism %d", mech))
		case seen[[2]string{user, name}]:
			fail(res, kerr.DuplicateResource, "the request changes "+name+" of "+user+" twice")
		}
		seen[[2]string{user, name}] = true
		return res, name, res.code == 0
	}
	for _, d := range req.Deletions {
		res, name, ok := check(d.Name, d.Mechanism)
		if !ok {
			continue
		}
		if _, exists := s.meta.ScramCredential(d.Name, name); !exists {
			fail(res, kerr.ResourceNotFound, "no "+name+" credential for "+d.Name)
			continue
		}
		res.changes = append(res.changes, meta.ScramChange{User: d.Name, Mechanism: name})
	}
	for _, u := range req.Upsertions {
		res, name, ok := check(u.Name, u.Mechanism)
		if !ok {
			continue
		}
		switch {
		case u.Iterations < auth.MinScramIterations || u.Iterations > auth.MaxScramIterations:
			fail(res, kerr.UnacceptableCredential, fmt.Sprintf("iterations %d outside %d-%d", u.Iterations, auth.MinScramIterations, auth.MaxScramIterations))
			continue
		case len(u.Salt) == 0 || len(u.SaltedPassword) == 0:
			fail(res, kerr.UnacceptableCredential, "empty salt or salted password")
			continue
		}
		cred, err := auth.ScramFromSalted(name, u.Salt, u.SaltedPassword, u.Iterations)
		if err != nil {
			fail(res, kerr.UnsupportedSaslMechanism, err.Error())
			continue
		}
		res.changes = append(res.changes, meta.ScramChange{User: u.Name, Mechanism: name, Credential: &cred})
	}
	var changes []meta.ScramChange
	for _, user := range order {
		if res := results[user]; res.code == 0 {
			changes = append(changes, res.changes...)
		}
	}
	if err := s.meta.AlterScramCredentials(changes); err != nil {
		code, msg := errorCode(err)
		for _, user := range order {
			if res := results[user]; res.code == 0 {
				res.code, res.msg = code, *msg
			}
		}
	} else if len(changes) > 0 {
		s.logger.Info("SCRAM credentials changed", "by", r.principal, "changes", len(changes))
	}
	for _, user := range order {
		res := results[user]
		kr := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		kr.User, kr.ErrorCode = user, res.code
		if res.msg != "" {
			kr.ErrorMessage = &res.msg
		}
		resp.Results = append(resp.Results, kr)
	}
	return resp
}
