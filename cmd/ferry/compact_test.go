package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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

// startCompactingChild starts `ferry serve` on dir with a cleaner that
// looks for work every 10 ms and is throttled to 300 kB/s (so that a kill
// often lands in a pass), logging at info level into logFile, and returns
// it and its address.
func startCompactingChild(t *testing.T, dir string, logFile *os.File) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FERRY_RUN_MAIN=serve -listen 127.0.0.1:0 -data-dir "+dir+
		" -log-level info -c log.cleaner.backoff.ms=10 -c log.cleaner.io.max.bytes.per.second=300000")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 4 || f[1] != "listening" {
		t.Fatalf("unexpected first line %q", line)
	}
	return cmd, f[3]
}

// TestServeKilledWhileCompacting SIGKILLs `ferry serve` at random moments
// while producers overwrite the keys of a compacted topic (acks=all) and
// its cleaner runs, restarts it on the same data each time, and checks
// what a consumer from the beginning reads: for every key, a value at
// least as new as the newest acknowledged one and no newer than the newest
// sent, offsets increasing. The cleaner must have cleaned during the run.
func TestServeKilledWhileCompacting(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the broker")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dir := filepath.Join(t.TempDir(), "data")
	logFile, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const topic, keys = "kv", 1000
	var mu sync.Mutex
	acked := map[string]int64{} // newest sequence acknowledged per key
	sent := map[string]int64{}  // newest sequence sent per key
	seq := int64(0)
	for round := range 6 {
		cmd, addr := startCompactingChild(t, dir, logFile)
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.RecordRetries(1), kgo.ProducerBatchCompression(kgo.SnappyCompression()), kgo.MaxBufferedRecords(5000))
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{
				"cleanup.policy":            kadm.StringPtr("compact"),
				"segment.bytes":             kadm.StringPtr("16384"),
				"min.cleanable.dirty.ratio": kadm.StringPtr("0.1"),
			}, topic)
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Fatal(err)
			}
		} else {
			check(t, ctx, addr, topic, acked, sent, round)
		}
		stop := make(chan struct{})
		krng := rand.New(rand.NewPCG(uint64(seed), uint64(round)))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				seq++
				s := seq
				k := fmt.Sprintf("key-%d", krng.IntN(keys))
				sent[k] = s
				mu.Unlock()
				r := &kgo.Record{Key: []byte(k), Value: []byte(fmt.Sprintf("%d %s", s, strings.Repeat("v", int(s%100))))}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err == nil {
						mu.Lock()
						acked[k] = max(acked[k], s)
						mu.Unlock()
					}
				})
				if s%500 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		cl.Close() // fails what was buffered or in flight, and a Produce waiting for room
		wg.Wait()
	}
	_, addr := startCompactingChild(t, dir, logFile)
	check(t, ctx, addr, topic, acked, sent, 6)
	b, _ := os.ReadFile(logFile.Name())
	if n := strings.Count(string(b), "cleaned log"); n == 0 {
		t.Fatalf("the broker never cleaned:\n%s", tail(b))
	} else {
		t.Logf("%d records sent, %d cleaning passes logged, %d restarts finished what a killed pass left",
			seq, n, strings.Count(string(b), "finished what a cleaning pass stopped by a crash left"))
	}
	if strings.Contains(string(b), "cleaning failed") {
		t.Fatalf("a cleaning pass failed:\n%s", tail(b))
	}
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// check reads the topic from the beginning and checks it against what was
// acknowledged and sent.
func check(t *testing.T, ctx context.Context, addr, topic string, acked, sent map[string]int64, round int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	got := map[string]int64{}
	last := int64(-1)
	for last < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("round %d: read up to %d of %d: %v", round, last, end.Offset, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= last {
				t.Fatalf("round %d: offset %d after %d", round, r.Offset, last)
			}
			last = r.Offset
			s, err := strconv.ParseInt(strings.Fields(string(r.Value))[0], 10, 64)
			if err != nil {
				t.Fatalf("round %d: record %d holds %q", round, r.Offset, r.Value)
			}
			got[string(r.Key)] = s
		})
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("round %d: fetch: %v", round, errs[0].Err)
		}
	}
	for k, a := range acked {
		if got[k] < a || got[k] > sent[k] {
			t.Fatalf("round %d: key %s reads sequence %d; acknowledged %d, sent up to %d", round, k, got[k], a, sent[k])
		}
	}
}
