package server

import (
	"context"
	"fmt"
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
)

// This file is a history checker for transactions in the spirit of
// Jepsen's Elle for Kafka: concurrent transactional producers write
// records with unique values to random partitions and commit or abort at
// random, read_committed consumers read all along, and the ferry binary is
// SIGKILLed and restarted throughout. Every operation and observation is
// recorded; once the broker settles, the history is checked against a
// final read_committed read of every partition for:
//
//   - aborted read: a consumer saw a record of a transaction that did not
//     commit;
//   - lost write: a transaction whose commit was acknowledged is missing
//     records;
//   - torn transaction: a transaction whose records are visible in part (in
//     the final state, or to a consumer that read past all of its records
//     in a partition);
//   - duplicate: a value stored or read twice;
//   - inconsistent read: an offset read with different values, or offsets
//     going backwards within a consumer.
//
// FERRY_HISTORY_DURATION (a Go duration, 30s by default) sets how long the
// workload runs; FERRY_HISTORY_SEED repeats a run; FERRY_HISTORY_KEEP
// names a directory that receives the broker's log and data after a run
// that found anomalies.

// txnRecord is one transaction of the history.
type txnRecord struct {
	name   string             // writer and sequence
	writes map[int32][]string // values attempted, by partition
	// outcome: "committed" (EndTransaction commit answered nil),
	// "aborted" (an abort answered nil, or a produce failed so it could
	// not commit) or "unknown" (the commit's answer was an error).
	outcome string
}

// observation is a record a consumer read.
type observation struct {
	offset int64
	value  string
}

type history struct {
	mu    sync.Mutex
	txns  []*txnRecord
	reads [][]map[int32][]observation // per consumer, per session, by partition
}

func (h *history) add(tr *txnRecord) {
	h.mu.Lock()
	h.txns = append(h.txns, tr)
	h.mu.Unlock()
}

