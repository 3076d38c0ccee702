package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/txn"
)

// Produce, v0-v13.
//
// Behavior:
//   - Every batch is validated (length, magic 2, CRC32C, record count and
//     offset deltas against the records of an uncompressed batch, as
//     Kafka's LogValidator, max.message.bytes) and idempotent sequences
//     are checked before anything of a partition is appended; batches v2
//     are stored as sent.
//   - Appends run on the connection's reader goroutine, so pipelined
//     requests keep their order.
//   - acks=0 gets no answer (but an error closes the connection, as in
//     Kafka); acks=1 is answered once the batch is in the page cache;
//     acks=-1 only once it is fsynced. The fsync waits run concurrently,
//     so pipelined requests and other connections share fsyncs (group
//     commit). Consumers see a batch only once it is fsynced, whatever
//     the acks: for acks 0 and 1, by the partition's background flush
//     (flush.max.delay.ms).
//   - Internal topics refuse produce; an offline partition answers
//     KAFKA_STORAGE_ERROR with the reason.
//   - In a cluster, OUT_OF_ORDER_SEQUENCE_NUMBER and INVALID_PRODUCER_EPOCH
//     are answered only once the broker has confirmed with the metadata
//     quorum that it still leads the partition (confirmLeader);
//     NOT_LEADER_OR_FOLLOWER otherwise.
//   - Transactional batches: a request needs a transactional id
//     (TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise). Before the first
//     batch of a producer's transaction in a partition is appended, the
//     transaction coordinator confirms the partition is in the
//     transaction (v3-v11, KIP-890 part 1) or adds it (v12+, part 2), one
//     call for every such partition of the request. This runs on the
//     reader goroutine, as the append does, so the connection's next
//     requests keep their order (Kafka handles a connection's requests
//     one at a time); it costs at most one fsync of __transaction_state.
//     A partition's verification guard keeps a marker that lands
//     meanwhile from letting the batch in after it. The coordinator's
//     errors map as Kafka's AddPartitionsToTxnManager maps them:
//     PRODUCER_FENCED is INVALID_PRODUCER_EPOCH, TRANSACTION_ABORTABLE is
//     INVALID_TXN_STATE before v11, and its retriable errors are
//     NOT_ENOUGH_REPLICAS, which every client retries.
//
// Version notes:
//   - v0-v2 carry message sets of format v0/v1 (or batches v2, taken as
//     they are): each partition's set is converted into one batch v2
//     first (record.ConvertLegacy), keeping the producer's codec.
//   - v8+ carries an error message per partition.
//   - v13 names topics by id.

func init() { regKey(0, 0, 13, handleProduce) }

// produceSyncs collects the partitions an acks=all produce must fsync and
// the answers that wait for them.
type produceSyncs struct {
	parts   []*partition.Partition
	answers []*kmsg.ProduceResponseTopicPartition
	topics  []string // of each partition, for log lines
	// results hold, per partition, the leader epoch and log end of the
	// append: in a cluster the answer waits for the ISR to reach it.
	results []partition.Result
	timeout time.Duration
}

func handleProduce(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if req.Acks != 0 && req.Acks != 1 && req.Acks != -1 {
		return refuseAcks(req, resp)
	}
	if req.TransactionID != nil && !r.allowed(auth.ResourceTransactionalID, *req.TransactionID, auth.OpWrite) {
		return refuseProduce(req, resp, kerr.TransactionalIDAuthorizationFailed)
	}
	var syncs *produceSyncs
	if req.Acks == -1 {
		syncs = &produceSyncs{timeout: time.Duration(req.TimeoutMillis) * time.Millisecond}
	}
	var txns map[*kmsg.ProduceRequestTopicPartition]txnVerdict
	if r.version >= 3 {
		txns = s.verifyTransactional(r, req)
	}
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i := range req.Topics {
		s.produceTopic(r, &req.Topics[i], &resp.Topics[i], syncs, txns)
	}
	switch {
	case req.Acks == 0:
		r.countErrors(resp)
		answerAcksZero(r, resp)
		return nil
	case syncs == nil || len(syncs.parts) == 0:
		return resp
	}
	r.await(func() kmsg.Response {
		s.syncProduced(r, syncs)
		return resp
	})
	return nil
}

