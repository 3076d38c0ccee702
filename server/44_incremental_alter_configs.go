package server

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// IncrementalAlterConfigs, v0-v1: SET, DELETE, APPEND and SUBTRACT (list
// configs such as cleanup.policy) on topic or broker configs, and SET and
// DELETE on a GROUP's share configs (shares.go). Validated, durable and
// applied at once, like AlterConfigs.

func init() { regKey(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	r.await(func() kmsg.Response {
		for _, rr := range req.Resources {
			res := kmsg.NewIncrementalAlterConfigsResponseResource()
			res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
			ops := make([]meta.ConfigOp, len(rr.Configs))
			for i, c := range rr.Configs {
				ops[i] = meta.ConfigOp{Name: c.Name, Op: meta.OpType(c.Op), Value: c.Value}
			}
			bs := s.meta.Settings()
			var err error
			switch rr.ResourceType {
			case resourceTopic:
				t := s.meta.Topic(rr.ResourceName)
				if !r.allowed(auth.ResourceTopic, rr.ResourceName, auth.OpAlterConfigs) {
					err = kerr.TopicAuthorizationFailed
					break
				}
				if t == nil {
					err = fmt.Errorf("%w: topic %q does not exist", kerr.UnknownTopicOrPartition, rr.ResourceName)
					break
				}
				current := t.Configs()
				var changes map[string]*string
				if changes, err = meta.IncrementalChanges(ops, func(k string) string {
					v, _ := bs.TopicValue(current, k)
					return v
				}); err == nil {
					err = s.meta.AlterTopicConfigs(t, meta.Alter{Changes: changes, ValidateOnly: req.ValidateOnly})
				}
				if err == nil && !req.ValidateOnly {
					s.shares.TopicsChanged() // delivery.delay.ms
				}
			case resourceBroker:
				if !r.allowedCluster(auth.OpAlterConfigs) {
					err = kerr.ClusterAuthorizationFailed
					break
				}
				var changes map[string]*string
				if changes, err = meta.IncrementalChanges(ops, func(k string) string {
					v, _ := bs.Get(k)
					return v
				}); err == nil {
					err = s.meta.AlterBrokerConfigs(rr.ResourceName, meta.Alter{Changes: changes, ValidateOnly: req.ValidateOnly})
				}
			case resourceGroup:
				if !r.allowed(auth.ResourceGroup, rr.ResourceName, auth.OpAlterConfigs) {
					err = kerr.GroupAuthorizationFailed
					break
				}
				err = s.alterGroupConfigs(rr.ResourceName, ops, req.ValidateOnly)
			default:
				err = fmt.Errorf("%w: unsupported resource type %d", kerr.InvalidRequest, rr.ResourceType)
			}
			res.ErrorCode, res.ErrorMessage = errorCode(err)
			resp.Resources = append(resp.Resources, res)
		}
		return resp
	})
	return nil
}
