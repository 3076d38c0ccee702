package server

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestReady follows a broker from New through Serve to Close: not serving,
// ready, closed.
func TestReady(t *testing.T) {
	srv, err := New(Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Ready(); !errors.Is(err, ErrNotServing) {
		t.Fatalf("Ready before Serve = %v, want %v", err, ErrNotServing)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ready after Serve = %v", srv.Ready())
		}
		time.Sleep(time.Millisecond)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := srv.Ready(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Ready after Close = %v, want %v", err, ErrServerClosed)
	}
}
