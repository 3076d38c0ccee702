package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/raftlog"
)

// DescribeQuorum, v0-v2 (KIP-595, KIP-853).
//
// Behavior:
//   - Describes partition 0 of __cluster_metadata, the metadata log: its
//     leader (the controller), epoch (raft's term), high watermark (the
//     commit index), the voters and the observers (the raft learners:
//     broker-only nodes), each with its log end offset (the leader's
//     match index for it) and, v1+, when the leader last heard from it
//     and when its log last reached the leader's end (the leader: now).
//     Offsets are raft log indexes: the high watermark counts the
//     committed entries.
//   - Only the quorum's leader knows its members' logs. Another node
//     forwards the request to the leader's Kafka listener (Kafka's brokers
//     forward to the active controller), as registered in the metadata
//     (a broker record, or a controller-only node's controller record),
//     and passes its answer back; it answers NOT_LEADER_OR_FOLLOWER when
//     no leader is known, when it cannot reach it, and when the request
//     was forwarded already.
//   - Another topic or partition answers UNKNOWN_TOPIC_OR_PARTITION.
//   - It needs DESCRIBE on the cluster: CLUSTER_AUTHORIZATION_FAILED.
//   - A single node has no metadata quorum (controller.quorum.voters is
//     not set): UNSUPPORTED_VERSION, as Kafka's brokers answer without
//     KRaft.
//
// Version notes:
//   - v1 adds the timestamps; v2 the error messages, the replicas'
//     directory ids (zero: Ferry has one log directory and no ids) and
//     the voters' controller endpoints (their addresses in the metadata
//     log's address book, controller.quorum.voters until the voters
//     change; named by the first of
//     controller.listener.names, CONTROLLER by default; they are raft
//     transport listeners, not Kafka ones).

func init() { regKey(55, 0, 2, handleDescribeQuorum) }

// metadataTopic is the metadata log's topic name, as KRaft names it.
const metadataTopic = "__cluster_metadata"

