package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxInflight bounds the requests of one connection that are being
// handled or waiting to be written.
const maxInflight = 64

// conn is one client connection: a reader goroutine that decodes requests
// and dispatches them in order, and a writer goroutine that writes the
// responses in request order (handlers may finish out of order).
type conn struct {
	s      *Server
	nc     net.Conn
	remote string
	logger *slog.Logger

	// ctx is cancelled when the connection dies or drains; handlers
	// waiting on it answer at once with what they have.
	ctx    context.Context
	cancel context.CancelFunc

	respCh      chan *response
	slots       chan struct{} // in-flight semaphore
	outstanding atomic.Int64  // dispatched requests not yet answered
	readerDone  chan struct{}
	done        chan struct{} // closed when both goroutines are gone
	draining    atomic.Bool
}

// response is one answer for the writer: a pooled buffer holding the
// whole frame, or a list of buffers for writev (fetch data from mapped
// segments), with a release func to call once written.
type response struct {
	seq     uint64
	buf     *[]byte
	bufs    net.Buffers
	release func()
	skip    bool // acks=0 produce: nothing to write
	fatal   bool // close the connection after earlier responses
}

// Request bodies of produce requests are recycled once the handler
// returns (the batches are written by then, and nothing keeps a reference
// to them); other requests may hand slices of their body to code that
// keeps them, so theirs are left to the garbage collector.
var bodyPool sync.Pool

const minPooledBody = 64 << 10

func getBody(n int) []byte {
	if n >= minPooledBody {
		if p, ok := bodyPool.Get().(*[]byte); ok && cap(*p) >= n {
			return (*p)[:n]
		} else if ok {
			bodyPool.Put(p)
		}
	}
	return make([]byte, n)
}

