package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRestartClean produces, stops the broker cleanly, starts it again
// on the same directory and reads everything back: the same records at
// the same offsets, stored byte for byte as before, and new records
// continue after them.
func TestRestartClean(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	const topic, partitions = "restart", 3
	if _, err := b.admin().CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	id := topicIDOf(t, b.addr, topic)
	want := map[int32][]*kgo.Record{}
	for i, opts := range [][]kgo.Opt{
		{kgo.ProducerBatchCompression(kgo.GzipCompression())},
		{kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.DisableIdempotentWrite()},
		{kgo.ProducerBatchCompression(kgo.ZstdCompression())},
	} {
		cl := b.client(append(opts, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))...)
		recs := make([]*kgo.Record, 500)
		for j := range recs {
			recs[j] = testRecord(topic, i*1000+j)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			want[r.Partition] = append(want[r.Partition], r)
		}
		cl.Close()
	}
	raw := map[int32][][]byte{}
	for p := int32(0); p < partitions; p++ {
		raw[p] = fetchBatches(t, b.client(), topic, id, p, 0, int64(len(want[p])))
	}

	b.stop()
	b2 := startBroker(t, nil, b.dir)
	if got := topicIDOf(t, b2.addr, topic); got != id {
		t.Fatalf("topic id changed across the restart")
	}
	got := readAll(t, b2.addr, topic)
	for p := int32(0); p < partitions; p++ {
		compareRecords(t, fmt.Sprintf("after restart, partition %d", p), got[p], want[p], true)
		after := fetchBatches(t, b2.client(), topic, id, p, 0, int64(len(want[p])))
		if len(after) != len(raw[p]) {
			t.Fatalf("partition %d: %d batches after restart, %d before", p, len(after), len(raw[p]))
		}
		for i := range after {
			if !bytes.Equal(after[i], raw[p][i]) {
				t.Fatalf("partition %d: batch %d differs after restart", p, i)
			}
		}
	}
	// New records go after the old ones.
	cl := b2.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Partition: 1, Value: []byte("after restart")}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if r.Offset != int64(len(want[1])) {
		t.Fatalf("first record after restart at offset %d, want %d", r.Offset, len(want[1]))
	}
}

