//go:build unix

package server

import (
	"os"
	"syscall"
	"testing"
)

// raiseOpenFiles raises the open-file limit to at least need for the
// rest of the test, or skips the test.
func raiseOpenFiles(t *testing.T, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if rl.Cur >= need {
		return
	}
	old := rl
	raised := syscall.Rlimit{Cur: need, Max: max(rl.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		t.Skipf("open file limit %d, cannot raise it to %d: %v", rl.Cur, need, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// pauseProcess stops p (SIGSTOP) until resumeProcess.
func pauseProcess(t *testing.T, p *os.Process) {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// resumeProcess continues a process stopped by pauseProcess.
func resumeProcess(t *testing.T, p *os.Process) {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}
