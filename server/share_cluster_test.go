package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareClusterProps are the broker configs of the share cluster tests:
// three partitions of __share_group_state, short locks and sessions, and
// a stopped replica out of the ISR after 3 s (as the transaction tests).
func shareClusterProps() map[string]string {
	return shareProps("share.coordinator.state.topic.num.partitions", "3", "replica.lag.time.max.ms", "3000")
}

// liveNode returns a running node other than skip.
func (c *testCluster) liveOther(skip int32) *clusterNode {
	for _, nd := range c.nodes {
		if nd.srv != nil && nd.id != skip {
			return nd
		}
	}
	c.t.Fatal("no live node")
	return nil
}

// leaderOf returns the leader of a partition as a live node sees it, once
// that leader is a live node other than not (-1: any).
func (c *testCluster) leaderOf(topic string, p int32, not int32) int32 {
	c.t.Helper()
	var leader int32 = -1
	waitCluster(c.t, fmt.Sprintf("a live leader of %s-%d", topic, p), 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			t := nd.srv.meta.Topic(topic)
			if t == nil {
				return false
			}
			l := t.State(p).Leader
			for _, ln := range c.nodes {
				if ln.id == l && ln.srv != nil && l != not {
					if lt := ln.srv.meta.Topic(topic); lt != nil && lt.State(p).Leader == l {
						leader = l
						return true
					}
				}
			}
			return false
		}
		return false
	})
	return leader
}

// setClusterGroupConfigs sets configs of a group (kvs: name, value, ...).
func setClusterGroupConfigs(t testing.TB, c *testCluster, group string, kvs ...string) {
	t.Helper()
	setClusterGroupConfigsVia(t, c, c.client(), group, kvs...)
}

// setClusterGroupConfigsVia is setClusterGroupConfigs through via.
func setClusterGroupConfigsVia(t testing.TB, c *testCluster, via kmsg.Requestor, group string, kvs ...string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for i := 0; i+1 < len(kvs); i += 2 {
		cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		cfg.Name, cfg.Value = kvs[i], kmsg.StringPtr(kvs[i+1])
		res.Configs = append(res.Configs, cfg)
	}
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(testCtx(t), via)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Resources[0].ErrorCode); err != nil {
		t.Fatalf("setting group configs %v: %v", kvs, err)
	}
	waitCluster(t, "the group configs on every node", 10*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv != nil && nd.srv.meta.GroupConfigs(group)[kvs[0]] != kvs[1] {
				return false
			}
		}
		return true
	})
}

// shareKey is the FindCoordinator key (type 2) of a share-partition.
func shareKey(group string, id [16]byte, p int32) string {
	return fmt.Sprintf("%s:%s:%d", group, base64.RawURLEncoding.EncodeToString(id[:]), p)
}

// rawFetchUntil fetches for m until it acquired want records of part
// (retrying while leadership or the state settles) and returns their
// offsets with their delivery counts.
func rawFetchUntil(t *testing.T, m *rawShare, part tp, want int) map[int64]int16 {
	t.Helper()
	got := map[int64]int16{}
	waitCluster(t, fmt.Sprintf("%d records acquired", want), 20*time.Second, func() bool {
		resp, err := m.tryFetch([]tp{part}, nil, 200*time.Millisecond, 100)
		if err != nil || resp.ErrorCode != 0 {
			if resp != nil && resp.ErrorCode == kerr.ShareSessionNotFound.Code || resp != nil && resp.ErrorCode == kerr.InvalidShareSessionEpoch.Code {
				m.epoch = 0
			}
			return false
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				for _, r := range rp.AcquiredRecords {
					for o := r.FirstOffset; o <= r.LastOffset; o++ {
						if _, dup := got[o]; dup {
							t.Fatalf("offset %d acquired twice", o)
						}
						got[o] = r.DeliveryCount
					}
				}
			}
		}
		return len(got) >= want
	})
	return got
}

// joinRaw joins m to its group, retrying while the coordinator moves.
func joinRaw(t *testing.T, m *rawShare, topics ...string) {
	t.Helper()
	waitCluster(t, "the member joins", 20*time.Second, func() bool {
		resp, err := m.tryHeartbeat(topics...)
		return err == nil && resp.ErrorCode == 0
	})
}

