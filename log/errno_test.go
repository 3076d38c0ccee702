package log

import "syscall"

var errNoSpace = syscall.ENOSPC