func handleDescribeQuorum(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeQuorumRequest)
	resp := req.ResponseKind().(*kmsg.DescribeQuorumResponse)
	topLevel := func(code int16, msg string) kmsg.Response {
		resp.ErrorCode = code
		if r.version >= 2 {
			resp.ErrorMessage = &msg
		}
		return resp
	}
	if !r.allowedCluster(auth.OpDescribe) {
		return topLevel(kerr.ClusterAuthorizationFailed.Code, "DESCRIBE on the cluster is not allowed")
	}
	if s.raft == nil {
		return topLevel(kerr.UnsupportedVersion.Code, "a single node has no metadata quorum (controller.quorum.voters is not set)")
	}
	if !asksForMetadataLog(req) {
		for _, rt := range req.Topics {
			st := kmsg.NewDescribeQuorumResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewDescribeQuorumResponseTopicPartition()
				sp.Partition, sp.ErrorCode, sp.LeaderID = rp.Partition, kerr.UnknownTopicOrPartition.Code, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
	r.await(func() kmsg.Response {
		ctx, cancel := context.WithTimeout(r.c.ctx, 10*time.Second)
		defer cancel()
		q, err := s.raft.Quorum(ctx)
		if errors.Is(err, raftlog.ErrNotLeader) {
			if fwd, ok := s.forwardToQuorumLeader(ctx, r, req, q.Leader); ok {
				return fwd
			}
		}
		sp := kmsg.NewDescribeQuorumResponseTopicPartition()
		sp.LeaderID = q.Leader
		if err != nil {
			switch {
			case errors.Is(err, raftlog.ErrNotLeader) && q.Leader < 0:
				err = fmt.Errorf("%w: no leader is known (an election is running)", err)
			case errors.Is(err, raftlog.ErrNotLeader):
				err = fmt.Errorf("%w: its leader is node %d, which this node cannot forward to; ask it", err, q.Leader)
			}
			sp.ErrorCode, sp.ErrorMessage = errorCode(err)
		} else {
			sp.LeaderEpoch = int32(q.Epoch)
			sp.HighWatermark = q.HighWatermark
			for _, m := range q.Voters {
				sp.CurrentVoters = append(sp.CurrentVoters, replicaState(m))
			}
			for _, m := range q.Learners {
				sp.Observers = append(sp.Observers, replicaState(m))
			}
			resp.Nodes = s.quorumNodes()
		}
		if r.version < 2 {
			sp.ErrorMessage = nil
		}
		st := kmsg.NewDescribeQuorumResponseTopic()
		st.Topic = metadataTopic
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
		return resp
	})
	return nil
}

// asksForMetadataLog reports whether req names partition 0 of
// __cluster_metadata only, as Kafka's clients ask.
func asksForMetadataLog(req *kmsg.DescribeQuorumRequest) bool {
	return len(req.Topics) == 1 && req.Topics[0].Topic == metadataTopic &&
		len(req.Topics[0].Partitions) == 1 && req.Topics[0].Partitions[0].Partition == 0
}

// forwardToQuorumLeader sends req (DescribeQuorum, AddRaftVoter,
// RemoveRaftVoter) to the Kafka listener of the quorum's leader, when it
// is registered (as a broker or a controller), is not this node, and req
// was not forwarded already (the peer pool's client ID says so).
func (s *Server) forwardToQuorumLeader(ctx context.Context, r *request, req kmsg.Request, leader int32) (kmsg.Response, bool) {
	if leader < 0 || leader == s.cfg.NodeID || s.peers == nil || strings.HasPrefix(r.clientID, shareForwardPrefix) {
		return nil, false
	}
	addr, ok := s.brokerAddr(leader)
	for _, c := range s.meta.Controllers() {
		if c.ID == leader && c.Host != "" {
			addr, ok = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), true
		}
	}
	if !ok {
		return nil, false
	}
	req.SetVersion(r.version)
	resp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		s.logger.Debug("forwarding to the quorum's leader failed", "request", kmsg.NameForKey(req.Key()), "leader", leader, "err", err)
		return nil, false
	}
	return resp, true
}

// replicaState is one member of the quorum as DescribeQuorum gives it.
func replicaState(m raftlog.Member) kmsg.DescribeQuorumResponseTopicPartitionReplicaState {
	rs := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
	rs.ReplicaID, rs.LogEndOffset = m.NodeID, m.LogEnd
	if !m.LastContact.IsZero() {
		rs.LastFetchTimestamp = m.LastContact.UnixMilli()
	}
	if !m.CaughtUp.IsZero() {
		rs.LastCaughtUpTimestamp = m.CaughtUp.UnixMilli()
	}
	return rs
}

// quorumNodes are the voters' controller endpoints (DescribeQuorum v2).
func (s *Server) quorumNodes() []kmsg.DescribeQuorumResponseNode {
	name := s.controllerListenerName()
	var out []kmsg.DescribeQuorumResponseNode
	for _, v := range s.raft.Voters() {
		host, port, err := net.SplitHostPort(v.Addr)
		p, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || perr != nil {
			continue // a voter whose address is unknown, or a named port
		}
		n := kmsg.NewDescribeQuorumResponseNode()
		n.NodeID = v.NodeID
		l := kmsg.NewDescribeQuorumResponseNodeListener()
		l.Name, l.Host, l.Port = name, host, uint16(p)
		n.Listeners = append(n.Listeners, l)
		out = append(out, n)
	}
	return out
}

// controllerListenerName names the voters' controller listeners: the
// first of controller.listener.names, CONTROLLER by default.
func (s *Server) controllerListenerName() string {
	for n := range strings.SplitSeq(s.cfg.Props["controller.listener.names"], ",") {
		if n = strings.ToUpper(strings.TrimSpace(n)); n != "" {
			return n
		}
	}
	return "CONTROLLER"
}
