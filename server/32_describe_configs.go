package server

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DescribeConfigs, v0-v4: every topic config with its value, source
// (topic, dynamic broker, static broker, default), type and synonyms
// (v1+), and documentation (v3+); and the broker's configs for resource
// type BROKER named by this node's id (or "" for cluster-wide dynamic
// defaults); and a GROUP's share configs (shares.go).

func init() { regKey(32, 0, 4, handleDescribeConfigs) }

const (
	resourceTopic  = 2
	resourceBroker = 4
)

func handleDescribeConfigs(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	bs := s.meta.Settings()
	for _, rr := range req.Resources {
		opts := meta.DescribeOptions{Keys: rr.ConfigNames, Synonyms: req.IncludeSynonyms, Docs: req.IncludeDocumentation}
		res := kmsg.NewDescribeConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case resourceTopic:
			t := s.meta.Topic(rr.ResourceName)
			if !r.allowed(auth.ResourceTopic, rr.ResourceName, auth.OpDescribeConfigs) {
				res.ErrorCode = kerr.TopicAuthorizationFailed.Code
				break
			}
			if t == nil {
				res.ErrorCode = kerr.UnknownTopicOrPartition.Code
				res.ErrorMessage = errMsg("topic " + rr.ResourceName + " does not exist")
				break
			}
			res.Configs = describeConfigs(bs.DescribeTopicConfigs(t.Configs(), opts))
		case resourceBroker:
			if !r.allowedCluster(auth.OpDescribeConfigs) {
				res.ErrorCode = kerr.ClusterAuthorizationFailed.Code
				break
			}
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(s.cfg.NodeID)) {
				res.ErrorCode = kerr.InvalidRequest.Code
				res.ErrorMessage = errMsg("broker " + rr.ResourceName + " is not this broker (" + strconv.Itoa(int(s.cfg.NodeID)) + ")")
				break
			}
			res.Configs = describeConfigs(bs.DescribeBrokerConfigs(opts))
		case resourceGroup:
			if !r.allowed(auth.ResourceGroup, rr.ResourceName, auth.OpDescribeConfigs) {
				res.ErrorCode = kerr.GroupAuthorizationFailed.Code
				break
			}
			res.Configs = s.describeGroupConfigs(rr.ResourceName, opts)
		default:
			res.ErrorCode = kerr.InvalidRequest.Code
			res.ErrorMessage = errMsg("unsupported resource type " + strconv.Itoa(int(rr.ResourceType)))
		}
		if r.version == 0 {
			for i := range res.Configs {
				// v0 has no source; IsDefault says it.
				res.Configs[i].IsDefault = res.Configs[i].Source == kmsg.ConfigSource(meta.SourceDefault)
			}
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}
