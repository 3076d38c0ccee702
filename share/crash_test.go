package share

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	crashSeed  = flag.Uint64("crash.seed", 0, "run TestCrashRandom with this seed only")
	crashTrace = flag.Bool("crash.trace", false, "log every step of the crash tests")
)

// crashWorld runs a random consume/acknowledge workload against a
// coordinator whose store is cut (every write fails from then on, as if
// the power went) after a given number of appends, restarts it over what
// the store kept, drains every partition, and checks what must survive:
//
//   - no record whose acceptance was answered is delivered again;
//   - no record is both accepted and dead-lettered, and none is
//     dead-lettered twice (fakeDLQ panics);
//   - in the end every record was accepted or dead-lettered: none is lost.
type crashWorld struct {
	t       *testing.T
	rng     *rand.Rand
	store   *memStore
	reader  *fakeReader
	dlq     *fakeDLQ
	cfg     Config
	c       *Coordinator
	topics  map[string]TopicInfo
	tps     []TopicPartition
	members []string
	epochs  map[string]int32
	// accepted holds the records whose acceptance was answered ok.
	accepted map[dlqSource]bool
	produced map[TopicPartition]int64
	t0       time.Time
}

const crashGroup = "g"

func newCrashWorld(t *testing.T, seed uint64) *crashWorld {
	w := &crashWorld{
		t:        t,
		rng:      rand.New(rand.NewPCG(seed, seed^0x5eed)),
		store:    newMemStore(),
		reader:   newFakeReader(),
		dlq:      newFakeDLQ(),
		topics:   map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: 2}},
		members:  []string{"a", "b", "c"},
		epochs:   make(map[string]int32),
		accepted: make(map[dlqSource]bool),
		produced: make(map[TopicPartition]int64),
		t0:       time.Now(),
	}
	for p := range int32(2) {
		w.tps = append(w.tps, TopicPartition{topicID("t"), p})
	}
	w.cfg = Config{
		Store:              w.store,
		Reader:             w.reader,
		DLQ:                w.dlq,
		Topics:             func() map[string]TopicInfo { return w.topics },
		StatePartitions:    3,
		RecordLockDuration: 10 * time.Second,
		SessionTimeout:     45 * time.Second,
		DeliveryCountLimit: 3,
		SnapshotSlack:      2000, // snapshots happen during the run
		GroupConfigs: func(string) map[string]string {
			return map[string]string{GroupDLQTopic: "dlq.t", GroupAutoOffsetReset: "earliest"}
		},
		retryBackoff: 100 * time.Millisecond,
	}
	return w
}

