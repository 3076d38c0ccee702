package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startAdmin serves s on 127.0.0.1:0 and shuts it down when the test ends,
// checking that Serve returned.
func startAdmin(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v, want %v", err, ErrServerClosed)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady atomic.Pointer[error]
	base := startAdmin(t, Config{Ready: func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}})
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	errDown := errors.New("storage closed")
	notReady.Store(&errDown)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || body != "not ready: storage closed\n" {
		t.Fatalf("/readyz when not ready = %d %q", code, body)
	}
	// Liveness does not depend on readiness.
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz when not ready = %d", code)
	}
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Fatalf("/nothing = %d, want 404", code)
	}
}

// TestMetrics checks the runtime and process collectors and that a
// collector registered later (as the broker's will be) is exposed.
func TestMetrics(t *testing.T) {
	reg := NewRegistry()
	base := startAdmin(t, Config{Registry: reg})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Add(3)
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"go_goroutines ",
		"go_memstats_heap_alloc_bytes ",
		"process_resident_memory_bytes ",
		"process_open_fds ",
		"go_build_info{",
		"ferry_test_total 3",
		"promhttp_metric_handler_requests_total{code=\"200\"}",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestMountedHandler checks that the console's handler gets every other
// path while the listener keeps its own.
func TestMountedHandler(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "console "+r.URL.Path) })
	base := startAdmin(t, Config{Handler: h})
	if _, body := get(t, base+"/"); body != "console /" {
		t.Fatalf("/ = %q", body)
	}
	if _, body := get(t, base+"/api/cluster"); body != "console /api/cluster" {
		t.Fatalf("/api/cluster = %q", body)
	}
	if _, body := get(t, base+"/healthz"); body != "ok\n" {
		t.Fatalf("/healthz = %q", body)
	}
}

// TestShutdownWaitsForRequests: Shutdown lets a request in flight finish.
func TestShutdownWaitsForRequests(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Handler: h})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if body := <-got; body != "done" {
		t.Fatalf("request in flight got %q", body)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
}
