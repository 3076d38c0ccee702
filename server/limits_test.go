package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestRequestBudget: small requests use the whole budget, large ones all
// but the reserve; each class is served in arrival order; a waiter that
// gives up holds nothing.
func TestRequestBudget(t *testing.T) {
	const mib = 1 << 20
	if _, err := newRequestBudget(100*mib, 100*mib); err == nil {
		t.Fatal("a budget that cannot hold the largest request plus the reserve was accepted")
	}
	b, err := newRequestBudget(64*mib, 50*mib) // reserve 8 MiB, large ones up to 56 MiB
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	acquired := func(n int64) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- b.acquire(ctx, n) }()
		return ch
	}
	waiting := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			t.Fatalf("%s: acquired (%v), want it waiting", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	done := func(ch <-chan error, what string) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still waiting", what)
		}
	}
	done(acquired(50*mib), "first large request")
	large := acquired(10 * mib) // 60 MiB of large ones is over 56
	waiting(large, "second large request")
	// Small ones still fit, into the reserve and the rest.
	for i := range 14 {
		done(acquired(mib), fmt.Sprintf("small request %d", i))
	}
	if got := b.held(); got != 64*mib {
		t.Fatalf("held %d MiB, want 64", got/mib)
	}
	small := acquired(mib) // the whole budget is in use
	waiting(small, "small request over the budget")

	// A waiter that gives up takes nothing and does not block the line.
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- b.acquire(cctx, 20*mib) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}

	b.release(mib)
	done(small, "small request after a release")
	b.release(50 * mib)
	done(large, "second large request after the first is released")
	for range 14 {
		b.release(mib)
	}
	b.release(10 * mib)
	if got := b.held(); got != 0 {
		t.Fatalf("held %d bytes after every release", got)
	}

	// No bound: nothing waits.
	free, _ := newRequestBudget(-1, 100*mib)
	if err := free.acquire(ctx, 1<<40); err != nil {
		t.Fatal(err)
	}
}

// rssAnon returns the process's resident anonymous memory, from
// /proc/self/status, or -1 where there is none.
func rssAnon() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return -1
}

// memoryPeak samples the heap and resident anonymous memory until stop.
type memoryPeak struct {
	heap, rss atomic.Int64
	stop      chan struct{}
	done      chan struct{}
}

func watchMemory() *memoryPeak {
	m := &memoryPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if h := int64(ms.HeapAlloc); h > m.heap.Load() {
				m.heap.Store(h)
			}
			if r := rssAnon(); r > m.rss.Load() {
				m.rss.Store(r)
			}
			select {
			case <-m.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *memoryPeak) end() (heap, rss int64) {
	close(m.stop)
	<-m.done
	return m.heap.Load(), m.rss.Load()
}

// TestRequestMemoryBound: hundreds of connections each announce a
// request of socket.request.max.bytes (100 MiB) and send 2 MiB of it. The
// broker's memory stays within its request budget, and a producer and a
// consumer are served meanwhile. Once the connections go, the budget is
// all given back.
func TestRequestMemoryBound(t *testing.T) {
	const (
		budget   = 128 << 20
		conns    = 200
		announce = 100 << 20
		send     = 2 << 20
	)
	b := startBroker(t, map[string]string{"queued.max.request.bytes": strconv.Itoa(budget)})
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "bound"); err != nil {
		t.Fatal(err)
	}
	prod := b.client(kgo.DefaultProduceTopic("bound"))
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore, rssBefore := int64(ms.HeapAlloc), rssAnon()
	peak := watchMemory()

	// Each attacker: a produce request header claiming 100 MiB, then 2 MiB
	// of its body, written until the broker stops reading.
	junk := make([]byte, send)
	var wg sync.WaitGroup
	attackers := make([]net.Conn, conns)
	for i := range attackers {
		c, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		attackers[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			hdr := binary.BigEndian.AppendUint32(nil, announce)
			hdr = append(hdr, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0) // Produce v9, corr 1, client id ""
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write(hdr); err == nil {
				c.Write(junk)
			}
		}()
	}
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	wg.Wait()
	budgetHeld := func() int64 { return b.srv.limits.budget.held() }
	if held := budgetHeld(); held < announce {
		t.Fatalf("request budget holds %d bytes with %d requests of 100 MiB arriving, want at least one", held, conns)
	}

	// Others are served meanwhile.
	start := time.Now()
	want := 200
	for i := range want {
		prod.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "during-%d", i)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := consumeFrom(t, b.addr, "bound", 0, kgo.NewOffset().At(0), want+1)
	if string(got[want].Value) != fmt.Sprintf("during-%d", want-1) {
		t.Fatalf("last record read %q", got[want].Value)
	}
	t.Logf("%d records produced and consumed in %v while %d connections hold 100 MiB requests", want, time.Since(start).Round(time.Millisecond), conns)

	heapPeak, rssPeak := peak.end()
	held := budgetHeld()
	t.Logf("budget %d MiB, held %d MiB; heap peak +%d MiB, anonymous memory peak +%d MiB", budget>>20, held>>20, (heapPeak-heapBefore)>>20, (rssPeak-rssBefore)>>20)
	if held > budget {
		t.Errorf("the request budget holds %d bytes, over its %d", held, budget)
	}
	const slack = 64 << 20 // clients, buffers, the race detector
	if heapPeak-heapBefore > budget+slack {
		t.Errorf("heap grew by %d MiB, want at most the budget (%d MiB) and %d MiB", (heapPeak-heapBefore)>>20, budget>>20, slack>>20)
	}
	if rssBefore >= 0 && rssPeak-rssBefore > budget+slack {
		t.Errorf("anonymous memory grew by %d MiB, want at most the budget (%d MiB) and %d MiB", (rssPeak-rssBefore)>>20, budget>>20, slack>>20)
	}

	closed := time.Now()
	for _, c := range attackers {
		c.Close()
	}
	defer func() {
		t.Logf("budget all given back %v after the connections closed", time.Since(closed).Round(time.Millisecond))
	}()
	// Each waiting reader in turn gets the budget, reads what was sent
	// and finds the connection closed.
	for deadline := time.Now().Add(90 * time.Second); budgetHeld() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the request budget still holds %d bytes 90s after the connections closed\n%s", budgetHeld(), goroutineSummary())
		}
	}
}

