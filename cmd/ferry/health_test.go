package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/admin"
)

// serveInProcess runs `ferry serve` with args in this process and returns
// the admin listener's address, read from what it prints, and a function
// that stops it (as SIGTERM does) and returns its exit code.
func serveInProcess(t *testing.T, args ...string) (adminAddr string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		c := run(ctx, append([]string{"serve"}, args...), pw, io.Discard)
		pw.Close()
		code <- c
	}()
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "ferry admin listening on "); ok {
			adminAddr = a
			break
		}
	}
	if adminAddr == "" {
		cancel()
		t.Fatalf("serve printed no admin address (exit %d)", <-code)
	}
	go io.Copy(io.Discard, pr)
	stopped := false
	var exit int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			select {
			case exit = <-code:
			case <-time.After(30 * time.Second):
				t.Fatal("serve did not return after its context was cancelled")
			}
		}
		return exit
	}
	t.Cleanup(func() { stop() })
	return adminAddr, stop
}

// TestServeAdminListener starts `ferry serve -admin-listen`, reads its
// metrics (the broker's among them) and health with `ferry health`, loads the console, and stops
// it: the admin listener goes with it.
func TestServeAdminListener(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	base, stop := serveInProcess(t, "-listen", "127.0.0.1:0", "-data-dir", dir, "-log-level", "warn", "-admin-listen", "127.0.0.1:0")
	out := mustFerry(t, "", "health", "-admin", base)
	contains(t, "health", out, "live", "ready", "ok")
	out = mustFerry(t, "", "health", "-admin", strings.TrimPrefix(base, "http://"), "-o", "json")
	var checks []healthCheck
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		t.Fatalf("health -o json: %v\n%s", err, out)
	}
	if len(checks) != 2 || !checks[0].OK || !checks[1].OK || checks[1].Detail != "ready" {
		t.Fatalf("health -o json = %+v", checks)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The runtime's metrics and the broker's (the ones that exist before
	// any client connects).
	contains(t, "/metrics", string(b), "go_goroutines ", "process_open_fds ", "go_build_info{",
		`ferry_kafka_topic_partitions{topic="__consumer_offsets"} 50`, "ferry_kafka_offline_partitions 0",
		"ferry_storage_fsync_latency_seconds_count ", "ferry_kafka_request_memory_limit_bytes 2.68435456e+08")

	// The web console is on the same listener and talks to the broker.
	resp, err = http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	contains(t, "console page", string(b), "<title>Ferry</title>")
	resp, err = http.Get(base + "/api/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var cluster struct {
		ClusterID      string `json:"cluster_id"`
		InternalTopics int    `json:"internal_topics"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cluster)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || cluster.ClusterID == "" || cluster.InternalTopics != 2 {
		t.Fatalf("/api/cluster: %d %v %+v", resp.StatusCode, err, cluster)
	}

	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	out, _, code := ferry(t, "", "health", "-admin", base, "-timeout", "2s")
	if code != 1 {
		t.Fatalf("health after stop: exit %d, want 1\n%s", code, out)
	}
	contains(t, "health after stop", out, "live", "failed", "connection refused")
}

// TestHealthNotReady: a broker that answers /healthz but not /readyz makes
// `ferry health` fail with the reason, and -live passes.
func TestHealthNotReady(t *testing.T) {
	adm := admin.New(admin.Config{Ready: func() error { return errors.New("server: closed") }})
	hs := httptest.NewServer(adm.Handler())
	defer hs.Close()
	out, errOut, code := ferry(t, "", "health", "-admin", hs.URL)
	if code != 1 {
		t.Fatalf("health: exit %d, want 1\n%s", code, out)
	}
	contains(t, "health", out, "ready", "failed", "not ready: server: closed")
	contains(t, "health stderr", errOut, "ready failed")
	mustFerry(t, "", "health", "-admin", hs.URL, "-live")
}
