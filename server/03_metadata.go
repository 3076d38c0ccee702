package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
)

// Metadata, v0-v13.
//
// One broker leads every partition, with itself as the only replica and
// in-sync replica, at leader epoch 0. v0 with an empty topic list, and
// v1+ with a null list, mean every topic; v1+ with an empty list means
// none. Topics the principal may not DESCRIBE are left out of a listing
// and answered TOPIC_AUTHORIZATION_FAILED when named; creating one needs
// CREATE on the cluster or the topic. A requested topic that does not exist is created when
// auto.create.topics.enable is true and the request allows it (v4+;
// always before v4), with num.partitions partitions. v10+ may name topics
// by id.

func init() { regKey(3, 0, 13, handleMetadata) }

func handleMetadata(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	host, port := r.brokerHostPort()
	resp.Brokers = []kmsg.MetadataResponseBroker{{NodeID: s.cfg.NodeID, Host: host, Port: port}}
	clusterID := s.meta.ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = s.cfg.NodeID
	if r.version >= 8 && r.version <= 10 {
		resp.AuthorizedOperations = -2147483648
		if req.IncludeClusterAuthorizedOperations {
			resp.AuthorizedOperations = r.authorizedOperations(auth.ResourceCluster, auth.ClusterName)
		}
	}

	all := req.Topics == nil || (r.version == 0 && len(req.Topics) == 0)
	if all {
		// Topics the principal may not describe are left out.
		for _, t := range s.meta.Topics() {
			if r.allowed(auth.ResourceTopic, t.Name(), auth.OpDescribe) {
				resp.Topics = append(resp.Topics, s.metadataTopic(r, t))
			}
		}
		return resp
	}
	autoCreate := s.settings().bool("auto.create.topics.enable") && (r.version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		var t *meta.Topic
		switch {
		case rt.Topic != nil:
			t = s.meta.Topic(*rt.Topic)
			if !r.allowed(auth.ResourceTopic, *rt.Topic, auth.OpDescribe) ||
				t == nil && autoCreate && !r.allowedCluster(auth.OpCreate) && !r.allowed(auth.ResourceTopic, *rt.Topic, auth.OpCreate) {
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic = rt.Topic
				mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			if t == nil && autoCreate {
				var err error
				t, err = s.meta.CreateTopic(meta.NewTopic{Name: *rt.Topic, Partitions: -1, ReplicationFactor: -1})
				if err != nil {
					if code := codeOf(err); code != kerr.TopicAlreadyExists.Code {
						mt := kmsg.NewMetadataResponseTopic()
						mt.Topic = rt.Topic
						mt.ErrorCode = code
						resp.Topics = append(resp.Topics, mt)
						continue
					}
					t = s.meta.Topic(*rt.Topic)
				}
			}
		case rt.TopicID != [16]byte{}:
			t = s.meta.TopicByID(rt.TopicID)
			if t != nil && !r.allowed(auth.ResourceTopic, t.Name(), auth.OpDescribe) {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		}
		if t == nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = rt.Topic
			mt.TopicID = rt.TopicID
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			if rt.Topic == nil {
				mt.ErrorCode = kerr.UnknownTopicID.Code
			} else if err := meta.ValidTopicName(*rt.Topic); err != nil {
				mt.ErrorCode = kerr.InvalidTopicException.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, s.metadataTopic(r, t))
	}
	return resp
}

func (s *Server) metadataTopic(r *request, t *meta.Topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name()
	mt.Topic = &name
	mt.TopicID = t.ID()
	mt.IsInternal = t.Internal()
	if r.version >= 8 {
		mt.AuthorizedOperations = -2147483648
		if r.kreq.(*kmsg.MetadataRequest).IncludeTopicAuthorizedOperations {
			mt.AuthorizedOperations = r.authorizedOperations(auth.ResourceTopic, name)
		}
	}
	n := t.NumPartitions()
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, n)
	for i := range n {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = i
		mp.Leader = s.cfg.NodeID
		mp.LeaderEpoch = partition.LeaderEpoch
		mp.Replicas = []int32{s.cfg.NodeID}
		mp.ISR = []int32{s.cfg.NodeID}
		if _, err := t.Partition(i); err != nil {
			// Offline (it could not be opened at start): no leader, and
			// this broker's replica listed offline, as Kafka reports a
			// partition on a failed log directory.
			mp.ErrorCode = codeOf(err)
			mp.Leader = -1
			mp.OfflineReplicas = []int32{s.cfg.NodeID}
		}
		mt.Partitions[i] = mp
	}
	return mt
}
