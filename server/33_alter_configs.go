package server

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
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
			var err error
			switch rr.ResourceType {
			case resourceTopic:
				t := s.topics.get(rr.ResourceName)
				if t == nil {
					err = newTopicError(kerr.UnknownTopicOrPartition, "topic %q does not exist", rr.ResourceName)
					break
				}
				err = s.setTopicConfigs(t, changes, true, req.ValidateOnly)
			case resourceBroker:
				err = s.setBrokerConfigs(rr.ResourceName, changes, true, req.ValidateOnly)
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

// setBrokerConfigs changes dynamic broker configs: replacing all of them,
// or editing (nil removes a key). name is this node's id or "" (cluster
// default); both apply to this broker.
func (s *Server) setBrokerConfigs(name string, changes map[string]*string, replace, validateOnly bool) error {
	if name != "" && name != strconv.Itoa(int(s.cfg.NodeID)) {
		return newTopicError(kerr.InvalidRequest, "broker %s is not this broker (%d)", name, s.cfg.NodeID)
	}
	for k, v := range changes {
		bc, ok := brokerConfigByName[k]
		if !ok {
			return newTopicError(kerr.InvalidConfig, "unknown broker config %q", k)
		}
		if !bc.dynamic {
			return newTopicError(kerr.InvalidRequest, "broker config %s cannot be changed while the broker runs", k)
		}
		if v != nil {
			if err := validateBrokerConfig(k, *v); err != nil {
				return newTopicError(kerr.InvalidConfig, "%v", err)
			}
		}
	}
	s.brokerMu.Lock()
	defer s.brokerMu.Unlock()
	old := s.settings()
	next, edits := editConfigs(old.dynamic, changes, replace)
	var recs []*metaRecord
	for _, e := range edits {
		recs = append(recs, &metaRecord{Type: metaConfig, Resource: "broker", Key: e.key, Value: e.value})
	}
	if validateOnly || len(recs) == 0 {
		return nil
	}
	if err := s.meta.append(recs...); err != nil {
		return newTopicError(kerr.KafkaStorageError, "recording configs: %v", err)
	}
	s.broker.Store(&brokerSettings{static: old.static, dynamic: next})
	for _, t := range s.topics.all() {
		s.applyConfigs(t)
	}
	s.logger.Info("broker configs changed", "dynamic", fmt.Sprint(next))
	return nil
}
