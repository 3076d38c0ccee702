package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/txn"
)

// TxnOffsetCommit, v0-v6.
//
// Behavior:
//   - The transaction coordinator first checks that the group's
//     __consumer_offsets partition is in the producer's transaction (v0-v4,
//     after AddOffsetsToTxn) or adds it (v5+, KIP-890); then the group
//     coordinator stores the offsets pending in the transaction (package
//     group). The commit marker makes them the group's committed offsets.
//   - A group guard (group.TxnGuard) is taken before the check, so a
//     marker of the producer between the check and the store refuses the
//     commit (INVALID_TXN_STATE) instead of leaving offsets pending after
//     their transaction ended.
//   - The coordinator's errors answer every partition: PRODUCER_FENCED as
//     INVALID_PRODUCER_EPOCH, TRANSACTION_ABORTABLE as INVALID_TXN_STATE
//     before v4, as Kafka's AddPartitionsToTxnManager maps them.
//   - Authorization (txn_authz.go): WRITE on the transactional id
//     (TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and READ on the group
//     (GROUP_AUTHORIZATION_FAILED) or every partition answers that; READ
//     on each topic, whose partitions answer TOPIC_AUTHORIZATION_FAILED
//     while the others are committed.
//
// Version notes:
//   - v3+ carry the member's generation and ids (KIP-447).
//   - v5+ add the partition to the transaction implicitly (KIP-890).
//   - v6 names topics by id.

func init() { regKey(28, 0, 6, handleTxnOffsetCommit) }

func handleTxnOffsetCommit(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.TxnOffsetCommitRequest)
	switch {
	case !r.allowed(auth.ResourceTransactionalID, req.TransactionalID, auth.OpWrite):
		return txnOffsetCommitError(req, kerr.TransactionalIDAuthorizationFailed.Code)
	case !r.allowed(auth.ResourceGroup, req.Group, auth.OpRead):
		return txnOffsetCommitError(req, kerr.GroupAuthorizationFailed.Code)
	}
	var denied []kmsg.TxnOffsetCommitRequestTopic
	if s.authz != nil {
		var kept []kmsg.TxnOffsetCommitRequestTopic
		for _, t := range req.Topics {
			if r.allowed(auth.ResourceTopic, s.topicName(t.Topic, t.TopicID), auth.OpRead) {
				kept = append(kept, t)
			} else {
				denied = append(denied, t)
			}
		}
		if len(denied) > 0 {
			refused := *req
			refused.Topics = denied
			refusal := txnOffsetCommitError(&refused, kerr.TopicAuthorizationFailed.Code)
			if len(kept) == 0 {
				return refusal
			}
			allowed := *req
			allowed.Topics = kept
			r.await(func() kmsg.Response {
				resp := s.txnOffsetCommit(r, &allowed)
				resp.Topics = append(resp.Topics, refusal.Topics...)
				return resp
			})
			return nil
		}
	}
	r.await(func() kmsg.Response { return s.txnOffsetCommit(r, req) })
	return nil
}

// txnOffsetCommit has the transaction coordinator check or add the
// group's partition, then the group coordinator store the offsets.
func (s *Server) txnOffsetCommit(r *request, req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	ctx := group.WithClientInfo(r.c.ctx, group.ClientInfo{ClientID: r.clientID, Host: "/" + r.c.remoteIP()})
	guard := s.groups.BeginTxnOffsetCommit(req.Group, req.ProducerID)
	tp := []txn.TopicPartition{{Topic: offsetsTopic, Partition: s.groups.Partition(req.Group)}}
	var err error
	if r.version >= 5 {
		err = s.txnAddImplicitly(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, tp)
	} else {
		err = s.txnVerify(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, tp)[0]
	}
	if err != nil {
		s.groups.AbandonTxnOffsetCommit(guard)
		return txnOffsetCommitError(req, codeOf(verificationError(err, r.version >= 4, true)))
	}
	return s.groups.TxnOffsetCommit(ctx, req, guard)
}

// txnOffsetCommitError answers every partition of req with code.
func txnOffsetCommitError(req *kmsg.TxnOffsetCommitRequest, code int16) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
