package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawShare is a share group member speaking the protocol itself, with
// kmsg requests, so a test knows exactly which records it acquired and
// which acknowledgements the broker confirmed.
type rawShare struct {
	t           testing.TB
	cl          *kgo.Client
	group       string
	member      string
	memberEpoch int32
	epoch       int32 // share session epoch of the next request
	strict      bool  // acquire no more than maxRecords (ShareAcquireMode 1)
	// via, if set, takes ShareFetch and ShareAcknowledge (a cluster: the
	// leader of the partitions); cl otherwise.
	via kmsg.Requestor
}

// shareRequestor is where ShareFetch and ShareAcknowledge go.
func (rs *rawShare) shareRequestor() kmsg.Requestor {
	if rs.via != nil {
		return rs.via
	}
	return rs.cl
}

func newRawShare(t testing.TB, addr, group string, opts ...kgo.Opt) *rawShare {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestRetries(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	var id [16]byte
	rand.Read(id[:])
	return &rawShare{t: t, cl: cl, group: group, member: base64.RawURLEncoding.EncodeToString(id[:])}
}

// ctx bounds one request.
func (rs *rawShare) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// heartbeat sends a ShareGroupHeartbeat (joining with the topics on the
// first) and returns the response.
func (rs *rawShare) heartbeat(topics ...string) *kmsg.ShareGroupHeartbeatResponse {
	rs.t.Helper()
	resp, err := rs.tryHeartbeat(topics...)
	if err != nil {
		rs.t.Fatal(err)
	}
	return resp
}

// tryHeartbeat is heartbeat returning a request error.
func (rs *rawShare) tryHeartbeat(topics ...string) (*kmsg.ShareGroupHeartbeatResponse, error) {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.MemberEpoch = rs.group, rs.member, rs.memberEpoch
	if rs.memberEpoch == 0 {
		req.SubscribedTopicNames = topics
	}
	ctx, cancel := rs.ctx()
	defer cancel()
	resp, err := req.RequestWith(ctx, rs.cl)
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode == 0 {
		rs.memberEpoch = resp.MemberEpoch
	}
	return resp, nil
}

// join joins the group subscribed to topics.
func (rs *rawShare) join(topics ...string) {
	rs.t.Helper()
	if resp := rs.heartbeat(topics...); resp.ErrorCode != 0 {
		rs.t.Fatalf("join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// leave leaves the group.
func (rs *rawShare) leave() {
	rs.t.Helper()
	rs.memberEpoch = -1
	if resp := rs.heartbeat(); resp.ErrorCode != 0 {
		rs.t.Fatalf("leave: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// tp names a partition by topic id.
type tp struct {
	id [16]byte
	p  int32
}

// ackRange is one acknowledgement batch of a partition.
type ackRange struct {
	tp          tp
	first, last int64
	typ         int8
}

// fetch sends a ShareFetch at the session's epoch for parts (added to the
// session), with acks piggybacked, and advances the epoch when the answer
// has no top-level error.
func (rs *rawShare) fetch(parts []tp, acks []ackRange, maxWait time.Duration, maxRecords int32) *kmsg.ShareFetchResponse {
	rs.t.Helper()
	resp, err := rs.tryFetch(parts, acks, maxWait, maxRecords)
	if err != nil {
		rs.t.Fatal(err)
	}
	return resp
}

// tryFetch is fetch returning a request error.
func (rs *rawShare) tryFetch(parts []tp, acks []ackRange, maxWait time.Duration, maxRecords int32) (*kmsg.ShareFetchResponse, error) {
	req := kmsg.NewPtrShareFetchRequest()
	req.GroupID, req.MemberID = &rs.group, &rs.member
	req.ShareSessionEpoch = rs.epoch
	req.MaxWaitMillis = int32(maxWait / time.Millisecond)
	req.MinBytes, req.MaxBytes = 1, 50<<20
	req.MaxRecords, req.BatchSize = maxRecords, maxRecords
	if rs.strict {
		req.ShareAcquireMode = 1
	}
	idx := map[tp]*kmsg.ShareFetchRequestTopicPartition{}
	add := func(x tp) *kmsg.ShareFetchRequestTopicPartition {
		if p := idx[x]; p != nil {
			return p
		}
		var t *kmsg.ShareFetchRequestTopic
		for i := range req.Topics {
			if req.Topics[i].TopicID == x.id {
				t = &req.Topics[i]
			}
		}
		if t == nil {
			req.Topics = append(req.Topics, kmsg.ShareFetchRequestTopic{TopicID: x.id})
			t = &req.Topics[len(req.Topics)-1]
		}
		t.Partitions = append(t.Partitions, kmsg.ShareFetchRequestTopicPartition{Partition: x.p})
		for k := range idx {
			delete(idx, k) // pointers moved
		}
		return &t.Partitions[len(t.Partitions)-1]
	}
	for _, x := range parts {
		add(x)
	}
	for _, a := range acks {
		p := add(a.tp)
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{
			FirstOffset: a.first, LastOffset: a.last, AcknowledgeTypes: []int8{a.typ},
		})
	}
	ctx, cancel := rs.ctx()
	defer cancel()
	resp, err := req.RequestWith(ctx, rs.shareRequestor())
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode == 0 {
		rs.bump()
	}
	return resp, nil
}

func (rs *rawShare) bump() {
	if rs.epoch == -1 {
		rs.epoch = 0
		return
	}
	rs.epoch++
}

// ack sends a ShareAcknowledge at the session's epoch and returns the
// response; the epoch advances when it has no top-level error.
func (rs *rawShare) ack(acks []ackRange) *kmsg.ShareAcknowledgeResponse {
	rs.t.Helper()
	resp, err := rs.tryAck(acks)
	if err != nil {
		rs.t.Fatal(err)
	}
	return resp
}

// tryAck is ack returning a request error.
func (rs *rawShare) tryAck(acks []ackRange) (*kmsg.ShareAcknowledgeResponse, error) {
	req := kmsg.NewPtrShareAcknowledgeRequest()
	req.GroupID, req.MemberID = &rs.group, &rs.member
	req.ShareSessionEpoch = rs.epoch
	for _, a := range acks {
		var t *kmsg.ShareAcknowledgeRequestTopic
		for i := range req.Topics {
			if req.Topics[i].TopicID == a.tp.id {
				t = &req.Topics[i]
			}
		}
		if t == nil {
			req.Topics = append(req.Topics, kmsg.ShareAcknowledgeRequestTopic{TopicID: a.tp.id})
			t = &req.Topics[len(req.Topics)-1]
		}
		var p *kmsg.ShareAcknowledgeRequestTopicPartition
		for i := range t.Partitions {
			if t.Partitions[i].Partition == a.tp.p {
				p = &t.Partitions[i]
			}
		}
		if p == nil {
			t.Partitions = append(t.Partitions, kmsg.ShareAcknowledgeRequestTopicPartition{Partition: a.tp.p})
			p = &t.Partitions[len(t.Partitions)-1]
		}
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareAcknowledgeRequestTopicPartitionAcknowledgementBatch{
			FirstOffset: a.first, LastOffset: a.last, AcknowledgeTypes: []int8{a.typ},
		})
	}
	ctx, cancel := rs.ctx()
	defer cancel()
	resp, err := req.RequestWith(ctx, rs.shareRequestor())
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode == 0 {
		rs.bump()
	}
	return resp, nil
}

// acquired lists the offsets a ShareFetch response acquired, per
// partition, and fails the test on a partition error.
func acquired(t testing.TB, resp *kmsg.ShareFetchResponse) map[tp][]int64 {
	t.Helper()
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("share fetch: %v", err)
	}
	out := map[tp][]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("share fetch partition %d: %v", rp.Partition, err)
			}
			for _, r := range rp.AcquiredRecords {
				for o := r.FirstOffset; o <= r.LastOffset; o++ {
					out[tp{rt.TopicID, rp.Partition}] = append(out[tp{rt.TopicID, rp.Partition}], o)
				}
			}
		}
	}
	return out
}

// ackErrors returns the acknowledgement error of each partition of a
// ShareFetch response.
func ackErrors(resp *kmsg.ShareFetchResponse) map[tp]error {
	out := map[tp]error{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			out[tp{rt.TopicID, rp.Partition}] = kerr.ErrorForCode(rp.AcknowledgeErrorCode)
		}
	}
	return out
}

// partitionsOf lists the partitions of topic id.
func partitionsOf(id [16]byte, n int32) []tp {
	out := make([]tp, n)
	for i := range out {
		out[i] = tp{id, int32(i)}
	}
	return out
}
