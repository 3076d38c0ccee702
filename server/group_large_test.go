package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-848 groups of many members, simulated with raw ConsumerGroupHeartbeat
// requests sent through a kgo client: each simMember is a consumer that
// does what it is told at once (acks revocations on its next heartbeat).

type simMember struct {
	id    string
	epoch int32
	owned map[[16]byte][]int32
}

type simGroup struct {
	t      testing.TB
	cl     *kgo.Client
	name   string
	topics []string

	mu      sync.Mutex
	members []*simMember
	joined  int // members ever joined, for unique IDs
}

// heartbeat sends one heartbeat for m: a join at epoch 0 (with the
// subscription), else its epoch and what it owns. It reports whether the
// member changed: a new epoch or a new assignment.
func (g *simGroup) heartbeat(ctx context.Context, m *simMember) (bool, error) {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = 1
	req.Group, req.MemberID, req.MemberEpoch = g.name, m.id, m.epoch
	req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if m.epoch == 0 {
		req.RebalanceTimeoutMillis = 60000
		req.SubscribedTopicNames = g.topics
	} else {
		ids := make([][16]byte, 0, len(m.owned))
		for id := range m.owned {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
		for _, id := range ids {
			req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id, Partitions: m.owned[id]})
		}
	}
	resp, err := req.RequestWith(ctx, g.cl)
	if err != nil {
		return false, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return false, fmt.Errorf("member %s epoch %d: %w (%s)", m.id, m.epoch, err, derefString(resp.ErrorMessage))
	}
	changed := resp.MemberEpoch != m.epoch
	m.epoch = resp.MemberEpoch
	if resp.Assignment != nil {
		owned := make(map[[16]byte][]int32)
		for _, t := range resp.Assignment.Topics {
			if len(t.Partitions) > 0 {
				owned[t.TopicID] = slices.Sorted(slices.Values(t.Partitions))
			}
		}
		if !equalOwned(owned, m.owned) {
			changed = true
		}
		m.owned = owned
	}
	return changed, nil
}

func equalOwned(a, b map[[16]byte][]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for id, ps := range a {
		if !slices.Equal(ps, b[id]) {
			return false
		}
	}
	return true
}

