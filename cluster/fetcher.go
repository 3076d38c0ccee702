package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/peer"
	"github.com/ferrymq/ferry/partition"
)

// A fetcher replicates, for one leader broker, every partition this
// broker follows on it, through the leader's Fetch API as a Kafka
// follower does: Fetch v12 with ReplicaID set, from each partition's log
// end, every partition in one request. A partition it starts to follow
// (or follows at a new epoch) is first truncated where its log diverges
// from the leader's: OffsetForLeaderEpoch for its newest epoch answers
// where the leader's log of that epoch ends (KIP-101, KIP-279). Fetched
// batches are appended with their offsets and fdatasynced before the next
// fetch, whose offset (the durable end of the log) tells the leader they
// are durable here.
type fetcher struct {
	n      *Node
	leader int32
	addr   string
	quit   chan struct{}
	done   chan struct{}
	// ctx is cancelled by stop, ending a dial in progress.
	ctx    context.Context
	cancel context.CancelFunc
	// warned is when a failure to authenticate to the leader was last
	// logged as a warning (only the run goroutine uses it).
	warned time.Time

	mu struct {
		sync.Mutex
		parts map[partKey]*fetchPart
		// inflight is the connection of the fetch waiting for its
		// answer (a long poll of up to replica.fetch.wait.max.ms);
		// interrupted: assign cut it short, as a partition was added.
		inflight    *brokerConn
		interrupted bool
		// conn is the connection to the leader, which stop interrupts:
		// a leader that does not answer (stopped, cut off) must not
		// hold up the reconciliation that stops its fetcher.
		conn *brokerConn
	}
}

// errInterrupted: the fetch was cut short to take new partitions in.
var errInterrupted = errors.New("fetch interrupted: partitions added")

// fetchPart is one partition a fetcher replicates.
type fetchPart struct {
	topic     string
	partition int32
	p         *partition.Partition
	epoch     int32 // the leader epoch it follows
	truncated bool  // the divergence check is done for this epoch
	failed    time.Time
}

func (n *Node) startFetcher(leader int32, addr string) *fetcher {
	f := &fetcher{n: n, leader: leader, addr: addr, quit: make(chan struct{}), done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.mu.parts = map[partKey]*fetchPart{}
	go f.run()
	return f
}

// assign sets the partitions to replicate; one already assigned at the
// same epoch keeps its state. A partition new to the fetcher (or at a new
// epoch) cuts the fetch in progress short, so that it does not wait for
// the others' long poll: after a leader change the new leader's followers
// start at once, and acks=all produces through it are answered sooner.
func (f *fetcher) assign(parts map[partKey]*fetchPart) {
	f.mu.Lock()
	defer f.mu.Unlock()
	added := false
	for k, np := range parts {
		if old := f.mu.parts[k]; old != nil && old.epoch == np.epoch && old.p == np.p {
			parts[k] = old
		} else {
			added = true
		}
	}
	f.mu.parts = parts
	if added && f.mu.inflight != nil && !f.mu.interrupted {
		f.mu.interrupted = true
		f.mu.inflight.interrupt()
	}
}

func (f *fetcher) stop() {
	close(f.quit)
	f.cancel() // a dial in progress
	f.mu.Lock()
	if f.mu.conn != nil {
		f.mu.conn.close() // a request in flight or the next one fails at once
	}
	f.mu.Unlock()
	<-f.done
}

// setConn records the connection stop interrupts; it reports false if
// the fetcher is stopping.
func (f *fetcher) setConn(c *brokerConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.conn = c
	select {
	case <-f.quit:
		return c == nil
	default:
		return true
	}
}

func (f *fetcher) snapshot() []*fetchPart {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*fetchPart, 0, len(f.mu.parts))
	for _, p := range f.mu.parts {
		out = append(out, p)
	}
	return out
}

func (f *fetcher) sleep(d time.Duration) bool {
	select {
	case <-f.quit:
		return false
	case <-time.After(d):
		return true
	}
}