// startChild starts `ferry serve` (the built binary) on dir listening on
// addr and, with ready set, waits until it serves. Its log goes to
// logFile. A start that fails because addr is still taken (the previous
// broker died a moment ago) is retried for up to 10s.
func startChild(t *testing.T, dir, addr string, logFile *os.File, ready bool) *childBroker {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, line := spawnChild(t, dir, addr, logFile)
		if !ready {
			return c
		}
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

func tailFile(name string) string {
	b, _ := os.ReadFile(name)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestCrashRecovery kills the broker process with SIGKILL at random
// moments while an idempotent producer sends with acks=all, restarts it
// on the same directory, and checks after every restart that each
// acknowledged record is there exactly once, at the offset it was
// acknowledged with, and that every partition is in order.
func TestCrashRecovery(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (set FERRY_CRASH_SEED=%d to repeat)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	rounds := 15
	if testing.Short() {
		rounds = 3
	}

	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	addr := freeAddr(t)
	child := startChild(t, dir, addr, logFile, true)

	const topic, partitions = "crash", 4
	adm := kadm.NewClient(newTestClient(t, addr))
	if _, err := adm.CreateTopic(testCtx(t), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	// The producer: one idempotent client for the whole test, so records
	// in flight at a kill are retried to the next broker process with
	// their original sequence numbers.
	prod := newTestClient(t, addr,
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordRetries(3),
		kgo.RequestRetries(2),
		kgo.RecordDeliveryTimeout(3*time.Second),
		kgo.RetryTimeout(2*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }),
		kgo.DialTimeout(250*time.Millisecond),
		kgo.RequestTimeoutOverhead(2*time.Second),
		kgo.MetadataMinAge(20*time.Millisecond),
		kgo.MaxBufferedRecords(1000),
	)
	var (
		mu       sync.Mutex
		acked    = map[int]int64{} // sequence number -> offset
		failed   int
		firstErr error
	)
	ctx, cancel := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for seq := 0; ctx.Err() == nil; seq++ {
			r := &kgo.Record{Partition: int32(seq % partitions), Value: []byte(fmt.Sprintf("%09d", seq))}
			prod.Produce(ctx, r, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if firstErr == nil && !errors.Is(err, context.Canceled) {
						firstErr = err
					}
					return
				}
				acked[seq] = r.Offset
			})
			if seq%25 == 24 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	defer func() {
		cancel()
		<-produced
	}()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	for round := 1; round <= rounds; round++ {
		time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
		child.kill()
		fmt.Fprintf(logFile, "--- round %d: killed\n", round)
		if rng.IntN(4) == 0 {
			// Kill it again while it starts up (replaying and
			// recovering the logs), or just after.
			c := startChild(t, dir, addr, logFile, false)
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
			c.kill()
			fmt.Fprintf(logFile, "--- round %d: killed during start\n", round)
		}
		before := ackedCount()
		restart := time.Now()
		child = startChild(t, dir, addr, logFile, true)
		started := time.Since(restart)
		// The producer carries on with the new process.
		for deadline := time.Now().Add(20 * time.Second); ackedCount() <= before; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("round %d: nothing acknowledged in 20s after the restart (%d failed, first error %v)\nbroker log:\n%s", round, failed, firstErr, tailFile(logFile.Name()))
			}
		}
		resumed := time.Since(restart)
		n := checkAcked(t, fmt.Sprintf("round %d", round), addr, topic, partitions, &mu, acked)
		t.Logf("round %d: started in %v, producing again after %v, %d records checked in %v", round, started.Round(time.Millisecond), resumed.Round(time.Millisecond), n, (time.Since(restart) - resumed).Round(time.Millisecond))
	}

	// Finally a clean stop (SIGTERM) and a last check.
	mu.Lock()
	failedInRounds, firstFailure := failed, firstErr
	mu.Unlock()
	cancel()
	<-produced
	prod.Close()
	child.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-child.exited:
		if child.err != nil {
			t.Fatalf("broker exited with %v after SIGTERM\n%s", child.err, tailFile(logFile.Name()))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("broker did not exit within 20s of SIGTERM")
	}
	child = startChild(t, dir, addr, logFile, true)
	n := checkAcked(t, "after clean stop", addr, topic, partitions, &mu, acked)
	mu.Lock()
	t.Logf("%d rounds: %d records acknowledged, %d failed during the rounds (first error: %v), %d in the log", rounds, len(acked), failedInRounds, firstFailure, n)
	mu.Unlock()
	if log := tailFile(logFile.Name()); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic") {
		t.Fatalf("broker process log shows a race or a panic:\n%s", log)
	}
}

// checkAcked reads topic and checks that every acknowledged record is in
// its partition once, at its acknowledged offset, and that each
// partition holds increasing sequence numbers (no duplicates, no
// reordering). It returns the number of records read.
func checkAcked(t *testing.T, what, addr, topic string, partitions int, mu *sync.Mutex, acked map[int]int64) int {
	t.Helper()
	mu.Lock()
	want := make(map[int]int64, len(acked))
	for k, v := range acked {
		want[k] = v
	}
	mu.Unlock()
	got := readAll(t, addr, topic)
	var errs []string
	at := map[int]int64{}
	n := 0
	for p, recs := range got {
		last := -1
		for _, r := range recs {
			n++
			seq, err := strconv.Atoi(string(r.Value))
			switch {
			case err != nil:
				errs = append(errs, fmt.Sprintf("partition %d offset %d: value %q", p, r.Offset, r.Value))
			case seq%partitions != int(p):
				errs = append(errs, fmt.Sprintf("partition %d offset %d: record %d belongs to partition %d", p, r.Offset, seq, seq%partitions))
			case seq <= last:
				dup := ""
				if _, ok := want[seq]; ok {
					dup = " (acknowledged)"
				}
				errs = append(errs, fmt.Sprintf("partition %d offset %d: record %d%s after record %d: duplicate or out of order", p, r.Offset, seq, dup, last))
			default:
				last = seq
			}
			if _, dup := at[seq]; !dup {
				at[seq] = r.Offset
			}
		}
	}
	missing := 0
	for seq, off := range want {
		o, ok := at[seq]
		switch {
		case !ok:
			missing++
			if missing <= 10 {
				errs = append(errs, fmt.Sprintf("record %d acknowledged at offset %d is missing", seq, off))
			}
		case o != off:
			errs = append(errs, fmt.Sprintf("record %d acknowledged at offset %d is at offset %d", seq, off, o))
		}
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("... and %d more", len(errs)-20))
		}
		t.Fatalf("%s: %d acknowledged, %d read, %d missing:\n%s", what, len(want), n, missing, strings.Join(errs, "\n"))
	}
	return n
}
