package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/coordstate"
	"github.com/ferrymq/ferry/internal/peer"
	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/txn"
)

// In a cluster the transaction coordinator of a transactional id is the
// leader of its partition of __transaction_state, as in Kafka:
//
//   - the controller creates __transaction_state once its brokers have
//     registered (createInternalTopic), with
//     transaction.state.log.replication.factor replicas at most and
//     min.insync.replicas transaction.state.log.min.isr;
//   - the coordinator (txn.Config.LoadOnLead) loads a partition when this
//     broker comes to lead it and unloads it when it stops
//     (leadershipChanged); its records are appended through the
//     partition, whose Sync waits for the in-sync replicas;
//   - its markers go to the leader of each partition of the transaction:
//     written here when this broker leads it, sent as WriteTxnMarkers to
//     the leader otherwise (for __consumer_offsets, the group coordinator
//     of that partition), retried while leadership moves;
//   - a partition leader asks the coordinator about a producer's
//     transaction (KIP-890: add a partition, Produce v12+ and
//     TxnOffsetCommit v5+; verify it, older versions) in-process when the
//     coordinator is this broker, with AddPartitionsToTxn v5 otherwise.

// peerTimeout bounds a request to another broker: a marker waits for the
// in-sync replicas of its partition, which a lagging follower may hold
// up to replica.lag.time.max.ms, but the coordinator retries anyway.
const peerTimeout = 15 * time.Second

// txnCheckTimeout bounds a partition leader's question to a remote
// transaction coordinator (AddPartitionsToTxn v5), which is answered
// after at most one append to __transaction_state.
const txnCheckTimeout = 5 * time.Second

// markerRetryFor is how long WriteMarker itself retries a marker whose
// partition has no reachable leader (a failover) before handing the
// error to the coordinator, which retries with backoff.
const markerRetryFor = 5 * time.Second

// startClusterTxn starts the transaction coordinator of a cluster node:
// it loads the partitions of __transaction_state this broker leads, as
// it comes to lead them.
func (s *Server) startClusterTxn() error {
	bs := s.settings()
	n := int32(bs.int64("transaction.state.log.num.partitions"))
	if t := s.meta.Topic(transactionStateTopic); t != nil {
		n = t.NumPartitions()
	}
	part := func(p int32) (*partition.Partition, error) {
		t := s.meta.Topic(transactionStateTopic)
		if t == nil {
			return nil, fmt.Errorf("%w: %s", meta.ErrUnknownTopicOrPartition, transactionStateTopic)
		}
		return t.Partition(p)
	}
	s.peers = peer.NewPool(s.peerDialer, peerTimeout)
	ms := func(name string) time.Duration { return time.Duration(bs.int64(name)) * time.Millisecond }
	c, err := txn.New(txn.Config{
		Store:          coordstate.New[txn.Record](transactionStateTopic, part),
		Markers:        clusterMarkers{s},
		ProducerIDs:    s.meta.NextProducerID,
		GroupPartition: s.groups.Partition,
		PartitionCount: func(topic string) int32 {
			if t := s.meta.Topic(topic); t != nil {
				return t.NumPartitions()
			}
			return 0
		},
		LoadOnLead:                            true,
		Logger:                                s.logger,
		NodeID:                                s.cfg.NodeID,
		TransactionTopicPartitions:            n,
		TransactionMaxTimeout:                 ms("transaction.max.timeout.ms"),
		TransactionalIDExpiration:             ms("transactional.id.expiration.ms"),
		AbortTimedOutTransactionsInterval:     ms("transaction.abort.timed.out.transaction.cleanup.interval.ms"),
		RemoveExpiredTransactionalIDsInterval: ms("transaction.remove.expired.transaction.cleanup.interval.ms"),
		TransactionVersion:                    transactionVersion,
	})
	if err != nil {
		s.peers.Close()
		return fmt.Errorf("server: start transaction coordinator: %w", err)
	}
	s.txn = c
	return nil
}

