package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// TestClusterCloseWithoutFollowers stops two of three nodes, then sends
// the third an acks=all produce, an offset commit and a share
// acknowledgement, which wait for followers that are gone (the quorum is
// gone too, so nothing shrinks the ISR): Close of the third fails the
// waits with a retriable error and returns instead of waiting out the
// 30 s replication timeout, and no write is acknowledged.
func TestClusterCloseWithoutFollowers(t *testing.T) {
	c := startCluster(t, 3, shareClusterProps())
	ctx := testCtx(t)
	shareOpsOn(t, c) // every node registered, the internal topics created
	// keep is the node that stays: it leads a partition of
	// __consumer_offsets and one of __share_group_state.
	leads := func(topic string, id int32) int32 {
		for p := range c.nodes[0].srv.meta.Topic(topic).NumPartitions() {
			if c.leaderOf(topic, p, -1) == id {
				return p
			}
		}
		return -1
	}
	keep, offsetsP, stateP := int32(-1), int32(-1), int32(-1)
	for _, nd := range c.nodes {
		if op, sp := leads(offsetsTopic, nd.id), leads(shareStateTopic, nd.id); op >= 0 && sp >= 0 {
			keep, offsetsP, stateP = nd.id, op, sp
			break
		}
	}
	if keep < 0 {
		t.Fatal("no node leads both a partition of __consumer_offsets and one of __share_group_state")
	}
	grp := ""
	for i := 0; grp == ""; i++ {
		if name := fmt.Sprintf("stop-g%d", i); c.nodes[keep].srv.groups.Partition(name) == offsetsP {
			grp = name
		}
	}
	var others []int32
	for _, nd := range c.nodes {
		if nd.id != keep {
			others = append(others, nd.id)
		}
	}
	if err := c.request(ctx, kmsgCreateWithAssignment("held", [][]int32{{keep, others[0], others[1]}})); err != nil {
		t.Fatal(err)
	}
	if l := c.leaderOf("held", 0, -1); l != keep {
		t.Fatalf("held-0 is led by %d, want its first replica %d", l, keep)
	}
	kc := c.nodeClient(c.nodes[keep])
	heldID := c.nodes[keep].srv.meta.Topic("held").ID()
	// A share group whose state of held-0 is kept by keep.
	sgrp := ""
	for i := 0; sgrp == ""; i++ {
		if name := fmt.Sprintf("stop-s%d", i); c.nodes[keep].srv.shares.Partition(shareKey(name, heldID, 0)) == stateP {
			sgrp = name
		}
	}
	setClusterGroupConfigs(t, c, sgrp, "share.auto.offset.reset", "earliest")
	produce := func() (int16, error) {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 120_000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = "held", heldID
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = record.AppendBatch(nil, record.Batch{
			BaseTimestamp: time.Now().UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []record.Record{{Value: []byte("v")}},
		})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, kc.Broker(int(keep)))
		if err != nil {
			return 0, err
		}
		return resp.Topics[0].Partitions[0].ErrorCode, nil
	}
	commit := func() (int16, error) {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = grp, -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "held", heldID
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, kc.Broker(int(keep)))
		if err != nil {
			return 0, err
		}
		return resp.Topics[0].Partitions[0].ErrorCode, nil
	}
	// Both succeed while the followers are there.
	waitCluster(t, "a produce and a commit with every follower", 20*time.Second, func() bool {
		pc, perr := produce()
		cc, cerr := commit()
		return perr == nil && pc == 0 && cerr == nil && cc == 0
	})
	held0 := tp{heldID, 0}
	m := newRawShare(t, c.nodes[keep].addr, sgrp)
	m.via = m.cl.Broker(int(keep))
	joinRaw(t, m, "held")
	acquired := rawFetchUntil(t, m, held0, 1)
	var acks []ackRange
	for o := range acquired {
		acks = append(acks, ackRange{held0, o, o, 1})
	}
	for _, id := range others {
		c.stop(int(id))
	}
	type answer struct {
		what string
		code int16
		err  error
	}
	answers := make(chan answer, 3)
	go func() { code, err := produce(); answers <- answer{"produce", code, err} }()
	go func() { code, err := commit(); answers <- answer{"offset commit", code, err} }()
	go func() {
		resp, err := m.tryAck(acks)
		code := int16(0)
		if err == nil {
			code = resp.ErrorCode
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					code = max(code, rp.ErrorCode)
				}
			}
		}
		answers <- answer{"share acknowledgement", code, err}
	}()
	// Both are appended and wait for the followers.
	held, err := c.nodes[keep].srv.meta.Topic("held").Partition(0)
	if err != nil {
		t.Fatal(err)
	}
	offsets, err := c.nodes[keep].srv.meta.Topic(offsetsTopic).Partition(offsetsP)
	if err != nil {
		t.Fatal(err)
	}
	state, err := c.nodes[keep].srv.meta.Topic(shareStateTopic).Partition(stateP)
	if err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "the writes waiting for the followers", 20*time.Second, func() bool {
		return held.LogEndOffset() > held.HighWatermark() && offsets.LogEndOffset() > offsets.HighWatermark() &&
			state.LogEndOffset() > state.HighWatermark()
	})
	start := time.Now()
	c.stop(int(keep))
	took := time.Since(start)
	t.Logf("Close of the last node with three writes waiting took %v", took)
	if took > 10*time.Second {
		t.Errorf("Close of the last node took %v: it waited for followers that are gone", took)
	}
	for range 3 {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			t.Fatal("a request was not answered")
		}
		switch {
		case a.err != nil:
			t.Logf("%s: %v", a.what, a.err)
		case a.code == 0:
			t.Errorf("%s acknowledged though no follower has it", a.what)
		case !kerr.IsRetriable(kerr.ErrorForCode(a.code)):
			t.Errorf("%s: %v, not retriable", a.what, kerr.ErrorForCode(a.code))
		default:
			t.Logf("%s: %v", a.what, kerr.ErrorForCode(a.code))
		}
	}
}

