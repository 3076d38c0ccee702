package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// conn is one client connection: a reader goroutine that decodes requests
// and dispatches them in order, and a writer goroutine that writes the
// responses in request order (handlers may finish out of order).
//
// The reader reads a request only when the connection has room for it
// (fewer than maxInflight requests and maxInflightBytes in flight), and
// takes the request's size from the broker's request budget before it
// allocates the body; the budget is given back once the request is
// answered (a produce request: once its batches are appended).
type conn struct {
	s      *Server
	nc     net.Conn // a *tls.Conn on SSL and SASL_SSL listeners
	ep     *endpoint
	remote string
	addr   netip.Addr // the client's address, as connection limits count it
	host   string     // the client's IP address, as ACLs name hosts
	logger *slog.Logger

	// auth is the connection's identity and SASL state; only the reader
	// goroutine touches it (sasl.go).
	auth connAuth
	// mutedUntil (Unix ns) is when the reader may read again after a
	// response that was throttled for a quota (quota.go).
	mutedUntil atomic.Int64

	// ctx is cancelled when the connection dies or drains; handlers
	// waiting on it answer at once with what they have.
	ctx    context.Context
	cancel context.CancelFunc

	respCh      chan *response
	slots       chan struct{} // one per request read and not yet answered
	room        chan struct{} // kicked when requests or bytes in flight drop
	outstanding atomic.Int64  // dispatched requests not yet answered
	// inflight counts request bytes held (see held) plus the bytes of
	// responses queued and not yet written.
	inflight atomic.Int64
	// held is the request budget each request holds until its body is done
	// with, by sequence number modulo maxInflight: the requests read and
	// not yet answered have at most maxInflight consecutive numbers.
	held       [maxInflight]atomic.Int64
	readerDone chan struct{}
	done       chan struct{} // closed when both goroutines are gone
	draining   atomic.Bool

	// reqs holds each request dispatched and not yet answered, by
	// sequence number modulo maxInflight, for the writer to count once
	// its response is written. The reader sets a slot only after the
	// writer has finished the request that held it (slots orders them).
	reqs [maxInflight]*request
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
	// closeAfter closes the connection once this response is written.
	closeAfter bool
	size       int64 // bytes counted in conn.inflight until written
}

// bytes is what the response will write.
func (r *response) bytes() int64 {
	if r.bufs != nil {
		var n int64
		for _, b := range r.bufs {
			n += int64(len(b))
		}
		return n
	}
	if r.buf != nil {
		return int64(len(*r.buf))
	}
	return 0
}

// Request bodies of produce requests are recycled once the handler
// returns (the batches are written by then, and nothing keeps a reference
// to them); other requests may hand slices of their body to code that
// keeps them, so theirs are left to the garbage collector.
var bodyPool sync.Pool

const minPooledBody = 64 << 10

// firstBodyChunk is what a body not taken from the pool starts with; it
// doubles as bytes arrive, so a request announced large and sent slowly
// (or never) holds about what has arrived.
const firstBodyChunk = 1 << 20

