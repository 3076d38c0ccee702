package limits

// Windows has no per-process open file limit comparable to RLIMIT_NOFILE;
// handles are bounded by memory. The broker assumes a generous one.
func openFiles() (int, error) { return 16384, nil }

func raiseOpenFiles() (int, error) { return openFiles() }