func (w *crashWorld) start() {
	c, err := New(w.cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.c = c
}

func (w *crashWorld) heartbeat(m string, join bool) {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.Version = 1
	req.GroupID = crashGroup
	req.MemberID = m
	req.MemberEpoch = w.epochs[m]
	if join {
		req.MemberEpoch = 0
		req.SubscribedTopicNames = []string{"t"}
	}
	resp := w.c.ShareGroupHeartbeat(w.ctx(), req)
	if resp.ErrorCode == 0 {
		w.epochs[m] = resp.MemberEpoch
	} else {
		w.epochs[m] = 0
	}
}

func (w *crashWorld) ctx() context.Context {
	return WithClientInfo(context.Background(), ClientInfo{})
}

// fetch acquires for m and returns the ranges.
func (w *crashWorld) fetch(m string, tp TopicPartition, max int) []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord {
	got, e := w.c.Acquire(AcquireOptions{Group: crashGroup, Member: m, Partition: tp, MaxRecords: max}, nil)
	w.logf("fetch %s p%d max=%d: %s %v", m, tp.Partition, max, formatRanges(got), e)
	for _, r := range got {
		for off := r.FirstOffset; off <= r.LastOffset; off++ {
			if w.accepted[dlqSource{crashGroup, tp, off}] {
				w.t.Fatalf("partition %d record %d delivered again after it was accepted", tp.Partition, off)
			}
			if w.dlq.has(crashGroup, tp, off) {
				w.t.Fatalf("partition %d record %d delivered again after it was dead-lettered", tp.Partition, off)
			}
		}
	}
	return got
}

func (w *crashWorld) logf(format string, args ...any) {
	if *crashTrace {
		w.t.Logf("%v "+format, append([]any{time.Since(w.t0)}, args...)...)
	}
}

// ack acknowledges every acquired range with types chosen at random (or
// all accept) and records what was accepted.
func (w *crashWorld) ack(m string, tp TopicPartition, got []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord, random bool) {
	var batches []AckBatch
	for _, r := range got {
		b := AckBatch{FirstOffset: r.FirstOffset, LastOffset: r.LastOffset}
		for off := r.FirstOffset; off <= r.LastOffset; off++ {
			t := ackAccept
			if random {
				t = []int8{ackAccept, ackAccept, ackRelease, ackReject}[w.rng.IntN(4)]
			}
			b.Types = append(b.Types, t)
		}
		batches = append(batches, b)
	}
	if len(batches) == 0 {
		return
	}
	// Offsets below the start offset are complete already: acknowledging
	// them succeeds and changes nothing (their lock expired, and another
	// member finished them).
	start := int64(-1)
	if _, sp, e := w.c.sharePartition(crashGroup, tp, false); e == nil {
		sp.mu.Lock()
		start = sp.start
		sp.mu.Unlock()
	}
	e := w.c.Acknowledge(crashGroup, m, tp, batches, false)
	w.logf("ack %s p%d %v: %v", m, tp.Partition, batches, e)
	if e != nil {
		return
	}
	for _, b := range batches {
		for i, t := range b.Types {
			if t == ackAccept && b.FirstOffset+int64(i) >= start {
				src := dlqSource{crashGroup, tp, b.FirstOffset + int64(i)}
				if w.accepted[src] {
					w.t.Fatalf("record %d of partition %d accepted twice", src.offset, tp.Partition)
				}
				w.accepted[src] = true
			}
		}
	}
}

// workload runs ops random steps.
func (w *crashWorld) workload(ops int) {
	for _, m := range w.members {
		w.heartbeat(m, true)
	}
	held := make(map[string][]kmsg.ShareFetchResponseTopicPartitionAcquiredRecord)
	heldTP := make(map[string]TopicPartition)
	for range ops {
		m := w.members[w.rng.IntN(len(w.members))]
		tp := w.tps[w.rng.IntN(len(w.tps))]
		switch op := w.rng.IntN(10); {
		case op < 2:
			n := 1 + w.rng.IntN(6)
			w.reader.produce(tp, n, time.Now().UnixMilli(), false, false, -1, nil)
			w.produced[tp] += int64(n)
		case op < 5:
			if _, busy := held[m]; !busy {
				if got := w.fetch(m, tp, 1+w.rng.IntN(8)); len(got) > 0 {
					held[m], heldTP[m] = got, tp
				}
			}
		case op < 8:
			if got, ok := held[m]; ok {
				w.ack(m, heldTP[m], got, true)
				delete(held, m)
			}
		case op < 9:
			for _, m := range w.members {
				w.heartbeat(m, false)
			}
			time.Sleep(time.Duration(1+w.rng.IntN(12)) * time.Second)
		default:
			if w.rng.IntN(3) == 0 {
				w.heartbeat(m, false) // a member that stops acknowledging; its lock expires
				delete(held, m)
			} else {
				w.c.ReleaseSession(crashGroup, m, []TopicPartition{tp})
				if heldTP[m] == tp {
					delete(held, m)
				}
			}
		}
		synctest.Wait()
	}
}

// drain restarts the coordinator and consumes everything with a fresh
// member that accepts all, checking that no accepted record comes back.
func (w *crashWorld) drain() {
	w.c.Close()
	synctest.Wait()
	w.store.heal()
	w.dlq.mu.Lock()
	w.dlq.fail, w.dlq.partial = nil, -1
	w.dlq.mu.Unlock()
	w.start()
	defer func() {
		w.c.Close()
		synctest.Wait()
	}()
	w.heartbeat("z", true)
	for round := 0; ; round++ {
		if round > 200 {
			w.t.Fatalf("not drained after %d rounds", round)
		}
		idle := true
		for _, tp := range w.tps {
			got := w.fetch("z", tp, 100)
			if len(got) > 0 {
				idle = false
				w.ack("z", tp, got, false)
			}
		}
		synctest.Wait()
		if idle && w.c.pendingDeadLetters() == 0 && w.settled() {
			break
		}
		w.heartbeat("z", false)
		time.Sleep(11 * time.Second)
	}
	for _, tp := range w.tps {
		for off := int64(0); off < w.produced[tp]; off++ {
			src := dlqSource{crashGroup, tp, off}
			dead := w.dlq.has(crashGroup, tp, off)
			switch {
			case w.accepted[src] && dead:
				w.t.Fatalf("partition %d record %d both accepted and dead-lettered", tp.Partition, off)
			case !w.accepted[src] && !dead:
				w.t.Fatalf("partition %d record %d neither accepted nor dead-lettered", tp.Partition, off)
			}
		}
	}
}

// settled reports whether every partition's start offset reached its end.
func (w *crashWorld) settled() bool {
	for _, tp := range w.tps {
		_, sp, e := w.c.sharePartition(crashGroup, tp, false)
		if e != nil {
			if w.produced[tp] == 0 {
				continue
			}
			return false
		}
		sp.mu.Lock()
		done := sp.start >= w.produced[tp]
		sp.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

func runCrash(t *testing.T, seed uint64, ops, cut int) int {
	var appends int
	synctest.Test(t, func(t *testing.T) {
		w := newCrashWorld(t, seed)
		defer func() { // also when a check fails
			if w.c != nil {
				w.c.Close()
			}
		}()
		w.start()
		if cut >= 0 {
			w.store.mu.Lock()
			w.store.cutAfter = cut
			w.store.mu.Unlock()
		}
		w.workload(ops)
		w.store.mu.Lock()
		appends = w.store.appends
		w.store.mu.Unlock()
		w.drain()
	})
	return appends
}

// TestCrashAtEveryAppend cuts the store at every append of a few fixed
// workloads in turn.
func TestCrashAtEveryAppend(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		total := runCrash(t, seed, 60, -1)
		if total < 10 {
			t.Fatalf("seed %d: only %d appends", seed, total)
		}
		for cut := 0; cut <= total; cut++ {
			t.Run(fmt.Sprintf("seed=%d/cut=%d", seed, cut), func(t *testing.T) {
				runCrash(t, seed, 60, cut)
			})
		}
	}
}

// TestCrashRandom runs longer random workloads cut at a random append.
func TestCrashRandom(t *testing.T) {
	seeds := []uint64{*crashSeed}
	if *crashSeed == 0 {
		base := uint64(time.Now().UnixNano())
		t.Logf("seeds %d.. (rerun one with -crash.seed)", base)
		n := 30
		if testing.Short() {
			n = 5
		}
		seeds = seeds[:0]
		for i := range n {
			seeds = append(seeds, base+uint64(i))
		}
	}
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 1))
		cut := rng.IntN(120)
		t.Run(fmt.Sprintf("seed=%d/cut=%d", seed, cut), func(t *testing.T) {
			runCrash(t, seed, 200, cut)
		})
	}
}
