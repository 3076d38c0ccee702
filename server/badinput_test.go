package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ferrymq/ferry/record"
)

// dialRaw opens a plain TCP connection to the broker, closed when the test
// ends.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// requestFrame encodes req (at the version set on it) as a whole frame.
func requestFrame(req kmsg.Request, corr int32) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test")).AppendRequest(nil, req, corr)
}

// rawFrame builds a frame from a header (key, version, correlation id,
// client id) and body bytes, with the flexible header's tag byte if
// flexible is set.
func rawFrame(key, version int16, corr int32, flexible bool, body []byte) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 3)
	b = append(b, "raw"...)
	if flexible {
		b = append(b, 0)
	}
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func writeAll(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readResponse reads one response frame and returns its correlation id
// and the rest (header tags, if any, and body).
func readResponse(t testing.TB, c net.Conn) (int32, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 64<<20 {
		t.Fatalf("response size %d", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return int32(binary.BigEndian.Uint32(b)), b[4:]
}

// roundTrip sends req and decodes its response.
func roundTrip(t testing.TB, c net.Conn, req kmsg.Request, corr int32) kmsg.Response {
	t.Helper()
	writeAll(t, c, requestFrame(req, corr))
	got, body := readResponse(t, c)
	if got != corr {
		t.Fatalf("response correlation id %d, want %d", got, corr)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != 18 {
		body = body[1:] // empty header tags
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("decoding %s response: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// expectClosed fails unless the broker closes c (without sending
// anything more) within a few seconds.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [512]byte
	n, err := c.Read(buf[:])
	switch {
	case n > 0:
		t.Fatalf("broker answered %d bytes (%x...), want the connection closed", n, buf[:min(n, 16)])
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatal("connection still open after 5s, want it closed")
	case err == nil:
		t.Fatal("read returned nothing and no error")
	}
	// io.EOF or a reset: closed.
}

// waitGoroutines waits until the number of goroutines is at most n.
func waitGoroutines(t testing.TB, n int, what string) {
	t.Helper()
	if left := leftoverGoroutines(n, 10*time.Second); left != "" {
		t.Fatalf("%s: more than %d goroutines after 10s:\n%s", what, n, left)
	}
}

// leftoverGoroutines waits up to timeout until the number of goroutines
// is at most n. It returns "" if it is, else a summary of where they are.
func leftoverGoroutines(n int, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			return fmt.Sprintf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, goroutineSummary())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// produceRequest is a Produce v9 request (topics by name) with acks=all.
func produceRequest(topic string, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks = 9, -1
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// goroutineSummary counts the goroutines by the innermost function of
// this module (or the top function) on their stacks.
func goroutineSummary() string {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	count := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		where := ""
		for i := 1; i < len(lines); i += 2 {
			fn := strings.TrimSpace(lines[i])
			if where == "" {
				where = fn
			}
			if strings.HasPrefix(fn, "github.com/ferrymq/ferry/") {
				where = fn
				break
			}
		}
		if i := strings.LastIndexByte(where, '('); i > 0 {
			where = where[:i]
		}
		count[lines[0][strings.IndexByte(lines[0], '['):]+" "+where]++
	}
	var out []string
	for k, v := range count {
		out = append(out, fmt.Sprintf("%5d %s", v, k))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestBadInput sends the broker what a broken or hostile client might:
// bad frames, unknown APIs and versions, undecodable requests, corrupt
// batches. Each gets Kafka's error code or a closed connection, and
// after each one the broker still serves a kgo client and the data
// stored before is intact.
func TestBadInput(t *testing.T) {
	const maxRequest = 64 << 10
	b := startBroker(t, map[string]string{"socket.request.max.bytes": fmt.Sprint(maxRequest)})
	ctx := testCtx(t)
	adm := b.admin()
	for _, tc := range []struct {
		topic   string
		configs map[string]*string
	}{
		{"healthy", nil},
		{"victim", nil},
		{"small", map[string]*string{"max.message.bytes": kadm.StringPtr("1000")}},
		{"scratch", nil},
	} {
		if _, err := adm.CreateTopic(ctx, 1, 1, tc.configs, tc.topic); err != nil {
			t.Fatal(err)
		}
	}
	victimID := topicIDOf(t, b.addr, "victim")
	cl := b.client()
	// v9 names topics only by name, v13 only by id.
	cl9 := b.client(kgo.MaxVersions(kversion.V3_6_0()))
	ts := time.Now().UnixMilli()
	if sp := produceRaw(t, cl, "victim", victimID, 0, -1, testBatch("victim", 10, ts)); sp.ErrorCode != 0 {
		t.Fatalf("produce to victim: error %d", sp.ErrorCode)
	}
	victimBatches := fetchBatches(t, cl, "victim", victimID, 0, 0, 10)

	// After every case: a kgo producer and consumer work, and what was
	// stored is unchanged.
	producer := b.client(kgo.DefaultProduceTopic("healthy"))
	var healthy []*kgo.Record
	checkHealthy := func(t *testing.T) {
		t.Helper()
		r := &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("healthy %d", len(healthy)))}
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := producer.ProduceSync(pctx, r).FirstErr(); err != nil {
			t.Fatalf("broker no longer serves a producer: %v", err)
		}
		healthy = append(healthy, r)
		compareRecords(t, "healthy topic", readAll(t, b.addr, "healthy")[0], healthy, true)
		got := fetchBatches(t, cl, "victim", victimID, 0, 0, 10)
		if len(got) != len(victimBatches) || !bytes.Equal(got[0], victimBatches[0]) {
			t.Fatal("stored batches of the victim topic changed")
		}
		if ends, err := adm.ListEndOffsets(ctx, "victim", "small"); err != nil {
			t.Fatal(err)
		} else if v, _ := ends.Lookup("victim", 0); v.Offset != 10 {
			t.Fatalf("victim ends at %d, want 10", v.Offset)
		} else if s, _ := ends.Lookup("small", 0); s.Offset != 0 {
			t.Fatalf("small ends at %d, want 0 (nothing accepted)", s.Offset)
		}
	}
	run := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			fn(t)
			checkHealthy(t)
		})
	}

	apiVersions := func(version int16) *kmsg.ApiVersionsRequest {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = version
		req.ClientSoftwareName, req.ClientSoftwareVersion = "raw-test", "1.0"
		return req
	}

	run("truncated frame", func(t *testing.T) {
		c := dialRaw(t, b.addr)
		frame := requestFrame(apiVersions(3), 1)
		writeAll(t, c, frame[:len(frame)-5])
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c)
	})
	run("truncated header", func(t *testing.T) {
		for _, body := range [][]byte{
			{0, 18, 0, 3, 0, 0, 0, 1},       // no client id
			{0, 18, 0, 3, 0, 0, 0, 1, 0, 9}, // client id past the end
		} {
			c := dialRaw(t, b.addr)
			writeAll(t, c, append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
			expectClosed(t, c)
		}
	})
	run("bad frame sizes", func(t *testing.T) {
		for _, size := range []uint32{0, 3, 7, 0xffffffff, 0x80000000, maxRequest + 1, 1 << 30} {
			c := dialRaw(t, b.addr)
			// Only the size: the broker must not wait for the body.
			writeAll(t, c, binary.BigEndian.AppendUint32(nil, size))
			expectClosed(t, c)
		}
	})
	run("frame at the size limit", func(t *testing.T) {
		// A frame of exactly socket.request.max.bytes is accepted: a
		// Metadata v1 request padded with zeros to the limit.
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 1
		frame := requestFrame(req, 1)
		frame = append(frame, make([]byte, maxRequest+4-len(frame))...)
		binary.BigEndian.PutUint32(frame, maxRequest)
		c := dialRaw(t, b.addr)
		writeAll(t, c, frame)
		// The padding after the request is ignored; the broker answers.
		if corr, _ := readResponse(t, c); corr != 1 {
			t.Fatalf("correlation id %d", corr)
		}
	})
	run("unknown API key", func(t *testing.T) {
		for _, key := range []int16{1000, -1, 32767} {
			c := dialRaw(t, b.addr)
			writeAll(t, c, rawFrame(key, 0, 1, false, nil))
			expectClosed(t, c)
		}
	})
	run("unsupported version", func(t *testing.T) {
		for _, tc := range []struct{ key, version int16 }{
			{0, 2},  // Produce below v3: old message formats
			{1, 3},  // Fetch below v4
			{0, 99}, // past what anyone knows
			{3, -1},
		} {
			c := dialRaw(t, b.addr)
			// A good request first: it is answered before the close.
			md := kmsg.NewPtrMetadataRequest()
			md.Version = 1
			writeAll(t, c, append(requestFrame(md, 1), rawFrame(tc.key, tc.version, 2, false, []byte{0, 0, 0, 0, 0, 0})...))
			if corr, _ := readResponse(t, c); corr != 1 {
				t.Fatalf("correlation id %d, want 1", corr)
			}
			expectClosed(t, c)
		}
	})
	run("ApiVersions too new", func(t *testing.T) {
		c := dialRaw(t, b.addr)
		// KIP-511: answered in v0 form, UNSUPPORTED_VERSION and our ranges.
		writeAll(t, c, rawFrame(18, 99, 7, true, []byte{5, 'a', 'b', 'c', 'd', 2, '1', 0}))
		corr, body := readResponse(t, c)
		if corr != 7 {
			t.Fatalf("correlation id %d, want 7", corr)
		}
		v0 := kmsg.NewPtrApiVersionsResponse()
		v0.Version = 0
		if err := v0.ReadFrom(body); err != nil {
			t.Fatalf("v0 ApiVersions answer does not decode: %v", err)
		}
		if v0.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("error code %d, want UNSUPPORTED_VERSION (35)", v0.ErrorCode)
		}
		// The client retries on the same connection with a version we
		// gave; the ranges are the same.
		v3 := roundTrip(t, c, apiVersions(3), 8).(*kmsg.ApiVersionsResponse)
		if v3.ErrorCode != 0 || len(v3.ApiKeys) == 0 {
			t.Fatalf("ApiVersions v3: error %d, %d keys", v3.ErrorCode, len(v3.ApiKeys))
		}
		sameKey := func(a, b kmsg.ApiVersionsResponseApiKey) bool {
			return a.ApiKey == b.ApiKey && a.MinVersion == b.MinVersion && a.MaxVersion == b.MaxVersion
		}
		if !slices.EqualFunc(v0.ApiKeys, v3.ApiKeys, sameKey) {
			t.Fatalf("v0 answer lists %v, v3 lists %v", v0.ApiKeys, v3.ApiKeys)
		}
		want := map[int16][2]int16{0: {0, 13}, 1: {4, 18}, 18: {0, 4}}
		for _, k := range v0.ApiKeys {
			if w, ok := want[k.ApiKey]; ok {
				if k.MinVersion != w[0] || k.MaxVersion < w[1] {
					t.Fatalf("key %d: versions %d-%d, want %d-%d", k.ApiKey, k.MinVersion, k.MaxVersion, w[0], w[1])
				}
				delete(want, k.ApiKey)
			}
		}
		if len(want) > 0 {
			t.Fatalf("keys missing from the answer: %v", want)
		}
	})
	run("request does not decode", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			key, version int16
			flexible     bool
			body         []byte
		}{
			{"metadata array past the end", 3, 1, false, []byte{0x00, 0xff, 0xff, 0xff}},
			{"produce cut short", 0, 3, false, []byte{0xff, 0xff, 0, 1, 0, 0}},
			{"produce topic name past the end", 0, 7, false, []byte{0xff, 0xff, 0, 1, 0, 0, 0x3a, 0x98, 0, 0, 0, 1, 0x7f, 0xff}},
			{"flexible compact string past the end", 3, 12, true, []byte{0x02, 0x7f}},
			{"empty body", 0, 9, true, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := dialRaw(t, b.addr)
				writeAll(t, c, rawFrame(tc.key, tc.version, 1, tc.flexible, tc.body))
				expectClosed(t, c)
			})
		}
	})
	run("garbage after handshake", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		garbage := make([]byte, 200)
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		for _, g := range [][]byte{
			append([]byte{0xde, 0xad, 0xbe, 0xef}, garbage...),              // a negative size
			append([]byte{0, 0, 0, 100, 0x7f, 0x7f}, garbage[:98]...),       // an unknown key
			append([]byte{0, 0, 0, 100, 0, 3, 0x7f, 0x7f}, garbage[:96]...), // Metadata v32639
		} {
			c := dialRaw(t, b.addr)
			if r := roundTrip(t, c, apiVersions(3), 1).(*kmsg.ApiVersionsResponse); r.ErrorCode != 0 {
				t.Fatalf("handshake: error %d", r.ErrorCode)
			}
			writeAll(t, c, g)
			expectClosed(t, c)
		}
	})
	run("client disconnects mid-request", func(t *testing.T) {
		base := runtime.NumGoroutine()
		var conns []net.Conn
		for i := 0; i < 10; i++ {
			// Half a produce request.
			c := dialRaw(t, b.addr)
			frame := requestFrame(produceRequest("victim", testBatch("half", 5, ts)), 1)
			writeAll(t, c, frame[:len(frame)/2])
			conns = append(conns, c)
			// Whole requests whose answers are never read.
			c = dialRaw(t, b.addr)
			var burst []byte
			for corr := int32(1); corr <= 20; corr++ {
				burst = append(burst, requestFrame(produceRequest("scratch", testBatch("burst", 5, ts)), corr)...)
			}
			writeAll(t, c, burst)
			conns = append(conns, c)
		}
		time.Sleep(100 * time.Millisecond) // let the broker take the requests
		for _, c := range conns {
			c.Close()
		}
		// Nothing of those connections is left behind.
		waitGoroutines(t, base+5, "after clients disconnected mid-request")
	})
	run("client abandons a long poll", func(t *testing.T) {
		base := runtime.NumGoroutine()
		var conns []net.Conn
		for i := 0; i < 10; i++ {
			// A fetch at the end of the log, waiting a minute for data.
			c := dialRaw(t, b.addr)
			f := kmsg.NewPtrFetchRequest()
			f.Version = 11
			f.MaxWaitMillis = 60000
			f.MinBytes = 1
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "victim"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.FetchOffset = 10
			fp.PartitionMaxBytes = 1 << 20
			fp.LogStartOffset = -1
			ft.Partitions = append(ft.Partitions, fp)
			f.Topics = append(f.Topics, ft)
			writeAll(t, c, requestFrame(f, 1))
			conns = append(conns, c)
		}
		time.Sleep(100 * time.Millisecond)
		for _, c := range conns {
			c.Close()
		}
		// The broker sees the connections close and ends the waits.
		if left := leftoverGoroutines(base+5, 3*time.Second); left != "" {
			t.Fatalf("goroutines left after clients abandoned long polls:\n%s", left)
		}
	})

	// Bad batches, produced through kgo.
	good := testBatch("good", 3, ts)
	run("bad CRC", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[len(bad)-3] ^= 0x40 // in the last record's value
		if sp := produceRaw(t, cl, "victim", victimID, 0, -1, bad); sp.ErrorCode != kerr.CorruptMessage.Code {
			t.Fatalf("bad CRC: error %d, want CORRUPT_MESSAGE", sp.ErrorCode)
		}
		// A good batch after a bad one in the same request: nothing of
		// the request is stored.
		if sp := produceRaw(t, cl, "victim", victimID, 0, -1, append(bytes.Clone(good), bad...)); sp.ErrorCode != kerr.CorruptMessage.Code {
			t.Fatalf("good then bad batch: error %d, want CORRUPT_MESSAGE", sp.ErrorCode)
		}
	})
	run("truncated batch", func(t *testing.T) {
		if sp := produceRaw(t, cl, "victim", victimID, 0, -1, good[:len(good)-7]); sp.ErrorCode != kerr.CorruptMessage.Code {
			t.Fatalf("truncated batch: error %d, want CORRUPT_MESSAGE", sp.ErrorCode)
		}
	})
	run("old magic", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[16] = 1
		if sp := produceRaw(t, cl, "victim", victimID, 0, -1, bad); sp.ErrorCode != kerr.InvalidRecord.Code && sp.ErrorCode != kerr.CorruptMessage.Code {
			t.Fatalf("magic 1 batch: error %d, want INVALID_RECORD or CORRUPT_MESSAGE", sp.ErrorCode)
		}
	})
	run("unknown topic or partition", func(t *testing.T) {
		if sp := produceRaw(t, cl9, "no-such-topic", [16]byte{}, 0, -1, good); sp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("produce v9 to an unknown topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION", sp.ErrorCode)
		}
		if sp := produceRaw(t, cl9, "victim", [16]byte{}, 7, -1, good); sp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("produce v9 to partition 7 of a 1-partition topic: error %d, want UNKNOWN_TOPIC_OR_PARTITION", sp.ErrorCode)
		}
		if sp := produceRaw(t, cl, "", [16]byte{9, 9, 9}, 0, -1, good); sp.ErrorCode != kerr.UnknownTopicID.Code && sp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("produce to an unknown topic id: error %d, want UNKNOWN_TOPIC_ID", sp.ErrorCode)
		}
		// Producing does not create topics.
		td, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if td.Has("no-such-topic") {
			t.Fatal("a produce to an unknown topic created it")
		}
	})
	run("batch over max.message.bytes", func(t *testing.T) {
		big := record.AppendBatch(nil, record.Batch{BaseTimestamp: ts, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
			Records: []record.Record{{Value: bytes.Repeat([]byte("x"), 2000)}}})
		if sp := produceRaw(t, cl, "small", topicIDOf(t, b.addr, "small"), 0, -1, big); sp.ErrorCode != kerr.MessageTooLarge.Code {
			t.Fatalf("batch of %d bytes to a topic with max.message.bytes=1000: error %d, want MESSAGE_TOO_LARGE", len(big), sp.ErrorCode)
		}
	})
}

