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
// On one broker it leads every partition, with itself as the only replica
// and in-sync replica, at leader epoch 0. In a cluster the brokers are the
// registered, unfenced ones with their advertised addresses, the
// controller is the metadata quorum's leader, and each partition shows
// its leader, epoch, replicas and ISR from the metadata log; one without
// a leader answers LEADER_NOT_AVAILABLE, and a replica on a fenced broker
// is listed offline. Each broker carries its broker.rack (v1+; null when
// unset). v0 with an empty topic list, and
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
	resp.Brokers = s.metadataBrokers(r)
	clusterID := s.meta.ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = s.controllerID()
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
	if s.cluster != nil {
		fenced := s.fencedBrokers()
		for i := range n {
			st := t.State(i)
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = i
			mp.Leader = st.Leader
			mp.LeaderEpoch = st.LeaderEpoch
			mp.Replicas = st.Replicas
			mp.ISR = st.ISR
			for _, r := range st.Replicas {
				if fenced[r] {
					mp.OfflineReplicas = append(mp.OfflineReplicas, r)
				}
			}
			if st.Leader < 0 || fenced[st.Leader] {
				mp.ErrorCode = kerr.LeaderNotAvailable.Code
				mp.Leader = -1
			}
			mt.Partitions[i] = mp
		}
		return mt
	}
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

// metadataBrokers lists the brokers for Metadata: this one on a single
// node; the registered, unfenced ones in a cluster.
func (s *Server) metadataBrokers(r *request) []kmsg.MetadataResponseBroker {
	host, port := r.brokerHostPort()
	if s.cluster == nil {
		return []kmsg.MetadataResponseBroker{{NodeID: s.cfg.NodeID, Host: host, Port: port, Rack: rackOf(s.meta.Rack())}}
	}
	var out []kmsg.MetadataResponseBroker
	registered := false
	for _, b := range s.meta.Brokers() {
		switch {
		case b.ID == s.cfg.NodeID:
			// This broker as the listener of the client advertises it.
			registered = true
			if !b.Fenced {
				out = append(out, kmsg.MetadataResponseBroker{NodeID: b.ID, Host: host, Port: port, Rack: rackOf(b.Rack)})
			}
		case !b.Fenced && b.Host != "":
			h, p := b.Endpoint(r.c.ep.l.Name)
			out = append(out, kmsg.MetadataResponseBroker{NodeID: b.ID, Host: h, Port: p, Rack: rackOf(b.Rack)})
		}
	}
	if !registered && s.cluster.IsBroker() {
		// Not registered yet (the quorum is forming): a client that
		// asks now still learns of the broker it asked. A
		// controller-only node is never listed.
		out = append(out, kmsg.MetadataResponseBroker{NodeID: s.cfg.NodeID, Host: host, Port: port, Rack: rackOf(s.meta.Rack())})
	}
	return out
}

// brokerAddr returns the address of broker id that the client of r is
// told: this broker's listener it is connected to; another broker's
// listener of the same name (its inter-broker one if it has none of
// that name). "" and -1 for a broker not registered.
func (r *request) brokerAddr(id int32) (string, int32) {
	if id == r.c.s.cfg.NodeID {
		return r.brokerHostPort()
	}
	for _, b := range r.c.s.meta.Brokers() {
		if b.ID == id && b.Host != "" {
			return b.Endpoint(r.c.ep.l.Name)
		}
	}
	return "", -1
}

// rackOf is a broker's rack as Metadata and DescribeCluster carry it:
// null when it has none.
func rackOf(rack string) *string {
	if rack == "" {
		return nil
	}
	return &rack
}

// fencedBrokers are the brokers of a cluster that are fenced or not
// registered.
func (s *Server) fencedBrokers() map[int32]bool {
	m := map[int32]bool{}
	for _, b := range s.meta.Brokers() {
		if b.Fenced {
			m[b.ID] = true
		}
	}
	return m
}
