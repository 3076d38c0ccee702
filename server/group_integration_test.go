package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Consumer groups end to end: a real broker, kgo group members in this
// process and in a child process (group_child_test.go), and kcat. The
// coordinator's state machine (timeouts, static members, error codes) is
// tested with golden transcripts in package group; these tests check what
// clients see: who gets which record, what was committed, and what a new
// owner of a partition receives.
//
// Every test topic is a seqTopic: the record at offset o of partition p
// has the value "p:o", so a consumer can tell a record it should not have
// been given (a duplicate, one past the end, the wrong partition).

// seqTopic is a topic written only through its produce methods.
type seqTopic struct {
	name       string
	partitions int32

	mu struct {
		sync.Mutex
		next []int64 // the offset the next record of each partition gets
	}
}

// newSeqTopic creates topic name with the given number of partitions.
func newSeqTopic(t testing.TB, b *testBroker, name string, partitions int32) *seqTopic {
	t.Helper()
	resp, err := b.admin().CreateTopic(testCtx(t), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	s := &seqTopic{name: name, partitions: partitions}
	s.mu.next = make([]int64, partitions)
	return s
}

func seqValue(p int32, offset int64) string { return fmt.Sprintf("%d:%d", p, offset) }

// seqProducer returns a client that produces to the partition a record
// names, with acks=all and no linger.
func seqProducer(t testing.TB, b *testBroker) *kgo.Client {
	return b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
}

// produce appends n records to every partition and checks that each got
// the offset its value names.
func (s *seqTopic) produce(t testing.TB, cl *kgo.Client, n int) {
	t.Helper()
	counts := make([]int, s.partitions)
	for p := range counts {
		counts[p] = n
	}
	s.produceCounts(t, cl, counts...)
}

// produceCounts appends counts[p] records to partition p.
func (s *seqTopic) produceCounts(t testing.TB, cl *kgo.Client, counts ...int) {
	t.Helper()
	if err := s.produceRound(cl, counts); err != nil {
		t.Fatal(err)
	}
}

func (s *seqTopic) produceRound(cl *kgo.Client, counts []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []*kgo.Record
	for p := range s.partitions {
		for i := range counts[p] {
			off := s.mu.next[p] + int64(i)
			recs = append(recs, &kgo.Record{Topic: s.name, Partition: p, Value: []byte(seqValue(p, off))})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", s.name, err)
	}
	for _, r := range recs {
		if want := string(r.Value); seqValue(r.Partition, r.Offset) != want {
			return fmt.Errorf("produce to %s: record %s landed at offset %d", s.name, want, r.Offset)
		}
	}
	for p := range s.partitions {
		s.mu.next[p] += int64(counts[p])
	}
	return nil
}

// grow adds partitions to the topic, up to total. Not for a topic being
// produced to in the background.
func (s *seqTopic) grow(t testing.TB, adm *kadm.Client, total int32) {
	t.Helper()
	resps, err := adm.CreatePartitions(testCtx(t), int(total-s.partitions), s.name)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("add partitions to %s: %v", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range total - s.partitions {
		s.mu.next = append(s.mu.next, 0)
	}
	s.partitions = total
}

// ends returns the end offset of every partition.
func (s *seqTopic) ends() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.next)
}

func (s *seqTopic) total() int {
	n := int64(0)
	for _, e := range s.ends() {
		n += e
	}
	return int(n)
}

// produceInBackground produces one record to every partition every tick
// until the returned stop func is called; stop returns the end offsets.
func (s *seqTopic) produceInBackground(t testing.TB, cl *kgo.Client, every time.Duration) (stop func() []int64) {
	quit, done := make(chan struct{}), make(chan struct{})
	ones := make([]int, s.partitions)
	for p := range ones {
		ones[p] = 1
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if err := s.produceRound(cl, ones); err != nil {
				t.Errorf("background producer: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() []int64 {
		once.Do(func() { close(quit); <-done })
		return s.ends()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// groupMember is an in-process kgo group member. Its poll loop records
// every record it is given and, if it commits, marks it for commit once
// "processed". Rebalances are blocked while a poll is processed
// (BlockRebalanceOnPoll) and the revoke callback commits what was marked,
// so a partition's next owner starts exactly after the last record this
// member processed.
type groupMember struct {
	t      testing.TB
	name   string
	cl     *kgo.Client
	commit bool // mark processed records; autocommit and revoke commit them

	cancel    context.CancelFunc
	done      chan struct{} // closed when the poll loop returns
	closeOnce sync.Once

	mu struct {
		sync.Mutex
		owned      map[string]map[int32]bool
		assignedAt map[string]map[int32]time.Time
		recs       map[string]map[int32][]*kgo.Record
		n          int
		history    []string // callbacks, in order, for failure messages
		assigns    int      // OnPartitionsAssigned calls
		revokes    int      // OnPartitionsRevoked calls with partitions
		lost       int      // OnPartitionsLost calls with partitions
	}
}

// startMember starts a member of group on broker b. With commit false it
// commits nothing unless the test does. opts add to or override the
// defaults (ConsumeTopics or ConsumeRegex must be among them).
func startMember(t testing.TB, b *testBroker, name, group string, commit bool, opts ...kgo.Opt) *groupMember {
	t.Helper()
	m := &groupMember{t: t, name: name, commit: commit, done: make(chan struct{})}
	m.mu.owned = map[string]map[int32]bool{}
	m.mu.assignedAt = map[string]map[int32]time.Time{}
	m.mu.recs = map[string]map[int32][]*kgo.Record{}
	base := []kgo.Opt{
		kgo.SeedBrokers(b.addr),
		kgo.ClientID(name),
		kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(m.onAssigned),
		kgo.OnPartitionsRevoked(m.onRevoked),
		kgo.OnPartitionsLost(m.onLost),
	}
	if commit {
		base = append(base, kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200*time.Millisecond))
	} else {
		base = append(base, kgo.DisableAutoCommit())
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	m.cl = cl
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.poll(ctx)
	t.Cleanup(m.close)
	return m
}

func (m *groupMember) poll(ctx context.Context) {
	defer close(m.done)
	for {
		fs := m.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			m.cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				m.t.Errorf("%s: fetch %s/%d: %v", m.name, topic, p, err)
			}
		})
		recs := fs.Records()
		m.mu.Lock()
		for _, r := range recs {
			byP := m.mu.recs[r.Topic]
			if byP == nil {
				byP = map[int32][]*kgo.Record{}
				m.mu.recs[r.Topic] = byP
			}
			byP[r.Partition] = append(byP[r.Partition], r)
			m.mu.n++
		}
		m.mu.Unlock()
		if m.commit {
			m.cl.MarkCommitRecords(recs...)
		}
		m.cl.AllowRebalance()
	}
}

func (m *groupMember) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.mu.assigns++
	for topic, ps := range assigned {
		if m.mu.owned[topic] == nil {
			m.mu.owned[topic] = map[int32]bool{}
			m.mu.assignedAt[topic] = map[int32]time.Time{}
		}
		for _, p := range ps {
			m.mu.owned[topic][p] = true
			m.mu.assignedAt[topic][p] = now
		}
	}
	m.mu.history = append(m.mu.history, fmt.Sprintf("assigned %v", sortedAssignment(assigned)))
}

func (m *groupMember) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	// Commit before giving the partitions up; with AutoCommitMarks this
	// commits what was marked, otherwise it is a no-op.
	if err := cl.CommitMarkedOffsets(ctx); err != nil && !errors.Is(err, kgo.ErrClientClosed) {
		m.t.Errorf("%s: commit on revoke: %v", m.name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for topic, ps := range revoked {
		for _, p := range ps {
			delete(m.mu.owned[topic], p)
			n++
		}
	}
	if n > 0 {
		m.mu.revokes++
		m.mu.history = append(m.mu.history, fmt.Sprintf("revoked %v", sortedAssignment(revoked)))
	}
}

func (m *groupMember) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for topic, ps := range lost {
		for _, p := range ps {
			delete(m.mu.owned[topic], p)
			n++
		}
	}
	if n > 0 {
		m.mu.lost++
		m.mu.history = append(m.mu.history, fmt.Sprintf("lost %v", sortedAssignment(lost)))
	}
}

func sortedAssignment(m map[string][]int32) string {
	var parts []string
	for _, topic := range slices.Sorted(maps.Keys(m)) {
		ps := slices.Clone(m[topic])
		slices.Sort(ps)
		parts = append(parts, fmt.Sprintf("%s%v", topic, ps))
	}
	return strings.Join(parts, " ")
}

// stopPolling stops the poll loop; records fetched but not yet polled are
// neither recorded nor marked.
func (m *groupMember) stopPolling() {
	m.cancel()
	<-m.done
}

// close stops polling and closes the client, which leaves the group (the
// revoke callback commits what was marked first).
func (m *groupMember) close() {
	m.closeOnce.Do(func() {
		m.stopPolling()
		m.cl.Close()
	})
}

// closeMembers closes ms at once: closed one by one, each would leave
// while the others are rebalancing for the previous one.
func closeMembers(ms ...*groupMember) {
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.close)
	}
	wg.Wait()
}