// refuseAcks answers a produce whose acks is not 0, 1 or -1.
func refuseAcks(req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse) kmsg.Response {
	return refuseProduce(req, resp, kerr.InvalidRequiredAcks)
}

// refuseProduce answers every partition of a produce with code.
func refuseProduce(req *kmsg.ProduceRequest, resp *kmsg.ProduceResponse, code *kerr.Error) kmsg.Response {
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// produceTopic appends the partitions of one topic of a produce into st.
// With syncs (acks=all) the partitions appended to are added to it.
func (s *Server) produceTopic(r *request, rt *kmsg.ProduceRequestTopic, st *kmsg.ProduceResponseTopic, syncs *produceSyncs, txns map[*kmsg.ProduceRequestTopicPartition]txnVerdict) {
	*st = kmsg.NewProduceResponseTopic()
	st.Topic, st.TopicID = rt.Topic, rt.TopicID
	t := s.produceTopicOf(r, rt)
	name := rt.Topic
	if t != nil {
		name = t.Name()
	}
	denied := (t != nil || r.version < 13) && !r.allowed(auth.ResourceTopic, name, auth.OpWrite)
	st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
	for j := range rt.Partitions {
		rp := &rt.Partitions[j]
		sp := &st.Partitions[j]
		*sp = kmsg.NewProduceResponseTopicPartition()
		sp.Partition = rp.Partition
		sp.BaseOffset = -1
		sp.LogAppendTime = -1
		sp.LogStartOffset = -1
		if denied {
			sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			continue
		}
		p, res, err := s.producePartition(r, t, rp, sp, txns)
		if err != nil {
			code, msg := errorCode(err)
			sp.ErrorCode = code
			switch {
			case r.version >= 13 && t == nil:
				sp.ErrorCode = kerr.UnknownTopicID.Code
			case r.version >= 8 && code != kerr.UnknownTopicOrPartition.Code:
				sp.ErrorMessage = msg
			}
			switch {
			case code == kerr.KafkaStorageError.Code && !errors.Is(err, meta.ErrOffline):
				// (Why a partition is offline was logged at start.)
				s.logger.Error("produce failed", "topic", t.Name(), "partition", rp.Partition, "err", err)
			case code == kerr.OutOfOrderSequenceNumber.Code || code == kerr.InvalidProducerEpoch.Code:
				// An idempotent producer out of step with the partition:
				// it may have lost or may repeat records; say which.
				s.logger.Warn("produce refused", "topic", t.Name(), "partition", rp.Partition, "err", err)
			}
			continue
		}
		if p != nil && syncs != nil {
			syncs.parts = append(syncs.parts, p)
			syncs.answers = append(syncs.answers, sp)
			syncs.topics = append(syncs.topics, t.Name())
			syncs.results = append(syncs.results, res)
		}
	}
}

// producePartition appends one partition's records and fills in its
// answer. It returns the partition appended to, nil when there was
// nothing to append.
func (s *Server) producePartition(r *request, t *meta.Topic, rp *kmsg.ProduceRequestTopicPartition, sp *kmsg.ProduceResponseTopicPartition, txns map[*kmsg.ProduceRequestTopicPartition]txnVerdict) (*partition.Partition, partition.Result, error) {
	var res partition.Result
	p, err := t.Partition(rp.Partition)
	if err != nil {
		return nil, res, err
	}
	if t.Internal() {
		return nil, res, fmt.Errorf("%w: internal topics cannot be produced to", kerr.InvalidTopicException)
	}
	records := rp.Records
	if r.version < 3 && !isBatchV2(records) {
		if records, err = record.ConvertLegacy(records); err != nil {
			return nil, res, legacyError(err)
		}
		if records == nil {
			return nil, res, nil // no complete message: nothing appended, as in Kafka
		}
	}
	if r.kreq.(*kmsg.ProduceRequest).Acks == -1 {
		if err := p.CheckMinISR(); err != nil {
			return nil, res, err
		}
	}
	v := txns[rp]
	if v.err != nil {
		return nil, res, v.err
	}
	res, err = p.AppendVerified(records, v.guard)
	if err != nil {
		if errors.Is(err, partition.ErrOutOfOrderSequence) || errors.Is(err, partition.ErrInvalidProducerEpoch) {
			if lerr := s.confirmLeader(r.c.ctx, t, rp.Partition, res.LeaderEpoch); lerr != nil {
				return nil, res, lerr
			}
		}
		return nil, res, err
	}
	sp.BaseOffset = res.BaseOffset
	sp.LogAppendTime = res.LogAppendTime
	sp.LogStartOffset = res.LogStartOffset
	return p, res, nil
}

// confirmLeader makes sure, in a cluster, that this broker still leads
// t's partition at epoch before a produce is answered with an error of
// the producer's sequence or epoch. A leader cut off from the metadata
// quorum goes on believing it leads after the controller has fenced it
// and elected another; its producer state is then behind, and a client
// told its sequence is out of order takes its records for lost, bumps its
// producer epoch and sends them again as new ones, so that a record the
// new leader already holds would be stored twice. So the broker first
// catches up with the quorum (raftlog's Barrier), within
// broker.session.timeout.ms, and answers NOT_LEADER_OR_FOLLOWER, which
// every client retries under the same sequence, unless it still leads at
// epoch.
func (s *Server) confirmLeader(ctx context.Context, t *meta.Topic, part, epoch int32) error {
	if s.raft == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.settings().int64("broker.session.timeout.ms"))*time.Millisecond)
	defer cancel()
	if err := s.raft.Barrier(ctx); err != nil {
		return fmt.Errorf("%w: this broker cannot confirm with the metadata quorum that it still leads %s-%d: %v", kerr.NotLeaderForPartition, t.Name(), part, err)
	}
	if st := t.State(part); st.Leader != s.cfg.NodeID || st.LeaderEpoch != epoch {
		return fmt.Errorf("%w: %s-%d is led by broker %d at leader epoch %d now", kerr.NotLeaderForPartition, t.Name(), part, st.Leader, st.LeaderEpoch)
	}
	return nil
}

