package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// severableDialer dials for a kgo client until it is severed: then it
// closes every connection it made and refuses new ones, as if the
// client's process had died.
type severableDialer struct {
	mu      sync.Mutex
	conns   []net.Conn
	severed bool
}

func (d *severableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.severed {
		return nil, errors.New("severed")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *severableDialer) sever() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.severed = true
	for _, c := range d.conns {
		c.Close()
	}
}

// TestShareMemberDies: records a member holds go to another member at
// once when its connection drops (its process died), when its locks
// expire while it hangs, and when its session times out while it holds
// long locks and stays connected.
func TestShareMemberDies(t *testing.T) {
	b := startBroker(t, shareProps())

	t.Run("connection drops", func(t *testing.T) {
		id := newShareTopic(t, b, "jobs", 1, "g")
		parts := partitionsOf(id, 1)
		produceN(t, b, "jobs", 50)
		d := &severableDialer{}
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ShareGroup("g"), kgo.ConsumeTopics("jobs"), kgo.Dialer(d.dial),
			kgo.ShareMaxRecords(50), kgo.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var held []*kgo.Record
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for len(held) < 50 && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { held = append(held, r) })
		}
		if len(held) < 50 {
			t.Fatalf("the first member got %d records", len(held))
		}
		other := newRawShare(t, b.addr, "g")
		other.join("jobs")
		if got := acquired(t, other.fetch(parts, nil, 0, 100)); len(got) > 0 {
			t.Fatalf("records held by a live member were acquired by another: %v", got)
		}
		d.sever()
		start := time.Now()
		got := acquired(t, other.fetch(nil, nil, 5*time.Second, 100))[parts[0]]
		if len(got) != 50 {
			t.Fatalf("after the first member's connections dropped the other got %d records", len(got))
		}
		t.Logf("records of a member whose connection dropped redelivered in %v", time.Since(start))
		other.ack([]ackRange{{parts[0], got[0], got[len(got)-1], 1}})
		other.epoch = -1
		other.ack(nil)
		other.leave()
	})

	t.Run("locks expire", func(t *testing.T) {
		id := newShareTopic(t, b, "jobs2", 1, "g2", "share.record.lock.duration.ms", "1000")
		parts := partitionsOf(id, 1)
		produceN(t, b, "jobs2", 10)
		hung := newRawShare(t, b.addr, "g2")
		hung.join("jobs2")
		held := acquired(t, hung.fetch(parts, nil, 5*time.Second, 100))[parts[0]]
		if len(held) != 10 {
			t.Fatalf("acquired %v", held)
		}
		other := newRawShare(t, b.addr, "g2")
		other.join("jobs2")
		start := time.Now()
		var got []int64
		for len(got) < 10 && time.Since(start) < 10*time.Second {
			got = append(got, acquired(t, other.fetch(parts, nil, 2*time.Second, 100))[parts[0]]...)
		}
		if len(got) != 10 || time.Since(start) < 900*time.Millisecond {
			t.Fatalf("after %v the other member got %v (locks of 1s)", time.Since(start), got)
		}
		if resp := hung.ack([]ackRange{{parts[0], held[0], held[9], 1}}); kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode) != kerr.InvalidRecordState {
			t.Fatalf("the hung member accepted records whose locks expired")
		}
		other.ack([]ackRange{{parts[0], got[0], got[9], 1}})
		for _, m := range []*rawShare{hung, other} {
			m.epoch = -1
			m.ack(nil)
			m.leave()
		}
	})

	t.Run("session times out", func(t *testing.T) {
		id := newShareTopic(t, b, "jobs3", 1, "g3", "share.record.lock.duration.ms", "60000", "share.session.timeout.ms", "1000", "share.heartbeat.interval.ms", "200")
		parts := partitionsOf(id, 1)
		produceN(t, b, "jobs3", 10)
		silent := newRawShare(t, b.addr, "g3")
		silent.join("jobs3")
		held := acquired(t, silent.fetch(parts, nil, 5*time.Second, 100))[parts[0]]
		if len(held) != 10 {
			t.Fatalf("acquired %v", held)
		}
		other := newRawShare(t, b.addr, "g3")
		other.join("jobs3")
		start := time.Now()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // the other member keeps its session
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					other.heartbeat()
				}
			}
		})
		var got []int64
		for len(got) < 10 && time.Since(start) < 15*time.Second {
			got = append(got, acquired(t, other.fetch(parts, nil, 2*time.Second, 100))[parts[0]]...)
		}
		close(stop)
		wg.Wait()
		if len(got) != 10 {
			t.Fatalf("after %v the other member got %v", time.Since(start), got)
		}
		t.Logf("records of a member whose session timed out redelivered after %v", time.Since(start))
		if resp := silent.heartbeat(); resp.ErrorCode != kerr.UnknownMemberID.Code {
			t.Errorf("heartbeat of the timed-out member: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
	})
}