// readBody reads a request body of n bytes from r, into a pooled buffer
// when one is large enough.
func readBody(r io.Reader, n int) ([]byte, error) {
	if n >= minPooledBody {
		if p, ok := bodyPool.Get().(*[]byte); ok && cap(*p) >= n {
			b := (*p)[:n]
			_, err := io.ReadFull(r, b)
			return b, err
		} else if ok {
			bodyPool.Put(p)
		}
	}
	b := make([]byte, 0, min(n, firstBodyChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(make([]byte, 0, min(2*cap(b), n)), b...)
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return b, nil
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

func (s *Server) startConn(nc net.Conn, ep *endpoint) {
	addr := connAddr(nc)
	if refused := s.limits.admit(addr, s.settings()); refused != "" {
		s.stats.connsRefused.Add(1)
		s.logger.Warn("connection refused; closing it", "remote", nc.RemoteAddr().String(), "reason", refused)
		nc.Close()
		return
	}
	s.stats.connsAccepted.Add(1)
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if ep.l.tls != nil {
		nc = tls.Server(nc, ep.l.tls.serverConfig())
	}
	c := &conn{
		s:          s,
		nc:         nc,
		ep:         ep,
		remote:     nc.RemoteAddr().String(),
		addr:       addr,
		respCh:     make(chan *response, maxInflight),
		slots:      make(chan struct{}, maxInflight),
		room:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.logger = s.logger.With("remote", c.remote, "conn", s.stats.nextConn.Add(1))
	if len(s.listeners) > 1 {
		c.logger = c.logger.With("listener", ep.l.Name)
	}
	c.host = c.remoteIP()
	c.auth.principal = auth.Anonymous
	c.auth.user = "ANONYMOUS"
	c.auth.authenticated = ep.l.sasl == nil
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		nc.Close()
		c.cancel()
		s.limits.leave(addr)
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
	// start is when the request was read; size its frame's bytes.
	start time.Time
	size  int64
	// allowance is how long the request may wait by design (a long
	// poll), added to the slow-request threshold.
	allowance time.Duration
	// closeAfterResp closes the connection once the response is written.
	closeAfterResp bool
	// principal ("User:name") and user are who sent the request, as the
	// connection was authenticated when it was read.
	principal, user string
	// throttle is the quota throttle, in ms, to put in the response and
	// mute the connection for (quota.go).
	throttle atomic.Int32
}

// closeAfter makes the request's response the connection's last: nothing
// more is read, and the connection closes once it is written.
func (r *request) closeAfter() {
	r.closing = true
	r.closeAfterResp = true
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
	r.c.queue(resp)
}

// closeConnection answers a request by closing the connection once the
// responses before it are written.
func (r *request) closeConnection() {
	r.deferred = true
	r.closing = true
	r.c.queue(&response{seq: r.seq, fatal: true})
}

// skipResponse marks a request that gets no response (acks=0).
func (r *request) skipResponse() {
	r.deferred = true
	r.c.queue(&response{seq: r.seq, skip: true})
}

func (r *request) recoverPanic() {
	if v := recover(); v != nil {
		r.c.logger.Error("panic handling request; closing connection", "key", r.key, "version", r.version, "panic", v, "stack", string(debug.Stack()))
		r.c.queue(&response{seq: r.seq, fatal: true})
	}
}

// respond encodes resp into a frame and hands it to the writer.
func (r *request) respond(resp kmsg.Response) {
	r.countErrors(resp)
	resp.SetVersion(r.version)
	r.c.s.throttleResponse(r, resp)
	b := getBuf()
	*b = appendResponse((*b)[:0], r.corr, resp)
	r.c.queue(&response{seq: r.seq, buf: b, closeAfter: r.closeAfterResp})
}

// queue hands the response of a request to the writer. The request is
// done with: its budget is given back and the response's bytes are
// counted in flight instead.
func (c *conn) queue(r *response) {
	c.releaseBody(r.seq)
	r.size = r.bytes()
	c.inflight.Add(r.size)
	c.respCh <- r
}

// hold records that request seq holds n bytes of the request budget.
func (c *conn) hold(seq uint64, n int64) {
	c.held[seq%maxInflight].Store(n)
	c.inflight.Add(n)
}

// releaseBody gives back the request budget request seq holds, once.
func (c *conn) releaseBody(seq uint64) {
	if n := c.held[seq%maxInflight].Swap(0); n > 0 {
		c.s.limits.budget.release(n)
		c.inflight.Add(-n)
		c.kick()
	}
}

// releaseAll gives back whatever budget the connection still holds, when
// it ends.
func (c *conn) releaseAll() {
	for i := range c.held {
		c.releaseBody(uint64(i))
	}
}

// kick wakes the reader if it waits for room.
func (c *conn) kick() {
	select {
	case c.room <- struct{}{}:
	default:
	}
}

// awaitRoom waits until the connection may read one more request: it
// takes one of the maxInflight slots, then waits while maxInflightBytes or
// more are in flight. It returns false when the connection is closing.
func (c *conn) awaitRoom() bool {
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		return false
	}
	for c.inflight.Load() >= maxInflightBytes {
		select {
		case <-c.room:
		case <-c.ctx.Done():
			return false
		}
	}
	return true
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
			c.releaseAll()
		}
	}()
	if !c.handshake() {
		return
	}
	br := bufio.NewReaderSize(c.nc, 8<<10) // small: large bodies are read past it
	maxSize := int(c.s.settings().int64("socket.request.max.bytes"))
	idle := time.Duration(c.s.settings().int64("connections.max.idle.ms")) * time.Millisecond
	budget := c.s.limits.budget
	var seq uint64
	var size [4]byte
	for {
		if c.draining.Load() || !c.awaitRoom() {
			return
		}
		for {
			c.nc.SetReadDeadline(time.Now().Add(idle))
			_, err := io.ReadFull(br, size[:])
			if err == nil {
				break
			}
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
		if n < 8 && !c.auth.raw || n < 0 || n > maxSize {
			c.logger.Warn("bad request size; closing connection", "size", n, "socket.request.max.bytes", maxSize)
			return
		}
		seq++
		if err := budget.acquire(c.ctx, int64(n)); err != nil {
			return // closing
		}
		c.hold(seq, int64(n))
		c.nc.SetReadDeadline(time.Now().Add(idle))
		body, err := readBody(br, n)
		if err != nil {
			c.releaseBody(seq)
			c.logger.Info("connection closed mid-request", "err", err)
			return
		}
		if c.auth.raw {
			if !c.rawSASL(seq, body) {
				return
			}
			continue
		}
		if !c.dispatch(seq, body) {
			return
		}
		if !c.awaitUnmuted() {
			return
		}
	}
}

// dispatch decodes one request and runs its handler. It returns false when
// the connection must close. Every request dispatched gets a response,
// if only a fatal one that closes the connection after the earlier ones.
func (c *conn) dispatch(seq uint64, body []byte) bool {
	start := time.Now()
	c.outstanding.Add(1)
	rd := kbin.Reader{Src: body}
	key, version, corr := rd.Int16(), rd.Int16(), rd.Int32()
	clientID := rd.NullableString()
	if !rd.Ok() {
		c.logger.Warn("truncated request header; closing connection")
		c.queue(&response{seq: seq, fatal: true})
		return false
	}
	h := handlerFor(key)
	if h == nil {
		c.logger.Warn("unknown API key; closing connection", "key", key, "version", version)
		c.queue(&response{seq: seq, fatal: true})
		return false
	}
	if !c.saslGate(key) {
		c.queue(&response{seq: seq, fatal: true})
		return false
	}
	r := &request{c: c, seq: seq, key: key, version: version, corr: corr, principal: c.auth.principal, user: c.auth.user}
	if clientID != nil {
		r.clientID = *clientID
	}
	if version < h.min || version > h.max {
		if key == 18 {
			// KIP-511: answer in v0 with our ranges so the client retries.
			c.queue(&response{seq: seq, buf: apiVersionsUnsupported(c.s, corr)})
			return true
		}
		c.logger.Warn("unsupported API version; closing connection", "key", key, "api", kmsg.NameForKey(key), "version", version, "supported", fmt.Sprintf("%d-%d", h.min, h.max))
		c.queue(&response{seq: seq, fatal: true})
		return false
	}
	kreq := kmsg.RequestForKey(key)
	kreq.SetVersion(version)
	if kreq.IsFlexible() {
		kmsg.SkipTags(&rd)
	}
	if err := kreq.ReadFrom(rd.Src); err != nil || !rd.Ok() {
		c.logger.Warn("request does not decode; closing connection", "api", kmsg.NameForKey(key), "version", version, "err", err)
		c.queue(&response{seq: seq, fatal: true})
		return false
	}
	r.kreq = kreq
	r.start, r.size, r.allowance = start, int64(len(body))+4, waitAllowance(kreq)
	st := c.s.stats.api(key)
	st.requests.Add(1)
	st.requestBytes.Add(uint64(r.size))
	c.reqs[seq%maxInflight] = r
	if c.logger.Enabled(c.ctx, slog.LevelDebug) {
		c.logger.Debug("request", "api", kmsg.NameForKey(key), "version", version, "client_id", r.clientID)
	}
	if key == 0 {
		r.quotaProduce(len(body))
	}
	var handlerStart time.Time
	if c.s.quotas.enabled.Load() {
		handlerStart = time.Now()
	}
	var resp kmsg.Response
	func() {
		defer r.recoverPanic()
		resp = h.fn(c.s, r)
		if resp == nil && !r.deferred {
			panic(fmt.Sprintf("handler for %s returned no response", kmsg.NameForKey(key)))
		}
	}()
	if !handlerStart.IsZero() {
		r.quotaRequestTime(time.Since(handlerStart))
	}
	if resp != nil {
		r.respond(resp)
	}
	if key == 0 {
		// The batches are appended: the body is done with.
		c.releaseBody(seq)
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
		c.releaseAll()
		c.s.shareConnClosed(c) // every request is answered: end its share sessions
		c.s.limits.leave(c.addr)
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
	if r.closeAfter {
		c.nc.Close()
		c.cancel()
		return false
	}
	return true
}

func (c *conn) finish(r *response) {
	if req := c.reqs[r.seq%maxInflight]; req != nil && req.seq == r.seq {
		c.reqs[r.seq%maxInflight] = nil
		c.requestDone(req, r)
	}
	if r.buf != nil {
		putBuf(r.buf)
	}
	if r.release != nil {
		r.release()
	}
	c.inflight.Add(-r.size)
	c.outstanding.Add(-1)
	<-c.slots
	c.kick()
}
