package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/share"
)

// ShareAcknowledge, v0-v2 (KIP-932, KIP-1222): accepts (1), releases
// (2), rejects (3) or gap-acknowledges (0) records a member acquired, or
// with IsRenewAck (v2) renews their locks (4), without fetching.
//
// Behavior:
//   - It continues the member's share session on this broker, whose epoch
//     it must carry and advances (0 is INVALID_SHARE_SESSION_EPOCH: only
//     ShareFetch starts a session); -1 acknowledges, releases the member's
//     records on the session's partitions and ends the session.
//   - Each partition's batches apply atomically and are durable before the
//     answer (its ErrorCode: INVALID_REQUEST for malformed batches,
//     INVALID_RECORD_STATE for records the member does not hold,
//     KAFKA_STORAGE_ERROR). Partitions of one request share one fsync per
//     __share_group_state partition.
//   - Rejected records, and records out of deliveries, go to the group's
//     dead-letter topic if it has one.
//   - An unknown group is GROUP_ID_NOT_FOUND.
//   - In a cluster, one from another broker at epoch -1 with no
//     partitions says the group's coordinator removed the member (it
//     left, or its session timed out): its session ends and every record
//     it holds here is released at once (CLUSTER_ACTION with an
//     authorizer).
//   - Authorization (with an authorizer): READ on the group, else
//     GROUP_AUTHORIZATION_FAILED; a partition of a topic without READ is
//     TOPIC_AUTHORIZATION_FAILED and its batches are not applied.

func init() { regKey(79, 0, 2, handleShareAcknowledge) }

func handleShareAcknowledge(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ShareAcknowledgeRequest)
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	fail := func(e *kerr.Error) kmsg.Response {
		resp.ErrorCode = e.Code
		return resp
	}
	var group, member string
	if req.GroupID != nil {
		group = *req.GroupID
	}
	if req.MemberID != nil {
		member = *req.MemberID
	}
	if group == "" || member == "" || len(member) > maxMemberIDLength {
		return fail(kerr.InvalidRequest)
	}
	if s.cluster != nil && r.fromBroker() && req.ShareSessionEpoch == -1 && len(req.Topics) == 0 {
		if !r.allowedCluster(auth.OpClusterAction) {
			return fail(kerr.ClusterAuthorizationFailed)
		}
		r.await(func() kmsg.Response {
			s.shareMemberRemoved(group, member)
			return resp
		})
		return nil
	}
	if !r.allowed(auth.ResourceGroup, group, auth.OpRead) {
		return fail(kerr.GroupAuthorizationFailed)
	}
	if !s.shares.Exists(group) {
		return fail(kerr.GroupIDNotFound)
	}
	if req.ShareSessionEpoch == 0 {
		return fail(kerr.InvalidShareSessionEpoch)
	}
	ss := s.shareSessions.get(shareSessionKey{group, member}, r.c)
	if ss == nil {
		return fail(kerr.ShareSessionNotFound)
	}
	if !ss.mu.TryLock() {
		return fail(kerr.InvalidShareSessionEpoch)
	}
	final := req.ShareSessionEpoch == -1
	if final {
		s.shareSessions.remove(ss)
	} else if ss.epoch != req.ShareSessionEpoch {
		ss.mu.Unlock()
		return fail(kerr.InvalidShareSessionEpoch)
	}
	renew := r.version >= 2 && req.IsRenewAck
	var acks, denied []share.PartitionAcks
	for i := range req.Topics {
		t := &req.Topics[i]
		if !r.topicAllowed(t.TopicID, auth.OpRead) {
			for _, p := range t.Partitions {
				denied = append(denied, share.PartitionAcks{
					Partition: share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition},
					Err:       kerr.TopicAuthorizationFailed,
				})
			}
			continue
		}
		for j := range t.Partitions {
			p := &t.Partitions[j]
			acks = append(acks, share.PartitionAcks{
				Partition: share.TopicPartition{TopicID: t.TopicID, Partition: p.Partition},
				Batches:   share.AckBatchesFromAcknowledge(nil, p.AcknowledgementBatches),
			})
		}
	}
	r.await(func() kmsg.Response {
		defer ss.mu.Unlock()
		if err := s.ensureShareState(); err != nil {
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			return resp
		}
		s.shares.AcknowledgeAll(group, member, acks, renew)
		if final {
			s.releaseSession(ss, true)
		} else {
			ss.bump()
		}
		resp.AcquisitionLockTimeoutMillis = s.shares.LockDuration(group)
		topicIdx := make(map[[16]byte]int)
		for _, a := range append(acks, denied...) {
			ti, ok := topicIdx[a.Partition.TopicID]
			if !ok {
				ti = len(resp.Topics)
				topicIdx[a.Partition.TopicID] = ti
				t := kmsg.NewShareAcknowledgeResponseTopic()
				t.TopicID = a.Partition.TopicID
				resp.Topics = append(resp.Topics, t)
			}
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition = a.Partition.Partition
			rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = -1, -1
			if a.Err != nil {
				rp.ErrorCode = a.Err.Code
			}
			resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
		}
		return resp
	})
	return nil
}
