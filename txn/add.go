package txn

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// isInternal reports whether topic is one of Kafka's internal topics, whose
// partitions a client may not add to a transaction itself.
func isInternal(topic string) bool {
	return topic == OffsetsTopic || topic == TransactionStateTopic || topic == "__share_group_state"
}

// AddPartitionsToTxn handles an AddPartitionsToTxn request (v0-v5).
//
// Behavior:
//   - v0-v3 come from a producer: the partitions join its ongoing
//     transaction (which starts with the first ones), stored before the
//     answer. One error answers every partition: INVALID_PRODUCER_ID_MAPPING
//     for a producer id that is not the transactional id's, PRODUCER_FENCED
//     for another epoch, CONCURRENT_TRANSACTIONS while the previous
//     transaction's markers are being written.
//   - A partition of an unknown topic answers UNKNOWN_TOPIC_OR_PARTITION,
//     one of an internal topic TOPIC_AUTHORIZATION_FAILED (v0-v3); the
//     others then answer OPERATION_NOT_ATTEMPTED and nothing is added.
//   - v4+ come from partition leaders and batch transactions. VerifyOnly
//     checks that each partition is in the producer's ongoing transaction
//     (TRANSACTION_ABORTABLE for one that is not) and changes nothing; the
//     other entries add their partitions, v5+ as transaction version 2.
//
// Version notes:
//   - v0-v1 answer INVALID_PRODUCER_EPOCH where v2+ answer PRODUCER_FENCED.
func (c *Coordinator) AddPartitionsToTxn(ctx context.Context, req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	entered := c.enter()
	if entered {
		defer c.wg.Done()
	}
	if req.Version < 4 {
		var tps []TopicPartition
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				tps = append(tps, TopicPartition{t.Topic, p})
			}
		}
		var errs []*kerr.Error
		if entered {
			errs = c.addClientPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, tps, req.Version)
		} else {
			errs = fill(len(tps), kerr.CoordinatorNotAvailable)
		}
		i := 0
		for _, t := range req.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition = p
				rp.ErrorCode = code(errs[i])
				i++
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	for _, txn := range req.Transactions {
		var tps []TopicPartition
		for _, t := range txn.Topics {
			for _, p := range t.Partitions {
				tps = append(tps, TopicPartition{t.Topic, p})
			}
		}
		var errs []*kerr.Error
		switch {
		case !entered:
			errs = fill(len(tps), kerr.CoordinatorNotAvailable)
		case txn.VerifyOnly:
			if errs = c.checkExisting(tps, false); errs == nil {
				errs = make([]*kerr.Error, len(tps))
				c.verify(txn.TransactionalID, txn.ProducerID, txn.ProducerEpoch, tps, func(i int, err *kerr.Error) { errs[i] = err })
			}
		default:
			if errs = c.checkExisting(tps, false); errs == nil {
				tv := int16(0)
				if req.Version >= 5 {
					tv = 2
				}
				err := c.addPartitions(txn.TransactionalID, txn.ProducerID, txn.ProducerEpoch, tps, tv)
				errs = fill(len(tps), err)
			}
		}
		rtxn := kmsg.NewAddPartitionsToTxnResponseTransaction()
		rtxn.TransactionalID = txn.TransactionalID
		i := 0
		for _, t := range txn.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				rp.Partition = p
				rp.ErrorCode = code(errs[i])
				i++
				rt.Partitions = append(rt.Partitions, rp)
			}
			rtxn.Topics = append(rtxn.Topics, rt)
		}
		resp.Transactions = append(resp.Transactions, rtxn)
	}
	return resp
}