func putBody(b []byte) {
	if cap(b) >= minPooledBody && cap(b) <= 16<<20 {
		bodyPool.Put(&b)
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

func (s *Server) startConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &conn{
		s:          s,
		nc:         nc,
		remote:     nc.RemoteAddr().String(),
		respCh:     make(chan *response, maxInflight),
		slots:      make(chan struct{}, maxInflight),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.logger = s.logger.With("remote", c.remote)
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		nc.Close()
		c.cancel()
		return
	}
	s.mu.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.read()
	go c.write()
}

// remoteIP is the client's address without the port.
func (c *conn) remoteIP() string {
	if host, _, err := net.SplitHostPort(c.remote); err == nil {
		return host
	}
	return c.remote
}

// beginDrain stops reading requests and wakes handlers that wait (long
// polls, rebalances) so they answer now; the connection closes once every
// request read so far is answered.
func (c *conn) beginDrain() {
	c.draining.Store(true)
	c.nc.SetReadDeadline(time.Now())
	c.cancel()
}

// awaitDrained waits for the connection to close, closing it at once when
// ctx is done first.
func (c *conn) awaitDrained(ctx context.Context) {
	select {
	case <-c.done:
	case <-ctx.Done():
		c.nc.Close()
		<-c.done
	}
}

// request is one decoded request being handled.
type request struct {
	c        *conn
	seq      uint64
	key      int16
	version  int16
	corr     int32
	clientID string
	kreq     kmsg.Request
	deferred bool
	closing  bool // the handler closes the connection: read no more
}

// await runs fn in its own goroutine and writes its response when it
// returns; the handler that calls it returns nil. fn must watch
// r.c.ctx for anything that waits.
func (r *request) await(fn func() kmsg.Response) {
	r.deferred = true
	r.c.s.wg.Add(1)
	go func() {
		defer r.c.s.wg.Done()
		var resp kmsg.Response
		func() {
			defer r.recoverPanic()
			resp = fn()
		}()
		if resp != nil {
			r.respond(resp)
		}
	}()
}

// send hands a prepared response to the writer. A handler that calls it
// itself must set r.deferred and return nil.
func (r *request) send(resp *response) {
	resp.seq = r.seq
	r.c.respCh <- resp
}

// closeConnection answers a request by closing the connection once the
// responses before it are written.
func (r *request) closeConnection() {
	r.deferred = true
	r.closing = true
	r.c.respCh <- &response{seq: r.seq, fatal: true}
}

// skipResponse marks a request that gets no response (acks=0).
func (r *request) skipResponse() {
	r.deferred = true
	r.c.respCh <- &response{seq: r.seq, skip: true}
}

func (r *request) recoverPanic() {
	if v := recover(); v != nil {
		r.c.logger.Error("panic handling request; closing connection", "key", r.key, "version", r.version, "panic", v, "stack", string(debug.Stack()))
		r.c.respCh <- &response{seq: r.seq, fatal: true}
	}
}

// respond encodes resp into a frame and hands it to the writer.
func (r *request) respond(resp kmsg.Response) {
	resp.SetVersion(r.version)
	b := getBuf()
	*b = appendResponse((*b)[:0], r.corr, resp)
	r.c.respCh <- &response{seq: r.seq, buf: b}
}

// appendResponse appends a whole response frame: size, header, body.
func appendResponse(dst []byte, corr int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	// ApiVersions answers with header v0 at every version (KIP-511).
	if resp.IsFlexible() && resp.Key() != 18 {
		dst = append(dst, 0) // empty tagged fields
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func (c *conn) read() {
	defer c.s.wg.Done()
	defer close(c.readerDone)
	// Once the client is gone, handlers still waiting (long polls,
	// rebalances) answer at once; nobody will read what they say.
	defer c.cancel()
	// A mapping touched past the end of its file raises SIGBUS; turn
	// that into a panic this goroutine recovers from.
	debug.SetPanicOnFault(true)
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("panic reading requests; closing connection", "panic", v, "stack", string(debug.Stack()))
			c.nc.Close()
		}
	}()
	br := bufio.NewReaderSize(c.nc, 8<<10) // small: large bodies are read past it
	maxSize := int(c.s.settings().int64("socket.request.max.bytes"))
	idle := time.Duration(c.s.settings().int64("connections.max.idle.ms")) * time.Millisecond
	var seq uint64
	var size [4]byte
	for {
		if c.draining.Load() {
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(br, size[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.draining.Load() {
				if c.outstanding.Load() > 0 {
					continue // a long poll is not idleness
				}
				c.logger.Info("closing idle connection", "idle", idle)
				return
			}
			if !errors.Is(err, io.EOF) && !c.draining.Load() && !errors.Is(err, net.ErrClosed) {
				c.logger.Debug("connection read failed", "err", err)
			}
			return
		}
		n := int(int32(binary.BigEndian.Uint32(size[:])))
		if n < 8 || n > maxSize {
			c.logger.Warn("bad request size; closing connection", "size", n, "socket.request.max.bytes", maxSize)
			return
		}
		body := getBody(n)
		c.nc.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(br, body); err != nil {
			c.logger.Info("connection closed mid-request", "err", err)
			return
		}
		seq++
		if !c.dispatch(seq, body) {
			return
		}
	}
}

// dispatch decodes one request and runs its handler. It returns false when
// the connection must close.
func (c *conn) dispatch(seq uint64, body []byte) bool {
	rd := kbin.Reader{Src: body}
	key, version, corr := rd.Int16(), rd.Int16(), rd.Int32()
	clientID := rd.NullableString()
	if !rd.Ok() {
		c.logger.Warn("truncated request header; closing connection")
		return false
	}
	h := handlerFor(key)
	if h == nil {
		c.logger.Warn("unknown API key; closing connection", "key", key, "version", version)
		return false
	}
	r := &request{c: c, seq: seq, key: key, version: version, corr: corr}
	if clientID != nil {
		r.clientID = *clientID
	}
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		return false
	}
	c.outstanding.Add(1)
	if version < h.min || version > h.max {
		if key == 18 {
			// KIP-511: answer in v0 with our ranges so the client retries.
			c.respCh <- &response{seq: seq, buf: apiVersionsUnsupported(corr)}
			return true
		}
		c.logger.Warn("unsupported API version; closing connection", "key", key, "api", kmsg.NameForKey(key), "version", version, "supported", fmt.Sprintf("%d-%d", h.min, h.max))
		c.respCh <- &response{seq: seq, fatal: true}
		return false
	}
	kreq := kmsg.RequestForKey(key)
	kreq.SetVersion(version)
	if kreq.IsFlexible() {
		kmsg.SkipTags(&rd)
	}
	if err := kreq.ReadFrom(rd.Src); err != nil || !rd.Ok() {
		c.logger.Warn("request does not decode; closing connection", "api", kmsg.NameForKey(key), "version", version, "err", err)
		c.respCh <- &response{seq: seq, fatal: true}
		return false
	}
	r.kreq = kreq
	if c.logger.Enabled(c.ctx, slog.LevelDebug) {
		c.logger.Debug("request", "api", kmsg.NameForKey(key), "version", version, "client_id", r.clientID)
	}
	var resp kmsg.Response
	func() {
		defer r.recoverPanic()
		resp = h.fn(c.s, r)
		if resp == nil && !r.deferred {
			panic(fmt.Sprintf("handler for %s returned no response", kmsg.NameForKey(key)))
		}
	}()
	if resp != nil {
		r.respond(resp)
	}
	if key == 0 {
		putBody(body)
	}
	return !r.closing
}

func (c *conn) write() {
	defer c.s.wg.Done()
	defer close(c.done)
	defer func() {
		c.nc.Close()
		c.cancel()
		c.s.mu.Lock()
		delete(c.s.mu.conns, c)
		c.s.mu.Unlock()
	}()
	pending := map[uint64]*response{}
	next := uint64(1)
	broken := false
	readerDone := c.readerDone
	for {
		if readerDone == nil && c.outstanding.Load() == 0 {
			return
		}
		select {
		case r := <-c.respCh:
			pending[r.seq] = r
			for {
				r, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if !broken {
					broken = !c.writeResponse(r)
				}
				c.finish(r)
			}
		case <-readerDone:
			readerDone = nil // outstanding is final now
			if broken {
				c.cancel()
			}
		}
	}
}

// writeResponse writes one response; false means the connection is
// unusable (write error or a fatal response).
func (c *conn) writeResponse(r *response) bool {
	if r.fatal {
		c.nc.Close()
		c.cancel()
		return false
	}
	if r.skip {
		return true
	}
	c.nc.SetWriteDeadline(time.Now().Add(time.Duration(c.s.settings().int64("connections.max.idle.ms")) * time.Millisecond))
	var err error
	if r.bufs != nil {
		_, err = r.bufs.WriteTo(c.nc)
	} else {
		_, err = c.nc.Write(*r.buf)
	}
	if err != nil {
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.logger.Info("response write failed; closing connection", "err", err)
		}
		c.nc.Close()
		c.cancel()
		return false
	}
	return true
}

func (c *conn) finish(r *response) {
	if r.buf != nil {
		putBuf(r.buf)
	}
	if r.release != nil {
		r.release()
	}
	c.outstanding.Add(-1)
	<-c.slots
}
