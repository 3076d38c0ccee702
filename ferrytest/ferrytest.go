package ferrytest

import (
	"errors"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/server"
)

// Option configures Start.
type Option func(*options)

type options struct {
	props  map[string]string
	dir    string
	listen string
	logger *slog.Logger
}

// Props sets broker configs by their Kafka names (num.partitions,
// log.retention.ms, ...), on top of the defaults. It may be given more
// than once. With node.id and controller.quorum.voters the broker is a
// node of a cluster.
func Props(props map[string]string) Option {
	return func(o *options) { maps.Copy(o.props, props) }
}

// DataDir puts the broker's data in dir instead of a new t.TempDir(), for
// instance the DataDir of a broker closed before.
func DataDir(dir string) Option {
	return func(o *options) { o.dir = dir }
}

// ListenAddr listens on addr (host:port) instead of 127.0.0.1:0, for
// instance the Addr of a broker closed before, so that clients find the
// restarted broker where they left it.
func ListenAddr(addr string) Option {
	return func(o *options) { o.listen = addr }
}

// Logger sends the broker's log lines to l.
func Logger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Broker is a Ferry broker running in the test's process.
type Broker struct {
	srv    *server.Server
	addr   string
	dir    string
	served chan error // Serve's result

	closeOnce sync.Once
	closeErr  error
}

// Start starts a broker and stops it when the test ends (t.Cleanup). It
// fails the test if the broker cannot start.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	o := options{
		props:  map[string]string{"group.initial.rebalance.delay.ms": "0"},
		listen: "127.0.0.1:0",
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	ln, err := listen(o.listen)
	if err != nil {
		t.Fatalf("ferrytest: %v", err)
	}
	// node.id, for a node of a cluster (controller.quorum.voters), as
	// `ferry serve` reads it.
	var nodeID int32
	if v, ok := o.props["node.id"]; ok {
		id, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			ln.Close()
			t.Fatalf("ferrytest: node.id %q: %v", v, err)
		}
		nodeID = int32(id)
	}
	srv, err := server.New(server.Config{
		DataDir:        o.dir,
		NodeID:         nodeID,
		AdvertisedAddr: ln.Addr().String(),
		Logger:         o.logger,
		Props:          o.props,
	})
	if err != nil {
		ln.Close()
		t.Fatalf("ferrytest: %v", err)
	}
	b := &Broker{srv: srv, addr: ln.Addr().String(), dir: o.dir, served: make(chan error, 1)}
	go func() { b.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("ferrytest: %v", err)
		}
	})
	return b
}

// listen listens on addr, retrying briefly while a fixed port is still
// in use (by a broker closed a moment ago).
func listen(addr string) (net.Listener, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ln, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return ln, err
		}
	}
}

// Addr is the broker's host:port, for kgo.SeedBrokers and other clients.
func (b *Broker) Addr() string { return b.addr }

// DataDir is the directory holding the broker's data.
func (b *Broker) DataDir() string { return b.dir }

// Close stops the broker: requests in flight are answered, connections
// closed and every log closed cleanly. It is idempotent and also runs when
// the test ends.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closeErr = b.srv.Close()
		select {
		case err := <-b.served:
			if !errors.Is(err, server.ErrServerClosed) {
				b.closeErr = errors.Join(b.closeErr, err)
			}
		case <-time.After(30 * time.Second):
			b.closeErr = errors.Join(b.closeErr, errors.New("Serve did not return after Close"))
		}
	})
	return b.closeErr
}