func (m *groupMember) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.n
}

// owned returns the partitions of topic the member owns, sorted.
func (m *groupMember) owned(topic string) []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.mu.owned[topic]))
}

func (m *groupMember) assignedAt(topic string, p int32) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.assignedAt[topic][p]
}

// records returns the records of topic received so far, by partition.
func (m *groupMember) records(topic string) map[int32][]*kgo.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32][]*kgo.Record{}
	for p, rs := range m.mu.recs[topic] {
		out[p] = slices.Clone(rs)
	}
	return out
}

func (m *groupMember) history() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("%s: %s", m.name, strings.Join(m.mu.history, "; "))
}

// receivedEnds returns, for each partition of topic, the highest offset any
// of ms received plus one (0 when none).
func receivedEnds(topic string, partitions int32, ms ...*groupMember) []int64 {
	next := make([]int64, partitions)
	for _, m := range ms {
		for p, rs := range m.records(topic) {
			if n := len(rs); n > 0 && int(p) < len(next) {
				next[p] = max(next[p], rs[n-1].Offset+1)
			}
		}
	}
	return next
}

// covers reports whether ms together received everything up to end.
func covers(topic string, end []int64, ms ...*groupMember) bool {
	return coversFrom(topic, nil, end, ms...)
}

// coversFrom reports whether ms together received everything from from
// (nil: from the start) up to end.
func coversFrom(topic string, from, end []int64, ms ...*groupMember) bool {
	got := receivedEnds(topic, int32(len(end)), ms...)
	for p := range end {
		if got[p] < end[p] && (from == nil || from[p] < end[p]) {
			return false
		}
	}
	return true
}

// assignmentSettled reports whether every partition of topic is owned by
// exactly one of ms and each of ms owns at least one.
func assignmentSettled(topic string, partitions int32, ms ...*groupMember) bool {
	owners := make([]int, partitions)
	for _, m := range ms {
		ps := m.owned(topic)
		if len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			if p < 0 || p >= partitions {
				return false
			}
			owners[p]++
		}
	}
	for _, n := range owners {
		if n != 1 {
			return false
		}
	}
	return true
}

func histories(ms ...*groupMember) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "\n\t%s", m.history())
	}
	return b.String()
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool, details ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range details {
				msg += d()
			}
			t.Fatalf("timed out after %v waiting until %s%s", timeout, what, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// delivery counts, for each partition and offset, how often a record was
// received, and checks each receiver's records on the way: the right
// value, and offsets increasing within a partition.
type delivery struct {
	t     testing.TB
	topic string
	count []map[int64]int
}

func newDelivery(t testing.TB, topic string, partitions int32) *delivery {
	d := &delivery{t: t, topic: topic, count: make([]map[int64]int, partitions)}
	for p := range d.count {
		d.count[p] = map[int64]int{}
	}
	return d
}

// add counts one receiver's records of one partition, in the order it got
// them.
func (d *delivery) add(who string, p int32, offsets []int64, values []string) {
	d.t.Helper()
	if p < 0 || int(p) >= len(d.count) {
		d.t.Errorf("%s got partition %d of %s, which does not exist", who, p, d.topic)
		return
	}
	for i, off := range offsets {
		if values[i] != seqValue(p, off) {
			d.t.Errorf("%s: %s/%d offset %d has value %q, want %q", who, d.topic, p, off, values[i], seqValue(p, off))
		}
		if i > 0 && off <= offsets[i-1] {
			d.t.Errorf("%s: %s/%d out of order: offset %d after %d", who, d.topic, p, off, offsets[i-1])
		}
		d.count[p][off]++
	}
}

func (d *delivery) addMember(m *groupMember) {
	d.t.Helper()
	for p, rs := range m.records(d.topic) {
		offs, vals := make([]int64, len(rs)), make([]string, len(rs))
		for i, r := range rs {
			offs[i], vals[i] = r.Offset, string(r.Value)
		}
		d.add(m.name, p, offs, vals)
	}
}

// check checks that offsets from[p] (0 when from is nil) to end[p] were
// each received want(p, offset) times (once when want is nil) and nothing
// else was received.
func (d *delivery) check(from, end []int64, want func(p int32, off int64) int) {
	d.t.Helper()
	if from == nil {
		from = make([]int64, len(end))
	}
	var problems []string
	for p := range d.count {
		for off := from[p]; off < end[p]; off++ {
			w := 1
			if want != nil {
				w = want(int32(p), off)
			}
			if got := d.count[p][off]; got != w {
				problems = append(problems, fmt.Sprintf("%s/%d offset %d received %d times, want %d", d.topic, p, off, got, w))
			}
		}
		for _, off := range slices.Sorted(maps.Keys(d.count[p])) {
			if off < from[p] {
				problems = append(problems, fmt.Sprintf("%s/%d offset %d received, before the start %d", d.topic, p, off, from[p]))
			} else if off >= end[p] {
				problems = append(problems, fmt.Sprintf("%s/%d offset %d received, past the end %d", d.topic, p, off, end[p]))
			}
		}
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
		}
		d.t.Errorf("delivery of %s:\n\t%s", d.topic, strings.Join(problems, "\n\t"))
	}
}

// checkDelivery checks that ms together received every record of topic
// from from[p] (0 when from is nil) to end[p] exactly once, each member
// in offset order per partition.
func checkDelivery(t testing.TB, topic string, from, end []int64, ms ...*groupMember) {
	t.Helper()
	d := newDelivery(t, topic, int32(len(end)))
	for _, m := range ms {
		d.addMember(m)
	}
	d.check(from, end, nil)
}

// committedOffsets returns group's committed offsets of topic (-1 where none).
func committedOffsets(t testing.TB, adm *kadm.Client, group, topic string, partitions int32) []int64 {
	t.Helper()
	resps, err := adm.FetchOffsets(testCtx(t), group)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := make([]int64, partitions)
	for p := range out {
		out[p] = -1
		if r, ok := resps.Lookup(topic, int32(p)); ok {
			out[p] = r.At
		}
	}
	return out
}

