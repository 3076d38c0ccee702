package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKcatTransactions runs librdkafka's transactional producer (kcat -X
// transactional.id, the protocol before KIP-890: AddPartitionsToTxn, then
// produce verified by the partition) against the ferry binary: closing
// stdin commits; a kcat killed mid-transaction leaves it open until the
// coordinator aborts it at its transaction.timeout.ms. librdkafka's
// consumer, read_committed by default, then reads only the committed
// records, of kcat's and of franz-go's transactions, past the aborted
// ones and the markers.
func TestKcatTransactions(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	b := startBinary(t, "transaction.abort.timed.out.transaction.cleanup.interval.ms=200")
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "kt"); err != nil {
		t.Fatal(err)
	}
	producer := func(id string) (*exec.Cmd, *bufio.Writer, func() error) {
		cmd := exec.Command(kcat, "-b", b.addr, "-P", "-t", "kt", "-p", "0",
			"-X", "transactional.id="+id, "-X", "queue.buffering.max.ms=1", "-X", "transaction.timeout.ms=3000")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = &testLogWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		w := bufio.NewWriter(stdin)
		t.Cleanup(func() { stdin.Close() })
		return cmd, w, stdin.Close
	}

	// Committed: stdin closes.
	cmd, w, closeStdin := producer("kcat-commit")
	w.WriteString("k1\nk2\n")
	w.Flush()
	closeStdin()
	if err := waitCmd(cmd, 30*time.Second); err != nil {
		t.Fatalf("kcat commit: %v", err)
	}

	// Killed while the transaction holds its records. kcat 1.7 reads
	// stdin in chunks of 1 KiB: send more.
	cmd, w, _ = producer("kcat-abort")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(w, "a%02d-%s\n", i, strings.Repeat("x", 100))
	}
	w.Flush()
	// Wait for some in the log (after k1, k2 and the commit marker).
	adm := b.admin()
	for deadline := time.Now().Add(30 * time.Second); ; {
		ends, err := adm.ListEndOffsets(ctx, "kt")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := ends.Lookup("kt", 0); o.Offset >= 3+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kcat's transactional records did not arrive")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	waitCmd(cmd, 30*time.Second)
	// The coordinator aborts it once its timeout passes: the last stable
	// offset reaches the end.
	for deadline := time.Now().Add(30 * time.Second); ; {
		lso, err := adm.ListCommittedOffsets(ctx, "kt")
		if err != nil {
			t.Fatal(err)
		}
		end, err := adm.ListEndOffsets(ctx, "kt")
		if err != nil {
			t.Fatal(err)
		}
		l, _ := lso.Lookup("kt", 0)
		e, _ := end.Lookup("kt", 0)
		if l.Offset == e.Offset {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed producer's transaction is still open: last stable offset %d, end %d", l.Offset, e.Offset)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// franz-go's transactions in the same partition: one of each.
	cl := b.txnClient(t, "franz")
	for i, end := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produceIn(t, ctx, cl, "kt", 0, []string{"f1", "f2"}[i])
		endTxn(t, ctx, cl, end)
	}
	uncommitted := consumeAll(t, b, "kt", false, 1<<20, 3*time.Second)[0]
	if len(uncommitted) < 14 || !slices.Equal(uncommitted[:2], []string{"k1", "k2"}) || !slices.Equal(uncommitted[len(uncommitted)-2:], []string{"f1", "f2"}) {
		t.Fatalf("read_uncommitted: %v", uncommitted)
	}

	consume := func(iso string) []string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, kcat, "-b", b.addr, "-C", "-q", "-e", "-t", "kt", "-p", "0", "-o", "beginning",
			"-X", "isolation.level="+iso, "-X", "fetch.wait.max.ms=50").Output()
		if err != nil {
			t.Fatalf("kcat consume %s: %v", iso, err)
		}
		return strings.Fields(string(out))
	}
	if got := consume("read_committed"); !slices.Equal(got, []string{"k1", "k2", "f1"}) {
		t.Fatalf("kcat read_committed: %v", got)
	}
	if got := consume("read_uncommitted"); !slices.Equal(got, uncommitted) {
		t.Fatalf("kcat read_uncommitted: %v, want %v", got, uncommitted)
	}
}

// testLogWriter logs what a child writes.
type testLogWriter struct{ t *testing.T }

func (w *testLogWriter) Write(b []byte) (int, error) {
	w.t.Logf("kcat: %s", bytes.TrimSpace(b))
	return len(b), nil
}

// waitCmd waits for cmd to exit, killing it after d.
func waitCmd(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		return <-done
	}
}
