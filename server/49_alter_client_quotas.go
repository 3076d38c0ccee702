package server

import (
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// AlterClientQuotas, v0-v1.
//
// Behavior:
//   - Sets or removes quotas of entities: a user, a client id, both, or
//     an ip, each named or (a null name) the default. Users and client ids
//     take producer_byte_rate, consumer_byte_rate (whole bytes per second),
//     request_percentage and controller_mutation_rate; ips take
//     connection_creation_rate. Values must be positive.
//   - A bad entity or quota is INVALID_REQUEST for its entry; the others
//     are recorded together in the metadata log, fsynced before the
//     answer, and apply at once.
//   - Needs ALTER_CONFIGS on the cluster (CLUSTER_AUTHORIZATION_FAILED).
//
// Version notes:
//   - v1 is flexible.

func init() { regKey(49, 0, 1, handleAlterClientQuotas) }

func handleAlterClientQuotas(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	allowed := r.allowedCluster(auth.OpAlterConfigs)
	var changes []meta.QuotaChange
	var at []int
	for _, e := range req.Entries {
		re := kmsg.NewAlterClientQuotasResponseEntry()
		entity := make(meta.QuotaEntity, 0, len(e.Entity))
		for _, p := range e.Entity {
			ee := kmsg.NewAlterClientQuotasResponseEntryEntity()
			ee.Type, ee.Name = p.Type, p.Name
			re.Entity = append(re.Entity, ee)
			entity = append(entity, meta.QuotaEntityPart{Type: p.Type, Name: p.Name})
		}
		var ch []meta.QuotaChange
		err := func() error {
			if !allowed {
				return kerr.ClusterAuthorizationFailed
			}
			keys, err := quotaKeys(entity)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, op := range e.Ops {
				if !keys[op.Key] {
					return fmt.Errorf("%w: %s is not a quota of this entity", kerr.InvalidRequest, op.Key)
				}
				if seen[op.Key] {
					return fmt.Errorf("%w: %s is changed twice", kerr.InvalidRequest, op.Key)
				}
				seen[op.Key] = true
				c := meta.QuotaChange{Entity: entity, Key: op.Key}
				if !op.Remove {
					if op.Value <= 0 || math.IsNaN(op.Value) || math.IsInf(op.Value, 0) {
						return fmt.Errorf("%w: %s must be positive", kerr.InvalidRequest, op.Key)
					}
					if op.Key != quotaRequest && op.Key != quotaMutation && op.Value != math.Trunc(op.Value) {
						return fmt.Errorf("%w: %s must be a whole number", kerr.InvalidRequest, op.Key)
					}
					v := op.Value
					c.Value = &v
				}
				ch = append(ch, c)
			}
			return nil
		}()
		if err != nil {
			re.ErrorCode, re.ErrorMessage = errorCode(err)
		} else {
			changes = append(changes, ch...)
			at = append(at, len(resp.Entries))
		}
		resp.Entries = append(resp.Entries, re)
	}
	if req.ValidateOnly || len(changes) == 0 {
		return resp
	}
	r.await(func() kmsg.Response {
		if err := s.meta.AlterClientQuotas(changes); err != nil {
			code, msg := errorCode(err)
			for _, i := range at {
				resp.Entries[i].ErrorCode, resp.Entries[i].ErrorMessage = code, msg
			}
		} else {
			s.logger.Info("client quotas changed", "by", r.principal, "changes", len(changes))
		}
		return resp
	})
	return nil
}

// quotaKeys checks an entity and returns the quotas it may have.
func quotaKeys(e meta.QuotaEntity) (map[string]bool, error) {
	types := map[string]bool{}
	for _, p := range e {
		if !validQuotaEntityType(p.Type) {
			return nil, fmt.Errorf("%w: unknown entity type %q", kerr.InvalidRequest, p.Type)
		}
		if types[p.Type] {
			return nil, fmt.Errorf("%w: entity type %s given twice", kerr.InvalidRequest, p.Type)
		}
		if p.Name != nil && *p.Name == "" && p.Type != "client-id" {
			return nil, fmt.Errorf("%w: empty %s name", kerr.InvalidRequest, p.Type)
		}
		types[p.Type] = true
	}
	switch {
	case len(types) == 0:
		return nil, fmt.Errorf("%w: empty entity", kerr.InvalidRequest)
	case types["ip"] && len(types) > 1:
		return nil, fmt.Errorf("%w: an ip entity cannot be combined with others", kerr.InvalidRequest)
	case types["ip"]:
		return map[string]bool{quotaConnRate: true}, nil
	}
	return map[string]bool{quotaProduce: true, quotaFetch: true, quotaRequest: true, quotaMutation: true}, nil
}