// TestClusterSharePartitionLeader checks the share-partition leader of a
// cluster with a member speaking the protocol itself: __share_group_state
// is created with its replication factor and min.isr, each of its
// partitions is loaded by its leader only, membership requests reach the
// coordinator through whichever broker FindCoordinator names, ShareFetch
// and ShareAcknowledge are served by the data partition's leader while the
// state is stored by another broker, and across a stop of the data
// partition's leader and then of the state partition's leader, every
// acknowledged record stays acknowledged and every acquired one comes back
// (with its delivery count).
func TestClusterSharePartitionLeader(t *testing.T) {
	c := startCluster(t, 3, shareClusterProps())
	ctx := context.Background()
	c.waitRegistered()
	for _, nd := range c.nodes {
		waitCluster(t, shareStateTopic+" on every node", 20*time.Second, func() bool { return nd.srv.meta.Topic(shareStateTopic) != nil })
	}
	st := c.nodes[0].srv.meta.Topic(shareStateTopic)
	if got := st.Configs()["min.insync.replicas"]; got != "2" {
		t.Fatalf("%s min.insync.replicas %q, want share.coordinator.state.topic.min.isr (2)", shareStateTopic, got)
	}
	if n := st.NumPartitions(); n != 3 {
		t.Fatalf("%s has %d partitions, want 3", shareStateTopic, n)
	}
	for p, ps := range st.States() {
		if len(ps.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v, want share.coordinator.state.topic.replication.factor (3)", p, ps.Replicas)
		}
	}
	loadedOnLeaders := func() bool {
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			t := nd.srv.meta.Topic(shareStateTopic)
			for p := range t.NumPartitions() {
				if nd.srv.shares.Loaded(p) != (t.State(p).Leader == nd.id) {
					return false
				}
			}
		}
		return true
	}
	waitCluster(t, "every partition loaded by its leader only", 20*time.Second, loadedOnLeaders)

	adm := kadm.NewClient(c.client())
	if resp, err := adm.CreateTopics(ctx, 1, 3, nil, "q"); err != nil || resp.Error() != nil {
		t.Fatal(err, resp.Error())
	}
	dataLeader := c.leaderOf("q", 0, -1)
	qid := c.nodes[0].srv.meta.Topic("q").ID()
	q0 := tp{qid, 0}

	// A group whose share-partition q-0 is stored by another broker than
	// the one serving it.
	shares := c.nodes[0].srv.shares
	group, statePart := "", int32(0)
	for i := 0; group == ""; i++ {
		g := fmt.Sprintf("g%d", i)
		p := shares.Partition(shareKey(g, qid, 0))
		if st.State(p).Leader != dataLeader {
			group, statePart = g, p
		}
	}
	stateLeader := st.State(statePart).Leader

	// FindCoordinator for a share-partition key: the leader of its
	// partition of __share_group_state.
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType, fc.CoordinatorKey = 2, shareKey(group, qid, 0)
	fresp, err := fc.RequestWith(ctx, c.client())
	if err != nil || fresp.ErrorCode != 0 || fresp.NodeID != stateLeader {
		t.Fatalf("FindCoordinator for share key %q: %v %+v, want node %d", fc.CoordinatorKey, err, fresp, stateLeader)
	}

	setClusterGroupConfigs(t, c, group, "share.auto.offset.reset", "earliest")
	pcl := c.client(kgo.DefaultProduceTopic("q"))
	produce := func(n int) {
		for i := range n {
			if err := pcl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(10)

	member := func(leader int32) *rawShare {
		m := newRawShare(t, c.liveOther(-1).addr, group)
		m.via = m.cl.Broker(int(leader))
		joinRaw(t, m, "q")
		return m
	}
	// Served by the data partition's leader only.
	m := member(dataLeader)
	other := newRawShare(t, c.liveOther(dataLeader).addr, group)
	other.member = m.member
	other.via = other.cl.Broker(int(c.liveOther(dataLeader).id))
	if resp, err := other.tryFetch([]tp{q0}, nil, 0, 100); err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Fatalf("fetch from a follower: %v %+v, want NOT_LEADER_OR_FOLLOWER", err, resp)
	}
	if got := rawFetchUntil(t, m, q0, 10); len(got) != 10 {
		t.Fatalf("acquired %v", got)
	}
	resp := m.ack([]ackRange{{q0, 0, 4, 1}})
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-4: %+v", resp)
	}
	// The group's coordinator describes the start offset, read from the
	// state partition's leader (the lag where it also leads q-0).
	describe := func() kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition {
		t.Helper()
		req := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
		req.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: group}}
		var out kmsg.DescribeShareGroupOffsetsResponseGroupTopicPartition
		waitCluster(t, "the group's offsets described", 20*time.Second, func() bool {
			resp, err := req.RequestWith(ctx, c.client())
			if err != nil || len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 || len(resp.Groups[0].Topics) != 1 || len(resp.Groups[0].Topics[0].Partitions) != 1 {
				return false
			}
			out = resp.Groups[0].Topics[0].Partitions[0]
			return out.ErrorCode == 0
		})
		return out
	}
	if d := describe(); d.StartOffset != 5 || (d.Lag != 5 && d.Lag != -1) {
		t.Fatalf("described start offset %d lag %d, want 5 and 5 (or -1 away from the leader)", d.StartOffset, d.Lag)
	}

	// A group config altered through another broker reaches the data
	// partition's leader, which already serves the group.
	setClusterGroupConfigsVia(t, c, m.cl.Broker(int(c.liveOther(dataLeader).id)), group, "share.record.lock.duration.ms", "20000")
	if resp := m.fetch(nil, nil, 0, 100); resp.AcquisitionLockTimeoutMillis != 20000 {
		t.Fatalf("lock duration %d ms at the data partition's leader after the change, want 20000", resp.AcquisitionLockTimeoutMillis)
	}

	// The data partition's leader stops while the member holds 5-9: the
	// new leader reads the state from the state partition's leader.
	stopped := time.Now()
	c.stop(int(dataLeader))
	newLeader := c.leaderOf("q", 0, dataLeader)
	m2 := member(newLeader)
	got := rawFetchUntil(t, m2, q0, 5)
	t.Logf("held records acquired again from the new leader %v after the old one began to stop", time.Since(stopped).Round(time.Millisecond))
	if want := map[int64]int16{5: 2, 6: 2, 7: 2, 8: 2, 9: 2}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v from the new leader, want 5-9 delivered a second time", got)
	}
	if resp := m2.ack([]ackRange{{q0, 5, 9, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 5-9: %+v", resp)
	}

	// The old leader comes back and catches up; then the state
	// partition's leader stops: its acknowledgements were on the in-sync
	// replicas, so nothing of 0-9 comes back.
	c.start(int(dataLeader))
	c.waitRegistered()
	waitCluster(t, "the state partition in sync on three replicas", 30*time.Second, func() bool {
		nd := c.liveOther(-1)
		return len(nd.srv.meta.Topic(shareStateTopic).State(statePart).ISR) == 3
	})
	stateLeader = c.leaderOf(shareStateTopic, statePart, -1)
	c.stop(int(stateLeader))
	c.leaderOf(shareStateTopic, statePart, stateLeader)
	produce(5)
	leader := c.leaderOf("q", 0, stateLeader)
	m3 := member(leader)
	got = rawFetchUntil(t, m3, q0, 5)
	if want := map[int64]int16{10: 1, 11: 1, 12: 1, 13: 1, 14: 1}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v after the state leader stopped, want only the new records 10-14", got)
	}
	if d := describe(); d.StartOffset != 10 {
		t.Fatalf("described start offset %d after the failovers, want 10", d.StartOffset)
	}
	c.start(int(stateLeader))
	waitCluster(t, "every partition loaded by its leader only, after the restarts", 30*time.Second, loadedOnLeaders)
}

