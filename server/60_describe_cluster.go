package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// DescribeCluster, v0-v2: this broker, the cluster id, and this broker as
// controller. Anyone may ask, as in Kafka (no ACL is checked); the
// cluster's authorized operations are the principal's. v1+ EndpointType 2 (controllers) is answered the same way,
// as one process plays both roles.

func init() { regKey(60, 0, 2, handleDescribeCluster) }

func handleDescribeCluster(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if r.version >= 1 && req.EndpointType != 1 && req.EndpointType != 2 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp
	}
	host, port := r.brokerHostPort()
	resp.ClusterID = s.meta.ClusterID()
	resp.ControllerID = s.cfg.NodeID
	resp.EndpointType = req.EndpointType
	resp.ClusterAuthorizedOperations = -2147483648
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = r.authorizedOperations(auth.ResourceCluster, auth.ClusterName)
	}
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID, b.Host, b.Port = s.cfg.NodeID, host, port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{b}
	return resp
}
