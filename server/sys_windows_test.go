package server

import (
	"os"
	"testing"
)

func raiseOpenFiles(t *testing.T, need uint64) {}

func pauseProcess(t *testing.T, p *os.Process) {
	t.Skip("processes cannot be paused with a signal on Windows")
}

func resumeProcess(t *testing.T, p *os.Process) {}
