package server

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DescribeClientQuotas, v0-v1.
//
// Behavior:
//   - Lists the quotas of every entity the components match: a component
//     of MatchType 0 an entity naming that type with that name, 1 the
//     type's default, 2 any entity of the type. Strict leaves out
//     entities with types no component names.
//   - Needs DESCRIBE_CONFIGS on the cluster (CLUSTER_AUTHORIZATION_FAILED).
//
// Version notes:
//   - v1 is flexible.

func init() { regKey(48, 0, 1, handleDescribeClientQuotas) }

func handleDescribeClientQuotas(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !r.allowedCluster(auth.OpDescribeConfigs) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	for _, c := range req.Components {
		if !validQuotaEntityType(c.EntityType) || c.MatchType < 0 || c.MatchType > 2 {
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMsg("bad component: entity type "+c.EntityType)
			return resp
		}
	}
	set := s.meta.ClientQuotas()
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cq := set[k]
		if !quotaMatches(cq.Entity, req.Components, req.Strict) {
			continue
		}
		e := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, p := range cq.Entity {
			ee := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			e.Entity = append(e.Entity, ee)
		}
		names := make([]string, 0, len(cq.Values))
		for n := range cq.Values {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v := kmsg.NewDescribeClientQuotasResponseEntryValue()
			v.Key, v.Value = n, cq.Values[n]
			e.Values = append(e.Values, v)
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp
}

// quotaMatches reports whether the components select entity.
func quotaMatches(entity meta.QuotaEntity, comps []kmsg.DescribeClientQuotasRequestComponent, strict bool) bool {
	for _, c := range comps {
		found := false
		for _, p := range entity {
			if p.Type != c.EntityType {
				continue
			}
			switch c.MatchType {
			case 0:
				found = p.Name != nil && c.Match != nil && *p.Name == *c.Match
			case 1:
				found = p.Name == nil
			case 2:
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if strict {
		for _, p := range entity {
			named := false
			for _, c := range comps {
				named = named || c.EntityType == p.Type
			}
			if !named {
				return false
			}
		}
	}
	return true
}

func validQuotaEntityType(t string) bool { return t == "user" || t == "client-id" || t == "ip" }