func TestTransactionHistory(t *testing.T) {
	duration := 30 * time.Second
	if s := os.Getenv("FERRY_HISTORY_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		duration = d
	} else if testing.Short() {
		duration = 10 * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_HISTORY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (set FERRY_HISTORY_SEED=%d to repeat), workload %v", seed, seed, duration)
	rng := rand.New(rand.NewPCG(seed, 2))

	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	addr := freeAddr(t)
	props := []string{"transaction.abort.timed.out.transaction.cleanup.interval.ms=200"}
	child := startChildProps(t, dir, addr, logFile, props)
	var childMu sync.Mutex
	const topic, parts, writers, readers = "hist", 3, 3, 2
	adm := kadm.NewClient(newTestClient(t, addr))
	if _, err := adm.CreateTopic(testCtx(t), parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	h := &history{reads: make([][]map[int32][]observation, readers)}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup

	// Writers: each its own transactional id, a new client (a new
	// producer instance, which fences the old one and aborts what it left
	// open) after any error.
	for w := 0; w < writers; w++ {
		wrng := rand.New(rand.NewPCG(seed, uint64(10+w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl *kgo.Client
			var err error
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for n := 0; ctx.Err() == nil; n++ {
				if cl == nil {
					opts := []kgo.Opt{
						kgo.SeedBrokers(addr),
						kgo.TransactionalID(fmt.Sprintf("hist-%d", w)),
						kgo.TransactionTimeout(4 * time.Second),
						kgo.RecordPartitioner(kgo.ManualPartitioner()),
						kgo.ProducerLinger(0),
						kgo.RecordRetries(4),
						kgo.RequestRetries(3),
						kgo.RecordDeliveryTimeout(3 * time.Second),
						kgo.RetryTimeout(3 * time.Second),
						kgo.RetryBackoffFn(func(int) time.Duration { return 30 * time.Millisecond }),
						kgo.DialTimeout(250 * time.Millisecond),
						kgo.RequestTimeoutOverhead(2 * time.Second),
					}
					if w == writers-1 {
						// One writer speaks the protocol before KIP-890.
						opts = append(opts, kgo.MaxVersions(capVersions(map[int16]int16{0: 11, 26: 4, 28: 4})))
					}
					if cl, err = kgo.NewClient(opts...); err != nil {
						t.Error(err)
						return
					}
				}
				tr := &txnRecord{name: fmt.Sprintf("w%d-t%d", w, n), writes: map[int32][]string{}}
				if err := cl.BeginTransaction(); err != nil {
					cl.Close()
					cl = nil
					continue
				}
				var recs []*kgo.Record
				for i, k := 0, 1+wrng.IntN(6); i < k; i++ {
					p := int32(wrng.IntN(parts))
					v := fmt.Sprintf("%s-%d", tr.name, i)
					tr.writes[p] = append(tr.writes[p], v)
					recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)})
				}
				h.add(tr)
				pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				produceErr := cl.ProduceSync(pctx, recs...).FirstErr()
				commit := produceErr == nil && wrng.IntN(10) < 7
				end := kgo.TryAbort
				if commit {
					end = kgo.TryCommit
				}
				endErr := cl.EndTransaction(pctx, end)
				cancel()
				h.mu.Lock()
				switch {
				case commit && endErr == nil:
					tr.outcome = "committed"
				case !commit:
					// An abort, or a produce that failed: it cannot commit.
					tr.outcome = "aborted"
				default:
					tr.outcome = "unknown"
				}
				h.mu.Unlock()
				if produceErr != nil || endErr != nil {
					cl.Close()
					cl = nil
				}
			}
		}()
	}

	// Readers: read_committed from the start of every partition, all
	// along; a new session (a new client, reading from the start again)
	// after each kill they notice.
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				sess := map[int32][]observation{}
				h.mu.Lock()
				h.reads[r] = append(h.reads[r], sess)
				si := len(h.reads[r]) - 1
				h.mu.Unlock()
				cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
					kgo.FetchMaxWait(100*time.Millisecond), kgo.DialTimeout(250*time.Millisecond),
					kgo.RetryBackoffFn(func(int) time.Duration { return 30 * time.Millisecond }))
				if err != nil {
					t.Error(err)
					return
				}
				for ctx.Err() == nil {
					fs := cl.PollFetches(ctx)
					if len(fs.Errors()) > 0 && ctx.Err() == nil {
						break
					}
					h.mu.Lock()
					fs.EachRecord(func(rec *kgo.Record) {
						sess[rec.Partition] = append(sess[rec.Partition], observation{rec.Offset, string(rec.Value)})
					})
					h.reads[r][si] = sess
					h.mu.Unlock()
				}
				cl.Close()
			}
		}()
	}

	// The killer.
	kills := 0
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(2000+rng.IntN(4000)) * time.Millisecond)
		if time.Now().After(deadline) {
			break
		}
		childMu.Lock()
		child.cmd.Process.Signal(syscall.SIGKILL)
		<-child.exited
		kills++
		child = startChildProps(t, dir, addr, logFile, props)
		childMu.Unlock()
	}
	stop()
	wg.Wait()

	// Settle: every transaction left open by a killed producer instance
	// times out and is aborted.
	for deadline := time.Now().Add(60 * time.Second); ; {
		l, err1 := adm.ListCommittedOffsets(context.Background(), topic)
		e, err2 := adm.ListEndOffsets(context.Background(), topic)
		settled := err1 == nil && err2 == nil
		if settled {
			for p := int32(0); p < parts; p++ {
				lo, _ := l.Lookup(topic, p)
				eo, _ := e.Lookup(topic, p)
				settled = settled && lo.Offset == eo.Offset
			}
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("transactions still open a minute after the workload\n%s", tailFile(logFile.Name()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	final := readFinal(t, addr, topic)

	anomalies := checkHistory(h, final)
	counts := map[string]int{}
	for _, tr := range h.txns {
		counts[tr.outcome]++
	}
	nreads := 0
	for _, sessions := range h.reads {
		for _, s := range sessions {
			for _, obs := range s {
				nreads += len(obs)
			}
		}
	}
	t.Logf("%d kills; %d transactions (%v); %d records read by consumers; %d in the final state", kills, len(h.txns), counts, nreads, len(final.byValue))
	for _, a := range anomalies {
		t.Error(a)
	}
	if keep := os.Getenv("FERRY_HISTORY_KEEP"); keep != "" && len(anomalies) > 0 {
		// The broker's log and data directory, to look into.
		childMu.Lock()
		child.cmd.Process.Signal(syscall.SIGKILL)
		<-child.exited
		childMu.Unlock()
		if out, err := exec.Command("cp", "-a", logFile.Name(), dir, keep).CombinedOutput(); err != nil {
			t.Logf("keeping the broker's files in %s: %v %s", keep, err, out)
		}
	}
	if counts["committed"] == 0 || counts["aborted"] == 0 {
		t.Errorf("the workload committed %d and aborted %d transactions: too few to check", counts["committed"], counts["aborted"])
	}
}

// startChildProps is startChild with broker configs.
func startChildProps(t *testing.T, dir, addr string, logFile *os.File, props []string) *childBroker {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, line := spawnChild(t, dir, addr, logFile, props...)
		select {
		case s := <-line:
			if a, ok := listeningAddr(s); ok {
				c.addr = a
				return c
			}
			<-c.exited
			if log := tailFile(logFile.Name()); strings.Contains(log, "address already in use") && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			t.Fatalf("broker process exited before serving: %v\n%s", c.err, tailFile(logFile.Name()))
		case <-time.After(60 * time.Second):
			t.Fatalf("broker process did not start in 60s\n%s", tailFile(logFile.Name()))
		}
	}
}

// finalState is a read_committed read of every partition, settled.
type finalState struct {
	byPartition map[int32][]observation
	byValue     map[string][]finalPos
}

type finalPos struct {
	partition int32
	offset    int64
}

func readFinal(t *testing.T, addr, topic string) finalState {
	t.Helper()
	cl := newTestClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	f := finalState{byPartition: map[int32][]observation{}, byValue: map[string][]finalPos{}}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return f
		}
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			f.byPartition[r.Partition] = append(f.byPartition[r.Partition], observation{r.Offset, v})
			f.byValue[v] = append(f.byValue[v], finalPos{r.Partition, r.Offset})
		})
	}
}

