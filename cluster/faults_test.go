//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFaults runs a three-node cluster of `ferry serve` processes, each in
// a network namespace of its own (as root; on loopback otherwise, without
// the partition), under a Jepsen-style workload: idempotent acks=all
// producers and a consumer, while the test kills the leader and a follower
// with SIGKILL, pauses the controller and a partition leader with SIGSTOP
// for longer than the session and election timeouts, kills a leader it
// paused (its clients' requests unanswered until they time out), cuts a node off from
// its peers, and fills a node's disk. At the end it checks the history: no acknowledged record
// lost, no record read that the final log does not hold at its offset (a
// read of something not committed), every producer's records in order in
// each partition, no record twice. FERRY_FAULTS_ROUNDS runs the faults that
// many times (default 1, under a minute).
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	rounds := 1
	if v := os.Getenv("FERRY_FAULTS_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	seed := rand.Uint64()
	if v := os.Getenv("FERRY_FAULTS_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (FERRY_FAULTS_SEED replays the order of faults)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	c := newProcCluster(t, 3, faultTimeouts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	adm := kadm.NewClient(c.client(t))
	waitFormed(t, ctx, adm)
	const topic = "jepsen"
	const parts = 3
	createTopic(t, ctx, adm, topic, parts)
	h := &history{acked: map[string]ack{}, reads: map[partOff]string{}}
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.produce(ctx, c.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(15*time.Second), kgo.ProduceRequestTimeout(5*time.Second), kgo.WithLogger(h)), topic, parts, p)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.produceAsync(ctx, c.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(15*time.Second), kgo.ProduceRequestTimeout(5*time.Second), kgo.WithLogger(h)), topic, parts, 2)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.consume(ctx, c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), true)
	}()

	time.Sleep(2 * time.Second)
	faults := c.faults()
	if only := os.Getenv("FERRY_FAULTS_ONLY"); only != "" {
		// Only the faults whose names contain one of these words.
		faults = slices.DeleteFunc(faults, func(f fault) bool {
			for w := range strings.SplitSeq(only, ",") {
				if w != "" && strings.Contains(f.name, w) {
					return false
				}
			}
			return true
		})
		if len(faults) == 0 {
			t.Fatalf("FERRY_FAULTS_ONLY=%s names no fault", only)
		}
	}
	for r := range rounds {
		order := rng.Perm(len(faults))
		for _, i := range order {
			f := faults[i]
			before := h.ackCount()
			t.Logf("round %d: %s", r, f.name)
			f.run(t, ctx, adm, topic)
			c.healAll(t)
			// The cluster must take acknowledged writes again.
			waitFor(t, "acknowledged writes after "+f.name, 45*time.Second, func() bool { return h.ackCount() > before+20 })
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d records acknowledged, %d failed or unknown, %d reads", h.ackCount(), len(h.failed), len(h.reads))
	if h.ackCount() == 0 {
		t.Fatal("nothing was acknowledged")
	}
	// Every node up; the final log, read from the leaders once every
	// replica holds it.
	final := &history{reads: map[partOff]string{}, writers: map[partOff]string{}}
	fctx, fcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer fcancel()
	end := c.endOffsets(t, fctx, topic)
	final.consumeUntil(fctx, t, c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), end)
	h.check(t, final)
}

// history is what the clients saw.
type history struct {
	mu     sync.Mutex
	acked  map[string]ack     // value → where it was stored
	failed []string           // produces that failed or timed out: maybe stored
	reads  map[partOff]string // what a consumer read at each offset
	// writers: in the final read, which producer id and epoch wrote
	// each offset, in which leader epoch (shown for a duplicate).
	writers map[partOff]string
	dupRd   []string
	// warns are the producers' clients' warnings and what they say of
	// their producer ids (a sequence refused, an epoch bumped), shown
	// when the check fails.
	warns []string
}

// Level and Log make the history the producers' kgo.Logger, keeping
// its warnings and what it says of its producer id and sequences (at
// info level: a sequence refused makes it bump the epoch and go on; at
// debug level: it rewinds or resets a partition's sequences).
func (h *history) Level() kgo.LogLevel { return kgo.LogLevelDebug }

func (h *history) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level > kgo.LogLevelWarn && !strings.Contains(msg, "producer") && !strings.Contains(msg, "sequence") {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.warns = append(h.warns, fmt.Sprintf("%s %s %s %v", time.Now().UTC().Format("15:04:05.000"), level, msg, keyvals))
}