// TestClusterCloseWithHungPeer stops a broker while a request it forwards
// waits for another broker that accepts connections and never answers
// (the group's share coordinator behind a hung proxy): Close ends the
// forwarded request and returns instead of waiting out the peer timeout
// (15 s).
func TestClusterCloseWithHungPeer(t *testing.T) {
	c := newCluster(t, 3, shareOpsProps())
	proxies := make([]*tcpProxy, len(c.nodes))
	for i := range c.nodes {
		proxies[i] = c.proxy(i)
	}
	c.startAll()
	o := shareOpsOn(t, c)
	group, coord := o.pickGroup()
	found := c.leaderOf(offsetsTopic, c.nodes[0].srv.groups.Partition(group), -1)
	m := newRawShare(t, c.nodes[found].addr, group, c.directDialer())
	joinRaw(t, m, "q") // through found, forwarded to coord
	proxies[coord].hang()
	defer proxies[coord].resume()
	// The connections found pooled to coord are cut: the heartbeats that
	// find them fail at once, until one dials coord again and waits.
	answered := make(chan error, 1)
	go func() {
		for {
			resp, err := m.tryHeartbeat()
			if err != nil || resp.ErrorCode != kerr.NotCoordinator.Code {
				answered <- fmt.Errorf("%v %+v", err, resp)
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the heartbeat reaches found, which forwards it and waits
	start := time.Now()
	c.stop(int(found))
	took := time.Since(start)
	t.Logf("Close of the forwarding node took %v", took)
	if took > 10*time.Second {
		t.Errorf("Close of the forwarding node took %v: it waited for a peer that does not answer", took)
	}
	select {
	case err := <-answered:
		t.Logf("the heartbeat: %v", err)
	case <-o.ctx.Done():
		t.Fatal("the heartbeat was not answered")
	}
}