// TestGroupTwoMembersMidStream runs one member on a 4-partition topic
// while a producer keeps producing, starts a second member in the same
// group mid-stream, and checks that the rebalance gives each two
// partitions and that together they processed every record exactly once,
// in order per partition: the first member commits what it processed
// before it gives a partition up, and the second starts there.
func TestGroupTwoMembersMidStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		balancer kgo.GroupBalancer
		protocol string
	}{
		{"cooperative-sticky", kgo.CooperativeStickyBalancer(), "cooperative-sticky"},
		{"range (eager)", kgo.RangeBalancer(), "range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, nil)
			ctx := testCtx(t)
			const group = "mid-g"
			s := newSeqTopic(t, b, "mid", 4)
			stopProducing := s.produceInBackground(t, seqProducer(t, b), 2*time.Millisecond)

			first := startMember(t, b, "first", group, true, kgo.ConsumeTopics(s.name), kgo.Balancers(tc.balancer))
			waitUntil(t, 15*time.Second, "the first member owns 4 partitions and consumed 200 records", func() bool {
				return len(first.owned(s.name)) == 4 && first.count() >= 200
			}, func() string { return histories(first) })
			firstAssigns := func() int { first.mu.Lock(); defer first.mu.Unlock(); return first.mu.assigns }
			assignsBefore := firstAssigns()

			second := startMember(t, b, "second", group, true, kgo.ConsumeTopics(s.name), kgo.Balancers(tc.balancer))
			waitUntil(t, 15*time.Second, "both own 2 partitions and the second consumed 100 records", func() bool {
				return len(first.owned(s.name)) == 2 && len(second.owned(s.name)) == 2 &&
					assignmentSettled(s.name, 4, first, second) && second.count() >= 100
			}, func() string { return histories(first, second) })
			end := stopProducing()
			waitUntil(t, 15*time.Second, "everything produced is consumed", func() bool { return covers(s.name, end, first, second) },
				func() string {
					return fmt.Sprintf("\n\tend %v, received %v", end, receivedEnds(s.name, 4, first, second))
				})

			// The rebalance was seen by the first member: it gave up two
			// partitions (eager: it gave up all four and was assigned two).
			first.mu.Lock()
			revokes, lost := first.mu.revokes, first.mu.lost
			first.mu.Unlock()
			if revokes == 0 || lost != 0 {
				t.Errorf("first member: %d revokes, %d losses, want revokes and no loss:%s", revokes, lost, histories(first))
			}
			if tc.protocol == "range" && firstAssigns() <= assignsBefore {
				t.Errorf("eager rebalance: OnPartitionsAssigned did not fire again on the first member:%s", histories(first))
			}

			// The group as the broker describes it.
			described, err := b.admin().DescribeGroups(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			dg := described[group]
			if dg.Err != nil || dg.State != "Stable" || dg.Protocol != tc.protocol || len(dg.Members) != 2 {
				t.Errorf("described group: err %v state %q protocol %q %d members, want Stable %q with 2", dg.Err, dg.State, dg.Protocol, len(dg.Members), tc.protocol)
			}
			for _, m := range dg.Members {
				ca, _ := m.Assigned.AsConsumer()
				if ca == nil || len(ca.Topics) != 1 || len(ca.Topics[0].Partitions) != 2 {
					t.Errorf("member %s (%s) assigned %+v, want 2 partitions of %s", m.MemberID, m.ClientID, ca, s.name)
				}
			}

			first.stopPolling()
			second.stopPolling()
			checkDelivery(t, s.name, nil, end, first, second)
			for _, m := range []*groupMember{first, second} {
				if err := m.cl.CommitMarkedOffsets(ctx); err != nil {
					t.Fatalf("%s: commit: %v", m.name, err)
				}
			}
			if got := committedOffsets(t, b.admin(), group, s.name, 4); !slices.Equal(got, end) {
				t.Errorf("committed %v, want the end offsets %v", got, end)
			}
			closeMembers(first, second)
		})
	}
}

// childMember is a group member running in a child process
// (runGroupMemberChild), as seen through what it prints.
type childMember struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer  // read only after exited is closed
	exited chan struct{} // closed once stdout is drained and the process reaped
	record chan struct{} // signalled (without blocking) on every R line

	mu struct {
		sync.Mutex
		owned   map[int32]bool
		offsets map[int32][]int64
		values  map[int32][]string
		commits map[int32]int64 // last acknowledged commit per partition
		lines   []string        // A, V, C and E lines, for failure messages
		errs    []string
	}
}

// startGroupMemberChild starts runGroupMemberChild in a child process and
// reads what it prints until it exits.
func startGroupMemberChild(t *testing.T, addr, group, topic string) *childMember {
	t.Helper()
	c := &childMember{exited: make(chan struct{}), record: make(chan struct{}, 1)}
	c.mu.owned = map[int32]bool{}
	c.mu.offsets = map[int32][]int64{}
	c.mu.values = map[int32][]string{}
	c.mu.commits = map[int32]int64{}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestGroupMemberChild$")
	c.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%s", groupMemberChildEnv, addr, group, topic))
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.parse(sc.Text())
		}
		c.cmd.Wait()
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *childMember) parse(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kind, rest, _ := strings.Cut(line, " ")
	fields := strings.Fields(rest)
	bad := func() { c.mu.errs = append(c.mu.errs, "unparsable line: "+line) }
	switch kind {
	case "A", "V":
		c.mu.lines = append(c.mu.lines, line)
		for _, f := range strings.Split(rest, ",") {
			if f == "" {
				continue
			}
			p, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				bad()
				return
			}
			if kind == "A" {
				c.mu.owned[int32(p)] = true
			} else {
				delete(c.mu.owned, int32(p))
			}
		}
	case "R":
		if len(fields) != 3 {
			bad()
			return
		}
		p, err1 := strconv.ParseInt(fields[0], 10, 32)
		off, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			bad()
			return
		}
		c.mu.offsets[int32(p)] = append(c.mu.offsets[int32(p)], off)
		c.mu.values[int32(p)] = append(c.mu.values[int32(p)], fields[2])
		select {
		case c.record <- struct{}{}:
		default:
		}
	case "C":
		c.mu.lines = append(c.mu.lines, line)
		if len(fields) != 2 {
			bad()
			return
		}
		p, err1 := strconv.ParseInt(fields[0], 10, 32)
		off, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil {
			bad()
			return
		}
		c.mu.commits[int32(p)] = off
	case "E":
		c.mu.lines = append(c.mu.lines, line)
		c.mu.errs = append(c.mu.errs, rest)
	default:
		bad()
	}
}

func (c *childMember) owned() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.mu.owned))
}

// awaitRecord waits for the child to print the records of a new poll
// (not one it printed before the call).
func (c *childMember) awaitRecord(t *testing.T) {
	t.Helper()
	select {
	case <-c.record:
	default:
	}
	select {
	case <-c.record:
	case <-time.After(10 * time.Second):
		t.Fatalf("the child printed no record for 10s: %s", c.history())
	}
}

func (c *childMember) history() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "child: " + strings.Join(c.mu.lines, "; ")
}

