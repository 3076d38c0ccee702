package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// DescribeCluster, v0-v2: the brokers (this one on a single node; in a
// cluster the registered, unfenced ones), each with its broker.rack, the
// cluster id, and the controller (the metadata quorum's leader). Anyone
// may ask, as in Kafka (no ACL is checked); the cluster's authorized
// operations are the principal's. v1+ EndpointType 2 (controllers) is
// answered the same way, as every node plays both roles.

func init() { regKey(60, 0, 2, handleDescribeCluster) }

func handleDescribeCluster(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if r.version >= 1 && req.EndpointType != 1 && req.EndpointType != 2 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		return resp
	}
	resp.ClusterID = s.meta.ClusterID()
	resp.ControllerID = s.controllerID()
	resp.EndpointType = req.EndpointType
	resp.ClusterAuthorizedOperations = -2147483648
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = r.authorizedOperations(auth.ResourceCluster, auth.ClusterName)
	}
	for _, mb := range s.metadataBrokers(r) {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port, b.Rack = mb.NodeID, mb.Host, mb.Port, mb.Rack
		resp.Brokers = append(resp.Brokers, b)
	}
	return resp
}
