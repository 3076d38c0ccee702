package server

import "syscall"

// childProcAttr makes a broker process started by a test die with the
// test process, even when that is killed.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