func (f *fetcher) run() {
	defer close(f.done)
	var conn *brokerConn
	defer func() {
		f.setConn(nil)
		if conn != nil {
			conn.close()
		}
	}()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-f.quit:
			return
		default:
		}
		if f.addr == "" {
			if !f.sleep(200 * time.Millisecond) {
				return
			}
			continue
		}
		if conn == nil {
			c, err := f.dial()
			if err != nil {
				f.dialFailed(err)
				if !f.sleep(backoff) {
					return
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			conn = c
			if !f.setConn(c) {
				return
			}
		}
		err := f.once(conn)
		if errors.Is(err, errInterrupted) {
			conn.close() // the answer would still come on it
			conn = nil
			continue
		}
		if err != nil {
			conn.close()
			conn = nil
			f.n.logger.Debug("replica fetch failed", "leader", f.leader, "err", err)
			if !f.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// once truncates the partitions that need it, then fetches once.
func (f *fetcher) once(conn *brokerConn) error {
	parts := f.snapshot()
	var ready []*fetchPart
	var trunc []*fetchPart
	now := time.Now()
	for _, fp := range parts {
		if now.Sub(fp.failed) < 50*time.Millisecond {
			continue
		}
		if !fp.truncated {
			trunc = append(trunc, fp)
		} else {
			ready = append(ready, fp)
		}
	}
	if len(trunc) > 0 {
		if err := f.truncate(conn, trunc); err != nil {
			return err
		}
		// Those checked fetch in this round already: waiting for the
		// next would cost them the others' long poll.
		for _, fp := range trunc {
			if fp.truncated {
				ready = append(ready, fp)
			}
		}
	}
	if len(ready) == 0 {
		if !f.sleep(50 * time.Millisecond) {
			return nil
		}
		return nil
	}
	wait := f.n.cfg.FetchWait
	if len(ready) < len(parts) {
		// Some wait for a retry (the leader did not know it led yet,
		// or their check failed): a short poll brings them back soon
		// instead of after the others' long one.
		wait = min(wait, 50*time.Millisecond)
	}
	return f.fetch(conn, ready, wait)
}

// truncate cuts each partition back to where its log and the leader's
// agree, asking the leader where its newest epoch ends.
func (f *fetcher) truncate(conn *brokerConn, parts []*fetchPart) error {
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.SetVersion(4)
	req.ReplicaID = f.n.cfg.NodeID
	byTopic := map[string]int{}
	asked := map[partKey]int32{}
	for _, fp := range parts {
		latest := fp.p.LatestEpoch()
		if latest < 0 {
			// Nothing written under any epoch: nothing to diverge.
			fp.truncated = true
			continue
		}
		i := topicSlot(byTopic, fp.topic, func() int {
			t := kmsg.NewOffsetForLeaderEpochRequestTopic()
			t.Topic = fp.topic
			req.Topics = append(req.Topics, t)
			return len(req.Topics) - 1
		})
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition = fp.partition
		rp.CurrentLeaderEpoch = fp.epoch
		rp.LeaderEpoch = latest
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
		asked[partKey{fp.topic, fp.partition}] = latest
	}
	if len(req.Topics) == 0 {
		return nil
	}
	kresp, err := conn.request(req, 10*time.Second)
	if err != nil {
		return err
	}
	resp := kresp.(*kmsg.OffsetForLeaderEpochResponse)
	find := map[partKey]*fetchPart{}
	for _, fp := range parts {
		find[partKey{fp.topic, fp.partition}] = fp
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			k := partKey{rt.Topic, rp.Partition}
			fp := find[k]
			if fp == nil {
				continue
			}
			if rp.ErrorCode != 0 {
				fp.failed = time.Now()
				continue
			}
			end := rp.EndOffset
			if end < 0 {
				fp.truncated = true // the leader knows no such epoch: keep the log
				continue
			}
			if rp.LeaderEpoch < asked[k] {
				// The leader never had our newest epoch: our log is
				// good up to the end of the epoch it did have.
				if _, ours, err := fp.p.EndOffsetForEpoch(rp.LeaderEpoch); err == nil && ours >= 0 {
					end = min(end, ours)
				}
			}
			if leo := fp.p.LogEndOffset(); end < leo {
				got, err := fp.p.TruncateTo(fp.epoch, end)
				if errors.Is(err, partition.ErrNotFollower) {
					continue // it leads or follows another now: not ours to cut
				}
				if err != nil {
					return fmt.Errorf("truncate %s-%d to %d: %w", fp.topic, fp.partition, end, err)
				}
				f.n.logger.Info("truncated a diverging replica", "topic", fp.topic, "partition", fp.partition, "log_end", leo, "to", got, "leader", f.leader)
			}
			fp.truncated = true
		}
	}
	return nil
}

// fetch fetches once for parts, appends what came and syncs it.
func (f *fetcher) fetch(conn *brokerConn, parts []*fetchPart, wait time.Duration) error {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID = f.n.cfg.NodeID
	req.MaxWaitMillis = int32(wait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = 10 << 20
	req.SessionID = 0
	req.SessionEpoch = -1
	byTopic := map[string]int{}
	for _, fp := range parts {
		i := topicSlot(byTopic, fp.topic, func() int {
			t := kmsg.NewFetchRequestTopic()
			t.Topic = fp.topic
			req.Topics = append(req.Topics, t)
			return len(req.Topics) - 1
		})
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = fp.partition
		rp.CurrentLeaderEpoch = fp.epoch
		rp.FetchOffset = fp.p.DurableEnd()
		rp.LastFetchedEpoch = -1
		rp.LogStartOffset = fp.p.LogStartOffset()
		rp.PartitionMaxBytes = f.n.cfg.FetchMaxBytes
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	if err := conn.send(req, f.n.cfg.FetchWait+10*time.Second); err != nil {
		return err
	}
	f.mu.Lock()
	f.mu.inflight, f.mu.interrupted = conn, false
	f.mu.Unlock()
	kresp, err := conn.recv(req)
	f.mu.Lock()
	interrupted := f.mu.interrupted
	f.mu.inflight, f.mu.interrupted = nil, false
	f.mu.Unlock()
	if err != nil {
		if interrupted {
			return errInterrupted
		}
		return err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 {
		return kerr.ErrorForCode(resp.ErrorCode)
	}
	find := map[partKey]*fetchPart{}
	for _, fp := range parts {
		find[partKey{fp.topic, fp.partition}] = fp
	}
	var synced []*fetchPart
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			fp := find[partKey{rt.Topic, rp.Partition}]
			if fp == nil {
				continue
			}
			if err := f.handle(fp, &rp); errors.Is(err, partition.ErrNotFollower) {
				// Its role changed while the fetch was out: the
				// next assignment says what it does now.
				f.n.logger.Debug("replica fetch answer dropped", "topic", fp.topic, "partition", fp.partition, "leader", f.leader, "err", err)
				continue
			} else if err != nil {
				f.n.logger.Warn("replica fetch", "topic", fp.topic, "partition", fp.partition, "leader", f.leader, "err", err)
				fp.failed = time.Now()
				continue
			}
			if len(rp.RecordBatches) > 0 {
				synced = append(synced, fp)
			}
		}
	}
	// What was appended is durable before the next fetch says so; the
	// partitions' fdatasyncs run together.
	errs := make([]error, len(synced))
	var wg sync.WaitGroup
	for i, fp := range synced {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fp.p.SyncLocal()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			fp := synced[i]
			f.n.logger.Error("replica sync failed", "topic", fp.topic, "partition", fp.partition, "err", err)
			fp.failed = time.Now()
		}
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if fp := find[partKey{rt.Topic, rp.Partition}]; fp != nil && rp.ErrorCode == 0 {
				fp.p.SetFollowerHW(fp.epoch, rp.HighWatermark)
			}
		}
	}
	return nil
}

func (f *fetcher) handle(fp *fetchPart, rp *kmsg.FetchResponseTopicPartition) error {
	switch err := kerr.ErrorForCode(rp.ErrorCode); {
	case err == nil:
	case errors.Is(err, kerr.OffsetOutOfRange):
		leo := fp.p.LogEndOffset()
		if leo < rp.LogStartOffset {
			f.n.logger.Info("replica below the leader's log start; starting over there", "topic", fp.topic, "partition", fp.partition, "log_end", leo, "leader_log_start", rp.LogStartOffset)
			return fp.p.TruncateFullyAndStartAt(fp.epoch, rp.LogStartOffset)
		}
		fp.truncated = false // past the leader's end: find where we diverge
		return nil
	default:
		return err
	}
	if len(rp.RecordBatches) == 0 {
		return nil
	}
	_, err := fp.p.AppendReplica(fp.epoch, rp.RecordBatches)
	return err
}

// topicSlot is the index of topic's entry in a request's topic list,
// which add appends (returning its index) the first time topic is seen.
func topicSlot(byTopic map[string]int, topic string, add func() int) int {
	i, ok := byTopic[topic]
	if !ok {
		i = add()
		byTopic[topic] = i
	}
	return i
}

// dialer is how the follower connects to its leader: the inter-broker
// listener's security, with the replica's client ID.
func (f *fetcher) dialer() peer.Dialer {
	d := f.n.cfg.Dialer
	if d.ClientID == "" {
		d.ClientID = "ferry-replica-" + strconv.Itoa(int(f.n.cfg.NodeID))
	}
	return d
}

// dial connects to the leader; stop ends a dial in progress, so that a
// leader that accepts connections but does not answer (stopped) holds
// up nothing.
func (f *fetcher) dial() (*brokerConn, error) {
	d := f.dialer()
	timeout := time.Second
	if d.TLS != nil || d.SASL != nil {
		// A handshake and a SASL exchange take round trips, and a
		// broker slows down answers to failed authentications.
		timeout = 10 * time.Second
	}
	return dialBroker(f.ctx, d, f.addr, timeout)
}

// dialFailed logs a failed connection to the leader. A refused TLS
// handshake or SASL authentication does not heal by retrying (wrong
// credentials, an untrusted certificate), so it is a warning, once a
// minute per leader; a leader that is down or unreachable is routine
// during failover.
func (f *fetcher) dialFailed(err error) {
	var tlsErr *peer.TLSError
	if !errors.Is(err, peer.ErrAuthentication) && !errors.As(err, &tlsErr) {
		f.n.logger.Debug("connecting to the partition leader failed", "leader", f.leader, "addr", f.addr, "err", err)
		return
	}
	if time.Since(f.warned) < time.Minute {
		return
	}
	f.warned = time.Now()
	f.n.logger.Warn("cannot replicate from the partition leader: the inter-broker connection was refused (check inter.broker.listener.name, sasl.mechanism.inter.broker.protocol, the listener's JAAS username and password, and the TLS stores)", "leader", f.leader, "addr", f.addr, "err", err)
}
