package peer_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/peer"
	"github.com/ferrymq/ferry/server"
)

// startBroker runs a real broker on 127.0.0.1 for the test.
func startBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: t.TempDir(), AdvertisedAddr: ln.Addr().String()})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestPool sends requests from many goroutines through one pool to a real
// broker, flexible and not, and checks that a done context and a closed
// pool end requests with their errors.
func TestPool(t *testing.T) {
	addr := startBroker(t)
	pool := peer.NewPool(peer.Dialer{ClientID: "peer-test"}, 5*time.Second)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				req := kmsg.NewPtrApiVersionsRequest()
				req.Version = int16(i % 4) // v3+ is flexible
				req.ClientSoftwareName, req.ClientSoftwareVersion = "peer", "1"
				resp, err := pool.Request(ctx, addr, req)
				if err != nil {
					t.Error(err)
					return
				}
				if r := resp.(*kmsg.ApiVersionsResponse); r.ErrorCode != 0 || len(r.ApiKeys) == 0 {
					t.Errorf("ApiVersions v%d: code %d, %d keys", req.Version, r.ErrorCode, len(r.ApiKeys))
					return
				}
			}
		})
	}
	wg.Wait()

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := pool.Request(cctx, addr, kmsg.NewPtrApiVersionsRequest()); !errors.Is(err, context.Canceled) {
		t.Fatalf("request with a canceled context: %v", err)
	}
	// A fetch that waits long: the context's deadline ends it.
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 4
	fetch.MaxWaitMillis = 10000
	fetch.MinBytes = 1
	dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer dcancel()
	start := time.Now()
	if _, err := pool.Request(dctx, addr, fetch); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("request past its deadline: %v after %v", err, time.Since(start))
	}
	pool.Close()
	if _, err := pool.Request(ctx, addr, kmsg.NewPtrApiVersionsRequest()); !errors.Is(err, peer.ErrClosed) {
		t.Fatalf("request after Close: %v", err)
	}
	if _, err := pool.Request(ctx, "127.0.0.1:1", kmsg.NewPtrApiVersionsRequest()); err == nil {
		t.Fatal("request to nothing succeeded")
	}
}