// shareProcess is `ferry consume -share` running as a child process; it
// records the lines it prints.
type shareProcess struct {
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	recs   []consumedLine
	stderr lockedBuffer // what it said, logged if the test fails
}

// lockedBuffer is a bytes.Buffer written by a child's stderr copier and
// read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type consumedLine struct {
	Partition     int32  `json:"partition"`
	Offset        int64  `json:"offset"`
	Value         string `json:"value"`
	DeliveryCount int32  `json:"delivery_count"`
}

func startShareProcess(t *testing.T, addr, topic, group string) *shareProcess {
	t.Helper()
	cmd := exec.Command(buildFerry(t), "consume", topic, "-share", group, "-brokers", addr, "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = childProcAttr()
	p := &shareProcess{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l consumedLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				p.mu.Lock()
				p.recs = append(p.recs, l)
				p.mu.Unlock()
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("ferry consume -share %s (pid %d) printed %d records; its stderr:\n%s", group, cmd.Process.Pid, len(p.lines()), p.stderr.String())
		}
	})
	return p
}

func (p *shareProcess) signal(sig syscall.Signal) {
	p.cmd.Process.Signal(sig)
	<-p.done
}

func (p *shareProcess) lines() []consumedLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]consumedLine(nil), p.recs...)
}

// shareMembersAssigned returns how many members of a share group have a
// non-empty assignment.
func shareMembersAssigned(t testing.TB, b *testBroker, group string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrShareGroupDescribeRequest()
	req.GroupIDs = []string{group}
	resp, err := req.RequestWith(ctx, b.client())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range resp.Groups {
		for _, m := range g.Members {
			for _, tp := range m.Assignment.TopicPartitions {
				if len(tp.Partitions) > 0 {
					n++
					break
				}
			}
		}
	}
	return n
}

// TestShareProcesses: three `ferry consume -share` processes share a
// queue while records are produced; one is killed with SIGKILL midway.
// Every record is printed; a record is printed twice only if the killed
// process printed it (it may not have acknowledged it), and never twice
// by the survivors.
func TestShareProcesses(t *testing.T) {
	b := startBroker(t, shareProps())
	// A member that dies keeps its assignment until its session times
	// out: 2s here (Kafka's default is 45s).
	newShareTopic(t, b, "queue", 3, "workers", "share.session.timeout.ms", "2000", "share.heartbeat.interval.ms", "500")
	procs := []*shareProcess{
		startShareProcess(t, b.addr, "queue", "workers"),
		startShareProcess(t, b.addr, "queue", "workers"),
		startShareProcess(t, b.addr, "queue", "workers"),
	}
	// The first member to join is given every partition; records are
	// produced once each of the three has a partition of its own, so the
	// victim has records to print before it is killed.
	waitUntil(t, 60*time.Second, "three members with an assignment each", func() bool {
		return shareMembersAssigned(t, b, "workers") == len(procs)
	})
	prod := b.client(kgo.ProducerLinger(0), kgo.DefaultProduceTopic("queue"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const n = 3000
	ctx := testCtx(t)
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}, nil)
		if i == n/3 {
			waitUntil(t, 60*time.Second, "the victim printed records", func() bool { return len(procs[0].lines()) > 0 })
			procs[0].signal(syscall.SIGKILL)
		}
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	count := func() map[string]int {
		m := map[string]int{}
		for _, p := range procs {
			for _, l := range p.lines() {
				m[l.Value]++
			}
		}
		return m
	}
	waitUntil(t, 60*time.Second, "every record printed", func() bool { return len(count()) == n })
	for _, p := range procs[1:] {
		p.signal(syscall.SIGTERM)
	}
	victim := map[string]bool{}
	for _, l := range procs[0].lines() {
		victim[l.Value] = true
	}
	survivors := map[string]int{}
	for _, p := range procs[1:] {
		for _, l := range p.lines() {
			survivors[l.Value]++
		}
	}
	again := 0
	for v, c := range survivors {
		if c > 1 {
			t.Errorf("record %s printed %d times by the surviving processes", v, c)
		}
		if victim[v] {
			again++
		}
	}
	t.Logf("victim printed %d records; %d of them were printed again by the others; survivors printed %d, %d",
		len(victim), again, len(procs[1].lines()), len(procs[2].lines()))
	// Nothing is left to deliver.
	waitUntil(t, 10*time.Second, "the group has no lag", func() bool {
		for _, o := range describeShareOffsets(t, b, "workers") {
			if o.Lag != 0 {
				return false
			}
		}
		return true
	})
}

