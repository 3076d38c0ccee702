package server

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The ferry binary, built once per test process for the tests that run
// the real executable (kcat, crash recovery); with the race detector when
// the tests have it, so that a race in the broker process shows in its log.
var ferryBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// buildFerry builds cmd/ferry into a temporary directory that lives as
// long as the test process (TestMain removes it), and returns its path. FERRY_BIN names an
// already built binary instead.
func buildFerry(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FERRY_BIN"); p != "" {
		return p
	}
	ferryBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-bin-")
		if err != nil {
			ferryBin.err = err
			return
		}
		ferryBin.path = filepath.Join(dir, "ferry")
		args := []string{"build", "-o", ferryBin.path}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "../cmd/ferry")...)
		ferryBin.out, ferryBin.err = cmd.CombinedOutput()
	})
	if ferryBin.err != nil {
		t.Fatalf("go build ../cmd/ferry: %v\n%s", ferryBin.err, ferryBin.out)
	}
	return ferryBin.path
}

// startBinary runs `ferry serve` (the built binary) on a fresh data
// directory on 127.0.0.1:0. When the test ends it sends SIGTERM and
// checks the broker exits 0 after a clean shutdown.
func startBinary(t *testing.T, props ...string) *testBroker {
	t.Helper()
	dir := t.TempDir()
	args := []string{"serve", "-listen", "127.0.0.1:0", "-data-dir", dir, "-log-level", "warn",
		"-c", "group.initial.rebalance.delay.ms=0"}
	for _, p := range props {
		args = append(args, "-c", p)
	}
	cmd := exec.Command(buildFerry(t), args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r) // never let the broker block on stdout
		exited <- cmd.Wait()
	}()
	b := &testBroker{t: t, dir: dir}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("ferry serve after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("ferry serve did not exit within 30s of SIGTERM")
		}
	})
	select {
	case line := <-lines:
		// "ferry listening on ADDR (data in DIR)"
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != "listening" {
			t.Fatalf("ferry serve: unexpected first line %q", line)
		}
		b.addr = f[3]
	case <-time.After(60 * time.Second):
		t.Fatal("ferry serve printed no address in 60s")
	}
	return b
}