type partOff struct {
	p   int32
	off int64
}

type ack struct {
	p   int32
	off int64
}

func (h *history) ackCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.acked)
}

// produce writes producer-numbered values round robin over the
// partitions, one at a time, until ctx ends.
func (h *history) produce(ctx context.Context, cl *kgo.Client, topic string, parts int32, producer int) {
	for n := 0; ctx.Err() == nil; n++ {
		v := fmt.Sprintf("p%d-%08d", producer, n)
		rec := &kgo.Record{Topic: topic, Partition: int32(n) % parts, Value: []byte(v)}
		res := cl.ProduceSync(ctx, rec)
		h.mu.Lock()
		if err := res.FirstErr(); err != nil {
			h.failed = append(h.failed, v)
		} else {
			h.acked[v] = ack{rec.Partition, rec.Offset}
		}
		h.mu.Unlock()
	}
}

// produceAsync writes producer-numbered values round robin over the
// partitions with up to 32 records in flight, until ctx ends: batches of
// several records, several requests to a broker at once, retried
// together. It waits up to a minute for those in flight at the end.
func (h *history) produceAsync(ctx context.Context, cl *kgo.Client, topic string, parts int32, producer int) {
	window := make(chan struct{}, 32)
	var pending sync.WaitGroup
	for n := 0; ; n++ {
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		v := fmt.Sprintf("p%d-%08d", producer, n)
		pending.Add(1)
		cl.Produce(context.WithoutCancel(ctx), &kgo.Record{Topic: topic, Partition: int32(n) % parts, Value: []byte(v)}, func(r *kgo.Record, err error) {
			defer pending.Done()
			<-window
			h.mu.Lock()
			defer h.mu.Unlock()
			if err != nil {
				h.failed = append(h.failed, v)
			} else {
				h.acked[v] = ack{r.Partition, r.Offset}
			}
		})
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		pending.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
}

// consume reads continuously until ctx ends.
func (h *history) consume(ctx context.Context, cl *kgo.Client, _ bool) {
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			h.mu.Lock()
			k := partOff{r.Partition, r.Offset}
			if old, ok := h.reads[k]; ok && old != string(r.Value) {
				h.dupRd = append(h.dupRd, fmt.Sprintf("%d@%d: %s then %s", r.Partition, r.Offset, old, r.Value))
			}
			h.reads[k] = string(r.Value)
			h.mu.Unlock()
		})
	}
}

// consumeUntil reads every partition up to end.
func (h *history) consumeUntil(ctx context.Context, t *testing.T, cl *kgo.Client, end map[int32]int64) {
	next := map[int32]int64{}
	done := func() bool {
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("final read: got to %v of %v", next, end)
		}
		fs.EachRecord(func(r *kgo.Record) {
			h.reads[partOff{r.Partition, r.Offset}] = string(r.Value)
			if h.writers != nil {
				h.writers[partOff{r.Partition, r.Offset}] = fmt.Sprintf("producer %d epoch %d, leader epoch %d", r.ProducerID, r.ProducerEpoch, r.LeaderEpoch)
			}
			next[r.Partition] = r.Offset + 1
		})
	}
}