// produceTopicOf returns the topic a produce names, by id from v13.
func (s *Server) produceTopicOf(r *request, rt *kmsg.ProduceRequestTopic) *meta.Topic {
	if r.version >= 13 {
		return s.meta.TopicByID(rt.TopicID)
	}
	return s.meta.Topic(rt.Topic)
}

// txnVerdict is what the transaction coordinator said of a partition's
// transactional records: the guard to append them under (nil when the
// producer's transaction was open there already), or the error to answer.
type txnVerdict struct {
	guard *partition.VerificationGuard
	err   error
}

// verifyTransactional has the transaction coordinator verify (v3-v11) or
// add (v12+) the partitions whose records open a transaction of their
// producer, one call per producer, and returns the verdict of each
// partition holding transactional records. Partitions that do not exist
// or hold records that do not parse are left to the append, which
// reports them.
func (s *Server) verifyTransactional(r *request, req *kmsg.ProduceRequest) map[*kmsg.ProduceRequestTopicPartition]txnVerdict {
	type producerKey struct {
		id    int64
		epoch int16
	}
	type toVerify struct {
		rp *kmsg.ProduceRequestTopicPartition
		tp txn.TopicPartition
	}
	var out map[*kmsg.ProduceRequestTopicPartition]txnVerdict
	var byProducer map[producerKey][]toVerify
	for i := range req.Topics {
		rt := &req.Topics[i]
		var t *meta.Topic
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			if len(rp.Records) < record.HeaderSize || rp.Records[record.PosMagic] != record.Magic ||
				binary.BigEndian.Uint16(rp.Records[record.PosAttributes:])&record.Transactional == 0 {
				continue
			}
			if out == nil {
				out = map[*kmsg.ProduceRequestTopicPartition]txnVerdict{}
				byProducer = map[producerKey][]toVerify{}
			}
			if req.TransactionID == nil || *req.TransactionID == "" {
				out[rp] = txnVerdict{err: fmt.Errorf("%w: transactional records without a transactional id", kerr.TransactionalIDAuthorizationFailed)}
				continue
			}
			if t == nil {
				t = s.produceTopicOf(r, rt)
			}
			if t == nil || !r.allowed(auth.ResourceTopic, t.Name(), auth.OpWrite) {
				continue // refused by the append
			}
			p, err := t.Partition(rp.Partition)
			if err != nil || t.Internal() {
				continue
			}
			h, err := record.Parse(rp.Records)
			if err != nil {
				continue
			}
			g := p.BeginVerification(h.ProducerID, h.ProducerEpoch)
			out[rp] = txnVerdict{guard: g}
			if g != nil {
				k := producerKey{h.ProducerID, h.ProducerEpoch}
				byProducer[k] = append(byProducer[k], toVerify{rp, txn.TopicPartition{Topic: t.Name(), Partition: rp.Partition}})
			}
		}
	}
	for k, vs := range byProducer {
		tps := make([]txn.TopicPartition, len(vs))
		for i, v := range vs {
			tps[i] = v.tp
		}
		errs := make([]error, len(vs))
		if r.version >= 12 {
			err := s.txnAddImplicitly(r.c.ctx, *req.TransactionID, k.id, k.epoch, tps)
			for i := range errs {
				errs[i] = err
			}
		} else {
			errs = s.txnVerify(r.c.ctx, *req.TransactionID, k.id, k.epoch, tps)
		}
		for i, v := range vs {
			if errs[i] != nil {
				out[v.rp] = txnVerdict{err: verificationError(errs[i], r.version >= 11, false)}
			}
		}
	}
	return out
}

