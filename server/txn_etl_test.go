package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// etlChildEnv makes the test binary a consume-transform-produce processor
// (TestTransactionalETL) against the broker at its address.
const etlChildEnv = "FERRY_TEST_ETL_ADDR"

// runETLChild consumes "in" as the group "etl", writes every record to
// "out" (same partition, value prefixed with "out-") and commits its input
// offsets in the same transaction, with franz-go's GroupTransactSession,
// until killed. It prints "produced N" once a transaction holds its
// records but is not ended yet, and "committed N" after each commit.
func runETLChild(addr string) int {
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(addr),
		kgo.TransactionalID("etl"),
		kgo.TransactionTimeout(20*time.Second),
		kgo.ConsumerGroup("etl"),
		kgo.ConsumeTopics("in"),
		kgo.SessionTimeout(6*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close()
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	for n := 1; ; n++ {
		fs := s.PollRecords(ctx, 40)
		if errs := fs.Errors(); len(errs) > 0 {
			fmt.Fprintln(os.Stderr, "poll:", errs)
			continue
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := s.Begin(); err != nil {
			fmt.Fprintln(os.Stderr, "begin:", err)
			return 2
		}
		fs.EachRecord(func(r *kgo.Record) {
			s.Produce(ctx, &kgo.Record{Topic: "out", Partition: r.Partition, Value: append([]byte("out-"), r.Value...)}, nil)
		})
		if err := s.Client().Flush(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "flush:", err)
		}
		fmt.Fprintf(out, "produced %d\n", n)
		out.Flush()
		time.Sleep(20 * time.Millisecond) // a window for the kill
		committed, err := s.End(ctx, kgo.TryCommit)
		if err != nil {
			fmt.Fprintln(os.Stderr, "end:", err)
		}
		if committed {
			fmt.Fprintf(out, "committed %d\n", n)
			out.Flush()
		}
	}
}

// startETL starts a processor child and returns it with its stdout lines.
func startETL(t *testing.T, addr string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), etlChildEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd, lines
}

// TestTransactionalETL runs franz-go's consume-transform-produce
// (GroupTransactSession) in a child process, SIGKILLs it while a
// transaction holds records, and lets a second one finish: the output
// holds each input record exactly once.
func TestTransactionalETL(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	for _, topic := range []string{"in", "out"} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	const perPartition = 300
	in := b.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 2; p++ {
		var vs []string
		for i := 0; i < perPartition; i++ {
			vs = append(vs, fmt.Sprintf("%d-%d", p, i))
		}
		produceIn(t, ctx, in, "in", p, vs...)
	}

	first, lines := startETL(t, b.addr)
	killed := false
	for line := range lines {
		if strings.HasPrefix(line, "produced ") && line != "produced 1" {
			// A transaction holds records, after at least one commit.
			first.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	if !killed {
		t.Fatal("the first processor ended before it could be killed")
	}
	first.Wait()
	startETL(t, b.addr)

	got := consumeAll(t, b, "out", true, 2*perPartition, 90*time.Second)
	// Let anything duplicated arrive too.
	time.Sleep(time.Second)
	got = consumeAll(t, b, "out", true, 3*perPartition, 3*time.Second)
	for p := int32(0); p < 2; p++ {
		if len(got[p]) != perPartition {
			t.Errorf("partition %d: %d records, want %d", p, len(got[p]), perPartition)
		}
		for i, v := range got[p] {
			if want := fmt.Sprintf("out-%d-%d", p, i); v != want {
				t.Fatalf("partition %d record %d: %q, want %q (duplicated or lost input)", p, i, v, want)
			}
		}
	}
	all := consumeAll(t, b, "out", false, 1<<30, 3*time.Second)
	t.Logf("output: %d and %d records committed; %d and %d in the log with the aborted ones", len(got[0]), len(got[1]), len(all[0]), len(all[1]))
}
