//go:build !linux

package server

import "syscall"

// syscallEMFILE is the "too many open files" accept error, retried with a
// backoff like a temporary error.
var syscallEMFILE = syscall.EMFILE
