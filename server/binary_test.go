package server

import (
	"bufio"
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

// childBroker is `ferry serve` running in a child process.
type childBroker struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed when the process is gone
	err    error         // from Wait, valid once exited is closed
}

// spawnChild starts `ferry serve` (the built binary) on dir listening on
// addr, with broker configs props and its log going to logFile; line
// delivers the first line it prints (empty if it exits first). It is
// SIGKILLed when the test ends, if still running.
func spawnChild(t *testing.T, dir, addr string, logFile *os.File, props ...string) (c *childBroker, line <-chan string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "-listen", addr, "-data-dir", dir, "-log-level", "warn",
		"-c", "group.initial.rebalance.delay.ms=0"}
	for _, p := range props {
		args = append(args, "-c", p)
	}
	cmd := exec.Command(buildFerry(t), args...)
	cmd.Stdout, cmd.Stderr = w, logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c = &childBroker{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	first := make(chan string, 1)
	go func() {
		defer r.Close()
		s, _ := bufio.NewReader(r).ReadString('\n')
		first <- s
	}()
	return c, first
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *childBroker) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// listeningAddr returns the address in serve's first line, "ferry
// listening on ADDR (data in DIR)".
func listeningAddr(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || f[1] != "listening" {
		return "", false
	}
	return f[3], true
}

// startBinary runs `ferry serve` (the built binary) on a fresh data
// directory on 127.0.0.1:0. When the test ends it sends SIGTERM and
// checks the broker exits 0 after a clean shutdown.
func startBinary(t *testing.T, props ...string) *testBroker {
	t.Helper()
	dir := t.TempDir()
	c, line := spawnChild(t, dir, "127.0.0.1:0", os.Stderr, props...)
	t.Cleanup(func() { // runs before spawnChild's kill
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
			if c.err != nil {
				t.Errorf("ferry serve after SIGTERM: %v", c.err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ferry serve did not exit within 30s of SIGTERM")
		}
	})
	select {
	case s := <-line:
		addr, ok := listeningAddr(s)
		if !ok {
			t.Fatalf("ferry serve: unexpected first line %q", s)
		}
		return &testBroker{t: t, addr: addr, dir: dir}
	case <-time.After(60 * time.Second):
		t.Fatal("ferry serve printed no address in 60s")
		return nil
	}
}
