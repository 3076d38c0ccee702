package server

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdleConnectionClosed checks connections.max.idle.ms: a connection
// that sends nothing is closed by the broker, one that keeps talking is not.
func TestIdleConnectionClosed(t *testing.T) {
	b := startBroker(t, map[string]string{"connections.max.idle.ms": "300"})
	idle, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	busy, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	start := time.Now()
	for i := int32(1); i <= 6; i++ {
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(0)
		if _, err := rawRoundTrip(busy, i, req); err != nil {
			t.Fatalf("busy connection closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	var one [1]byte
	_, err = idle.Read(one[:])
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection read = %v, want EOF (closed by the broker)", err)
	}
}
