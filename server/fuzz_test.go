package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// panicWatch collects the log lines in which the broker reports a
// recovered panic.
type panicWatch struct {
	mu     sync.Mutex
	panics []string
}

// take returns and forgets what was collected.
func (w *panicWatch) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.Join(w.panics, "\n")
	w.panics = nil
	return s
}

// panicHandler is a slog.Handler that hands every record to next and
// keeps those that mention a panic.
type panicHandler struct {
	w     *panicWatch
	attrs []slog.Attr
	next  slog.Handler
}

func (h panicHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h panicHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(strings.ToLower(r.Message), "panic") {
		var b strings.Builder
		b.WriteString(r.Message)
		add := func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		}
		for _, a := range h.attrs {
			add(a)
		}
		r.Attrs(add)
		h.w.mu.Lock()
		h.w.panics = append(h.w.panics, b.String())
		h.w.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h panicHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return panicHandler{w: h.w, attrs: append(slices.Clip(h.attrs), attrs...), next: h.next.WithAttrs(attrs)}
}

func (h panicHandler) WithGroup(name string) slog.Handler {
	return panicHandler{w: h.w, attrs: h.attrs, next: h.next.WithGroup(name)}
}

// FuzzRequest sends arbitrary bytes as the body of one request frame to a
// running broker (one per fuzz worker). Whatever the bytes, the broker
// must not panic (not even a recovered one in a handler) and must still
// answer ApiVersions on another connection afterwards. Run it with
//
//	go test -run '^$' -fuzz '^FuzzRequest$' -fuzzminimizetime 5s ./server
//
// (minimizing each new input for the default minute stalls the run).
func FuzzRequest(f *testing.F) {
	watch := &panicWatch{}
	next := slog.Handler(slog.DiscardHandler)
	if os.Getenv("FERRY_TEST_LOG") != "" {
		next = slog.NewTextHandler(os.Stderr, nil)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Config{
		DataDir: f.TempDir(),
		Logger:  slog.New(panicHandler{w: watch, next: next}),
		Props: map[string]string{
			"socket.request.max.bytes":         "1048576",
			"group.initial.rebalance.delay.ms": "0",
		},
	})
	if err != nil {
		ln.Close()
		f.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	f.Cleanup(func() {
		srv.Close()
		<-served
	})
	addr := ln.Addr().String()

	// The control connection, on which ApiVersions must keep working.
	var control net.Conn
	var corr int32
	ping := func() error {
		for attempt := 0; ; attempt++ {
			if control == nil {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return err
				}
				control = c
			}
			corr++
			req := kmsg.NewPtrApiVersionsRequest()
			control.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := control.Write(requestFrame(req, corr))
			var resp []byte
			if err == nil {
				resp, err = readFrame(control, 1<<20)
			}
			if err == nil {
				if got := int32(binary.BigEndian.Uint32(resp)); got != corr {
					return fmt.Errorf("ApiVersions answer has correlation id %d, want %d", got, corr)
				}
				v := kmsg.NewPtrApiVersionsResponse()
				v.Version = 0
				if err := v.ReadFrom(resp[4:]); err != nil || v.ErrorCode != 0 || len(v.ApiKeys) == 0 {
					return fmt.Errorf("ApiVersions answer: error %d, %d keys, %v", v.ErrorCode, len(v.ApiKeys), err)
				}
				return nil
			}
			control.Close()
			control = nil
			if attempt > 0 {
				return fmt.Errorf("ApiVersions on a new connection: %w", err)
			}
		}
	}
	f.Cleanup(func() {
		if control != nil {
			control.Close()
		}
	})
	if err := ping(); err != nil {
		f.Fatal(err)
	}

	// Seeds: every API the broker serves at its lowest and highest
	// version, with zero values, plus a few real requests and garbage.
	keys := make([]int16, 0, len(handlers))
	for k := range handlers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		h := handlerFor(k)
		for _, v := range []int16{h.min, h.max} {
			req := kmsg.RequestForKey(k)
			req.SetVersion(v)
			f.Add(requestFrame(req, 1)[4:])
		}
	}
	create := kmsg.NewPtrCreateTopicsRequest()
	create.Version = 4
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "fuzz", 2, 1
	create.Topics = append(create.Topics, ct)
	f.Add(requestFrame(create, 1)[4:])
	f.Add(requestFrame(produceRequest("fuzz", testBatch("fuzz", 3, 0)), 1)[4:])
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 11
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "fuzz"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	f.Add(requestFrame(fetch, 1)[4:])
	// Byte limits of zero or less, and a partition named twice.
	unbounded := kmsg.NewPtrFetchRequest()
	unbounded.Version, unbounded.MaxBytes, unbounded.SessionEpoch = 11, -1, -1
	ft.Partitions = append(ft.Partitions, fp)
	ft.Partitions[1].PartitionMaxBytes = -1
	unbounded.Topics = append(unbounded.Topics, ft)
	f.Add(requestFrame(unbounded, 1)[4:])
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 7
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "fuzz"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = 0
	lt.Partitions = append(lt.Partitions, lp, lp)
	lo.Topics = append(lo.Topics, lt)
	f.Add(requestFrame(lo, 1)[4:])
	lo.Version = 0
	f.Add(requestFrame(lo, 1)[4:])
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	md.Topics = append(md.Topics, kmsg.MetadataRequestTopic{Topic: kmsg.StringPtr("fuzz")})
	f.Add(requestFrame(md, 1)[4:])
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0x7f, 0xff, 0, 0, 0, 0, 0, 1, 0, 0})

	f.Fuzz(func(t *testing.T, body []byte) {
		var c net.Conn
		for attempt := 0; ; attempt++ {
			var err error
			if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
				break
			}
			if attempt == 10 {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // local ports may run short
		}
		// Close with a reset: no TIME_WAIT left behind per input.
		c.(*net.TCPConn).SetLinger(0)
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		// The broker may close the connection before it has read it all.
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err == nil {
			// Wait briefly for the answer or the close; a request that
			// waits (a long poll, acks=0) is abandoned.
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			readFrame(c, 256<<20)
		}
		c.Close()
		if err := ping(); err != nil {
			t.Fatalf("broker no longer answers ApiVersions after %x: %v", body, err)
		}
		if p := watch.take(); p != "" {
			t.Fatalf("broker panicked on request %x:\n%s", body, p)
		}
	})
}

// readFrame reads one size-prefixed frame of at most max bytes.
func readFrame(c net.Conn, max int) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(size[:])))
	if n < 4 || n > max {
		return nil, fmt.Errorf("frame size %d", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}