// TestGroupMemberKilled SIGKILLs a group member (a child process) while
// it processes records: it never leaves the group, so its partitions stay
// with it until its session times out, then move to the other member,
// which receives again every record after the child's last commit (the
// child printed them but never committed them: at-least-once), every
// other record once, and nothing past the end.
func TestGroupMemberKilled(t *testing.T) {
	t.Parallel()
	b := startBroker(t, map[string]string{"group.min.session.timeout.ms": "1000"})
	const group = "killed-g"
	s := newSeqTopic(t, b, "killed", 4)
	stopProducing := s.produceInBackground(t, seqProducer(t, b), 10*time.Millisecond)

	child := startGroupMemberChild(t, b.addr, group, s.name)
	childCommits := func() int { child.mu.Lock(); defer child.mu.Unlock(); return len(child.mu.commits) }
	waitUntil(t, 20*time.Second, "the child owns 4 partitions and committed", func() bool {
		return len(child.owned()) == 4 && childCommits() > 0
	}, child.history)

	in := startMember(t, b, "in-process", group, true, kgo.ConsumeTopics(s.name),
		kgo.SessionTimeout(childSessionTimeout), kgo.HeartbeatInterval(childHeartbeat))
	waitUntil(t, 20*time.Second, "the child and the in-process member own 2 partitions each", func() bool {
		cp, ip := child.owned(), in.owned(s.name)
		return len(cp) == 2 && len(ip) == 2 && !slices.ContainsFunc(cp, func(p int32) bool { return slices.Contains(ip, p) })
	}, child.history, func() string { return histories(in) })
	childParts := child.owned()

	// Kill the child just after it printed the records of a poll, while it
	// "processes" them (childProcessingTime) before committing.
	child.awaitRecord(t)
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-child.exited
	// No member holds the child's partitions until its session ends, so
	// its commits are still what the broker has.
	atKill := committedOffsets(t, b.admin(), group, s.name, 4)
	end := stopProducing()

	waitUntil(t, childSessionTimeout+20*time.Second, "the in-process member owns all 4 partitions and consumed everything", func() bool {
		return len(in.owned(s.name)) == 4 && covers(s.name, end, in)
	}, child.history, func() string {
		return fmt.Sprintf("%s\n\tend %v, received %v", histories(in), end, receivedEnds(s.name, 4, in))
	})
	var takeover time.Duration
	for _, p := range childParts {
		takeover = max(takeover, in.assignedAt(s.name, p).Sub(killed))
	}
	t.Logf("the child's partitions %v moved %v after SIGKILL (session timeout %v, heartbeat %v)", childParts, takeover.Round(time.Millisecond), childSessionTimeout, childHeartbeat)
	if low := childSessionTimeout - childHeartbeat - 100*time.Millisecond; takeover < low {
		t.Errorf("the child's partitions moved %v after it died, before its session (%v) could have ended", takeover, childSessionTimeout)
	}
	// Nothing more arrives: there is nothing past the end.
	time.Sleep(300 * time.Millisecond)
	in.stopPolling()

	// The child is gone: its state is final.
	if len(child.mu.errs) > 0 {
		t.Errorf("child errors: %v", child.mu.errs)
	}
	in.mu.Lock()
	lost := in.mu.lost
	in.mu.Unlock()
	if lost > 0 {
		t.Errorf("the in-process member lost partitions: %s", in.history())
	}
	d := newDelivery(t, s.name, 4)
	d.addMember(in)
	lastSeen := make([]int64, 4) // one past the last offset the child printed
	for p, offs := range child.mu.offsets {
		d.add("child", p, offs, child.mu.values[p])
		lastSeen[p] = offs[len(offs)-1] + 1
	}
	redelivered := 0
	for _, p := range childParts {
		// The broker must have every commit the child saw acknowledged,
		// and nothing the child did not process.
		if c, ok := child.mu.commits[p]; ok && atKill[p] < c {
			t.Errorf("partition %d: committed offset %d at the kill, but the child had a commit of %d acknowledged", p, atKill[p], c)
		}
		if atKill[p] > lastSeen[p] {
			t.Errorf("partition %d: committed offset %d at the kill, past the last record the child received (%d)", p, atKill[p], lastSeen[p]-1)
		}
		if rs := in.records(s.name)[p]; len(rs) > 0 && rs[0].Offset != max(atKill[p], 0) {
			t.Errorf("partition %d: the new owner started at offset %d, want the last commit %d", p, rs[0].Offset, atKill[p])
		}
		redelivered += int(lastSeen[p] - max(atKill[p], 0))
	}
	// Records of the child's partitions it received after its last commit
	// arrive twice; everything else once.
	d.check(make([]int64, 4), end, func(p int32, off int64) int {
		if slices.Contains(childParts, p) && off >= atKill[p] && off < lastSeen[p] {
			return 2
		}
		return 1
	})
	t.Logf("killed with %d records received but not committed (redelivered); end offsets %v", redelivered, end)
	if redelivered == 0 {
		t.Errorf("the child had committed everything it received when killed: the test did not exercise redelivery")
	}
	if t.Failed() {
		t.Logf("%s\n%s\nchild stderr:\n%s", child.history(), histories(in), child.stderr.String())
	}
}

// TestGroupMemberStopped SIGSTOPs a group member (the child process)
// while it processes records, until its session ends and its partitions
// move to the other member, which processes and commits past it. Then
// SIGCONT: the stopped member, a zombie, commits the records it was
// processing with its old member ID and generation. The broker must
// refuse that commit; accepting it would move the group's committed
// offsets back and make the new owner's work be delivered again.
func TestGroupMemberStopped(t *testing.T) {
	t.Parallel()
	b := startBroker(t, map[string]string{"group.min.session.timeout.ms": "1000"})
	const group = "zombie-g"
	s := newSeqTopic(t, b, "zombie", 4)
	s.produceInBackground(t, seqProducer(t, b), 10*time.Millisecond)

	child := startGroupMemberChild(t, b.addr, group, s.name)
	waitUntil(t, 20*time.Second, "the child owns 4 partitions", func() bool { return len(child.owned()) == 4 }, child.history)
	in := startMember(t, b, "in-process", group, true, kgo.ConsumeTopics(s.name),
		kgo.SessionTimeout(childSessionTimeout), kgo.HeartbeatInterval(childHeartbeat))
	waitUntil(t, 20*time.Second, "the child and the in-process member own 2 partitions each", func() bool {
		return len(child.owned()) == 2 && len(in.owned(s.name)) == 2
	}, child.history, func() string { return histories(in) })
	childParts := child.owned()

	child.awaitRecord(t)
	pauseProcess(t, child.cmd.Process)
	child.mu.Lock()
	lastSeen := map[int32]int64{}
	for _, p := range childParts {
		if offs := child.mu.offsets[p]; len(offs) > 0 {
			lastSeen[p] = offs[len(offs)-1] + 1
		}
	}
	linesBefore := len(child.mu.lines)
	child.mu.Unlock()

	// The new owner commits past everything the zombie was processing.
	var before []int64
	waitUntil(t, childSessionTimeout+20*time.Second, "the in-process member took the child's partitions and committed past the child", func() bool {
		if len(in.owned(s.name)) != 4 {
			return false
		}
		before = committedOffsets(t, b.admin(), group, s.name, 4)
		for _, p := range childParts {
			if before[p] <= lastSeen[p] {
				return false
			}
		}
		return true
	}, func() string { return histories(in) })

	resumeProcess(t, child.cmd.Process)
	// Its first word after waking up is about its commit: refused (E) or,
	// wrongly, acknowledged (C).
	var verdict string
	waitUntil(t, 10*time.Second, "the zombie tried to commit", func() bool {
		child.mu.Lock()
		defer child.mu.Unlock()
		for _, l := range child.mu.lines[linesBefore:] {
			if strings.HasPrefix(l, "C ") || strings.HasPrefix(l, "E commit") {
				verdict = l
				return true
			}
		}
		return false
	}, child.history)
	after := committedOffsets(t, b.admin(), group, s.name, 4)
	t.Logf("zombie commit: %q; committed before %v, after %v", verdict, before, after)
	if !strings.HasPrefix(verdict, "E commit") {
		t.Errorf("the broker acknowledged the zombie's commit (%q); committed offsets before %v, after %v", verdict, before, after)
	}
	for p := range after {
		if after[p] < before[p] {
			t.Errorf("partition %d: the committed offset went back from %d to %d", p, before[p], after[p])
		}
	}
}

