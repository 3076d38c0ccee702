// Package benchpeers starts, for the tests of bench and cmd/ferry, the
// brokers Ferry is measured against: a kfake cluster
// (github.com/twmb/franz-go/pkg/kfake, franz-go's in-memory Kafka), in
// memory only or fsyncing every batch to a data directory, and bench's null
// broker, which acknowledges produce requests and stores nothing. A test
// starts Ferry itself with ferrytest.Start; nothing here stands in for it.
// The command kfakeserve below runs kfake as a process of its own, for
// comparisons run by hand.
//
// It is imported only by tests, so kfake never becomes part of the ferry
// binary. Every broker it starts is closed by t.Cleanup.
//
//	kfake := benchpeers.StartKfakeSync(t)
//	sink := benchpeers.StartNullBroker(t)
package benchpeers

import (
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferrymq/ferry/bench"
)

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
		t.Fatalf("benchpeers: kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// StartKfakeSync starts a kfake cluster as StartKfake does that also keeps
// its data in a temporary directory and fsyncs every produced batch before
// answering (kfake.DataDir, kfake.SyncWrites): the peer with Ferry's
// durability.
func StartKfakeSync(t testing.TB, opts ...kfake.Opt) string {
	t.Helper()
	return StartKfake(t, append([]kfake.Opt{kfake.DataDir(t.TempDir()), kfake.SyncWrites()}, opts...)...)
}

// StartNullBroker starts a bench.NullBroker on 127.0.0.1:0 and returns its
// address.
func StartNullBroker(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("benchpeers: listen: %v", err)
	}
	nb, err := bench.StartNullBroker(ln, bench.NullBrokerConfig{})
	if err != nil {
		t.Fatalf("benchpeers: null broker: %v", err)
	}
	t.Cleanup(func() { nb.Close() })
	return nb.Addr()
}