// each heartbeats every member in ms once, 16 at a time, and returns how
// many changed.
func (g *simGroup) each(ctx context.Context, ms []*simMember) (int, error) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		changed int
		first   error
	)
	sem := make(chan struct{}, 16)
	for _, m := range ms {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := g.heartbeat(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if c {
				changed++
			}
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	return changed, first
}

// join adds n members, 16 joining at a time.
func (g *simGroup) join(ctx context.Context, n int) ([]*simMember, error) {
	g.mu.Lock()
	ms := make([]*simMember, n)
	for i := range ms {
		ms[i] = &simMember{id: fmt.Sprintf("member-%05d", g.joined)}
		g.joined++
	}
	g.members = append(g.members, ms...)
	g.mu.Unlock()
	_, err := g.each(ctx, ms)
	return ms, err
}

func (g *simGroup) leave(ctx context.Context, m *simMember) error {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, g.name, m.id, -1
	resp, err := req.RequestWith(ctx, g.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = slices.DeleteFunc(g.members, func(x *simMember) bool { return x == m })
	return nil
}

// settle heartbeats every member until the group is Stable, and returns how
// many member changes it took.
func (g *simGroup) settle(ctx context.Context) (int, error) {
	total := 0
	for range 20 {
		g.mu.Lock()
		ms := slices.Clone(g.members)
		g.mu.Unlock()
		changed, err := g.each(ctx, ms)
		if err != nil {
			return total, err
		}
		total += changed
		d, err := g.describe(ctx)
		if err != nil {
			return total, err
		}
		if d.State == "Stable" && changed == 0 {
			return total, nil
		}
	}
	return total, fmt.Errorf("group %s not stable after 20 rounds", g.name)
}

func (g *simGroup) describe(ctx context.Context) (kmsg.ConsumerGroupDescribeResponseGroup, error) {
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{g.name}
	resp, err := req.RequestWith(ctx, g.cl)
	if err != nil {
		return kmsg.ConsumerGroupDescribeResponseGroup{}, err
	}
	d := resp.Groups[0]
	return d, kerr.ErrorForCode(d.ErrorCode)
}

// checkAssignment checks a Stable group: every partition of the topics is
// held by exactly one member, the counts differ by at most one, and every
// member holds what the broker says it holds.
func (g *simGroup) checkAssignment(t testing.TB, d kmsg.ConsumerGroupDescribeResponseGroup, partitions int) {
	t.Helper()
	g.mu.Lock()
	byID := make(map[string]*simMember, len(g.members))
	for _, m := range g.members {
		byID[m.id] = m
	}
	g.mu.Unlock()
	if len(d.Members) != len(byID) {
		t.Fatalf("%d members described, %d in the group", len(d.Members), len(byID))
	}
	owner := make(map[string]string)
	lo, hi := partitions, 0
	for _, dm := range d.Members {
		n := 0
		m := byID[dm.MemberID]
		if m == nil {
			t.Fatalf("unknown member %s described", dm.MemberID)
		}
		if dm.MemberEpoch != d.Epoch || m.epoch != d.Epoch {
			t.Errorf("member %s at epoch %d (it thinks %d), group epoch %d", dm.MemberID, dm.MemberEpoch, m.epoch, d.Epoch)
		}
		held := make(map[[16]byte][]int32)
		for _, tp := range dm.Assignment.TopicPartitions {
			for _, p := range tp.Partitions {
				k := fmt.Sprintf("%s/%d", tp.Topic, p)
				if o, ok := owner[k]; ok {
					t.Errorf("%s held by %s and %s", k, o, dm.MemberID)
				}
				owner[k] = dm.MemberID
				n++
			}
			if len(tp.Partitions) > 0 {
				held[tp.TopicID] = slices.Sorted(slices.Values(tp.Partitions))
			}
		}
		if !equalOwned(held, m.owned) {
			t.Errorf("member %s owns %v, the broker says %v", m.id, m.owned, held)
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	if len(owner) != partitions || hi-lo > 1 {
		t.Errorf("%d of %d partitions assigned, members hold %d to %d", len(owner), partitions, lo, hi)
	}
}

// offsetsPartitionOf is the __consumer_offsets partition of a group, as the
// coordinator computes it (Kafka's abs(hashCode) % partitions, 50
// partitions by default).
func offsetsPartitionOf(group string) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % 50
}

// offsetsLog reports the size in bytes and the log start offset of a
// __consumer_offsets partition.
func offsetsLog(ctx context.Context, t testing.TB, adm *kadm.Client, p int32) (size, start int64) {
	t.Helper()
	dirs, err := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{offsetsTopic: {p: {}}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	dirs.Each(func(d kadm.DescribedLogDir) {
		if dp, ok := d.Topics.Lookup(offsetsTopic, p); ok {
			size, found = dp.Size, true
		}
	})
	if !found {
		t.Fatalf("%s/%d not in DescribeLogDirs", offsetsTopic, p)
	}
	starts, err := adm.ListStartOffsets(ctx, offsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := starts.Lookup(offsetsTopic, p)
	if !ok || o.Err != nil {
		t.Fatalf("start offset of %s/%d: %v", offsetsTopic, p, o.Err)
	}
	return size, o.Offset
}

// changeCost is what one member change costs in __consumer_offsets bytes,
// measured three ways at one group size.
type changeCost struct {
	join, leave, reconcile float64 // bytes per join, per leave, per reconciling member change
}

// TestConsumerGroupLargeBytesPerChange: a KIP-848 group grows to 2,000
// members and rebalances to a stable assignment at 100, 500 and 2,000
// members; at each size one member joins and later leaves, and the bytes
// appended to __consumer_offsets per member change (the join, the leave,
// each reconciling member's epoch or assignment change) do not grow with
// the group. Storing the whole group per change made them grow linearly.
func TestConsumerGroupLargeBytesPerChange(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2,000-member group in -short mode")
	}
	// Sessions outlast the test: the members heartbeat only when the test
	// moves them, and a loaded machine may take minutes.
	b := startBroker(t, map[string]string{"group.consumer.session.timeout.ms": "3600000"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	adm := b.admin()
	const partitions = 200
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, "large"); err != nil {
		t.Fatal(err)
	}
	g := &simGroup{t: t, cl: b.client(), name: "large-group", topics: []string{"large"}}
	p := offsetsPartitionOf(g.name)

	costs := map[int]changeCost{}
	for _, size := range []int{100, 500, 2000} {
		g.mu.Lock()
		have := len(g.members)
		g.mu.Unlock()
		if _, err := g.join(ctx, size-have); err != nil {
			t.Fatal(err)
		}
		if _, err := g.settle(ctx); err != nil {
			t.Fatal(err)
		}
		d, err := g.describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g.checkAssignment(t, d, partitions)

		// A snapshot of the partition may land inside a measurement;
		// measure again then.
		var cost changeCost
		for attempt := 0; ; attempt++ {
			if attempt == 3 {
				t.Fatalf("size %d: every measurement overlapped a snapshot", size)
			}
			size0, start0 := offsetsLog(ctx, t, adm, p)
			probe, err := g.join(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			size1, _ := offsetsLog(ctx, t, adm, p)
			changes, err := g.settle(ctx)
			if err != nil {
				t.Fatal(err)
			}
			size2, _ := offsetsLog(ctx, t, adm, p)
			if err := g.leave(ctx, probe[0]); err != nil {
				t.Fatal(err)
			}
			size3, start3 := offsetsLog(ctx, t, adm, p)
			if _, err := g.settle(ctx); err != nil {
				t.Fatal(err)
			}
			if start3 != start0 {
				continue
			}
			cost = changeCost{join: float64(size1 - size0), leave: float64(size3 - size2), reconcile: float64(size2-size1) / float64(max(changes, 1))}
			t.Logf("%d members: join %.0f B, leave %.0f B, %d reconciling changes at %.0f B each", size, cost.join, cost.leave, changes, cost.reconcile)
			break
		}
		costs[size] = cost
	}
	small, large := costs[100], costs[2000]
	for _, c := range []struct {
		what         string
		small, large float64
	}{
		{"join", small.join, large.join},
		{"leave", small.leave, large.leave},
		{"reconciling change", small.reconcile, large.reconcile},
	} {
		if c.small <= 0 || c.large > 2*c.small {
			t.Errorf("bytes per %s: %.0f at 100 members, %.0f at 2000 (more than twice)", c.what, c.small, c.large)
		}
	}
}

// TestConsumerGroupSurvivesRestart: a KIP-848 group's members, epochs and
// assignments (current and target) are the same after a broker restart,
// and its members carry on with the epochs they had: their heartbeats are
// accepted, nothing moves, and a commit at an epoch the partition was
// assigned at is accepted.
func TestConsumerGroupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	props := map[string]string{"group.consumer.session.timeout.ms": "600000"}
	b := startBroker(t, props, dir)
	ctx := testCtx(t)
	adm := b.admin()
	for _, topic := range []string{"restart-a", "restart-b"} {
		if _, err := adm.CreateTopic(ctx, 12, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	g := &simGroup{t: t, cl: b.client(), name: "restart-group", topics: []string{"restart-a", "restart-b"}}
	if _, err := g.join(ctx, 16); err != nil {
		t.Fatal(err)
	}
	if _, err := g.settle(ctx); err != nil {
		t.Fatal(err)
	}
	// One member leaves and another joins, so epochs differ among the
	// members.
	if err := g.leave(ctx, g.members[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := g.join(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.settle(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := g.describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.checkAssignment(t, before, 24)
	g.cl.Close()
	b.stop()

	b = startBroker(t, props, dir)
	g.cl = b.client()
	after, err := g.describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describedGroup(after), describedGroup(before); got != want {
		t.Fatalf("after restart:\n%s\nbefore:\n%s", got, want)
	}
	if changed, err := g.each(ctx, g.members); err != nil || changed != 0 {
		t.Fatalf("heartbeats after restart: %d members changed, %v", changed, err)
	}
	again, err := g.describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describedGroup(again), describedGroup(before); got != want || again.State != "Stable" {
		t.Fatalf("after heartbeats (%s):\n%s\nbefore:\n%s", again.State, got, want)
	}

	// The member that joined last got its partitions at the last epoch; a
	// commit at that epoch is accepted, one below it is stale (KIP-1251).
	m := g.members[len(g.members)-1]
	var tp kmsg.AssignmentTopicPartition
	for _, dm := range after.Members {
		if dm.MemberID == m.id && len(dm.Assignment.TopicPartitions) > 0 {
			tp = dm.Assignment.TopicPartitions[0]
		}
	}
	if len(tp.Partitions) == 0 {
		t.Fatalf("member %s holds nothing", m.id)
	}
	for _, c := range []struct {
		epoch int32
		want  error
	}{{m.epoch, nil}, {m.epoch - 1, kerr.StaleMemberEpoch}} {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.MemberID, req.Generation = 9, g.name, m.id, c.epoch
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = tp.Partitions[0], 0
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, g.cl)
		if err != nil {
			t.Fatal(err)
		}
		if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != c.want {
			t.Errorf("commit at epoch %d (member epoch %d): %v, want %v", c.epoch, m.epoch, err, c.want)
		}
	}
}

// describedGroup prints what a restart must keep of a described group.
func describedGroup(d kmsg.ConsumerGroupDescribeResponseGroup) string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch=%d assignment-epoch=%d assignor=%s\n", d.Epoch, d.AssignmentEpoch, d.AssignorName)
	tps := func(a kmsg.Assignment) string {
		var s []string
		for _, tp := range a.TopicPartitions {
			s = append(s, fmt.Sprintf("%s%v", tp.Topic, tp.Partitions))
		}
		sort.Strings(s)
		return strings.Join(s, " ")
	}
	ms := slices.Clone(d.Members)
	sort.Slice(ms, func(i, j int) bool { return ms[i].MemberID < ms[j].MemberID })
	for _, m := range ms {
		fmt.Fprintf(&b, "%s epoch=%d topics=%v assigned=[%s] target=[%s]\n", m.MemberID, m.MemberEpoch, m.SubscribedTopics, tps(m.Assignment), tps(m.TargetAssignment))
	}
	return b.String()
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