// txnLeadershipChanged loads or unloads a partition of
// __transaction_state in the transaction coordinator as this broker
// starts or stops leading it; the partition's leader epoch is the
// coordinator epoch.
func (s *Server) txnLeadershipChanged(p int32, leading bool) {
	if s.txn == nil {
		return
	}
	if !leading {
		s.txn.Unload(p)
		return
	}
	epoch := int32(0)
	if t := s.meta.Topic(transactionStateTopic); t != nil {
		epoch = t.State(p).LeaderEpoch
	}
	if err := s.txn.Load(p, epoch); err != nil {
		s.logger.Error("loading transaction coordinator partition failed", "partition", p, "err", err)
	}
}

// txnStateTopicSpec is __transaction_state in a cluster, with
// transaction.state.log.replication.factor replicas at most and
// transaction.state.log.min.isr.
func (s *Server) txnStateTopicSpec() internalTopic {
	return internalTopic{
		name:         transactionStateTopic,
		rfConfig:     "transaction.state.log.replication.factor",
		minISRConfig: "transaction.state.log.min.isr",
		partitions:   func(brokerSettings) int32 { return s.txnPartitions() },
		configs: func(bs brokerSettings) map[string]*string {
			return map[string]*string{
				"cleanup.policy": ptr("compact"),
				"segment.bytes":  ptr(strconv.FormatInt(bs.int64("transaction.state.log.segment.bytes"), 10)),
			}
		},
	}
}

// txnPartitions is the partition count of __transaction_state: the
// coordinator's, which maps transactional ids to partitions.
func (s *Server) txnPartitions() int32 {
	return int32(s.settings().int64("transaction.state.log.num.partitions"))
}

// clusterTxnCoordinator answers FindCoordinator for a transactional id in
// a cluster: the leader of its partition of __transaction_state.
func (s *Server) clusterTxnCoordinator(id string) (int32, string, int32, int16, *string) {
	t := s.meta.Topic(transactionStateTopic)
	if t == nil || s.txn == nil {
		msg := "the transaction coordinator is starting"
		return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
	}
	st := t.State(s.txn.Partition(id))
	if b, ok := s.liveBroker(st.Leader); ok {
		return b.ID, b.Host, b.Port, 0, nil
	}
	msg := "the partition of the transactional id has no leader"
	return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
}

// liveBroker returns the registered, unfenced broker id.
func (s *Server) liveBroker(id int32) (meta.Broker, bool) {
	for _, b := range s.meta.Brokers() {
		if b.ID == id && !b.Fenced && b.Host != "" {
			return b, true
		}
	}
	return meta.Broker{}, false
}

// brokerAddr is the Kafka address of a registered broker.
func (s *Server) brokerAddr(id int32) (string, bool) {
	for _, b := range s.meta.Brokers() {
		if b.ID == id && b.Host != "" {
			return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), true
		}
	}
	return "", false
}

// peerRequest sends req to the broker at addr through the peer pool and
// returns its answer, ending with ctx or when this broker starts to stop
// (errBrokerStopping then): a stopping broker waits for no other, whose
// answer could take the pool's timeout (peerTimeout) if it hangs.
func (s *Server) peerRequest(ctx context.Context, addr string, req kmsg.Request) (kmsg.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.stopCtx, cancel)
	defer stop()
	resp, err := s.peers.Request(ctx, addr, req)
	if err != nil && s.stopCtx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", errBrokerStopping, err)
	}
	return resp, err
}

// clusterMarkers writes the transaction coordinator's markers to the
// leaders of their partitions.
type clusterMarkers struct{ s *Server }

// errNoLeader is a marker's partition without a leader to take it yet.
var errNoLeader = fmt.Errorf("%w: the partition has no leader", kerr.LeaderNotAvailable)

