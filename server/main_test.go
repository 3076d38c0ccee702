package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test runs the broker in a child process: the test binary
// itself, started with these variables set.
const (
	// childDirEnv holds the data directory; set, it makes the test binary
	// a broker instead of running tests.
	childDirEnv = "FERRY_SERVER_CHILD"
	// childAddrEnv is the address to listen on (default 127.0.0.1:0).
	childAddrEnv = "FERRY_SERVER_CHILD_ADDR"
	// childPropsEnv holds broker configs as k=v,k=v.
	childPropsEnv = "FERRY_SERVER_CHILD_PROPS"

	// dialerAddrEnv and dialerCountEnv make the test binary a process
	// holding idle connections to a broker (TestIdleConnections).
	dialerAddrEnv  = "FERRY_TEST_DIALER_ADDR"
	dialerCountEnv = "FERRY_TEST_DIALER_COUNT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(runChildBroker(dir))
	}
	if addr := os.Getenv(dialerAddrEnv); addr != "" {
		n, err := strconv.Atoi(os.Getenv(dialerCountEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(runDialer(addr, n))
	}
	os.Exit(m.Run())
}

// runChildBroker runs a broker on dir, prints its address on stdout once
// it is ready, and serves until it is killed, or until SIGTERM, when it
// shuts down cleanly and returns 0. Log lines go to stderr.
func runChildBroker(dir string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	props := map[string]string{"group.initial.rebalance.delay.ms": "0"}
	if s := os.Getenv(childPropsEnv); s != "" {
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			props[k] = v
		}
	}
	addr := os.Getenv(childAddrEnv)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	// The previous broker on this address may have died a moment ago.
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		logger.Error("child broker: listen", "err", err)
		return 1
	}
	srv, err := New(Config{DataDir: dir, AdvertisedAddr: ln.Addr().String(), Logger: logger, Props: props})
	if err != nil {
		logger.Error("child broker: start", "err", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	closed := make(chan error, 1)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigc
		closed <- srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		logger.Error("child broker: serve", "err", err)
		return 1
	}
	if err := <-closed; err != nil {
		logger.Error("child broker: close", "err", err)
		return 1
	}
	return 0
}