// checkHistory returns every anomaly of the history against the final
// state.
func checkHistory(h *history, final finalState) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < 50 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	// Duplicates in the final state.
	for v, pos := range final.byValue {
		if len(pos) > 1 {
			add("duplicate: %s stored %d times (%v)", v, len(pos), pos)
		}
	}
	// Each transaction: whole or not at all, and as decided.
	committed := map[string]bool{} // value -> its transaction is in the final state
	for _, tr := range h.txns {
		total, visible := 0, 0
		var maxOff = map[int32]int64{}
		for p, vs := range tr.writes {
			for _, v := range vs {
				total++
				if pos := final.byValue[v]; len(pos) > 0 {
					visible++
					if pos[0].partition != p {
						add("inconsistent: %s of %s written to partition %d, stored in %d", v, tr.name, p, pos[0].partition)
					}
					maxOff[p] = max(maxOff[p], pos[0].offset)
				}
			}
		}
		switch {
		case visible != 0 && visible != total:
			add("torn transaction: %s (%s) has %d of its %d records in the final state", tr.name, tr.outcome, visible, total)
		case tr.outcome == "committed" && visible == 0:
			add("lost write: %s was acknowledged committed, none of its %d records is stored", tr.name, total)
		case tr.outcome == "aborted" && visible > 0:
			add("aborted write visible: %s was aborted, its records are in the final state", tr.name)
		}
		for _, vs := range tr.writes {
			for _, v := range vs {
				committed[v] = visible == total && total > 0
			}
		}
		// A consumer that read past every record of the transaction in
		// a partition saw all of them, or (not committed) none.
		if visible != total {
			continue
		}
		for ri, sessions := range h.reads {
			for si, s := range sessions {
				for p, vs := range tr.writes {
					obs := s[p]
					if len(obs) == 0 || obs[len(obs)-1].offset < maxOff[p] {
						continue
					}
					seen := 0
					for _, o := range obs {
						if slices.Contains(vs, o.value) {
							seen++
						}
					}
					if seen != len(vs) {
						add("torn read: consumer %d (session %d) read partition %d to offset %d and saw %d of the %d records %s wrote there", ri, si, p, obs[len(obs)-1].offset, seen, len(vs), tr.name)
					}
				}
			}
		}
	}
	// Every observation: committed, once, at its final offset, in order.
	for ri, sessions := range h.reads {
		for si, s := range sessions {
			parts := make([]int32, 0, len(s))
			for p := range s {
				parts = append(parts, p)
			}
			sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
			for _, p := range parts {
				seen := map[string]bool{}
				last := int64(-1)
				for _, o := range s[p] {
					switch pos := final.byValue[o.value]; {
					case !committed[o.value]:
						add("aborted read: consumer %d (session %d) read %s at %d/%d, a record of a transaction that did not commit", ri, si, o.value, p, o.offset)
					case len(pos) > 0 && (pos[0].partition != p || pos[0].offset != o.offset):
						add("inconsistent read: consumer %d read %s at %d/%d, stored at %d/%d", ri, o.value, p, o.offset, pos[0].partition, pos[0].offset)
					}
					if seen[o.value] {
						add("duplicate read: consumer %d (session %d) read %s twice", ri, si, o.value)
					}
					seen[o.value] = true
					if o.offset <= last {
						add("inconsistent read: consumer %d (session %d) read offset %d of partition %d after %d", ri, si, o.offset, p, last)
					}
					last = o.offset
				}
			}
		}
	}
	return out
}
