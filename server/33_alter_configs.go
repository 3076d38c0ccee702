package server

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// AlterConfigs, v0-v2: replaces a topic's whole set of configs (or the
// broker's dynamic configs) with the ones given. Changes are validated,
// recorded durably in the metadata log and take effect at once.

func init() { regKey(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	r.await(func() kmsg.Response {
		for _, rr := range req.Resources {
			res := kmsg.NewAlterConfigsResponseResource()
			res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
			changes := map[string]*string{}
			for _, c := range rr.Configs {
				changes[c.Name] = c.Value
			}
			alter := meta.Alter{Changes: changes, Replace: true, ValidateOnly: req.ValidateOnly}
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
				if err = s.meta.AlterTopicConfigs(t, alter); err == nil && !req.ValidateOnly {
					s.shares.TopicsChanged() // delivery.delay.ms
				}
			case resourceBroker:
				if !r.allowedCluster(auth.OpAlterConfigs) {
					err = kerr.ClusterAuthorizationFailed
					break
				}
				err = s.meta.AlterBrokerConfigs(rr.ResourceName, alter)
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