// check compares the history with the final log.
func (h *history) check(t *testing.T, final *history) {
	t.Helper()
	if keep := os.Getenv("FERRY_FAULTS_LOGDIR"); keep != "" {
		os.WriteFile(filepath.Join(keep, "clients.log"), []byte(strings.Join(h.warns, "\n")), 0o644)
	}
	where := map[string]partOff{}
	var errs []string
	for k, v := range final.reads {
		if old, dup := where[v]; dup {
			errs = append(errs, fmt.Sprintf("duplicate: %s at %d@%d (%s) and %d@%d (%s)", v, old.p, old.off, final.writers[old], k.p, k.off, final.writers[k]))
		}
		where[v] = k
	}
	for v, a := range h.acked {
		got, ok := final.reads[partOff{a.p, a.off}]
		if !ok || got != v {
			errs = append(errs, fmt.Sprintf("lost: %s acknowledged at %d@%d, the log has %q there", v, a.p, a.off, got))
		}
	}
	for k, v := range h.reads {
		if got := final.reads[k]; got != v {
			errs = append(errs, fmt.Sprintf("read but not committed: %s at %d@%d, the log has %q there", v, k.p, k.off, got))
		}
	}
	errs = append(errs, h.dupRd...)
	// Order: each producer's values grow along each partition.
	type seq struct {
		off int64
		v   string
	}
	byPart := map[int32][]seq{}
	for k, v := range final.reads {
		byPart[k.p] = append(byPart[k.p], seq{k.off, v})
	}
	for p, s := range byPart {
		sort.Slice(s, func(i, j int) bool { return s[i].off < s[j].off })
		last := map[string]string{}
		for _, x := range s {
			prod := x.v[:strings.IndexByte(x.v, '-')]
			if x.v <= last[prod] {
				errs = append(errs, fmt.Sprintf("order: partition %d has %s after %s", p, x.v, last[prod]))
			}
			last[prod] = x.v
		}
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("... and %d more", len(errs)-20))
		}
		if len(h.warns) > 0 {
			t.Logf("the producers' client warnings:\n%s", strings.Join(h.warns[max(0, len(h.warns)-100):], "\n"))
		}
		t.Fatalf("history check failed:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("history checked: %d records in the log, every acknowledged one among them, in order, once", len(final.reads))
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// waitFormed waits until the cluster's three brokers are registered.
func waitFormed(t *testing.T, ctx context.Context, adm *kadm.Client) {
	t.Helper()
	waitFor(t, "the cluster to form", 30*time.Second, func() bool {
		m, err := adm.BrokerMetadata(ctx)
		return err == nil && len(m.Brokers) == 3
	})
}

// createTopic creates topic with parts partitions of three replicas and
// min.insync.replicas 2, asking again until the cluster takes it.
func createTopic(t *testing.T, ctx context.Context, adm *kadm.Client, topic string, parts int32) {
	t.Helper()
	waitFor(t, "topic "+topic, 30*time.Second, func() bool {
		r, err := adm.CreateTopics(ctx, parts, 3, map[string]*string{"min.insync.replicas": ptr("2")}, topic)
		return err == nil && (r.Error() == nil || strings.Contains(r.Error().Error(), "TOPIC_ALREADY_EXISTS"))
	})
}

// procCluster is a cluster of `ferry serve` processes.
type procCluster struct {
	t     *testing.T
	bin   string
	net   *netns // nil on loopback
	nodes []*procNode
}

type procNode struct {
	id      int
	ip      string
	addr    string // Kafka
	dir     string
	log     *os.File
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
	tmpfs   bool // dir is a small tmpfs (the disk-full fault)
	filler  string
}

var buildOnce struct {
	sync.Once
	path string
	err  error
	out  []byte
}

func buildFerry(t *testing.T) string {
	if p := os.Getenv("FERRY_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-faults-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "ferry")
		buildOnce.out, buildOnce.err = exec.Command("go", "build", "-o", buildOnce.path, "../cmd/ferry").CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("go build: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

// faultTimeouts are the timeouts of TestFaults, lower than the defaults
// so that a run is short.
var faultTimeouts = []string{
	"controller.quorum.election.timeout.ms=500",
	"broker.session.timeout.ms=1500",
	"replica.lag.time.max.ms=3000",
}

func newProcCluster(t *testing.T, n int, props ...string) *procCluster {
	c := &procCluster{t: t, bin: buildFerry(t)}
	c.net = newNetns(t, n)
	port := 0
	if c.net == nil {
		t.Log("no network namespaces (not root, or refused): nodes on loopback, no partition fault")
		port = freePorts(2 * n)
	}
	var voters []string
	for i := range n {
		nd := &procNode{id: i, dir: t.TempDir()}
		if c.net != nil {
			nd.ip = c.net.ip(i)
			nd.addr = nd.ip + ":9092"
			voters = append(voters, fmt.Sprintf("%d@%s:9093", i, nd.ip))
		} else {
			nd.ip = "127.0.0.1"
			nd.addr = fmt.Sprintf("127.0.0.1:%d", port+2*i)
			voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i, port+2*i+1))
		}
		c.nodes = append(c.nodes, nd)
	}
	// The last node's data lives on a small tmpfs that the disk-full
	// fault fills.
	last := c.nodes[n-1]
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", last.dir).Run(); err == nil {
		last.tmpfs = true
		t.Cleanup(func() { exec.Command("umount", "-l", last.dir).Run() })
	}
	for _, nd := range c.nodes {
		f, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("node-%d.log", nd.id)))
		if err != nil {
			t.Fatal(err)
		}
		nd.log = f
		nd.args = []string{"serve", "-node-id", strconv.Itoa(nd.id), "-listen", nd.addr, "-data-dir", filepath.Join(nd.dir, "data"),
			"-c", "controller.quorum.voters=" + strings.Join(voters, ","),
			"-c", "offsets.topic.num.partitions=3",
			"-c", "group.initial.rebalance.delay.ms=0"}
		for _, p := range props {
			nd.args = append(nd.args, "-c", p)
		}
		if os.Getenv("FERRY_FAILOVER_DEBUG") != "" {
			nd.args = append(nd.args, "-log-level", "debug")
		}
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.kill(nd)
		}
		// FERRY_FAULTS_LOGDIR keeps the whole logs there, of a run
		// that passed too.
		if keep := os.Getenv("FERRY_FAULTS_LOGDIR"); keep != "" {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.log.Name())
				os.WriteFile(filepath.Join(keep, fmt.Sprintf("node-%d.log", nd.id)), b, 0o644)
			}
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.log.Name())
				lines := strings.Split(string(b), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("node %d log (last lines):\n%s", nd.id, strings.Join(lines, "\n"))
			}
		}
	})
	return c
}

