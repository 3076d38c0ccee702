//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDevCluster is the README's newcomer path: `ferry dev cluster -nodes
// 3` starts three nodes of one cluster; a topic of three replicas takes
// acks=all records, keeps taking them once a node is killed with SIGKILL,
// gets the node back (-restart-after) and loses nothing; SIGTERM stops
// every node.
func TestDevCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes")
	}
	// Below the ephemeral range (32768 up on Linux), so that no
	// connection of another test holds one of the ports.
	base := 20000 + rand.IntN(12000)
	dir := filepath.Join(t.TempDir(), "cluster")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FERRY_RUN_MAIN=dev cluster -nodes 3 -data-dir %s -port %d -controller-port %d -admin-port 0 -restart-after 500ms", dir, base, base+10))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "nodes.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logs // the nodes' log lines, shown if the test fails
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var mu sync.Mutex
	pids := map[int]int{}
	restarted := make(chan int, 10)
	var progress strings.Builder // what the command printed, read by the cleanup once the reader is done
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			progress.Write([]byte(sc.Text() + "\n"))
			// "node 1: pid 1234, Kafka on ..." and "node 1: restarting"
			var node, pid int
			if n, _ := fmt.Sscanf(sc.Text(), "node %d: pid %d,", &node, &pid); n == 2 {
				mu.Lock()
				pids[node] = pid
				mu.Unlock()
			}
			if strings.HasSuffix(sc.Text(), ": restarting") {
				fmt.Sscanf(sc.Text(), "node %d:", &node)
				select {
				case restarted <- node:
				default: // keep reading: the command blocks on a full pipe
				}
			}
		}
	}()
	go func() { <-lines; exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
		if t.Failed() {
			<-lines
			t.Logf("dev cluster printed:\n%s", progress.String())
			b, _ := os.ReadFile(logs.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("nodes' last log lines:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
		logs.Close()
	})

	var seeds []string
	for i := range 3 {
		seeds = append(seeds, "127.0.0.1:"+strconv.Itoa(base+i))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("demo"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }), kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	waitUntil(t, ctx, "three brokers", func() bool {
		m, err := adm.BrokerMetadata(ctx)
		return err == nil && len(m.Brokers) == 3
	})
	waitUntil(t, ctx, "the topic", func() bool {
		r, err := adm.CreateTopic(ctx, 3, 3, map[string]*string{"min.insync.replicas": ptrTo("2")}, "demo")
		return err == nil && r.Err == nil || r.Err != nil && strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS")
	})
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	produce(0, 300)
	mu.Lock()
	victim := pids[0]
	mu.Unlock()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	produce(300, 600) // through the new leaders
	select {
	case n := <-restarted:
		if n != 0 {
			t.Fatalf("node %d restarted, not node 0", n)
		}
	case <-ctx.Done():
		t.Fatal("node 0 was not restarted")
	}
	waitUntil(t, ctx, "node 0 back in every ISR", func() bool {
		td, err := adm.ListTopics(ctx, "demo")
		if err != nil {
			return false
		}
		for _, p := range td["demo"].Partitions {
			if len(p.ISR) != 3 {
				return false
			}
		}
		return true
	})
	produce(600, 900)
	seen := map[string]bool{}
	rd, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("demo"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for len(seen) < 900 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != 900 {
		t.Fatalf("read back %d of 900 records", len(seen))
	}
	// SIGTERM stops the nodes and then the command.
	cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("dev cluster exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev cluster did not stop on SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	for node, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("node %d (pid %d) still runs", node, pid)
		}
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestDevClusterRolesFlags: -controller-only needs broker-only nodes, and
// -brokers is bounded; both are refused before anything starts.
func TestDevClusterRolesFlags(t *testing.T) {
	for _, args := range [][]string{{"-controller-only"}, {"-brokers", "-1"}, {"-brokers", "101"}} {
		var out, errOut strings.Builder
		if err := runDevCluster(context.Background(), append(args, "-data-dir", t.TempDir()), &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
