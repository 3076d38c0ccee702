package server

import (
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// InitProducerID, v0-v5. Producer ids come from blocks reserved durably
// in the metadata log, so none is reused after a restart. A request
// carrying its current id and epoch (v3+, KIP-360) gets the same id with
// the epoch bumped (a new id when the epoch would overflow). A request
// with a transactional id goes to the transaction coordinator (package
// txn, see txn.go).

func init() { regKey(22, 0, 5, handleInitProducerID) }

func handleInitProducerID(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	// An idempotent producer needs IDEMPOTENT_WRITE on the cluster or
	// WRITE on some topic (KIP-679); a transactional one WRITE on its
	// transactional id.
	if req.TransactionalID != nil && !r.allowed(auth.ResourceTransactionalID, *req.TransactionalID, auth.OpWrite) ||
		req.TransactionalID == nil && !r.allowedCluster(auth.OpIdempotentWrite) && !r.allowedAny(auth.ResourceTopic, auth.OpWrite) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		if req.TransactionalID != nil {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		}
		return resp
	}
	if req.TransactionalID != nil {
		return txnCall(s, r, s.txn.InitProducerID)
	}
	if r.version >= 3 && req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < math.MaxInt16-1 {
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return resp
	}
	r.await(func() kmsg.Response {
		id, err := s.meta.NextProducerID()
		if err != nil {
			s.logger.Error("reserving producer ids", "err", err)
			resp.ErrorCode = codeOf(err)
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = id, 0
		return resp
	})
	return nil
}