// TestClusterShareConsumers runs franz-go share consumers against a
// three-node cluster whose partitions are led by different brokers: every
// record is delivered and accepted exactly once; then the group
// coordinator's node stops (it leads a data partition too): the members
// find the new coordinator and keep consuming, no record is lost, and
// only records of the partition the stopped node led may come twice
// (those it had handed out and not yet seen acknowledged).
func TestClusterShareConsumers(t *testing.T) {
	c := startCluster(t, 3, shareClusterProps())
	ctx := testCtx(t)
	c.waitRegistered()
	if err := c.request(ctx, kmsgCreateWithAssignment("q", [][]int32{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}})); err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int32{}
	for p := range int32(3) {
		leaders[p] = c.leaderOf("q", p, -1)
	}
	if l := slices.Compact(slices.Sorted(maps.Values(leaders))); len(l) != 3 {
		t.Fatalf("partition leaders %v, want three brokers", leaders)
	}
	waitCluster(t, shareStateTopic+" on every node", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv.meta.Topic(shareStateTopic) == nil {
				return false
			}
		}
		return true
	})
	const group = "sg"
	setClusterGroupConfigs(t, c, group, "share.auto.offset.reset", "earliest")

	var mu sync.Mutex
	seen := map[string]int{}        // value → deliveries
	where := map[string]int32{}     // value → partition
	received := func() (int, int) { // distinct, total
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, k := range seen {
			n += k
		}
		return len(seen), n
	}
	var ms []*shareMember
	for range 3 {
		ms = append(ms, startShareMemberOn(t, c.addrs(), group, func(r *kgo.Record) kgo.AckStatus {
			mu.Lock()
			seen[string(r.Value)]++
			where[string(r.Value)] = r.Partition
			mu.Unlock()
			time.Sleep(time.Millisecond) // the member holds records a while
			return kgo.AckAccept
		}, kgo.ConsumeTopics("q"), kgo.MetadataMinAge(50*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })))
	}
	prod := c.client(kgo.DefaultProduceTopic("q"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produce := func(from, n int) {
		for i := from; i < from+n; i++ {
			prod.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "x%d", i)}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 900)
	waitCluster(t, "900 records received", 30*time.Second, func() bool { n, _ := received(); return n >= 900 })
	time.Sleep(300 * time.Millisecond) // redeliveries, if any, would show
	if n, total := received(); n != 900 || total != 900 {
		t.Fatalf("%d distinct records in %d deliveries, want 900 each exactly once", n, total)
	}

	// The group's coordinator stops.
	coordPart := c.nodes[0].srv.shares.Partition(group)
	coord := c.leaderOf(shareStateTopic, coordPart, -1)
	var ledByCoord []int32
	for p, l := range leaders {
		if l == coord {
			ledByCoord = append(ledByCoord, p)
		}
	}
	// It stops while records are being produced, delivered and
	// acknowledged.
	produce(900, 300)
	waitCluster(t, "some of them received", 20*time.Second, func() bool { n, _ := received(); return n >= 1000 })
	c.stop(int(coord))
	produce(1200, 600)
	waitUntil(t, 40*time.Second, "1800 records received after the coordinator stopped", func() bool { n, _ := received(); return n >= 1800 }, func() string {
		mu.Lock()
		defer mu.Unlock()
		byPart := map[int32]int{}
		for v := range seen {
			byPart[where[v]]++
		}
		var missing []string
		for i := range 1800 {
			if v := fmt.Sprintf("x%d", i); seen[v] == 0 && len(missing) < 20 {
				missing = append(missing, v)
			}
		}
		return fmt.Sprintf(": %d distinct, per partition %v, leaders %v, stopped %d, missing %v", len(seen), byPart, leaders, coord, missing)
	})
	// The members are the new coordinator's (ShareGroupDescribe through
	// whichever broker FindCoordinator names).
	adm := kadm.NewClient(c.client())
	waitCluster(t, "three members described by the new coordinator", 20*time.Second, func() bool {
		d, err := adm.DescribeShareGroups(ctx, group)
		return err == nil && d[group].Err == nil && len(d[group].Members) == 3
	})
	for _, m := range ms {
		m.stop()
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for v, k := range seen {
		if k > 1 {
			dups++
			if !slices.Contains(ledByCoord, where[v]) {
				t.Errorf("%s (partition %d, not led by the stopped node %d) delivered %d times", v, where[v], coord, k)
			}
		}
	}
	for i := range 1800 {
		if seen[fmt.Sprintf("x%d", i)] == 0 {
			t.Errorf("x%d never delivered", i)
		}
	}
	t.Logf("coordinator node %d stopped (it led partitions %v): %d records delivered twice", coord, ledByCoord, dups)
}