// TestGroupPubSubAndPointToPoint: two groups on one topic each receive
// every record (publish/subscribe); a group of three splits the topic,
// each record going to exactly one of them (point-to-point).
func TestGroupPubSubAndPointToPoint(t *testing.T) {
	t.Parallel()
	b := startBroker(t, nil)
	ctx := testCtx(t)
	s := newSeqTopic(t, b, "ps", 6)
	sub1 := startMember(t, b, "sub1", "ps-sub1", true, kgo.ConsumeTopics(s.name))
	sub2 := startMember(t, b, "sub2", "ps-sub2", true, kgo.ConsumeTopics(s.name))
	var workers []*groupMember
	for i := range 3 {
		workers = append(workers, startMember(t, b, fmt.Sprintf("worker%d", i), "ps-work", true, kgo.ConsumeTopics(s.name)))
	}
	waitUntil(t, 15*time.Second, "the three workers split the six partitions", func() bool {
		return assignmentSettled(s.name, 6, workers...) && len(sub1.owned(s.name)) == 6 && len(sub2.owned(s.name)) == 6
	}, func() string { return histories(append(workers, sub1, sub2)...) })
	for _, w := range workers {
		if n := len(w.owned(s.name)); n != 2 {
			t.Errorf("%s owns %d partitions, want 2 of 6 (%s)", w.name, n, w.history())
		}
	}
	s.produce(t, seqProducer(t, b), 50)
	end := s.ends()
	waitUntil(t, 15*time.Second, "every group consumed everything", func() bool {
		return covers(s.name, end, sub1) && covers(s.name, end, sub2) && covers(s.name, end, workers...)
	})
	time.Sleep(200 * time.Millisecond) // anything extra would arrive now
	for _, m := range append(workers, sub1, sub2) {
		m.stopPolling()
	}
	checkDelivery(t, s.name, nil, end, sub1)
	checkDelivery(t, s.name, nil, end, sub2)
	checkDelivery(t, s.name, nil, end, workers...)
	for _, w := range workers {
		if w.count() == 0 {
			t.Errorf("%s received nothing", w.name)
		}
	}
	listed, err := b.admin().ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := listed.Groups(); !slices.Equal(got, []string{"ps-sub1", "ps-sub2", "ps-work"}) {
		t.Errorf("listed groups %v", got)
	}
	closeMembers(append(workers, sub1, sub2)...)
}

// copyDataDir copies the files under src to dst, each as it is at the
// moment it is read. Holes stay holes: the broker preallocates sparse
// index files, and reading their zeros would take seconds.
func copyDataDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		return copySparse(path, to)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// Whence values of lseek(2) that find the data regions of a sparse file.
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

func copySparse(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if err := out.Truncate(fi.Size()); err != nil {
		out.Close()
		return err
	}
	for off := int64(0); off < fi.Size(); {
		data, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole is left
		}
		if err != nil { // no SEEK_DATA here: copy everything
			data = off
		}
		hole, err := in.Seek(data, seekHole)
		if err != nil {
			hole = fi.Size()
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			out.Close()
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			out.Close()
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil && !errors.Is(err, io.EOF) {
			out.Close()
			return err
		}
		off = hole
	}
	return out.Close()
}

// TestGroupRestart commits offsets one record at a time, then restarts
// the broker on its data: every acknowledged commit is there and a new
// member resumes after it, in a classic group, a KIP-848 group and a group
// without members committed to by an admin client. The clean case stops
// the broker first (the members left, so the groups are Empty); the
// unclean one starts a second broker on a copy of the data directory
// taken while the first was running with the members in their groups,
// which is what a crash leaves (commits are fsynced before they are
// acknowledged): the dead members are still there and must time out.
// SIGKILL of a broker process is crash_test.go's subject.
func TestGroupRestart(t *testing.T) {
	t.Parallel()
	const sessionTimeout = 3 * time.Second
	props := func() map[string]string {
		return map[string]string{
			"group.min.session.timeout.ms":         "1000",
			"group.consumer.session.timeout.ms":    strconv.Itoa(int(sessionTimeout.Milliseconds())),
			"group.consumer.heartbeat.interval.ms": "100",
		}
	}
	b := startBroker(t, props())
	ctx := testCtx(t)
	s := newSeqTopic(t, b, "rs", 3)
	s.produce(t, seqProducer(t, b), 20)
	end := s.ends()
	cut := []int64{7, 13, 20}
	type restartGroup struct {
		name     string
		kip848   bool
		opts     []kgo.Opt
		memberID string
	}
	groups := []*restartGroup{
		{name: "rs-classic", opts: []kgo.Opt{kgo.ConsumeTopics(s.name), kgo.SessionTimeout(sessionTimeout)}},
		{name: "rs-848", kip848: true, opts: []kgo.Opt{kgo.ConsumeTopics(s.name), kgo.ServerSideBalancer()}},
	}
	var members []*groupMember
	for _, g := range groups {
		m := startMember(t, b, "before-"+g.name, g.name, false, g.opts...)
		members = append(members, m)
		waitUntil(t, 15*time.Second, g.name+"'s member consumed everything", func() bool { return covers(s.name, end, m) })
		m.stopPolling()
		commits := 0
		for p, rs := range m.records(s.name) {
			for _, r := range rs {
				if r.Offset < cut[p] {
					if err := m.cl.CommitRecords(ctx, r); err != nil {
						t.Fatalf("%s: commit %s/%d@%d: %v", g.name, s.name, p, r.Offset, err)
					}
					commits++
				}
			}
		}
		var generation int32
		g.memberID, generation = m.cl.GroupMetadata()
		if got := committedOffsets(t, b.admin(), g.name, s.name, 3); !slices.Equal(got, cut) {
			t.Fatalf("%s: committed %v before the restart, want %v", g.name, got, cut)
		}
		t.Logf("%s: %d commits acknowledged; member %s generation/epoch %d", g.name, commits, g.memberID, generation)
	}
	// A group without members, committed to by an admin client.
	const simple = "rs-simple"
	var simpleOffsets kadm.Offsets
	simpleOffsets.Add(kadm.Offset{Topic: s.name, Partition: 1, At: 4, LeaderEpoch: -1})
	if err := b.admin().CommitAllOffsets(ctx, simple, simpleOffsets); err != nil {
		t.Fatal(err)
	}

	crashDir := t.TempDir()
	copyDataDir(t, b.dir, crashDir)
	for _, m := range members {
		m.close() // leaves the group, which becomes Empty
	}
	b.stop()

	// describe returns a group's state and member IDs as the restarted
	// broker describes it.
	describe := func(t *testing.T, adm *kadm.Client, g *restartGroup) (string, []string) {
		t.Helper()
		var ids []string
		if g.kip848 {
			dg := describeConsumerGroup(t, adm, g.name)
			for _, m := range dg.Members {
				ids = append(ids, m.MemberID)
			}
			return dg.State, ids
		}
		described, err := adm.DescribeGroups(ctx, g.name)
		if err != nil {
			t.Fatal(err)
		}
		dg := described[g.name]
		if dg.Err != nil {
			t.Fatalf("describe %s: %v", g.name, dg.Err)
		}
		for _, m := range dg.Members {
			ids = append(ids, m.MemberID)
		}
		return dg.State, ids
	}
	// resume checks g's commits and starts a new member; the func it
	// returns waits until that member consumed everything after the
	// commits (and nothing else), and returns how long that took.
	resume := func(t *testing.T, b *testBroker, g *restartGroup) func() time.Duration {
		t.Helper()
		if got := committedOffsets(t, b.admin(), g.name, s.name, 3); !slices.Equal(got, cut) {
			t.Errorf("%s: committed %v after the restart, want %v", g.name, got, cut)
		}
		start := time.Now()
		after := startMember(t, b, "after-"+g.name, g.name, true, g.opts...)
		return func() time.Duration {
			t.Helper()
			waitUntil(t, sessionTimeout+10*time.Second, g.name+": the new member resumed and consumed the rest", func() bool {
				return coversFrom(s.name, cut, end, after)
			}, func() string { return histories(after) })
			took := time.Since(start)
			time.Sleep(200 * time.Millisecond)
			after.stopPolling()
			checkDelivery(t, s.name, cut, end, after)
			return took
		}
	}
	checkSimple := func(t *testing.T, b *testBroker) {
		if got := committedOffsets(t, b.admin(), simple, s.name, 3); !slices.Equal(got, []int64{-1, 4, -1}) {
			t.Errorf("%s committed %v after the restart, want [-1 4 -1]", simple, got)
		}
	}

	t.Run("clean", func(t *testing.T) {
		b2 := startBroker(t, props(), b.dir)
		checkSimple(t, b2)
		for _, g := range groups {
			if state, ids := describe(t, b2.admin(), g); state != "Empty" || len(ids) != 0 {
				t.Errorf("%s: after the restart the group is %q with members %v, want Empty", g.name, state, ids)
			}
			resume(t, b2, g)()
		}
	})
	t.Run("unclean copy", func(t *testing.T) {
		b3 := startBroker(t, props(), crashDir)
		checkSimple(t, b3)
		// Still there, until their sessions (restarted at load) end: the
		// members that were in the groups when the copy was taken.
		for _, g := range groups {
			if state, ids := describe(t, b3.admin(), g); state != "Stable" || !slices.Equal(ids, []string{g.memberID}) {
				t.Errorf("%s: after the crash the group is %q with members %v, want Stable with %s", g.name, state, ids, g.memberID)
			}
		}
		var waits []func() time.Duration
		for _, g := range groups {
			waits = append(waits, resume(t, b3, g))
		}
		for i, g := range groups {
			took := waits[i]()
			t.Logf("%s: a new member resumed %v after the restart (the dead member's session timeout is %v)", g.name, took.Round(time.Millisecond), sessionTimeout)
		}
	})
}