// TestIdleConnections opens ten thousand idle connections (from a child
// process, so that neither process needs more than 10,000 descriptors):
// the broker still answers a client at once, and once they close nothing
// of them is left.
func TestIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections: skipped with -short")
	}
	const n = 10000
	raiseOpenFiles(t, n+1000)
	b := startBroker(t, map[string]string{"max.connections.per.ip": strconv.Itoa(2 * n)})
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 1, 1, nil, "idle"); err != nil {
		t.Fatal(err)
	}
	cl := b.client(kgo.DefaultProduceTopic("idle"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	brokerConns := func() int {
		b.srv.mu.Lock()
		defer b.srv.mu.Unlock()
		return len(b.srv.mu.conns)
	}
	connsBefore := brokerConns()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	base := runtime.NumGoroutine()

	start := time.Now()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), dialerAddrEnv+"="+b.addr, fmt.Sprintf("%s=%d", dialerCountEnv, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	stopDialer := func() {
		if stdin != nil {
			stdin.Close() // the dialer exits, closing every connection
			stdin = nil
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("dialer process: %v", err)
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Error("dialer process did not exit")
			}
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { exited <- cmd.Wait() }()
	defer stopDialer()
	if err != nil || line != "ok\n" {
		t.Fatalf("dialer: %q %v", line, err)
	}
	// Wait until the broker has taken every connection.
	for deadline := time.Now().Add(30 * time.Second); brokerConns() < connsBefore+n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("broker has %d connections 30s after %d were dialed", brokerConns(), n)
		}
	}
	t.Logf("%d connections open after %v, %d goroutines", n, time.Since(start).Round(time.Millisecond), runtime.NumGoroutine())

	// A client is still answered quickly.
	start = time.Now()
	r := &kgo.Record{Value: []byte("during")}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consumeFrom(t, b.addr, "idle", 0, kgo.NewOffset().At(0), 2)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("produce and consume took %v with %d idle connections", took, n)
	} else {
		t.Logf("produce and consume with %d idle connections: %v", n, took.Round(time.Millisecond))
	}
	if string(got[1].Value) != "during" {
		t.Fatalf("read %q", got[1].Value)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grew := int64(ms.HeapInuse) - int64(heapBefore)
	t.Logf("heap in use: %d MiB more with the connections open (%d KiB each)", grew>>20, grew/n>>10)

	stopDialer()
	waitGoroutines(t, base+5, "after closing the idle connections")
	for deadline := time.Now().Add(10 * time.Second); brokerConns() > connsBefore; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("broker still tracks %d connections 10s after they closed, had %d before", brokerConns(), connsBefore)
		}
	}
}

// runDialer opens n connections to addr, says "ok" on stdout, and holds
// them until stdin closes. It is TestIdleConnections' child process.
func runDialer(addr string, n int) int {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Printf("error: %v\n", err)
		return 1
	default:
	}
	fmt.Println("ok")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
