package server

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// IncrementalAlterConfigs, v0-v1: SET, DELETE, APPEND and SUBTRACT (list
// configs such as cleanup.policy) on topic or broker configs. Validated,
// durable and applied at once, like AlterConfigs.

func init() { regKey(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	r.await(func() kmsg.Response {
		for _, rr := range req.Resources {
			res := kmsg.NewIncrementalAlterConfigsResponseResource()
			res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
			var err error
			switch rr.ResourceType {
			case resourceTopic:
				t := s.topics.get(rr.ResourceName)
				if t == nil {
					err = newTopicError(kerr.UnknownTopicOrPartition, "topic %q does not exist", rr.ResourceName)
					break
				}
				s.topics.mu.RLock()
				current := t.configs
				s.topics.mu.RUnlock()
				var changes map[string]*string
				if changes, err = incrementalChanges(rr.Configs, func(k string) string {
					v, _ := s.settings().topicValue(current, k)
					return v
				}); err == nil {
					err = s.setTopicConfigs(t, changes, false, req.ValidateOnly)
				}
			case resourceBroker:
				var changes map[string]*string
				if changes, err = incrementalChanges(rr.Configs, func(k string) string {
					v, _ := s.settings().get(k)
					return v
				}); err == nil {
					err = s.setBrokerConfigs(rr.ResourceName, changes, false, req.ValidateOnly)
				}
			default:
				err = newTopicError(kerr.InvalidRequest, "unsupported resource type %d", rr.ResourceType)
			}
			res.ErrorCode, res.ErrorMessage = errCode(err)
			resp.Resources = append(resp.Resources, res)
		}
		return resp
	})
	return nil
}

// incrementalChanges turns operations into key -> new value (nil deletes).
func incrementalChanges(ops []kmsg.IncrementalAlterConfigsRequestResourceConfig, current func(string) string) (map[string]*string, error) {
	changes := map[string]*string{}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			return nil, newTopicError(kerr.InvalidRequest, "config %s is changed twice", op.Name)
		}
		seen[op.Name] = true
		switch op.Op {
		case 0: // SET
			if op.Value == nil {
				return nil, newTopicError(kerr.InvalidRequest, "SET of %s without a value", op.Name)
			}
			changes[op.Name] = op.Value
		case 1: // DELETE
			changes[op.Name] = nil
		case 2, 3: // APPEND, SUBTRACT
			tc := topicConfigByName[op.Name]
			bc := brokerConfigByName[op.Name]
			if (tc == nil || tc.typ != typeList) && (bc == nil || bc.typ != typeList) {
				return nil, newTopicError(kerr.InvalidConfig, "%s is not a list config", op.Name)
			}
			var items []string
			if cur := current(op.Name); cur != "" {
				items = strings.Split(cur, ",")
			}
			for _, v := range strings.Split(deref(op.Value), ",") {
				v = strings.TrimSpace(v)
				if v == "" {
					continue
				}
				i := slices.Index(items, v)
				if op.Op == 2 && i < 0 {
					items = append(items, v)
				} else if op.Op == 3 && i >= 0 {
					items = slices.Delete(items, i, i+1)
				}
			}
			joined := strings.Join(items, ",")
			changes[op.Name] = &joined
		default:
			return nil, newTopicError(kerr.InvalidRequest, "unknown operation %d on %s", op.Op, op.Name)
		}
	}
	return changes, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