// TestKcatGroup consumes from the ferry binary with kcat's balanced
// consumer (-G, librdkafka): a first run gets every record, a second run
// in the same group gets nothing (the first committed on exit), and a
// third run after more records are produced gets exactly those.
func TestKcatGroup(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	t.Parallel()
	b := startBinary(t)
	const group = "kcg-g"
	s := newSeqTopic(t, b, "kcg", 3)
	prod := seqProducer(t, b)
	s.produce(t, prod, 10)

	// kcat -G applies -o to every assigned partition, so "-o beginning"
	// would re-read everything on every run; auto.offset.reset only
	// applies where the group has no commit.
	args := []string{"-b", b.addr, "-G", group, s.name, "-f", "%p %o %s\\n",
		"-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=50"}
	type result struct {
		offsets map[int32][]int64
		values  map[int32][]string
		n       int
		stderr  string
		selfEnd bool // kcat exited by itself (-c or -e)
	}
	// run runs kcat. With n > 0 it exits by itself after n records (and
	// commits); else it runs with -e until it reports the end of its
	// partitions or, if it does not, until 1.5s after its assignment, when
	// it is interrupted (SIGINT makes it close the consumer cleanly).
	run := func(t *testing.T, n int) result {
		t.Helper()
		a := slices.Clone(args)
		if n > 0 {
			a = append(a, "-c", strconv.Itoa(n))
		} else {
			a = append(a, "-e", "-X", "enable.partition.eof=true")
		}
		cmd := exec.Command(kcat, a...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		stderrPipe, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		assigned := make(chan struct{})
		var stderr strings.Builder
		stderrDone := make(chan struct{})
		go func() {
			defer close(stderrDone)
			sc := bufio.NewScanner(stderrPipe)
			once := sync.Once{}
			for sc.Scan() {
				stderr.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "assigned") {
					once.Do(func() { close(assigned) })
				}
			}
		}()
		exited := make(chan error, 1)
		go func() { <-stderrDone; exited <- cmd.Wait() }()
		res := result{offsets: map[int32][]int64{}, values: map[int32][]string{}}
		deadline := time.After(20 * time.Second)
		assignedC := (<-chan struct{})(assigned)
		var interrupt <-chan time.Time
		interrupted := false
	wait:
		for {
			select {
			case err := <-exited:
				if err != nil && !interrupted {
					t.Fatalf("kcat %s: %v\n%s", strings.Join(a, " "), err, stderr.String())
				}
				break wait
			case <-assignedC:
				assignedC = nil
				if n <= 0 {
					interrupt = time.After(1500 * time.Millisecond)
				}
			case <-interrupt:
				interrupt = nil
				interrupted = true
				cmd.Process.Signal(os.Interrupt)
				deadline = time.After(10 * time.Second)
			case <-deadline:
				cmd.Process.Kill()
				<-exited
				t.Fatalf("kcat %s did not finish; stdout:\n%s\nstderr:\n%s", strings.Join(a, " "), stdout.String(), stderr.String())
			}
		}
		res.selfEnd = !interrupted
		res.stderr = stderr.String()
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			if line == "" {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Fatalf("kcat printed %q", line)
			}
			p, err1 := strconv.ParseInt(f[0], 10, 32)
			off, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("kcat printed %q", line)
			}
			res.offsets[int32(p)] = append(res.offsets[int32(p)], off)
			res.values[int32(p)] = append(res.values[int32(p)], f[2])
			res.n++
		}
		return res
	}
	check := func(t *testing.T, r result, from, end []int64) {
		t.Helper()
		d := newDelivery(t, s.name, s.partitions)
		for p, offs := range r.offsets {
			d.add("kcat", p, offs, r.values[p])
		}
		d.check(from, end, nil)
	}

	first := s.ends()
	t.Run("first run gets everything", func(t *testing.T) {
		r := run(t, s.total())
		check(t, r, nil, first)
		if got := committedOffsets(t, b.admin(), group, s.name, s.partitions); !slices.Equal(got, first) {
			t.Errorf("kcat committed %v on exit, want %v", got, first)
		}
	})
	t.Run("second run gets nothing", func(t *testing.T) {
		r := run(t, 0)
		if r.n != 0 {
			t.Errorf("second run got %d records, want none: %v", r.n, r.offsets)
		}
		if !r.selfEnd {
			t.Fatalf("kcat -G -e did not exit at the end of its partitions and was interrupted; stderr:\n%s", r.stderr)
		}
		// It started at the group's commits and found nothing after them.
		for p, end := range first {
			eof := fmt.Sprintf("Reached end of topic %s [%d] at offset %d", s.name, p, end)
			if !strings.Contains(r.stderr, eof) {
				t.Errorf("kcat did not report %q:\n%s", eof, r.stderr)
			}
		}
	})
	s.produce(t, prod, 5)
	second := s.ends()
	t.Run("third run gets the new records", func(t *testing.T) {
		r := run(t, s.total()-sumInt64(first))
		check(t, r, first, second)
		if got := committedOffsets(t, b.admin(), group, s.name, s.partitions); !slices.Equal(got, second) {
			t.Errorf("kcat committed %v on exit, want %v", got, second)
		}
	})
}

func sumInt64(xs []int64) int {
	n := int64(0)
	for _, x := range xs {
		n += x
	}
	return int(n)
}

// describeConsumerGroup describes a KIP-848 group (ConsumerGroupDescribe).
func describeConsumerGroup(t testing.TB, adm *kadm.Client, group string) kadm.DescribedConsumerGroup {
	t.Helper()
	described, err := adm.DescribeConsumerGroups(testCtx(t), group)
	if err != nil {
		t.Fatalf("describe consumer group %s: %v", group, err)
	}
	dg, ok := described[group]
	if !ok || dg.Err != nil {
		t.Fatalf("describe consumer group %s: %v (found %v)", group, dg.Err, ok)
	}
	return dg
}