// TestShareCrash kills the broker with SIGKILL at random moments while a
// share member fetches and acknowledges, restarts it on the same
// directory, and goes on: a record whose acceptance the broker confirmed
// is never delivered again, and in the end every record is accepted.
func TestShareCrash(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (set FERRY_CRASH_SEED=%d to repeat)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	addr := freeAddr(t)
	child := startChild(t, dir, addr, logFile, true)
	b := &testBroker{t: t, addr: addr, dir: dir}
	const topic, partitions, n = "crashq", 3, 3000
	id := newShareTopic(t, b, topic, partitions, "g", "share.record.lock.duration.ms", "15000")
	prod := newTestClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)})
	}
	if err := prod.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	parts := partitionsOf(id, partitions)

	type key struct {
		p   int32
		off int64
	}
	confirmed := map[key]bool{} // accepted, and the broker said so
	inDoubt := map[key]bool{}   // accepted by a request the broker died under
	m := newRawShare(t, addr, "g")
	member := m.member
	connect := func() {
		m = newRawShare(t, addr, "g")
		m.member = member // the same member carries on
		m.strict = true
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := m.tryHeartbeat(topic)
			if err == nil && resp.ErrorCode == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("cannot join after a restart: %v %v", err, resp)
			}
		}
	}
	connect()
	var pending []ackRange
	killAt := 1 + rng.IntN(15)
	round := 0
	progress := time.Now()
	done := func() bool {
		for _, o := range describeShareOffsets(t, b, "g") {
			if o.Lag != 0 || o.StartOffset != n/partitions {
				return false
			}
		}
		return true
	}
	for {
		if time.Since(progress) > 20*time.Second {
			var missing []key
			for p := range int32(partitions) {
				for o := range int64(n) {
					if !confirmed[key{p, o}] && len(missing) < 20 {
						missing = append(missing, key{p, o})
					}
				}
			}
			t.Fatalf("round %d: nothing accepted for 20s; %d of %d accepted; offsets %+v; some not accepted: %v\nbroker log:\n%s",
				round, len(confirmed), n, describeShareOffsets(t, b, "g"), missing, tailFile(logFile.Name()))
		}
		if killAt--; killAt == 0 && round < rounds {
			round++
			delay := time.Duration(rng.IntN(3000)) * time.Microsecond
			go func(c *childBroker) { time.Sleep(delay); c.kill() }(child)
			killAt = 1 + rng.IntN(15)
		}
		resp, err := m.tryFetch(parts, pending, 200*time.Millisecond, 25)
		if err == nil && resp.ErrorCode != 0 {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err != nil {
			// The broker died (or the session was lost with it):
			// restart it if it is gone and carry on.
			select {
			case <-child.exited:
				fmt.Fprintf(logFile, "--- round %d: killed\n", round)
				child = startChild(t, dir, addr, logFile, true)
			case <-time.After(time.Second):
			}
			connect()
			for _, a := range pending {
				inDoubt[key{a.tp.p, a.first}] = true
			}
			pending = nil
			continue
		}
		for p, e := range ackErrors(resp) {
			if e != nil {
				t.Fatalf("accepting records of partition %d: %v", p.p, e)
			}
		}
		for _, a := range pending {
			for o := a.first; o <= a.last; o++ {
				confirmed[key{a.tp.p, o}] = true
			}
			progress = time.Now()
		}
		pending = nil
		got := acquired(t, resp)
		for p, offs := range got {
			for _, o := range offs {
				if confirmed[key{p.p, o}] {
					t.Fatalf("round %d: partition %d offset %d was delivered again after its acceptance was confirmed", round, p.p, o)
				}
				delete(inDoubt, key{p.p, o}) // its acceptance was lost
				pending = append(pending, ackRange{p, o, o, 1})
			}
		}
		if len(got) == 0 && len(pending) == 0 && round >= rounds && done() {
			break
		}
	}
	// Every record was accepted: confirmed, or by a request whose answer
	// the broker died before sending (then it was not delivered again).
	for p := range int32(partitions) {
		for o := range int64(n / partitions) {
			if k := (key{p, o}); !confirmed[k] && !inDoubt[k] {
				t.Errorf("partition %d offset %d was never accepted, yet the group is done with it", p, o)
			}
		}
	}
	t.Logf("%d restarts; %d acceptances confirmed, %d lost with the broker and not delivered again", round, len(confirmed), len(inDoubt))
	if log := tailFile(logFile.Name()); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic") {
		t.Fatalf("broker process log shows a race or a panic:\n%s", log)
	}
}