// WriteMarker writes mk to partition tp through its leader, this broker
// or another, and returns once the leader has it durably on its in-sync
// replicas. While the partition has no reachable leader (a failover) it
// retries for markerRetryFor, reading the leader again from the metadata
// each time.
func (m clusterMarkers) WriteMarker(ctx context.Context, tp txn.TopicPartition, mk txn.Marker) error {
	s := m.s
	pm := partition.Marker{
		ProducerID:       mk.ProducerID,
		ProducerEpoch:    mk.ProducerEpoch,
		Commit:           mk.Commit,
		CoordinatorEpoch: mk.CoordinatorEpoch,
	}
	deadline := time.Now().Add(markerRetryFor)
	for {
		err := m.writeOnce(ctx, tp, pm)
		if err == nil || errors.Is(err, txn.ErrUnknownPartition) || !retriableMarkerError(err) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		s.logger.Debug("retrying a transaction marker", "transactional_id", mk.TransactionalID, "partition", tp.String(), "err", err)
	}
}

// retriableMarkerError reports the errors of a leader that moved or is
// not reachable, which the next attempt may not meet.
func retriableMarkerError(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, partition.ErrNotLeader) || codeOf(err) == kerr.NotLeaderForPartition.Code
}

func (m clusterMarkers) writeOnce(ctx context.Context, tp txn.TopicPartition, pm partition.Marker) error {
	s := m.s
	t := s.meta.Topic(tp.Topic)
	if t == nil || tp.Partition < 0 || tp.Partition >= t.NumPartitions() {
		return fmt.Errorf("%w: %s", txn.ErrUnknownPartition, tp)
	}
	leader := t.State(tp.Partition).Leader
	if leader < 0 {
		return errNoLeader
	}
	if leader == s.cfg.NodeID {
		return s.writeMarker(ctx, tp.Topic, tp.Partition, pm)
	}
	addr, ok := s.brokerAddr(leader)
	if !ok {
		return errNoLeader
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	req.Version = 1
	rm := kmsg.NewWriteTxnMarkersRequestMarker()
	rm.ProducerID, rm.ProducerEpoch, rm.Committed, rm.CoordinatorEpoch = pm.ProducerID, pm.ProducerEpoch, pm.Commit, pm.CoordinatorEpoch
	rt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	rt.Topic, rt.Partitions = tp.Topic, []int32{tp.Partition}
	rm.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{rt}
	req.Markers = []kmsg.WriteTxnMarkersRequestMarker{rm}
	kresp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		return fmt.Errorf("%w: WriteTxnMarkers to broker %d: %w", kerr.NotLeaderForPartition, leader, err)
	}
	resp := kresp.(*kmsg.WriteTxnMarkersResponse)
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition != tp.Partition || rt.Topic != tp.Topic || rp.ErrorCode == 0 {
					continue
				}
				err := kerr.ErrorForCode(rp.ErrorCode)
				if err == kerr.UnknownTopicOrPartition && s.meta.Topic(tp.Topic) == nil {
					return fmt.Errorf("%w: %s", txn.ErrUnknownPartition, tp)
				}
				if err == kerr.TransactionCoordinatorFenced {
					return fmt.Errorf("%w: WriteTxnMarkers to broker %d for %s: %w", txn.ErrCoordinatorFenced, leader, tp, err)
				}
				return fmt.Errorf("WriteTxnMarkers to broker %d for %s: %w", leader, tp, err)
			}
		}
	}
	return nil
}

