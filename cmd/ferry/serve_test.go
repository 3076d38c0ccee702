package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMain lets the test binary run the real main (signals and all) when
// FERRY_RUN_MAIN is set, so tests can start `ferry serve` as a child
// process without building the binary.
func TestMain(m *testing.M) {
	if args := os.Getenv("FERRY_RUN_MAIN"); args != "" {
		os.Args = append([]string{"ferry"}, strings.Fields(args)...)
		main()
		return
	}
	os.Exit(m.Run())
}

// startServeChild starts `ferry serve` on dir in a child process and
// returns it and its address.
func startServeChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FERRY_RUN_MAIN=serve -listen 127.0.0.1:0 -data-dir "+dir+" -log-level warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v", err)
	}
	// "ferry listening on ADDR (data in DIR)"
	f := strings.Fields(line)
	if len(f) < 4 || f[1] != "listening" {
		t.Fatalf("unexpected first line %q", line)
	}
	return cmd, f[3]
}

// TestServeSIGTERM produces with acks=all, stops the broker with SIGTERM
// (exit 0, clean-shutdown marker written), starts it again and reads
// everything back.
func TestServeSIGTERM(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd, addr := startServeChild(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("sigterm"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ferry serve exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ferry serve did not exit after SIGTERM")
	}
	cp, err := os.ReadFile(filepath.Join(dir, "sigterm-0", "log.checkpoint"))
	if err != nil || len(cp) < 2 || cp[1] != 1 {
		t.Fatalf("no clean-shutdown marker in log.checkpoint: %v %x", err, cp)
	}

	_, addr = startServeChild(t, dir)
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("sigterm"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	next := 0
	for next < n {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != fmt.Sprint(next) {
				t.Fatalf("record %d holds %q", next, r.Value)
			}
			next++
		})
	}
}

// TestServeSecondSignal checks that a second SIGTERM during a shutdown that
// is waiting on a request in flight exits at once (status 1). The request
// in flight is a Fetch of ~40 MB sent on a connection that never reads, so
// its answer cannot be written and the first shutdown waits for it.
func TestServeSecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: produces 40 MB")
	}
	dir := filepath.Join(t.TempDir(), "data")
	cmd, addr := startServeChild(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("stuck"), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 100<<10)
	for i := 0; i < 400; i++ {
		cl.Produce(ctx, &kgo.Record{Value: val}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// A client that asks for everything and never reads the answer.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(4)
	fetch.MaxBytes = 64 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "stuck"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 64 << 20
	ft.Partitions = []kmsg.FetchRequestTopicPartition{fp}
	fetch.Topics = []kmsg.FetchRequestTopic{ft}
	frame := []byte{0, 0, 0, 0, 0, 1, 0, 4, 0, 0, 0, 1, 0xff, 0xff}
	frame = fetch.AppendTo(frame)
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the answer fills the socket buffers

	done := make(chan error, 1)
	cmd.Process.Signal(syscall.SIGTERM)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("first SIGTERM exited (%v) while a request was in flight", err)
	case <-time.After(time.Second):
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("second SIGTERM: exit %v, want status 1", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("second SIGTERM took %v to exit", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second SIGTERM did not exit")
	}
}
