package server

import (
	"math"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID, v0-v5, for idempotent producers. Producer ids come from
// blocks reserved durably in the metadata log, so none is reused after a
// restart. A request carrying its current id and epoch (v3+, KIP-360)
// gets the same id with the epoch bumped (a new id when the epoch would
// overflow). Transactional ids are not supported yet.

func init() { regKey(22, 0, 5, handleInitProducerID) }

func handleInitProducerID(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
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