// txnAddImplicitly adds partitions to a producer's ongoing transaction
// for a leader (Produce v12+, TxnOffsetCommit v5+): at the coordinator of
// the transactional id, in-process or over the network.
func (s *Server) txnAddImplicitly(ctx context.Context, id string, pid int64, epoch int16, tps []txn.TopicPartition) error {
	if addr, remote, err := s.remoteTxnCoordinator(id); err != nil {
		return err
	} else if remote {
		errs := s.remoteTxnPartitions(ctx, addr, id, pid, epoch, tps, false)
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	return s.txn.AddPartitionsImplicitly(ctx, id, pid, epoch, tps)
}

// txnVerify checks that partitions are in a producer's ongoing
// transaction for a leader (Produce v3-v11, TxnOffsetCommit v0-v4): at
// the coordinator of the transactional id, in-process or over the
// network.
func (s *Server) txnVerify(ctx context.Context, id string, pid int64, epoch int16, tps []txn.TopicPartition) []error {
	if addr, remote, err := s.remoteTxnCoordinator(id); err != nil {
		errs := make([]error, len(tps))
		for i := range errs {
			errs[i] = err
		}
		return errs
	} else if remote {
		return s.remoteTxnPartitions(ctx, addr, id, pid, epoch, tps, true)
	}
	return s.txn.VerifyPartitions(ctx, id, pid, epoch, tps)
}

// remoteTxnCoordinator returns the address of the coordinator of id when
// it is another broker; remote is false on a single node and when this
// broker leads the id's partition (the local coordinator answers, with
// NOT_COORDINATOR until it has loaded it).
func (s *Server) remoteTxnCoordinator(id string) (addr string, remote bool, err error) {
	if s.raft == nil {
		return "", false, nil
	}
	t := s.meta.Topic(transactionStateTopic)
	if t == nil {
		return "", false, fmt.Errorf("%w: %s does not exist yet", kerr.CoordinatorNotAvailable, transactionStateTopic)
	}
	leader := t.State(s.txn.Partition(id)).Leader
	if leader == s.cfg.NodeID {
		return "", false, nil
	}
	if addr, ok := s.brokerAddr(leader); ok && leader >= 0 {
		return addr, true, nil
	}
	return "", false, fmt.Errorf("%w: the transaction coordinator's partition has no leader", kerr.CoordinatorNotAvailable)
}

// remoteTxnPartitions sends AddPartitionsToTxn v5, the broker-to-broker
// form, to the coordinator at addr: adding tps to the transaction, or
// only verifying them. It returns each partition's error, a *kerr.Error;
// a coordinator that cannot be reached is COORDINATOR_NOT_AVAILABLE, so
// the client retries.
func (s *Server) remoteTxnPartitions(ctx context.Context, addr, id string, pid int64, epoch int16, tps []txn.TopicPartition, verifyOnly bool) []error {
	errs := make([]error, len(tps))
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 5
	rt := kmsg.NewAddPartitionsToTxnRequestTransaction()
	rt.TransactionalID, rt.ProducerID, rt.ProducerEpoch, rt.VerifyOnly = id, pid, epoch, verifyOnly
	for _, tp := range tps {
		if n := len(rt.Topics); n == 0 || rt.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
			t.Topic = tp.Topic
			rt.Topics = append(rt.Topics, t)
		}
		t := &rt.Topics[len(rt.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	req.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{rt}
	// The produce path asks from the connection's reader goroutine: a
	// coordinator that does not answer soon gets a retriable error.
	ctx, cancel := context.WithTimeout(ctx, txnCheckTimeout)
	defer cancel()
	kresp, err := s.peerRequest(ctx, addr, req)
	if err != nil {
		s.logger.Info("asking the transaction coordinator failed", "addr", addr, "transactional_id", id, "err", err)
		for i := range errs {
			errs[i] = kerr.CoordinatorNotAvailable
		}
		return errs
	}
	resp := kresp.(*kmsg.AddPartitionsToTxnResponse)
	if resp.ErrorCode != 0 {
		for i := range errs {
			errs[i] = kerr.ErrorForCode(resp.ErrorCode)
		}
		return errs
	}
	codes := map[txn.TopicPartition]int16{}
	for _, tr := range resp.Transactions {
		for _, t := range tr.Topics {
			for _, p := range t.Partitions {
				codes[txn.TopicPartition{Topic: t.Topic, Partition: p.Partition}] = p.ErrorCode
			}
		}
	}
	for i, tp := range tps {
		if c, ok := codes[tp]; !ok {
			errs[i] = kerr.CoordinatorNotAvailable
		} else if c != 0 {
			errs[i] = kerr.ErrorForCode(c)
		}
	}
	return errs
}
