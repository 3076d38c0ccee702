package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/server"
)

// serveDir starts a broker on dir and returns its address and a func that
// stops it.
func serveDir(t *testing.T, dir string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		DataDir:        dir,
		AdvertisedAddr: ln.Addr().String(),
		Logger:         slog.New(slog.DiscardHandler),
		Props:          map[string]string{"offsets.topic.num.partitions": "1"},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			srv.Close()
			<-served
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestTopicDescribeOffline: a partition the broker could not open at
// start shows as offline in topic describe, beside the online ones.
func TestTopicDescribeOffline(t *testing.T) {
	dir := t.TempDir()
	addr, stop := serveDir(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	stop()
	if err := os.WriteFile(filepath.Join(dir, "orders-1", "partition.metadata"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, _ = serveDir(t, dir)
	b := "-brokers=" + addr
	out := mustFerry(t, "", "topic", "describe", "orders", b)
	contains(t, "describe", out, "STATUS", "online", "offline (KAFKA_STORAGE_ERROR)")
	out = mustFerry(t, "", "topic", "describe", "orders", b, "-o", "json")
	var described []topicDescribed
	if err := json.Unmarshal([]byte(out), &described); err != nil || len(described) != 1 || len(described[0].Partitions) != 2 {
		t.Fatalf("describe json: %v\n%s", err, out)
	}
	if p := described[0].Partitions; p[0].Error != "" || p[1].Error == "" || p[1].Leader != -1 {
		t.Fatalf("describe json: partitions %+v", p)
	}
}
