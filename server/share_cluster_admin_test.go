package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareOpsProps are shareClusterProps with five partitions of
// __consumer_offsets: three, as __share_group_state has, may place every
// group's two coordinators on one broker.
func shareOpsProps(extra ...string) map[string]string {
	p := shareClusterProps()
	p["offsets.topic.num.partitions"] = "5"
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i]] = extra[i+1]
	}
	return p
}

// shareOps is a three-node cluster with topic q (one partition, three
// replicas) for the tests of share-group administration in a cluster.
type shareOps struct {
	t          *testing.T
	c          *testCluster
	ctx        context.Context
	adm        *kadm.Client
	q0         tp
	dataLeader int32
}

func startShareOps(t *testing.T, props map[string]string) *shareOps {
	return shareOpsOn(t, startCluster(t, 3, props))
}

// shareOpsOn is startShareOps on c, started.
func shareOpsOn(t *testing.T, c *testCluster) *shareOps {
	c.waitRegistered()
	waitCluster(t, shareStateTopic+" and "+offsetsTopic+" on every node", 20*time.Second, func() bool {
		for _, nd := range c.nodes {
			if nd.srv.meta.Topic(shareStateTopic) == nil || nd.srv.meta.Topic(offsetsTopic) == nil {
				return false
			}
		}
		return true
	})
	o := &shareOps{t: t, c: c, ctx: testCtx(t), adm: kadm.NewClient(c.client())}
	return o
}

// pickGroup returns a group name whose coordinator (the leader of its
// partition of __share_group_state) is not the broker FindCoordinator
// names for it, so that its requests are forwarded, and creates topic q
// (one partition, three replicas) led by the third broker: the
// coordinator leads no data partition.
func (o *shareOps) pickGroup() (group string, coord int32) {
	o.t.Helper()
	srv := o.c.nodes[0].srv
	var found int32
	waitCluster(o.t, "a group coordinated away from the broker FindCoordinator names", 20*time.Second, func() bool {
		for i := range 200 {
			g := fmt.Sprintf("g%d", i)
			coord = o.c.leaderOf(shareStateTopic, srv.shares.Partition(g), -1)
			found = o.c.leaderOf(offsetsTopic, srv.groups.Partition(g), -1)
			if coord != found {
				group = g
				return true
			}
		}
		return false
	})
	var replicas []int32
	for _, nd := range o.c.nodes {
		if nd.id != coord && nd.id != found {
			replicas = append(replicas, nd.id)
		}
	}
	replicas = append(replicas, found, coord)
	if err := o.c.request(o.ctx, kmsgCreateWithAssignment("q", [][]int32{replicas})); err != nil {
		o.t.Fatal(err)
	}
	o.dataLeader = o.c.leaderOf("q", 0, -1)
	o.q0 = tp{srv.meta.Topic("q").ID(), 0}
	waitCluster(o.t, "q on every node", 20*time.Second, func() bool {
		for _, nd := range o.c.nodes {
			if nd.srv.meta.Topic("q") == nil {
				return false
			}
		}
		return true
	})
	return group, coord
}

func (o *shareOps) produce(n int) {
	o.t.Helper()
	cl := o.c.client(kgo.DefaultProduceTopic("q"))
	defer cl.Close()
	for i := range n {
		if err := cl.ProduceSync(o.ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			o.t.Fatal(err)
		}
	}
}

// member joins a raw member of group whose share requests go to q-0's
// leader.
func (o *shareOps) member(group string, opts ...kgo.Opt) *rawShare {
	o.t.Helper()
	m := newRawShare(o.t, o.c.liveOther(-1).addr, group, opts...)
	m.via = m.cl.Broker(int(o.dataLeader))
	joinRaw(o.t, m, "q")
	return m
}

