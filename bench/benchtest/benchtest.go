// Package benchtest starts brokers for the tests of bench and cmd/ferry:
// an in-process Ferry server on 127.0.0.1:0 and, for comparisons, an
// in-process kfake cluster (github.com/twmb/franz-go/pkg/kfake, the
// in-memory Kafka of franz-go).
//
// It is imported only by tests, so kfake never becomes part of the ferry
// binary. Every broker it starts is closed by t.Cleanup.
//
//	addr := benchtest.StartBroker(t) // Ferry, or kfake while the server cannot start
package benchtest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/bench"
	"github.com/ferrymq/ferry/server"
)

// TestProps are the broker configs StartBroker uses: Kafka's defaults except
// that a new consumer group does not wait 3s for more members.
var TestProps = map[string]string{"group.initial.rebalance.delay.ms": "0"}

// StartBroker starts an in-process Ferry broker on 127.0.0.1:0 with its data
// in t.TempDir() and TestProps, and returns its address. While server.New
// still fails (the server is being written), it starts a kfake cluster
// instead and says so in the test log.
func StartBroker(t testing.TB) string {
	t.Helper()
	addr, err := StartFerry(t, TestProps)
	if err == nil {
		return addr
	}
	fallbackOnce.Do(func() { fallbackErr = err })
	t.Logf("benchtest: Ferry server unavailable (%v); using kfake", fallbackErr)
	return StartKfake(t)
}

var (
	fallbackOnce sync.Once
	fallbackErr  error
)

// StartFerry starts an in-process Ferry broker on 127.0.0.1:0 with the given
// broker configs (Kafka names) and returns its address, or the error of
// server.New.
func StartFerry(t testing.TB, props map[string]string) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("benchtest: listen: %v", err)
	}
	srv, err := server.New(server.Config{
		DataDir:        t.TempDir(),
		AdvertisedAddr: ln.Addr().String(),
		Logger:         slog.New(slog.DiscardHandler),
		Props:          props,
	})
	if err != nil {
		ln.Close()
		return "", err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		<-served
	})
	return ln.Addr().String(), nil
}

// groupKeys are the API keys a classic consumer group needs: OffsetCommit,
// OffsetFetch, FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
// DescribeGroups, ListGroups, DeleteGroups.
var groupKeys = []int16{8, 9, 10, 11, 12, 13, 14, 15, 16, 42}

// SupportsGroups reports whether the broker at addr advertises every API a
// consumer group needs. Tests of group features skip while it does not
// (the Ferry server gains groups in its own step).
func SupportsGroups(t testing.TB, addr string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatalf("benchtest: client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("benchtest: ApiVersions from %s: %v", addr, err)
	}
	have := map[int16]bool{}
	for _, k := range resp.ApiKeys {
		have[k.ApiKey] = true
	}
	for _, k := range groupKeys {
		if !have[k] {
			return false
		}
	}
	return true
}

// RequireGroups skips the test unless the broker at addr supports consumer
// groups.
func RequireGroups(t testing.TB, addr string) {
	t.Helper()
	if !SupportsGroups(t, addr) {
		t.Skipf("broker %s does not advertise the consumer-group APIs yet", addr)
	}
}

// StartKfake starts a one-broker kfake cluster on 127.0.0.1:0 that creates
// topics on first use, and returns its address.
func StartKfake(t testing.TB, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(0),
		kfake.AllowAutoTopicCreation(),
	}, opts...)...)
	if err != nil {
		t.Fatalf("benchtest: kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// StartNullBroker starts a bench.NullBroker (acknowledges produce requests
// and stores nothing) on 127.0.0.1:0 and returns its address.
func StartNullBroker(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("benchtest: listen: %v", err)
	}
	nb, err := bench.StartNullBroker(ln, bench.NullBrokerConfig{})
	if err != nil {
		t.Fatalf("benchtest: null broker: %v", err)
	}
	t.Cleanup(func() { nb.Close() })
	return nb.Addr()
}
