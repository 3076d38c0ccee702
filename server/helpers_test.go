package server

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testBroker is a broker started in-process on 127.0.0.1:0.
type testBroker struct {
	t    testing.TB
	srv  *Server
	addr string
	dir  string
	done chan error
}

// startBroker starts a broker on a fresh data directory (or dir, when
// given) and stops it when the test ends.
func startBroker(t testing.TB, props map[string]string, dir ...string) *testBroker {
	t.Helper()
	d := ""
	if len(dir) > 0 {
		d = dir[0]
	} else {
		d = t.TempDir()
	}
	return startBrokerConfig(t, Config{DataDir: d, Props: props})
}

// startBrokerConfig starts a broker with cfg on 127.0.0.1:0 (its
// advertised address filled in, and its logger unless cfg has one) and
// stops it when the test ends.
func startBrokerConfig(t testing.TB, cfg Config) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	props := cfg.Props
	if props == nil {
		props = map[string]string{}
	}
	if _, ok := props["group.initial.rebalance.delay.ms"]; !ok {
		props["group.initial.rebalance.delay.ms"] = "0"
	}
	level := slog.LevelWarn
	if os.Getenv("FERRY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	cfg.Props = props
	cfg.AdvertisedAddr = ln.Addr().String()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	srv, err := New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	b := &testBroker{t: t, srv: srv, addr: ln.Addr().String(), dir: cfg.DataDir, done: make(chan error, 1)}
	go func() { b.done <- srv.Serve(ln) }()
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) stop() {
	if b.srv == nil {
		return
	}
	if err := b.srv.Close(); err != nil {
		b.t.Errorf("close broker: %v", err)
	}
	select {
	case err := <-b.done:
		if err != ErrServerClosed {
			b.t.Errorf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		b.t.Error("Serve did not return after Close")
	}
	b.srv = nil
}

func (b *testBroker) client(opts ...kgo.Opt) *kgo.Client {
	b.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)
	c, err := kgo.NewClient(opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(c.Close)
	return c
}

func (b *testBroker) admin() *kadm.Client {
	return kadm.NewClient(b.client())
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