// answerAcksZero sends no answer to an acks=0 produce; but, as Kafka
// does, an error closes the connection so the client learns that
// something it sent was refused.
func answerAcksZero(r *request, resp *kmsg.ProduceResponse) {
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if code := resp.Topics[i].Partitions[j].ErrorCode; code != 0 {
				r.c.logger.Info("acks=0 produce refused; closing the connection", "topic", resp.Topics[i].Topic, "partition", resp.Topics[i].Partitions[j].Partition, "error", kerr.ErrorForCode(code))
				r.closeConnection()
				return
			}
		}
	}
	r.skipResponse()
}

// syncProduced fsyncs the partitions of an acks=all produce, concurrently,
// and turns the answers of those that fail into errors.
func (s *Server) syncProduced(r *request, syncs *produceSyncs) {
	errs := make([]error, len(syncs.parts))
	ctx, cancel := context.WithTimeout(r.c.ctx, max(syncs.timeout, time.Millisecond))
	defer cancel()
	// On one broker: the fsync. In a cluster: the fsync and the ISR.
	sync1 := func(i int) error {
		return syncs.parts[i].SyncReplicated(ctx, syncs.results[i].LeaderEpoch, syncs.results[i].NextOffset)
	}
	if len(syncs.parts) == 1 {
		errs[0] = sync1(0)
	} else {
		var wg sync.WaitGroup
		for i := range syncs.parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = sync1(i)
			}()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		sp := syncs.answers[i]
		code, msg := errorCode(err)
		sp.ErrorCode = code
		sp.BaseOffset = -1
		if r.version >= 8 {
			sp.ErrorMessage = msg
		}
		if code == kerr.KafkaStorageError.Code {
			s.logger.Error("fsync failed; produce not acknowledged", "topic", syncs.topics[i], "partition", sp.Partition, "err", err)
		}
	}
}

// isBatchV2 reports whether a record set starts with a batch of magic 2,
// which Produce v0-v2 may carry too (Kafka does not check their magic).
func isBatchV2(b []byte) bool {
	return len(b) > record.PosMagic && b[record.PosMagic] == record.Magic
}

// legacyError is Kafka's error for a message set that does not convert.
func legacyError(err error) error {
	switch {
	case errors.Is(err, record.ErrCodec):
		return fmt.Errorf("%w: %w", kerr.UnsupportedCompressionType, err)
	case errors.Is(err, record.ErrCorrupt):
		return fmt.Errorf("%w: %w", kerr.CorruptMessage, err)
	}
	return fmt.Errorf("%w: %w", kerr.InvalidRecord, err)
}