func (c *procCluster) start(nd *procNode) {
	c.t.Helper()
	var cmd *exec.Cmd
	if c.net != nil {
		cmd = exec.Command("ip", append([]string{"netns", "exec", c.net.ns(nd.id), c.bin}, nd.args...)...)
	} else {
		cmd = exec.Command(c.bin, nd.args...)
	}
	cmd.Stdout, cmd.Stderr = nd.log, nd.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	nd.cmd, nd.exited, nd.stopped = cmd, make(chan struct{}), false
	go func() { cmd.Wait(); close(nd.exited) }()
}

// kill SIGKILLs a node and waits for it.
func (c *procCluster) kill(nd *procNode) {
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Signal(syscall.SIGCONT)
	nd.cmd.Process.Kill()
	<-nd.exited
	nd.cmd = nil
}

func (c *procCluster) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	var seeds []string
	for _, nd := range c.nodes {
		seeds = append(seeds, nd.addr)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100 * time.Millisecond), kgo.MetadataMaxAge(time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }), kgo.RequestTimeoutOverhead(3 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// healAll restarts dead nodes, resumes stopped ones, reconnects the
// network and frees the disk.
func (c *procCluster) healAll(t *testing.T) {
	if c.net != nil {
		c.net.heal()
	}
	for _, nd := range c.nodes {
		if nd.filler != "" {
			os.Remove(nd.filler)
			nd.filler = ""
			// A write error is sticky until the process restarts.
			c.kill(nd)
		}
		if nd.stopped && nd.cmd != nil {
			nd.cmd.Process.Signal(syscall.SIGCONT)
			nd.stopped = false
		}
		if nd.cmd == nil {
			c.start(nd)
		}
	}
}

type fault struct {
	name string
	run  func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string)
}

// leaderOf is the leader of partition p, or -1.
func leaderOf(ctx context.Context, adm *kadm.Client, topic string, p int32) int32 {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return -1
	}
	pd, ok := td[topic].Partitions[p]
	if !ok {
		return -1
	}
	return pd.Leader
}