// TestKIP848Group runs kgo members with the KIP-848 consumer protocol
// (ConsumerGroupHeartbeat, assignment by the broker) while a producer
// keeps producing: members join one by one and one leaves; at each step
// the partitions are split among the members, and together they process
// every record exactly once. A regex subscription picks up a topic
// created after the member joined, and partitions added to a topic.
func TestKIP848Group(t *testing.T) {
	t.Parallel()
	// Members heartbeat at the interval the broker tells them; 5s by
	// default would make every step take seconds.
	props := func() map[string]string { return map[string]string{"group.consumer.heartbeat.interval.ms": "100"} }
	for _, tc := range []struct {
		assignor string
		balancer kgo.GroupBalancer // kgo picks the server assignor from it
	}{
		{"uniform", kgo.CooperativeStickyBalancer()},
		{"range", kgo.RangeBalancer()},
	} {
		t.Run("join and leave/"+tc.assignor, func(t *testing.T) {
			b := startBroker(t, props())
			ctx := testCtx(t)
			adm := b.admin()
			const group = "k848-g"
			s := newSeqTopic(t, b, "k848", 4)
			stopProducing := s.produceInBackground(t, seqProducer(t, b), 2*time.Millisecond)
			opts := []kgo.Opt{kgo.ConsumeTopics(s.name), kgo.ServerSideBalancer(), kgo.Balancers(tc.balancer)}

			m1 := startMember(t, b, "m1", group, true, opts...)
			waitUntil(t, 15*time.Second, "m1 owns 4 partitions and consumed", func() bool {
				return len(m1.owned(s.name)) == 4 && m1.count() >= 100
			}, func() string { return histories(m1) })
			// kgo falls back to the classic protocol silently; make sure it
			// did not.
			dg := describeConsumerGroup(t, adm, group)
			if dg.AssignorName != tc.assignor || len(dg.Members) != 1 || len(dg.Members[0].Assignment[s.name]) != 4 {
				t.Fatalf("described group: assignor %q, members %+v; want %q and one member with 4 partitions", dg.AssignorName, dg.Members, tc.assignor)
			}
			epoch := dg.Epoch

			m2 := startMember(t, b, "m2", group, true, opts...)
			waitUntil(t, 15*time.Second, "m1 and m2 own 2 partitions each and m2 consumed", func() bool {
				return assignmentSettled(s.name, 4, m1, m2) && len(m1.owned(s.name)) == 2 && m2.count() >= 50
			}, func() string { return histories(m1, m2) })
			m3 := startMember(t, b, "m3", group, true, opts...)
			waitUntil(t, 15*time.Second, "m1, m2 and m3 split the partitions and m3 consumed", func() bool {
				return assignmentSettled(s.name, 4, m1, m2, m3) && m3.count() >= 20
			}, func() string { return histories(m1, m2, m3) })
			dg = describeConsumerGroup(t, adm, group)
			if len(dg.Members) != 3 || dg.Epoch <= epoch {
				t.Errorf("with three members: %d members described, group epoch %d (was %d)", len(dg.Members), dg.Epoch, epoch)
			}
			if len(dg.AssignedPartitions()[s.name]) != 4 {
				t.Errorf("described assignment %v, want all 4 partitions", dg.AssignedPartitions())
			}

			m2.close() // leaves the group (after committing on revoke)
			waitUntil(t, 15*time.Second, "m1 and m3 took over m2's partitions", func() bool {
				return assignmentSettled(s.name, 4, m1, m3)
			}, func() string { return histories(m1, m2, m3) })
			waitUntil(t, 5*time.Second, "the broker describes two members", func() bool {
				return len(describeConsumerGroup(t, adm, group).Members) == 2
			})
			end := stopProducing()
			waitUntil(t, 15*time.Second, "everything produced is consumed", func() bool { return covers(s.name, end, m1, m2, m3) },
				func() string {
					return fmt.Sprintf("%s\n\tend %v, received %v", histories(m1, m2, m3), end, receivedEnds(s.name, 4, m1, m2, m3))
				})
			m1.stopPolling()
			m3.stopPolling()
			checkDelivery(t, s.name, nil, end, m1, m2, m3)
			for _, m := range []*groupMember{m1, m2, m3} {
				m.mu.Lock()
				if m.mu.lost > 0 {
					t.Errorf("%s lost partitions: %v", m.name, m.mu.history)
				}
				m.mu.Unlock()
				t.Logf("%s received %d records", m.name, m.count())
			}
			for _, m := range []*groupMember{m1, m3} {
				if err := m.cl.CommitMarkedOffsets(ctx); err != nil {
					t.Fatalf("%s: commit: %v", m.name, err)
				}
			}
			if got := committedOffsets(t, adm, group, s.name, 4); !slices.Equal(got, end) {
				t.Errorf("committed %v, want the end offsets %v", got, end)
			}
			listed, err := adm.ListGroupsByType(ctx, []string{"consumer"})
			if err != nil {
				t.Fatal(err)
			}
			if lg, ok := listed[group]; !ok || lg.ProtocolType != "consumer" {
				t.Errorf("ListGroups type consumer: %+v", listed)
			}
			closeMembers(m1, m3)
		})
	}

	t.Run("regex subscription", func(t *testing.T) {
		b := startBroker(t, props())
		adm := b.admin()
		const group = "re-g"
		prod := seqProducer(t, b)
		early := newSeqTopic(t, b, "re-early", 2)
		other := newSeqTopic(t, b, "other", 1)
		early.produce(t, prod, 5)
		other.produce(t, prod, 5)
		m := startMember(t, b, "re", group, true, kgo.ConsumeRegex(), kgo.ConsumeTopics("^re-"), kgo.ServerSideBalancer(),
			kgo.MetadataMinAge(100*time.Millisecond)) // kgo needs new metadata to fetch a new partition, at most every 5s by default
		waitUntil(t, 15*time.Second, "the member consumed re-early", func() bool { return covers(early.name, early.ends(), m) },
			func() string { return histories(m) })

		// The broker re-resolves the regex when topics are created or grow,
		// not only on its 10s metadata refresh: hence the 5s waits.
		late := newSeqTopic(t, b, "re-late", 3) // created after the member subscribed
		late.produce(t, prod, 5)
		early.produce(t, prod, 5)
		waitUntil(t, 5*time.Second, "the member was assigned re-late and consumed it", func() bool {
			return len(m.owned(late.name)) == 3 && covers(late.name, late.ends(), m) && covers(early.name, early.ends(), m)
		}, func() string { return histories(m) })
		early.grow(t, adm, 3)
		early.produce(t, seqProducer(t, b), 2) // a client that knows the new partition
		waitUntil(t, 5*time.Second, "the member was assigned re-early's new partition and consumed it", func() bool {
			return len(m.owned(early.name)) == 3 && covers(early.name, early.ends(), m)
		}, func() string { return histories(m) })
		dg := describeConsumerGroup(t, adm, group)
		if len(dg.Members) != 1 {
			t.Fatalf("described %d members", len(dg.Members))
		}
		dm := dg.Members[0]
		// kgo sends its patterns to the broker, wrapped as
		// .*(?:(?:^re-)).* because Kafka matches the whole topic name.
		if re := derefOr(dm.SubscribedTopicRegex, "<nil>"); !strings.Contains(re, "^re-") || len(dm.SubscribedTopics) != 0 {
			t.Errorf("described regex %q and topics %v, want a regex with ^re- and no topic names: the broker resolves it", re, dm.SubscribedTopics)
		}
		if got := dm.Assignment.Sorted(); len(got) != 2 || len(dm.Assignment[late.name]) != 3 || len(dm.Assignment[early.name]) != 3 {
			t.Errorf("described assignment %v, want the 3 partitions of re-early and of re-late", got)
		}
		time.Sleep(200 * time.Millisecond)
		m.stopPolling()
		checkDelivery(t, early.name, nil, early.ends(), m)
		checkDelivery(t, late.name, nil, late.ends(), m)
		if rs := m.records(other.name); len(rs) > 0 {
			t.Errorf("the regex member received %d partitions of %s", len(rs), other.name)
		}
		if rs := m.records("__consumer_offsets"); len(rs) > 0 {
			t.Errorf("the regex member received __consumer_offsets")
		}
	})
}

