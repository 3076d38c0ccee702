package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// dialerAddrEnv and dialerCountEnv make the test binary a process holding
// idle connections to a broker (TestIdleConnections).
const (
	dialerAddrEnv  = "FERRY_TEST_DIALER_ADDR"
	dialerCountEnv = "FERRY_TEST_DIALER_COUNT"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(etlChildEnv); addr != "" {
		os.Exit(runETLChild(addr))
	}
	if addr := os.Getenv(dialerAddrEnv); addr != "" {
		n, err := strconv.Atoi(os.Getenv(dialerCountEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(runDialer(addr, n))
	}
	code := m.Run()
	if ferryBin.path != "" {
		os.RemoveAll(filepath.Dir(ferryBin.path))
	}
	os.Exit(code)
}