func (c *procCluster) faults() []fault {
	fs := []fault{
		{"kill -9 the leader of partition 0", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			l := leaderOf(ctx, adm, topic, 0)
			if l < 0 {
				l = 0
			}
			c.kill(c.nodes[l])
			time.Sleep(4 * time.Second)
		}},
		{"SIGSTOP the leader of partition 0, then kill -9 it", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			// Its clients' requests hang, unanswered, until their
			// timeout; what it appended and its followers fetched
			// comes back as retries to the next leader.
			l := leaderOf(ctx, adm, topic, 0)
			if l < 0 {
				l = 0
			}
			nd := c.nodes[l]
			if nd.cmd == nil {
				return
			}
			nd.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(3 * time.Second)
			nd.cmd.Process.Kill()
			<-nd.exited
			nd.cmd = nil
			time.Sleep(3 * time.Second)
		}},
		{"kill -9 a follower of partition 1", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			l := leaderOf(ctx, adm, topic, 1)
			f := (int(l) + 1) % len(c.nodes)
			c.kill(c.nodes[f])
			time.Sleep(4 * time.Second)
		}},
		{"SIGSTOP the leader of partition 1 for 4 s", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			// Its followers' requests stall; one of them leads and
			// acknowledges before the stalled answers arrive.
			l := leaderOf(ctx, adm, topic, 1)
			if l < 0 {
				l = 1
			}
			if nd := c.nodes[l]; nd.cmd != nil {
				nd.cmd.Process.Signal(syscall.SIGSTOP)
				nd.stopped = true
			}
			time.Sleep(4 * time.Second)
		}},
		{"SIGSTOP the controller for 4 s", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			m, err := adm.BrokerMetadata(ctx)
			id := int32(0)
			if err == nil && m.Controller >= 0 {
				id = m.Controller
			}
			nd := c.nodes[id]
			if nd.cmd != nil {
				nd.cmd.Process.Signal(syscall.SIGSTOP)
				nd.stopped = true
			}
			time.Sleep(4 * time.Second)
		}},
	}
	if c.net != nil {
		fs = append(fs, fault{"cut the leader of partition 2 off from its peers for 5 s", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			l := leaderOf(ctx, adm, topic, 2)
			if l < 0 {
				l = 0
			}
			c.net.isolate(t, int(l))
			time.Sleep(5 * time.Second)
		}})
	}
	if last := c.nodes[len(c.nodes)-1]; last.tmpfs {
		fs = append(fs, fault{"fill the disk of node 2 for 4 s", func(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
			last.filler = filepath.Join(last.dir, "filler")
			f, err := os.Create(last.filler)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			for {
				if _, err := f.Write(buf); err != nil {
					break
				}
			}
			f.Close()
			time.Sleep(4 * time.Second)
		}})
	}
	return fs
}

// endOffsets waits until every node, asked on its own, names the same
// leader, leader epoch and a full in-sync set for every partition, and
// returns the log ends the leaders then report. Asking one node is not
// enough: a leader deposed while cut off keeps answering, with the high
// watermark it had, until it learns the new metadata.
func (c *procCluster) endOffsets(t *testing.T, ctx context.Context, topic string) map[int32]int64 {
	cl := c.client(t)
	var end map[int32]int64
	waitFor(t, "every node to agree on the leaders and the in-sync sets", 60*time.Second, func() bool {
		type view struct {
			leader, epoch int32
			isr           string
		}
		var agreed map[int32]view
		for _, nd := range c.nodes {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl.Broker(int(nd.id)))
			if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
				return false
			}
			views := map[int32]view{}
			for _, p := range resp.Topics[0].Partitions {
				isr := append([]int32(nil), p.ISR...)
				slices.Sort(isr)
				if p.ErrorCode != 0 || len(isr) != len(c.nodes) {
					return false
				}
				views[p.Partition] = view{p.Leader, p.LeaderEpoch, fmt.Sprint(isr)}
			}
			if agreed == nil {
				agreed = views
			} else if !maps.Equal(agreed, views) {
				return false
			}
		}
		end = map[int32]int64{}
		for p, v := range agreed {
			req := kmsg.NewPtrListOffsetsRequest()
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p
			rp.CurrentLeaderEpoch = v.epoch
			rp.Timestamp = -1 // the log end (high watermark)
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl.Broker(int(v.leader)))
			if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				return false
			}
			end[p] = resp.Topics[0].Partitions[0].Offset
		}
		return len(end) > 0
	})
	return end
}

// netns is one network namespace per node on a bridge, so that links
// between nodes can be cut (blackhole routes) while the test, in the root
// namespace, reaches every node.
type netns struct {
	t      *testing.T
	prefix string
	subnet string
	n      int
	cut    [][2]int
}