// TestGroupLag checks per-partition lag as kadm computes it from
// DescribeGroups, OffsetFetch and ListOffsets against what was produced
// and committed, while the group has a member and once it is Empty.
func TestGroupLag(t *testing.T) {
	t.Parallel()
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	const group = "lag-g"
	s := newSeqTopic(t, b, "lag", 3)
	prod := seqProducer(t, b)
	s.produceCounts(t, prod, 10, 20, 30)
	m := startMember(t, b, "lagger", group, false, kgo.ConsumeTopics(s.name))
	waitUntil(t, 15*time.Second, "the member consumed everything", func() bool { return covers(s.name, s.ends(), m) })
	memberID, _ := m.cl.GroupMetadata()
	commit := func(offsets ...int64) {
		t.Helper()
		req := map[string]map[int32]kgo.EpochOffset{s.name: {}}
		for p, o := range offsets {
			if o >= 0 {
				req[s.name][int32(p)] = kgo.EpochOffset{Epoch: -1, Offset: o}
			}
		}
		var cerr error
		m.cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			cerr = err
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil && cerr == nil {
						cerr = err
					}
				}
			}
		})
		if cerr != nil {
			t.Fatalf("commit %v: %v", offsets, cerr)
		}
	}
	// check compares kadm's lag with produced-minus-committed (or minus the
	// log start where nothing is committed), with the member (or none once
	// the group is Empty) owning each partition.
	check := func(what string, commits, starts []int64, member string) {
		t.Helper()
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			t.Fatalf("%s: lag: %v", what, err)
		}
		l := lags[group]
		if err := l.Error(); err != nil {
			t.Fatalf("%s: lag: %v", what, err)
		}
		end := s.ends()
		// The same from the three requests directly.
		fetched := committedOffsets(t, adm, group, s.name, s.partitions)
		ends, err := adm.ListEndOffsets(ctx, s.name)
		if err != nil {
			t.Fatal(err)
		}
		var problems []string
		total := int64(0)
		for p := range s.partitions {
			want := end[p] - commits[p]
			if commits[p] < 0 {
				want = end[p] - starts[p]
			}
			total += want
			listed, _ := ends.Lookup(s.name, p)
			if fetched[p] != commits[p] || listed.Offset != end[p] {
				problems = append(problems, fmt.Sprintf("partition %d: OffsetFetch %d ListOffsets %d, want %d and %d", p, fetched[p], listed.Offset, commits[p], end[p]))
			}
			gl, ok := l.Lag.Lookup(s.name, p)
			if !ok {
				if member == "" && commits[p] < 0 {
					continue // an Empty group has lag only where it committed
				}
				problems = append(problems, fmt.Sprintf("partition %d: no lag reported", p))
				continue
			}
			gotMember := ""
			if gl.Member != nil {
				gotMember = gl.Member.MemberID
			}
			if gl.Err != nil || gl.Lag != want || gl.Commit.At != commits[p] || gl.End.Offset != end[p] || gotMember != member {
				problems = append(problems, fmt.Sprintf("partition %d: lag %d commit %d end %d member %q err %v; want lag %d commit %d end %d member %q",
					p, gl.Lag, gl.Commit.At, gl.End.Offset, gotMember, gl.Err, want, commits[p], end[p], member))
			}
		}
		if len(problems) > 0 {
			t.Errorf("%s:\n\t%s", what, strings.Join(problems, "\n\t"))
		}
		if member != "" && l.Lag.Total() != total {
			t.Errorf("%s: total lag %d, want %d", what, l.Lag.Total(), total)
		}
	}

	commit(10, 5, -1)
	check("partly committed", []int64{10, 5, -1}, []int64{0, 0, 0}, memberID)
	s.produceCounts(t, prod, 5, 5, 5)
	check("after producing more", []int64{10, 5, -1}, []int64{0, 0, 0}, memberID)
	// Where nothing is committed, lag counts from the log start.
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: s.name, Partition: 2, At: 12, LeaderEpoch: -1})
	if resps, err := adm.DeleteRecords(ctx, del); err != nil || resps.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resps.Error())
	}
	check("after deleting records", []int64{10, 5, -1}, []int64{0, 0, 12}, memberID)
	commit(15, 25, 35)
	check("all committed", []int64{15, 25, 35}, []int64{0, 0, 12}, memberID)

	m.close()
	waitUntil(t, 10*time.Second, "the group is Empty", func() bool {
		described, err := adm.DescribeGroups(ctx, group)
		return err == nil && described[group].State == "Empty"
	})
	s.produceCounts(t, prod, 1, 2, 3)
	check("Empty group", []int64{15, 25, 35}, []int64{0, 0, 12}, "")
}

// durationPercentile returns the p-th percentile of sorted durations.
func durationPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// TestGroupRebalanceTime measures (and logs; it asserts nothing about
// time) how long a group on an 8-partition topic takes to settle when a
// third and then a fourth member join: from the new client's start until
// every partition is owned by exactly one member and the new member owns
// some. Members heartbeat every 100ms (kgo's default is 3s, and classic
// members only learn of a rebalance from a heartbeat).
func TestGroupRebalanceTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"classic cooperative-sticky", nil},
		{"classic range (eager)", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"KIP-848 uniform", []kgo.Opt{kgo.ServerSideBalancer()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, map[string]string{"group.consumer.heartbeat.interval.ms": "100"})
			s := newSeqTopic(t, b, "rb", 8)
			s.produce(t, seqProducer(t, b), 10)
			opts := append([]kgo.Opt{kgo.ConsumeTopics(s.name)}, tc.opts...)
			var ms []*groupMember
			join := func() time.Duration {
				start := time.Now()
				ms = append(ms, startMember(t, b, fmt.Sprintf("m%d", len(ms)+1), "rb-g", true, opts...))
				waitUntil(t, 20*time.Second, fmt.Sprintf("%d members split the partitions", len(ms)), func() bool {
					return assignmentSettled(s.name, 8, ms...)
				}, func() string { return histories(ms...) })
				return time.Since(start)
			}
			first := join()
			join()
			third := join()
			fourth := join()
			t.Logf("%s: group settled %v after the 1st member started, %v after the 3rd joined 2, %v after the 4th joined 3",
				tc.name, first.Round(time.Millisecond), third.Round(time.Millisecond), fourth.Round(time.Millisecond))
			closeMembers(ms...)
		})
	}
}

// TestGroupCommitLatency measures (and logs) the latency of 500
// synchronous OffsetCommits by a group member, each fsynced by the broker
// before it answers, and checks the last one is what OffsetFetch returns.
func TestGroupCommitLatency(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	const group, n = "lat-g", 500
	s := newSeqTopic(t, b, "lat", 1)
	s.produce(t, seqProducer(t, b), n)
	m := startMember(t, b, "committer", group, false, kgo.ConsumeTopics(s.name))
	waitUntil(t, 15*time.Second, "the member owns the partition", func() bool { return len(m.owned(s.name)) == 1 })
	lat := make([]time.Duration, 0, n)
	for i := 1; i <= n; i++ {
		var cerr error
		start := time.Now()
		m.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{s.name: {0: {Epoch: -1, Offset: int64(i)}}},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				cerr = err
				if err == nil && len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 {
					cerr = kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
				}
			})
		lat = append(lat, time.Since(start))
		if cerr != nil {
			t.Fatalf("commit %d: %v", i, cerr)
		}
	}
	slices.Sort(lat)
	t.Logf("%d commits: p50 %v p99 %v max %v", n, durationPercentile(lat, 0.50).Round(time.Microsecond),
		durationPercentile(lat, 0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if got := committedOffsets(t, b.admin(), group, s.name, 1); got[0] != n {
		t.Errorf("committed %d after %d commits", got[0], n)
	}
}

func derefOr[T any](p *T, or T) T {
	if p == nil {
		return or
	}
	return *p
}