// TestInflightBytes: a client that sends many fetch requests and reads no
// answer gets no more read once the responses waiting for it pass
// maxInflightBytes; once it reads, every request is answered in order.
func TestInflightBytes(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "big"); err != nil {
		t.Fatal(err)
	}
	// 8 MiB of records, fetched whole by every request.
	cl := b.client(kgo.DefaultProduceTopic("big"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 512<<10)
	for range 16 {
		cl.Produce(ctx, &kgo.Record{Value: value}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 11
	fetch.MaxWaitMillis, fetch.MaxBytes, fetch.SessionEpoch = 0, 16<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "big"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 16 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	const requests = 40
	nc := dialRaw(t, b.addr)
	// A small receive buffer, so that little sits in the kernel.
	nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	var frames []byte
	for i := range requests {
		frames = append(frames, requestFrame(fetch, int32(i))...)
	}
	writeAll(t, nc, frames)

	var c *conn
	for deadline := time.Now().Add(10 * time.Second); c == nil; time.Sleep(10 * time.Millisecond) {
		b.srv.mu.Lock()
		for x := range b.srv.mu.conns {
			if x.remote == nc.LocalAddr().String() {
				c = x
			}
		}
		b.srv.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the broker does not know the connection")
		}
	}
	// Let the broker read what it will.
	var maxOut int64
	for range 50 {
		maxOut = max(maxOut, c.outstanding.Load())
		time.Sleep(20 * time.Millisecond)
	}
	inflight := c.inflight.Load()
	t.Logf("%d of %d fetch requests of 8 MiB read while none is read back; %d MiB in flight", maxOut, requests, inflight>>20)
	// 64 MiB holds eight responses; the kernel's buffers take one or two.
	if maxOut > requests/2 {
		t.Errorf("%d requests in flight, want about %d (%d MiB of responses)", maxOut, maxInflightBytes/(8<<20), maxInflightBytes>>20)
	}
	if inflight > maxInflightBytes+(9<<20) {
		t.Errorf("%d bytes in flight, want at most %d and one response", inflight, maxInflightBytes)
	}

	br := bufio.NewReaderSize(nc, 1<<20)
	for i := range requests {
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(br, size[:]); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if corr := int32(binary.BigEndian.Uint32(body)); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
		if len(body) < 8<<20 {
			t.Fatalf("response %d holds %d bytes, want the 8 MiB", i, len(body))
		}
	}
}

// TestConnectionLimits: max.connections.per.ip, its overrides and
// max.connections refuse connections past them by closing them; a
// connection that goes makes room for another.
func TestConnectionLimits(t *testing.T) {
	works := func(t *testing.T, nc net.Conn) {
		t.Helper()
		req := kmsg.NewPtrApiVersionsRequest()
		req.SetVersion(0)
		if _, err := rawRoundTrip(nc, 1, req); err != nil {
			t.Fatalf("connection within the limits not served: %v", err)
		}
	}
	for _, tc := range []struct {
		name  string
		props map[string]string
		allow int
	}{
		{"per-ip", map[string]string{"max.connections.per.ip": "3"}, 3},
		{"override", map[string]string{"max.connections.per.ip": "1", "max.connections.per.ip.overrides": "localhost:9,127.0.0.1:4"}, 4},
		{"total", map[string]string{"max.connections": "2"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, tc.props)
			var conns []net.Conn
			for range tc.allow {
				nc := dialRaw(t, b.addr)
				works(t, nc)
				conns = append(conns, nc)
			}
			expectClosed(t, dialRaw(t, b.addr))
			conns[0].Close()
			// The broker sees the close, then has room again.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				nc := dialRaw(t, b.addr)
				req := kmsg.NewPtrApiVersionsRequest()
				req.SetVersion(0)
				if _, err := rawRoundTrip(nc, 1, req); err == nil {
					break
				}
				nc.Close()
				if time.Now().After(deadline) {
					t.Fatal("no connection accepted 10s after one closed")
				}
			}
		})
	}
	t.Run("bad overrides", func(t *testing.T) {
		for _, v := range []string{"127.0.0.1", "127.0.0.1:x", "127.0.0.1:-1"} {
			if _, err := New(Config{DataDir: t.TempDir(), Props: map[string]string{"max.connections.per.ip.overrides": v}}); err == nil {
				t.Errorf("max.connections.per.ip.overrides=%q accepted", v)
			}
		}
	})
}
