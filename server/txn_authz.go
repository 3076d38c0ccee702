package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// Authorization of the transaction APIs, as Kafka's KafkaApis checks
// them. The coordinator (package txn) knows no principals: these handlers
// refuse what the principal may not do before calling it, and take out
// of its answers what the principal may not see. Without an authorizer
// they call it directly.
//
//   - InitProducerID with a transactional id (22_init_producer_id.go),
//     AddOffsetsToTxn, EndTxn, TxnOffsetCommit and transactional Produce:
//     WRITE on the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
//   - AddPartitionsToTxn v0-v3 (clients): WRITE on the transactional id,
//     then WRITE on each topic; a partition of a topic refused answers
//     TOPIC_AUTHORIZATION_FAILED and the others OPERATION_NOT_ATTEMPTED,
//     nothing added. v4+ (from partition leaders): CLUSTER_ACTION on the
//     cluster (CLUSTER_AUTHORIZATION_FAILED).
//   - AddOffsetsToTxn: READ on the group too (GROUP_AUTHORIZATION_FAILED).
//   - TxnOffsetCommit: READ on the group, READ on each topic (its
//     partitions TOPIC_AUTHORIZATION_FAILED, the others committed).
//   - WriteTxnMarkers: CLUSTER_ACTION on the cluster.
//   - DescribeProducers: READ on each topic.
//   - DescribeTransactions: DESCRIBE on each transactional id; the
//     partitions of topics the principal may not DESCRIBE are left out.
//   - ListTransactions: only the ids the principal may DESCRIBE.

func init() {
	regKey(24, 0, 5, handleAddPartitionsToTxn)
	regKey(25, 0, 4, handleAddOffsetsToTxn)
	regKey(26, 0, 5, handleEndTxn)
	regKey(65, 0, 0, handleDescribeTransactions)
	regKey(66, 0, 2, handleListTransactions)
}

func handleAddPartitionsToTxn(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return txnCall(s, r, s.txn.AddPartitionsToTxn)
	}
	req := r.kreq.(*kmsg.AddPartitionsToTxnRequest)
	if r.version >= 4 {
		if !r.allowedCluster(auth.OpClusterAction) {
			resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
			resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			return resp
		}
		return txnCall(s, r, s.txn.AddPartitionsToTxn)
	}
	idOK := r.allowed(auth.ResourceTransactionalID, req.TransactionalID, auth.OpWrite)
	denied := !idOK
	topicOK := make([]bool, len(req.Topics))
	for i, t := range req.Topics {
		topicOK[i] = idOK && r.allowed(auth.ResourceTopic, t.Topic, auth.OpWrite)
		denied = denied || !topicOK[i]
	}
	if !denied {
		return txnCall(s, r, s.txn.AddPartitionsToTxn)
	}
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	for i, t := range req.Topics {
		rt := kmsg.NewAddPartitionsToTxnResponseTopic()
		rt.Topic = t.Topic
		code := kerr.OperationNotAttempted.Code
		switch {
		case !idOK:
			code = kerr.TransactionalIDAuthorizationFailed.Code
		case !topicOK[i]:
			code = kerr.TopicAuthorizationFailed.Code
		}
		for _, p := range t.Partitions {
			rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func handleAddOffsetsToTxn(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.AddOffsetsToTxnRequest)
	code := int16(0)
	switch {
	case !r.allowed(auth.ResourceTransactionalID, req.TransactionalID, auth.OpWrite):
		code = kerr.TransactionalIDAuthorizationFailed.Code
	case !r.allowed(auth.ResourceGroup, req.Group, auth.OpRead):
		code = kerr.GroupAuthorizationFailed.Code
	}
	if code != 0 {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = code
		return resp
	}
	return txnCall(s, r, s.txn.AddOffsetsToTxn)
}

func handleEndTxn(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.EndTxnRequest)
	if !r.allowed(auth.ResourceTransactionalID, req.TransactionalID, auth.OpWrite) {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp
	}
	return txnCall(s, r, s.txn.EndTxn)
}

func handleDescribeTransactions(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return txnCall(s, r, s.txn.DescribeTransactions)
	}
	req := r.kreq.(*kmsg.DescribeTransactionsRequest)
	allowed := *req
	allowed.TransactionalIDs = nil
	var denied []string
	for _, id := range req.TransactionalIDs {
		if r.allowed(auth.ResourceTransactionalID, id, auth.OpDescribe) {
			allowed.TransactionalIDs = append(allowed.TransactionalIDs, id)
		} else {
			denied = append(denied, id)
		}
	}
	finish := func(resp *kmsg.DescribeTransactionsResponse) kmsg.Response {
		for i := range resp.TransactionStates {
			st := &resp.TransactionStates[i]
			kept := st.Topics[:0]
			for _, t := range st.Topics {
				if r.allowed(auth.ResourceTopic, t.Topic, auth.OpDescribe) {
					kept = append(kept, t)
				}
			}
			st.Topics = kept
		}
		for _, id := range denied {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.ErrorCode = id, kerr.TransactionalIDAuthorizationFailed.Code
			st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
		return resp
	}
	if len(allowed.TransactionalIDs) == 0 {
		return finish(req.ResponseKind().(*kmsg.DescribeTransactionsResponse))
	}
	r.await(func() kmsg.Response { return finish(s.txn.DescribeTransactions(r.c.ctx, &allowed)) })
	return nil
}

func handleListTransactions(s *Server, r *request) kmsg.Response {
	if s.authz == nil {
		return txnCall(s, r, s.txn.ListTransactions)
	}
	req := r.kreq.(*kmsg.ListTransactionsRequest)
	r.await(func() kmsg.Response {
		resp := s.txn.ListTransactions(r.c.ctx, req)
		kept := resp.TransactionStates[:0]
		for _, st := range resp.TransactionStates {
			if r.allowed(auth.ResourceTransactionalID, st.TransactionalID, auth.OpDescribe) {
				kept = append(kept, st)
			}
		}
		resp.TransactionStates = kept
		return resp
	})
	return nil
}
