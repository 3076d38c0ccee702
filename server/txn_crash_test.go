package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// rawTxn drives one transactional id with raw requests, so a test can stop
// (and kill the broker) between any two of them.
type rawTxn struct {
	cl        *kgo.Client
	id        string
	pid       int64
	epoch     int16
	seq       map[int32]int32
	produceV  int16 // 11: the partition verifies; 12: it adds the partition (KIP-890)
	endTxnV   int16
	timeoutMs int32
}

func newRawTxn(t *testing.T, addr, id string, v2 bool) *rawTxn {
	x := &rawTxn{id: id, produceV: 11, endTxnV: 4, timeoutMs: 60000}
	if v2 {
		x.produceV, x.endTxnV = 12, 5
	}
	x.cl = newTestClient(t, addr, kgo.MaxVersions(capVersions(map[int16]int16{0: x.produceV, 26: x.endTxnV})),
		kgo.RequestRetries(20), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	return x
}

// retry repeats fn while the coordinator answers a retriable error
// (CONCURRENT_TRANSACTIONS among them, while it completes a transaction).
func retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		var ke *kerr.Error
		if err == nil || !errors.As(err, &ke) || !(ke.Retriable || ke == kerr.ConcurrentTransactions) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (x *rawTxn) init(ctx context.Context) error {
	return retry(ctx, func() error {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &x.id
		req.TransactionTimeoutMillis = x.timeoutMs
		resp, err := req.RequestWith(ctx, x.cl)
		if err != nil {
			return err
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return err
		}
		x.pid, x.epoch, x.seq = resp.ProducerID, resp.ProducerEpoch, map[int32]int32{}
		return nil
	})
}

func (x *rawTxn) addPartitions(ctx context.Context, topic string, parts ...int32) error {
	return retry(ctx, func() error {
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = 3
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = x.id, x.pid, x.epoch
		req.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: topic, Partitions: parts}}
		resp, err := req.RequestWith(ctx, x.cl)
		if err != nil {
			return err
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// produce appends values to one partition in the transaction, acks=all,
// and returns the offset of the first.
func (x *rawTxn) produce(ctx context.Context, topic string, part int32, values ...string) (int64, error) {
	recs := make([]record.Record, len(values))
	for i, v := range values {
		recs[i] = record.Record{Value: []byte(v)}
	}
	seq := x.seq[part]
	batch := record.AppendBatch(nil, record.Batch{
		BaseTimestamp: time.Now().UnixMilli(), Attributes: record.Transactional,
		ProducerID: x.pid, ProducerEpoch: x.epoch, BaseSequence: seq, Records: recs,
	})
	var off int64
	err := retry(ctx, func() error {
		req := kmsg.NewPtrProduceRequest()
		req.TransactionID = &x.id
		req.Acks = -1
		req.TimeoutMillis = 10000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: part, Records: batch}}}}
		resp, err := req.RequestWith(ctx, x.cl)
		if err != nil {
			return err
		}
		rp := resp.Topics[0].Partitions[0]
		off = rp.BaseOffset
		return kerr.ErrorForCode(rp.ErrorCode)
	})
	if err == nil {
		x.seq[part] = seq + int32(len(values))
	}
	return off, err
}

func (x *rawTxn) endReq(commit bool) *kmsg.EndTxnRequest {
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = x.id, x.pid, x.epoch, commit
	return req
}

// txnOnDisk is what a killed broker left of one transaction: the last
// state of its transactional id in __transaction_state and the partitions
// holding a marker of its producer after the transaction's first record.
type txnOnDisk struct {
	state  string
	marked []int32
}

// readTxnOnDisk reads the segment files of the data directory of a killed
// broker, as they are (a test of what it left, never of what recovery
// makes of it).
func readTxnOnDisk(t *testing.T, dir, id, topic string, pid int64, firsts map[int32]int64) txnOnDisk {
	t.Helper()
	var out txnOnDisk
	stateDirs, _ := filepath.Glob(filepath.Join(dir, transactionStateTopic+"-*"))
	for _, d := range stateDirs {
		scanBatches(t, d, func(b []byte, h *record.Header) {
			record.ForEach(b, func(r *record.Record) error {
				var k kmsg.TxnMetadataKey
				if k.ReadFrom(r.Key) != nil || k.TransactionalID != id {
					return nil
				}
				out.state = "expired"
				var v kmsg.TxnMetadataValue
				if r.Value != nil && v.ReadFrom(r.Value) == nil {
					out.state = v.State.String()
				}
				return nil
			})
		})
	}
	for p, first := range firsts {
		scanBatches(t, filepath.Join(dir, fmt.Sprintf("%s-%d", topic, p)), func(_ []byte, h *record.Header) {
			if h.IsControl() && h.ProducerID == pid && h.BaseOffset > first && !slices.Contains(out.marked, p) {
				out.marked = append(out.marked, p)
			}
		})
	}
	slices.Sort(out.marked)
	return out
}