func fill(n int, err *kerr.Error) []*kerr.Error {
	errs := make([]*kerr.Error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// checkExisting returns nil when every partition of tps exists (and, from a
// client, is not internal); otherwise the error of each partition, with
// OPERATION_NOT_ATTEMPTED for the good ones, as Kafka answers. Partitions
// of internal topics from a broker are taken as they come.
func (c *Coordinator) checkExisting(tps []TopicPartition, fromClient bool) []*kerr.Error {
	var errs []*kerr.Error
	for i, tp := range tps {
		var err *kerr.Error
		switch {
		case isInternal(tp.Topic) && fromClient:
			err = kerr.TopicAuthorizationFailed
		case isInternal(tp.Topic):
			// From a broker, which knows its own internal partitions.
			continue
		case tp.Partition < 0 || tp.Partition >= c.cfg.PartitionCount(tp.Topic):
			err = kerr.UnknownTopicOrPartition
		default:
			continue
		}
		if errs == nil {
			errs = fill(len(tps), kerr.OperationNotAttempted)
		}
		errs[i] = err
	}
	return errs
}

// addClientPartitions serves AddPartitionsToTxn v0-v3.
func (c *Coordinator) addClientPartitions(id string, pid int64, epoch int16, tps []TopicPartition, version int16) []*kerr.Error {
	if errs := c.checkExisting(tps, true); errs != nil {
		return errs
	}
	err := c.addPartitions(id, pid, epoch, tps, 0)
	if err == kerr.ProducerFenced && version < 2 {
		err = kerr.InvalidProducerEpoch
	}
	return fill(len(tps), err)
}

// addPartitions adds tps to the ongoing transaction of id, starting one if
// none is open, as Kafka's handleAddPartitionsToTransaction does. tv is the
// client's transaction version.
func (c *Coordinator) addPartitions(id string, pid int64, epoch int16, tps []TopicPartition, tv int16) *kerr.Error {
	if id == "" {
		return kerr.InvalidRequest
	}
	e, err := c.lockEntry(id)
	if err != nil {
		return err
	}
	if e == nil {
		return kerr.InvalidProducerIDMapping
	}
	defer e.mu.Unlock()
	m := &e.m
	switch {
	case m.state.prepared():
		// Checked first: during a transaction version 2 commit that rotates
		// the producer id, the producer already uses the next one.
		return kerr.ConcurrentTransactions
	case m.producerID != pid:
		return kerr.InvalidProducerIDMapping
	case m.epoch != epoch:
		return kerr.ProducerFenced
	case m.state == stateOngoing && m.hasAll(tps):
		return nil
	}
	if err := c.transitionLocked(e, m.addPartitions(tps, tv, nowMs())); err != nil {
		return kerr.CoordinatorNotAvailable
	}
	return nil
}

// verify is Kafka's handleVerifyPartitionsInTransaction: it calls set
// with the error of each partition of tps that is not verified.
func (c *Coordinator) verify(id string, pid int64, epoch int16, tps []TopicPartition, set func(i int, err *kerr.Error)) {
	all := func(err *kerr.Error) {
		for i := range tps {
			set(i, err)
		}
	}
	if id == "" {
		all(kerr.InvalidRequest)
		return
	}
	e, err := c.lockEntry(id)
	if err != nil {
		all(err)
		return
	}
	if e == nil {
		all(kerr.InvalidProducerIDMapping)
		return
	}
	defer e.mu.Unlock()
	m := &e.m
	switch {
	case m.producerID != pid:
		all(kerr.InvalidProducerIDMapping)
	case m.epoch != epoch:
		all(kerr.ProducerFenced)
	case m.state.prepared():
		all(kerr.ConcurrentTransactions)
	default:
		for i, tp := range tps {
			if !m.hasPartition(tp) {
				set(i, kerr.TransactionAbortable)
			}
		}
	}
}

// AddOffsetsToTxn handles an AddOffsetsToTxn request (v0-v4): the
// __consumer_offsets partition of the group (Config.GroupPartition) joins
// the producer's transaction, which lets TxnOffsetCommit store offsets in
// it. Errors are those of AddPartitionsToTxn; v0-v1 answer
// INVALID_PRODUCER_EPOCH where v2+ answer PRODUCER_FENCED.
func (c *Coordinator) AddOffsetsToTxn(ctx context.Context, req *kmsg.AddOffsetsToTxnRequest) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.wg.Done()
	tp := TopicPartition{OffsetsTopic, c.cfg.GroupPartition(req.Group)}
	err := c.addPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, []TopicPartition{tp}, 0)
	if err == kerr.ProducerFenced && req.Version < 2 {
		err = kerr.InvalidProducerEpoch
	}
	resp.ErrorCode = code(err)
	return resp
}

// AddPartitionsImplicitly adds partitions to the ongoing transaction of
// (transactionalID, producerID, epoch), starting one if none is open: what
// a partition leader does for a transactional batch of Produce v12+, and
// the group coordinator for TxnOffsetCommit v5+ with the group's
// __consumer_offsets partition (KIP-890, transaction version 2). The
// partitions must exist; the caller checked. It returns nil once the
// transaction's new state is durable, or the error for every partition, a
// *kerr.Error: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
// CONCURRENT_TRANSACTIONS (retriable), COORDINATOR_NOT_AVAILABLE
// (retriable), INVALID_REQUEST. The produce path answers
// INVALID_PRODUCER_EPOCH for PRODUCER_FENCED, as Kafka's does. It may
// block on the store; call it without partition locks held.
func (c *Coordinator) AddPartitionsImplicitly(ctx context.Context, transactionalID string, producerID int64, epoch int16, partitions []TopicPartition) error {
	if !c.enter() {
		return kerr.CoordinatorNotAvailable
	}
	defer c.wg.Done()
	return asError(c.addPartitions(transactionalID, producerID, epoch, partitions, 2))
}

// VerifyPartitions reports, for each of partitions, whether it is in the
// ongoing transaction of (transactionalID, producerID, epoch): nil when it
// is, TRANSACTION_ABORTABLE when it is not, or the same error for all
// (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, CONCURRENT_TRANSACTIONS,
// INVALID_REQUEST, COORDINATOR_NOT_AVAILABLE), each a *kerr.Error. This is
// Kafka's AddPartitionsToTxn VerifyOnly, which a partition leader asks
// before appending a transactional batch of Produce v3-v11 (KIP-890 part
// 1), and the group coordinator before storing a TxnOffsetCommit v0-v4. It
// changes nothing and never blocks on the store. The caller maps, as
// Kafka's AddPartitionsToTxnManager does: PRODUCER_FENCED to
// INVALID_PRODUCER_EPOCH, and TRANSACTION_ABORTABLE to INVALID_TXN_STATE
// for clients that predate it (Produce before v11, TxnOffsetCommit before
// v4).
func (c *Coordinator) VerifyPartitions(ctx context.Context, transactionalID string, producerID int64, epoch int16, partitions []TopicPartition) []error {
	errs := make([]error, len(partitions))
	if !c.enter() {
		for i := range errs {
			errs[i] = kerr.CoordinatorNotAvailable
		}
		return errs
	}
	defer c.wg.Done()
	c.verify(transactionalID, producerID, epoch, partitions, func(i int, err *kerr.Error) { errs[i] = err })
	return errs
}
