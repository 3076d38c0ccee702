package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/coordstate"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/txn"
)

// The transaction coordinator lives in package txn; this file wires it to
// a single broker: its Store is the __transaction_state topic (package
// coordstate), its Markers are written to the partitions here (and, for
// __consumer_offsets, handed to the group coordinator), and the
// transaction APIs (22 with a transactional id, 24, 25, 26, 65, 66) hand
// their requests to it, each in r.await since it may wait for an fsync
// or for markers. txn_cluster.go wires it to a node of a cluster.

// transactionStateTopic is Kafka's internal topic holding transactional
// ids.
const transactionStateTopic = txn.TransactionStateTopic

// startTxn creates __transaction_state if it does not exist yet, and the
// coordinator, which replays it and writes the markers of transactions a
// crash left prepared: the partitions and the group coordinator must be
// up. In a cluster the controller creates the topic and the coordinator
// loads its partitions as this broker comes to lead them
// (startClusterTxn).
func (s *Server) startTxn() error {
	if s.raft != nil {
		return s.startClusterTxn()
	}
	bs := s.settings()
	t := s.meta.Topic(transactionStateTopic)
	if t == nil {
		var err error
		t, err = s.meta.CreateTopic(meta.NewTopic{
			Name:              transactionStateTopic,
			Partitions:        int32(bs.int64("transaction.state.log.num.partitions")),
			ReplicationFactor: 1,
			Configs: map[string]*string{
				"cleanup.policy": ptr("compact"),
				"segment.bytes":  ptr(strconv.FormatInt(bs.int64("transaction.state.log.segment.bytes"), 10)),
			},
			Internal: true,
		})
		if err != nil {
			return fmt.Errorf("server: create %s: %w", transactionStateTopic, err)
		}
	}
	ms := func(name string) time.Duration { return time.Duration(bs.int64(name)) * time.Millisecond }
	c, err := txn.New(txn.Config{
		Store:          coordstate.New[txn.Record](transactionStateTopic, t.Partition),
		Markers:        partitionMarkers{s},
		ProducerIDs:    s.meta.NextProducerID,
		GroupPartition: s.groups.Partition,
		PartitionCount: func(topic string) int32 {
			if t := s.meta.Topic(topic); t != nil {
				return t.NumPartitions()
			}
			return 0
		},
		Logger:                                s.logger,
		NodeID:                                s.cfg.NodeID,
		TransactionTopicPartitions:            t.NumPartitions(),
		TransactionMaxTimeout:                 ms("transaction.max.timeout.ms"),
		TransactionalIDExpiration:             ms("transactional.id.expiration.ms"),
		AbortTimedOutTransactionsInterval:     ms("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
		RemoveExpiredTransactionalIDsInterval: ms("transaction.remove.expired.transaction.cleanup.interval.ms"),
		TransactionVersion:                    transactionVersion,
	})
	if err != nil {
		return fmt.Errorf("server: start transaction coordinator: %w", err)
	}
	s.txn = c
	return nil
}

// transactionVersion is the finalized level of the transaction.version
// feature (KIP-1022) this broker advertises: 2, KIP-890's transactions.
// Clients of level 1 and older APIs are served as well.
const transactionVersion = 2

func (s *Server) stopTxn() error {
	if s.txn == nil {
		return nil
	}
	err := s.txn.Close()
	if s.peers != nil {
		s.peers.Close()
	}
	return err
}

// partitionMarkers writes the transaction coordinator's markers.
type partitionMarkers struct{ s *Server }

func (m partitionMarkers) WriteMarker(ctx context.Context, tp txn.TopicPartition, mk txn.Marker) error {
	return m.s.writeMarker(ctx, tp.Topic, tp.Partition, partition.Marker{
		ProducerID:       mk.ProducerID,
		ProducerEpoch:    mk.ProducerEpoch,
		Commit:           mk.Commit,
		CoordinatorEpoch: mk.CoordinatorEpoch,
	})
}

// writeMarker appends a marker to a partition and returns once it is
// durable; a marker for __consumer_offsets goes to the group coordinator.
// It returns txn.ErrUnknownPartition for a partition that does not exist
// (its topic was deleted), txn.ErrCoordinatorFenced for a marker of an
// older coordinator epoch than the producer's last marker there (a newer
// coordinator owns the transaction), and nil for a marker older than the
// producer's epoch there, which Kafka's coordinator drops too: that
// transaction was ended already and the producer moved on.
func (s *Server) writeMarker(ctx context.Context, topic string, part int32, mk partition.Marker) error {
	t := s.meta.Topic(topic)
	p, err := t.Partition(part)
	switch {
	case errors.Is(err, meta.ErrUnknownTopicOrPartition):
		return fmt.Errorf("%w: %s-%d", txn.ErrUnknownPartition, topic, part)
	case err != nil:
		return err
	case topic == offsetsTopic && s.raft == nil:
		return s.groups.WriteTxnMarker(ctx, part, mk.ProducerID, mk.ProducerEpoch, mk.Commit)
	}
	// In a cluster a marker for __consumer_offsets is also appended to
	// the partition, as Kafka appends it, before the group coordinator
	// resolves the transaction's offsets: the partition's producer state
	// (replicated with it) fences a marker of a coordinator a newer one
	// replaced. The coordinator's replay skips it.
	if _, err := p.WriteMarker(mk); err != nil {
		if errors.Is(err, partition.ErrInvalidProducerEpoch) {
			s.logger.Info("dropping a transaction marker older than its producer's epoch", "topic", topic, "partition", part, "producer_id", mk.ProducerID, "epoch", mk.ProducerEpoch, "err", err)
			return nil
		}
		if errors.Is(err, partition.ErrCoordinatorFenced) {
			return fmt.Errorf("%w: %s-%d: %w", txn.ErrCoordinatorFenced, topic, part, err)
		}
		if s.meta.Topic(topic) == nil {
			return fmt.Errorf("%w: %s-%d: %w", txn.ErrUnknownPartition, topic, part, err)
		}
		return err
	}
	if topic == offsetsTopic {
		return s.groups.WriteTxnMarker(ctx, part, mk.ProducerID, mk.ProducerEpoch, mk.Commit)
	}
	return nil
}

// txnCall runs a transaction coordinator call off the reader goroutine.
func txnCall[Req kmsg.Request, Resp kmsg.Response](s *Server, r *request, fn func(context.Context, Req) Resp) kmsg.Response {
	req := r.kreq.(Req)
	r.await(func() kmsg.Response { return fn(r.c.ctx, req) })
	return nil
}

// AddPartitionsToTxn v0-v5, AddOffsetsToTxn v0-v4, EndTxn v0-v5,
// DescribeTransactions v0, ListTransactions v0-v2 are answered by the
// transaction coordinator (package txn documents each), once
// txn_authz.go has authorized them. v4+ of AddPartitionsToTxn is the
// broker-to-broker form (batched, VerifyOnly); it is answered as well.

// verificationError maps the transaction coordinator's answer to a
// partition leader's verification (AddPartitionsImplicitly,
// VerifyPartitions) to what the produce or commit answers, as Kafka's
// AddPartitionsToTxnManager does: PRODUCER_FENCED is
// INVALID_PRODUCER_EPOCH; TRANSACTION_ABORTABLE is INVALID_TXN_STATE for
// clients that predate it (abortable false); the coordinator's retriable
// errors are NOT_ENOUGH_REPLICAS for clients that would not retry them
// (retriable false).
func verificationError(err error, abortable, retriable bool) error {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return err
	}
	switch {
	case ke == kerr.ProducerFenced:
		return kerr.InvalidProducerEpoch
	case ke == kerr.TransactionAbortable && !abortable:
		return kerr.InvalidTxnState
	case !retriable && (ke == kerr.ConcurrentTransactions || ke == kerr.CoordinatorNotAvailable || ke == kerr.NotCoordinator || ke == kerr.CoordinatorLoadInProgress):
		return kerr.NotEnoughReplicas
	}
	return ke
}