// startOffset describes the start offset of q-0 for group (-1: no state).
func (o *shareOps) startOffset(group string) int64 {
	o.t.Helper()
	var start int64
	waitCluster(o.t, "the start offset described", 20*time.Second, func() bool {
		d, err := o.adm.DescribeShareGroupOffsets(o.ctx, group)
		if err != nil || d[group].Err != nil {
			return false
		}
		start = -1
		if so, ok := d[group].Offsets["q"][0]; ok {
			if so.Err != nil {
				return false
			}
			start = so.StartOffset
		}
		return true
	})
	return start
}

// TestClusterShareAlterDeleteOffsets checks AlterShareGroupOffsets and
// DeleteShareGroupOffsets in a cluster, sent to the broker FindCoordinator
// names and forwarded to the group's coordinator: refused while the group
// has a member; once it has none, the new start offset (or the state's
// deletion) is written through the state partition's leader, and the
// leader of q-0, which still holds the old state in memory, serves the
// new one to the next member.
func TestClusterShareAlterDeleteOffsets(t *testing.T) {
	o := startShareOps(t, shareOpsProps())
	group, _ := o.pickGroup()
	setClusterGroupConfigs(t, o.c, group, "share.auto.offset.reset", "earliest")
	o.produce(10)

	m := o.member(group)
	if got := rawFetchUntil(t, m, o.q0, 10); len(got) != 10 {
		t.Fatalf("acquired %v", got)
	}
	if resp := m.ack([]ackRange{{o.q0, 0, 9, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-9: %+v", resp)
	}
	if got := o.startOffset(group); got != 10 {
		t.Fatalf("start offset %d after accepting 0-9, want 10", got)
	}
	at3 := kadm.Offsets{}
	at3.Add(kadm.Offset{Topic: "q", Partition: 0, At: 3})
	if _, err := o.adm.AlterShareGroupOffsets(o.ctx, group, at3); !errors.Is(err, kerr.NonEmptyGroup) {
		t.Fatalf("altering the offsets of a group with a member: %v, want NON_EMPTY_GROUP", err)
	}
	if _, err := o.adm.DeleteShareGroupOffsets(o.ctx, group, "q"); !errors.Is(err, kerr.NonEmptyGroup) {
		t.Fatalf("deleting the offsets of a group with a member: %v, want NON_EMPTY_GROUP", err)
	}

	m.leave() // q-0's leader keeps the share-partition it read
	resp, err := o.adm.AlterShareGroupOffsets(o.ctx, group, at3)
	if err != nil || resp.Error() != nil {
		t.Fatalf("altering the offsets of an empty group: %v %v", err, resp.Error())
	}
	if got := o.startOffset(group); got != 3 {
		t.Fatalf("start offset %d after the alteration, want 3", got)
	}
	m2 := o.member(group)
	got := rawFetchUntil(t, m2, o.q0, 7)
	if want := map[int64]int16{3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v after altering the start offset to 3, want 3-9 delivered once", got)
	}
	if resp := m2.ack([]ackRange{{o.q0, 3, 9, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 3-9: %+v", resp)
	}

	m2.leave()
	dresp, err := o.adm.DeleteShareGroupOffsets(o.ctx, group, "q")
	if err != nil || dresp.Error() != nil {
		t.Fatalf("deleting the offsets of an empty group: %v %v", err, dresp.Error())
	}
	if got := o.startOffset(group); got != -1 {
		t.Fatalf("start offset %d after the deletion, want none", got)
	}
	// The next member starts again from share.auto.offset.reset
	// (earliest).
	m3 := o.member(group)
	got = rawFetchUntil(t, m3, o.q0, 10)
	for off := range int64(10) {
		if got[off] != 1 {
			t.Fatalf("acquired %v after deleting the state, want 0-9 delivered once", got)
		}
	}
	if resp := m3.ack([]ackRange{{o.q0, 0, 9, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-9: %+v", resp)
	}
	if got := o.startOffset(group); got != 10 {
		t.Fatalf("start offset %d after accepting 0-9 again, want 10", got)
	}
}

// TestClusterShareGroupsListDescribeDelete checks ListGroups,
// DescribeGroups and DeleteGroups of a share group whose coordinator is
// not the broker FindCoordinator (key type 0) names for it: that broker
// lists it (and no other does), describes it as a share group and
// deletes it, with the state of its share-partitions.
func TestClusterShareGroupsListDescribeDelete(t *testing.T) {
	o := startShareOps(t, shareOpsProps())
	group, coord := o.pickGroup()
	found := o.c.leaderOf(offsetsTopic, o.c.nodes[0].srv.groups.Partition(group), -1)
	setClusterGroupConfigs(t, o.c, group, "share.auto.offset.reset", "earliest")
	o.produce(5)
	m := o.member(group)
	rawFetchUntil(t, m, o.q0, 5)
	if resp := m.ack([]ackRange{{o.q0, 0, 4, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-4: %+v", resp)
	}

	// Listed by the broker FindCoordinator names, by that one only.
	listedBy := func() []int32 {
		var by []int32
		for _, nd := range o.c.nodes {
			req := kmsg.NewPtrListGroupsRequest()
			resp, err := req.RequestWith(o.ctx, m.cl.Broker(int(nd.id)))
			if err != nil || resp.ErrorCode != 0 {
				t.Fatalf("ListGroups at %d: %v %+v", nd.id, err, resp)
			}
			for _, g := range resp.Groups {
				if g.Group == group {
					if g.GroupType != "share" || g.GroupState != "Stable" {
						t.Fatalf("listed by %d as %+v, want a Stable share group", nd.id, g)
					}
					by = append(by, nd.id)
				}
			}
		}
		return by
	}
	if by := listedBy(); len(by) != 1 || by[0] != found {
		t.Fatalf("listed by brokers %v, want only %d (FindCoordinator's; the group's coordinator is %d)", by, found, coord)
	}
	listed, err := o.adm.ListGroups(o.ctx)
	if err != nil || listed[group].ProtocolType != "share" {
		t.Fatalf("kadm ListGroups: %v %+v", err, listed[group])
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.SetVersion(6)
	dreq.Groups = []string{group}
	dresp, err := dreq.RequestWith(o.ctx, m.cl.Broker(int(found)))
	if err != nil || len(dresp.Groups) != 1 {
		t.Fatal(err, dresp)
	}
	if g := dresp.Groups[0]; g.ErrorCode != kerr.GroupIDNotFound.Code || g.ErrorMessage == nil || *g.ErrorMessage != fmt.Sprintf("Group %s is not a classic group.", group) {
		t.Fatalf("DescribeGroups v6 at %d: %+v (message %v), want GROUP_ID_NOT_FOUND, not a classic group", found, g, g.ErrorMessage)
	}
	shared, err := o.adm.DescribeShareGroups(o.ctx, group)
	if err != nil || shared[group].Err != nil || len(shared[group].Members) != 1 {
		t.Fatalf("DescribeShareGroups: %v %+v", err, shared[group])
	}

	if _, err := o.adm.DeleteGroup(o.ctx, group); !errors.Is(err, kerr.NonEmptyGroup) {
		t.Fatalf("deleting a group with a member: %v, want NON_EMPTY_GROUP", err)
	}
	m.leave()
	if _, err := o.adm.DeleteGroup(o.ctx, group); err != nil {
		t.Fatalf("deleting the empty share group: %v", err)
	}
	if by := listedBy(); len(by) != 0 {
		t.Fatalf("listed by %v after its deletion", by)
	}
	shared, err = o.adm.DescribeShareGroups(o.ctx, group)
	if err != nil || !errors.Is(shared[group].Err, kerr.GroupIDNotFound) {
		t.Fatalf("DescribeShareGroups after the deletion: %v %+v, want GROUP_ID_NOT_FOUND", err, shared[group])
	}
	if got := o.startOffset(group); got != -1 {
		t.Fatalf("start offset %d of q-0 after the deletion, want no state", got)
	}
	// A group of the same name starts again (earliest).
	setClusterGroupConfigs(t, o.c, group, "share.auto.offset.reset", "earliest")
	m2 := o.member(group)
	if got := rawFetchUntil(t, m2, o.q0, 5); !maps.Equal(got, map[int64]int16{0: 1, 1: 1, 2: 1, 3: 1, 4: 1}) {
		t.Fatalf("acquired %v by the group made again, want 0-4 delivered once", got)
	}
	if resp := m2.ack([]ackRange{{o.q0, 0, 4, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-4: %+v", resp)
	}
}

// TestClusterShareSessionTimeoutReleases checks that the records a member
// holds on a partition led by another broker than its group's
// coordinator are released as soon as its session times out there, not
// when their acquisition locks (a minute) expire: another member gets
// them again at once, with their delivery counts.
func TestClusterShareSessionTimeoutReleases(t *testing.T) {
	o := startShareOps(t, shareOpsProps())
	group, coord := o.pickGroup()
	if coord == o.dataLeader {
		t.Fatalf("the group's coordinator %d leads q-0", coord)
	}
	setClusterGroupConfigs(t, o.c, group, "share.auto.offset.reset", "earliest")
	setClusterGroupConfigs(t, o.c, group, "share.session.timeout.ms", "2000")
	setClusterGroupConfigs(t, o.c, group, "share.record.lock.duration.ms", "60000")
	o.produce(5)

	m1 := o.member(group)
	if got := rawFetchUntil(t, m1, o.q0, 5); len(got) != 5 {
		t.Fatalf("acquired %v", got)
	}
	// m1 stops heartbeating, its share session on q-0's leader open; m2
	// keeps heartbeating.
	m2 := o.member(group)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				m2.tryHeartbeat()
			}
		}
	}()
	defer func() { close(done); <-stopped }()
	start := time.Now()
	waitCluster(t, "m1's session timed out", 20*time.Second, func() bool {
		d, err := o.adm.DescribeShareGroups(o.ctx, group)
		return err == nil && d[group].Err == nil && len(d[group].Members) == 1 && d[group].Members[0].MemberID == m2.member
	})
	got := rawFetchUntil(t, m2, o.q0, 5)
	t.Logf("m1's records acquired by m2 %v after m1 stopped heartbeating", time.Since(start).Round(time.Millisecond))
	if want := map[int64]int16{0: 2, 1: 2, 2: 2, 3: 2, 4: 2}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v by m2, want 0-4 delivered a second time", got)
	}
	if resp := m2.ack([]ackRange{{o.q0, 0, 4, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 0-4: %+v", resp)
	}
	// m1's share session on q-0's leader ended with it.
	if resp, err := m1.tryFetch([]tp{o.q0}, nil, 0, 10); err != nil || resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("m1 fetching after its session timed out: %v %+v, want SHARE_SESSION_NOT_FOUND", err, resp)
	}
}

// TestClusterShareInitializedAtAssignment checks that with
// share.auto.offset.reset latest (the default) a share-partition starts
// where the log ended when a member was first assigned it, as on one
// broker, though the group's coordinator does not lead it: records
// written between the assignment and the member's first ShareFetch are
// delivered, the ones before are not.
func TestClusterShareInitializedAtAssignment(t *testing.T) {
	o := startShareOps(t, shareOpsProps())
	group, coord := o.pickGroup()
	if coord == o.dataLeader {
		t.Fatalf("the group's coordinator %d leads q-0", coord)
	}
	o.produce(3)
	m := o.member(group)
	if got := o.startOffset(group); got != 3 {
		t.Fatalf("start offset %d once q-0 is assigned, want 3 (the end of the log then)", got)
	}
	o.produce(4)
	got := rawFetchUntil(t, m, o.q0, 4)
	if want := map[int64]int16{3: 1, 4: 1, 5: 1, 6: 1}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v, want 3-6: the records written after the assignment", got)
	}
	if resp := m.ack([]ackRange{{o.q0, 3, 6, 1}}); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("accept 3-6: %+v", resp)
	}
}