func newNetns(t *testing.T, n int) *netns {
	if os.Getuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil
	}
	id := rand.IntN(200) + 20
	nw := &netns{t: t, prefix: fmt.Sprintf("fy%d", os.Getpid()%100000), subnet: fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), id), n: n}
	br := nw.prefix + "br"
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	cleanup := func() {
		for i := range n {
			exec.Command("ip", "netns", "del", nw.ns(i)).Run()
			exec.Command("ip", "link", "del", fmt.Sprintf("%sv%d", nw.prefix, i)).Run()
		}
		exec.Command("ip", "link", "del", br).Run()
	}
	steps := [][]string{{"link", "add", br, "type", "bridge"}, {"addr", "add", nw.subnet + ".254/24", "dev", br}, {"link", "set", br, "up"}}
	for i := range n {
		host, peer := fmt.Sprintf("%sv%d", nw.prefix, i), fmt.Sprintf("%sp%d", nw.prefix, i)
		steps = append(steps,
			[]string{"netns", "add", nw.ns(i)},
			[]string{"link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"link", "set", peer, "netns", nw.ns(i)},
			[]string{"link", "set", host, "master", br},
			[]string{"link", "set", host, "up"},
			[]string{"-n", nw.ns(i), "addr", "add", nw.ip(i) + "/24", "dev", peer},
			[]string{"-n", nw.ns(i), "link", "set", peer, "up"},
			[]string{"-n", nw.ns(i), "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Logf("network namespaces refused: %v", err)
			cleanup()
			return nil
		}
	}
	t.Cleanup(cleanup)
	return nw
}

func (nw *netns) ns(i int) string { return fmt.Sprintf("%sn%d", nw.prefix, i) }
func (nw *netns) ip(i int) string { return fmt.Sprintf("%s.%d", nw.subnet, i+1) }

// isolate cuts node i off from every other node, both ways; the test
// still reaches it.
func (nw *netns) isolate(t *testing.T, i int) {
	for j := range nw.n {
		if j == i {
			continue
		}
		for _, p := range [][2]int{{i, j}, {j, i}} {
			if out, err := exec.Command("ip", "-n", nw.ns(p[0]), "route", "add", "blackhole", nw.ip(p[1])+"/32").CombinedOutput(); err != nil {
				t.Fatalf("cut %d→%d: %v: %s", p[0], p[1], err, out)
			}
			nw.cut = append(nw.cut, p)
		}
	}
}

func (nw *netns) heal() {
	for _, p := range nw.cut {
		exec.Command("ip", "-n", nw.ns(p[0]), "route", "del", "blackhole", nw.ip(p[1])+"/32").Run()
	}
	nw.cut = nil
}

// freePorts returns the first of n ports from a random base below the
// ephemeral range (32768 up on Linux), so that no other test's
// connection holds one; a clash fails the start, which the test reports.
func freePorts(n int) int { return 20000 + rand.IntN(12000-n) }

// TestFailoverTime measures, with the default timeouts, the time from a
// SIGKILL of a partition's leader to the first produce acknowledged
// through the new leader, FERRY_FAILOVER_RUNS times (it runs only when
// that is set), and logs each and the median. FERRY_FAILOVER_PROPS adds
// broker configs, space-separated key=value (lower timeouts).
func TestFailoverTime(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("FERRY_FAILOVER_RUNS"))
	if runs <= 0 {
		t.Skip("FERRY_FAILOVER_RUNS=N measures N failovers")
	}
	c := newProcCluster(t, 3, strings.Fields(os.Getenv("FERRY_FAILOVER_PROPS"))...)
	ctx := context.Background()
	adm := kadm.NewClient(c.client(t))
	waitFormed(t, ctx, adm)
	createTopic(t, ctx, adm, "failover", 1)
	cl := c.client(t, kgo.DefaultProduceTopic("failover"), kgo.RecordDeliveryTimeout(30*time.Second))
	var took []time.Duration
	for range runs {
		for range 20 {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "a full ISR", 60*time.Second, func() bool {
			td, err := adm.ListTopics(ctx, "failover")
			return err == nil && len(td["failover"].Partitions[0].ISR) == 3
		})
		l := leaderOf(ctx, adm, "failover", 0)
		role := "leader"
		if m, err := adm.BrokerMetadata(ctx); err == nil && m.Controller == l {
			role = "leader and controller"
		}
		killed := time.Now()
		c.kill(c.nodes[l])
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("y")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		d := time.Since(killed)
		took = append(took, d)
		t.Logf("%s %d killed at %s: first acknowledged produce after %v", role, l, killed.Format("15:04:05.000"), d.Round(time.Millisecond))
		if os.Getenv("FERRY_FAILOVER_DEBUG") != "" {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.log.Name())
				for _, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, "fenced") || strings.Contains(line, "topic=failover") || strings.Contains(line, "quorum leader") {
						t.Logf("node %d: %s", nd.id, line)
					}
				}
				nd.log.Truncate(0)
			}
		}
		c.healAll(t)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("median %v, min %v, max %v over %d runs", took[len(took)/2].Round(time.Millisecond), took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(took))
}