// scanBatches calls fn for every whole, valid batch of a partition
// directory's segments, in order.
func scanBatches(t *testing.T, dir string, fn func([]byte, *record.Header)) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(logs)
	for _, name := range logs {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var h record.Header
		for len(data) > 0 && record.ValidateInto(data, &h) == nil && h.Size() <= len(data) {
			fn(data[:h.Size()], &h)
			data = data[h.Size():]
		}
	}
}

// TestTransactionCrashPhases SIGKILLs the ferry binary in every phase of
// a transaction over twenty partitions: after AddPartitionsToTxn, after some
// produces, and at random moments after EndTxn is sent (before the
// decision is stored, between the prepare record and the markers, between
// markers of different partitions, after the markers, complete), reading
// the phase from the files it left. After each restart the transaction
// must end whole: committed in every partition if the commit was decided
// (or answered), else aborted by the next InitProducerID; an open one
// holds the last stable offset at its first record until then; and every
// record produced with acks=all is still there.
func TestTransactionCrashPhases(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (set FERRY_CRASH_SEED=%d to repeat)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	addr := freeAddr(t)
	child := startChild(t, dir, addr, logFile, true)
	// More partitions than the coordinator writes markers to at once
	// (txn's markerParallelism, 16): the last ones wait for a first
	// marker's fsync, so a kill can land with some partitions marked
	// and not others.
	const topic, parts = "tc", 20
	allParts := make([]int32, parts)
	for i := range allParts {
		allParts[i] = int32(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adm := kadm.NewClient(newTestClient(t, addr))
	if _, err := adm.CreateTopic(ctx, parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		child.cmd.Process.Signal(syscall.SIGKILL)
		<-child.exited
		child = startChild(t, dir, addr, logFile, true)
	}

	type outcome struct {
		name      string
		values    map[int32][]string
		committed bool // must be committed; else must be aborted
	}
	var outcomes []outcome
	iter := 0
	// begin opens a transaction of a fresh producer instance (which aborts
	// what the last one left open) and produces to partitions.
	begin := func(v2 bool, ps ...int32) (*rawTxn, map[int32][]string, map[int32]int64) {
		t.Helper()
		iter++
		x := newRawTxn(t, addr, "crash-tx", v2)
		if err := x.init(ctx); err != nil {
			t.Fatalf("round %d: init: %v", iter, err)
		}
		if !v2 {
			if err := x.addPartitions(ctx, topic, ps...); err != nil {
				t.Fatalf("round %d: add partitions: %v", iter, err)
			}
		}
		values, firsts := map[int32][]string{}, map[int32]int64{}
		for _, p := range ps {
			vs := []string{fmt.Sprintf("r%d-p%d-a", iter, p), fmt.Sprintf("r%d-p%d-b", iter, p)}
			off, err := x.produce(ctx, topic, p, vs...)
			if err != nil {
				t.Fatalf("round %d: produce to %d: %v", iter, p, err)
			}
			values[p], firsts[p] = vs, off
		}
		return x, values, firsts
	}
	lso := func(p int32) (int64, int64) {
		l, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		e, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		lo, _ := l.Lookup(topic, p)
		eo, _ := e.Lookup(topic, p)
		return lo.Offset, eo.Offset
	}

	// After AddPartitionsToTxn (no records yet): the restarted
	// coordinator still has the transaction open.
	{
		iter++
		x := newRawTxn(t, addr, "crash-tx", false)
		if err := x.init(ctx); err != nil {
			t.Fatal(err)
		}
		if err := x.addPartitions(ctx, topic, allParts...); err != nil {
			t.Fatal(err)
		}
		restart()
		d, err := adm.DescribeTransactions(ctx, "crash-tx")
		if err != nil {
			t.Fatal(err)
		}
		if st := d["crash-tx"]; st.State != "Ongoing" || len(st.Topics[topic]) != parts {
			t.Fatalf("after AddPartitionsToTxn and a kill: %+v", st)
		}
	}

	// After some produces: the records' transaction holds the last
	// stable offset at its first record until the next instance aborts it.
	for _, v2 := range []bool{false, true} {
		_, values, firsts := begin(v2, 1, 3)
		restart()
		for p, first := range firsts {
			if l, e := lso(p); l != first || e != first+2 {
				t.Fatalf("round %d: partition %d: last stable offset %d, end %d, want %d and %d", iter, p, l, e, first, first+2)
			}
		}
		outcomes = append(outcomes, outcome{fmt.Sprintf("after produces (v2 %v)", v2), values, false})
	}

	// At random moments after EndTxn: every phase, read from the files.
	seen := map[string]int{}
	want := []string{"before the decision", "prepared", "partly marked", "marked", "complete"}
	// The decision, the markers and the completion take a few fsyncs:
	// the kill comes within maxDelay of the EndTxn, which shrinks when
	// kills land after the completion and grows when they land before
	// the decision, so most land in between. Once kills have landed on
	// both sides of a phase not reached yet (a narrow one: the markers
	// of the first sixteen partitions are written together), the next comes
	// between the latest delay that landed before it and the earliest
	// that landed after it; for the first phase, between the EndTxn and
	// the earliest (on a loaded machine every delay drawn may land after
	// the decision: a CI run had 60 do so).
	maxDelay := 4 * time.Millisecond
	type landing struct {
		delay time.Duration
		phase int // index in want
	}
	var landed []landing
	nextDelay := func() time.Duration {
		for u, p := range want {
			if seen[p] > 0 {
				continue
			}
			lo, hi := time.Duration(-1), time.Duration(-1)
			if u == 0 {
				lo = 0 // nothing comes before the first phase but the EndTxn
			}
			for _, l := range landed {
				if l.phase < u && l.delay > lo {
					lo = l.delay
				}
				if l.phase > u && (hi < 0 || l.delay < hi) {
					hi = l.delay
				}
			}
			if lo >= 0 && hi >= 0 {
				lo, hi = min(lo, hi), max(lo, hi)
				return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
			}
			break
		}
		return time.Duration(rng.Int64N(int64(maxDelay)))
	}
	for round := 0; round < 60; round++ {
		if round >= 5 && len(seen) == len(want) {
			break
		}
		v2 := round%2 == 0
		x, values, firsts := begin(v2, allParts...)
		req := x.endReq(true)
		answered := make(chan error, 1)
		go func() {
			resp, err := req.RequestWith(ctx, x.cl)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			answered <- err
		}()
		delay := nextDelay()
		time.Sleep(delay)
		child.cmd.Process.Signal(syscall.SIGKILL)
		<-child.exited
		acked := false
		select {
		case err := <-answered:
			acked = err == nil
		case <-time.After(5 * time.Second):
		}
		d := readTxnOnDisk(t, dir, "crash-tx", topic, x.pid, firsts)
		phase := ""
		switch {
		case d.state == "Ongoing":
			phase = "before the decision"
		case d.state == "PrepareCommit" && len(d.marked) == 0:
			phase = "prepared"
		case d.state == "PrepareCommit" && len(d.marked) < parts:
			phase = "partly marked"
		case d.state == "PrepareCommit":
			phase = "marked"
		case d.state == "CompleteCommit":
			phase = "complete"
		default:
			t.Fatalf("round %d: transaction state %q on disk, markers in %v", iter, d.state, d.marked)
		}
		seen[phase]++
		landed = append(landed, landing{delay, slices.Index(want, phase)})
		switch phase {
		case "complete":
			maxDelay = maxDelay * 4 / 5
		case "before the decision":
			maxDelay = maxDelay * 5 / 4
		}
		maxDelay = max(maxDelay, 100*time.Microsecond)
		if acked && phase == "before the decision" {
			t.Fatalf("round %d: EndTxn answered before its decision was stored", iter)
		}
		child = startChild(t, dir, addr, logFile, true)
		outcomes = append(outcomes, outcome{fmt.Sprintf("killed %s (v2 %v, markers in %v)", phase, v2, d.marked), values, phase != "before the decision"})
	}
	t.Logf("phases reached: %v", seen)
	for _, p := range want {
		if seen[p] == 0 {
			t.Errorf("no kill landed %s in 60 rounds", p)
		}
	}

	// A last instance aborts whatever is open; then everything is
	// decided and the last stable offset is the end.
	x := newRawTxn(t, addr, "crash-tx", true)
	if err := x.init(ctx); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < parts; p++ {
		for deadline := time.Now().Add(30 * time.Second); ; {
			if l, e := lso(p); l == e {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: transactions still open", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	committed := readValues(t, addr, topic, true)
	all := readValues(t, addr, topic, false)
	for _, o := range outcomes {
		for p, vs := range o.values {
			for _, v := range vs {
				if !all[p][v] {
					t.Errorf("%s: acknowledged record %s of partition %d lost", o.name, v, p)
				}
				if committed[p][v] != o.committed {
					t.Errorf("%s: record %s of partition %d visible to read_committed: %v, want %v (a torn or wrongly decided transaction)", o.name, v, p, committed[p][v], o.committed)
				}
			}
		}
	}
}

// readValues reads every record of topic from its start, with the
// isolation level, as sets of values per partition: until a second
// passes with nothing new.
func readValues(t *testing.T, addr, topic string, committed bool) map[int32]map[string]bool {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := newTestClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	out := map[int32]map[string]bool{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		fs.EachRecord(func(r *kgo.Record) {
			if out[r.Partition] == nil {
				out[r.Partition] = map[string]bool{}
			}
			out[r.Partition][string(r.Value)] = true
		})
	}
}
