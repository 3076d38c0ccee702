package raftlog

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Transport frames (big-endian), on a TCP connection that one node opens
// to another and writes on only:
//
//	hello:   magic "FRAFT" | version u8 | from u64 | len u16 | cluster id
//	message: length u32 | raftpb.Message
//
// With TLS (an SSL controller listener) each connection is a mutual TLS
// session first: both ends present their certificate and verify the
// other's against their truststore, and a peer that fails the handshake
// is refused before its hello is read.
//
// Each voter dials every other voter once (and again after an error) and
// sends its messages in order on that connection; it reads the
// connections its peers opened. A learner (a broker-only node) has no
// listener: it dials every voter and keeps the connection open, and the
// voter writes its messages to the learner back on that same connection,
// so one connection per learner and voter carries both directions. Raft
// tolerates lost messages, so a message that finds its peer's queue full
// or its connection broken is dropped and raft is told the peer is
// unreachable.
const (
	helloMagic     = "FRAFT"
	transportVer   = 1
	peerQueue      = 4096
	dialTimeout    = time.Second
	redialBackoff  = 100 * time.Millisecond
	maxMessageSize = 512 << 20
)

// transport sends raft messages to peers and receives theirs.
type transport struct {
	id        uint64
	clusterID string
	logger    *slog.Logger
	// ln is the controller listener; nil on a learner, which only dials.
	ln net.Listener
	// learner: this node dials the voters and reads their messages back
	// on the same connections.
	learner bool
	// serverTLS and dialTLS secure the connections (nil: plain TCP):
	// those accepted, and those dialed to a host.
	serverTLS *tls.Config
	dialTLS   func(host string) *tls.Config
	// tlsWarned is when a failed handshake was last logged as a
	// warning (Unix nanoseconds).
	tlsWarned atomic.Int64
	// recv gets every message read from a peer.
	recv func(*pb.Message)
	// report is told of unreachable peers and of snapshot sends.
	unreachable func(id uint64)
	snapDone    func(id uint64, ok bool)

	// voters are the raft ids of the nodes with a controller address
	// (the address book's voters): their connections are dialed, and a
	// connection from another node is a learner's. Guarded by mu.
	voters map[uint64]bool
	// started: start ran, so setPeer starts a new peer's goroutines.
	// Guarded by mu.
	started bool
	// contact holds, per peer id, the Unix nanoseconds of the last
	// message read from it (*atomic.Int64 by uint64).
	contact sync.Map

	quit chan struct{}
	wg   sync.WaitGroup
	mu   struct {
		sync.Mutex
		conns map[net.Conn]struct{}
		// peers are the nodes messages go to: the voters, and on a
		// voter the learners that have connected.
		peers map[uint64]*peer
	}
}

// peer is the outbound side towards one node.
type peer struct {
	id uint64
	// addr is dialed for each new connection; "" for a learner, whose
	// connection to this voter is attached when it connects.
	addr string
	q    chan *pb.Message
	// stop is closed when the peer is replaced or dropped (its address
	// changed, or it left the voters): its goroutines return.
	stop chan struct{}
	// conn is the connection messages are written on, when it is not
	// dialed by sendLoop (attached by the reader that owns it).
	mu   sync.Mutex
	conn net.Conn
}

func (p *peer) attached() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

func (p *peer) attach(c net.Conn) {
	p.mu.Lock()
	old := p.conn
	p.conn = c
	p.mu.Unlock()
	if old != nil && old != c {
		old.Close() // a newer connection from the same node replaces it
	}
}

// detach forgets c if it is still the peer's connection.
func (p *peer) detach(c net.Conn) {
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
}

// newTransport makes a transport with no peers: setPeer adds the voters
// of the address book, before or after start.
func newTransport(id uint64, clusterID string, ln net.Listener, logger *slog.Logger) *transport {
	t := &transport{id: id, clusterID: clusterID, logger: logger, ln: ln, voters: map[uint64]bool{}, quit: make(chan struct{})}
	t.mu.conns = map[net.Conn]struct{}{}
	t.mu.peers = map[uint64]*peer{}
	return t
}

func newPeer(id uint64, addr string) *peer {
	return &peer{id: id, addr: addr, q: make(chan *pb.Message, peerQueue), stop: make(chan struct{})}
}

// start starts the listener's and the peers' goroutines. learner is
// known by then (the node's state is loaded): it makes this node dial
// its peers and read their messages back on the same connections.
func (t *transport) start() {
	if t.ln != nil {
		t.wg.Add(1)
		go t.accept()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	for _, p := range t.mu.peers {
		t.startPeerLocked(p)
	}
}

// startPeerLocked starts p's goroutines. t.mu must be held.
func (t *transport) startPeerLocked(p *peer) {
	t.wg.Add(1)
	go t.sendLoop(p)
	if t.learner && p.addr != "" {
		t.wg.Add(1)
		go t.learnerConn(p)
	}
}

// setPeer makes addr the controller address of voter id: messages to it
// go to a connection dialed there (on a learner, a connection that
// carries both ways). A peer it replaces (a learner's attached
// connection, or another address) stops. This node's own id is ignored.
func (t *transport) setPeer(id uint64, addr string) {
	if id == t.id || addr == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.voters[id] = true
	old := t.mu.peers[id]
	if old != nil && old.addr == addr {
		return
	}
	if old != nil {
		old.close()
	}
	p := newPeer(id, addr)
	t.mu.peers[id] = p
	if t.started && !t.stopped() {
		t.startPeerLocked(p)
	}
}

// dropVoter forgets voter id's address (it left the voters): its
// dialing peer stops, and a connection it opens from now on is a
// learner's. A learner's attached peer is left alone.
func (t *transport) dropVoter(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.voters, id)
	if p := t.mu.peers[id]; p != nil && p.addr != "" {
		p.close()
		delete(t.mu.peers, id)
	}
}

// close stops p's goroutines and closes its attached connection.
func (p *peer) close() {
	close(p.stop)
	if c := p.attached(); c != nil {
		c.Close()
	}
}

// contactOf returns the last-contact cell of node id.
func (t *transport) contactOf(id uint64) *atomic.Int64 {
	if c, ok := t.contact.Load(id); ok {
		return c.(*atomic.Int64)
	}
	c, _ := t.contact.LoadOrStore(id, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// learners returns the ids of the learners connected to this voter now.
func (t *transport) learners() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []uint64
	for id, p := range t.mu.peers {
		if !t.voters[id] && p.attached() != nil {
			out = append(out, id)
		}
	}
	return out
}

// learnerPeer returns the peer of learner id, made (and its sendLoop
// started) on its first connection. The caller is a goroutine of the
// transport's WaitGroup, so adding to it is safe during stop.
func (t *transport) learnerPeer(id uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.mu.peers[id]; p != nil {
		return p
	}
	p := newPeer(id, "")
	t.mu.peers[id] = p
	t.wg.Add(1)
	go t.sendLoop(p)
	return p
}

// send queues m for its peer without blocking.
func (t *transport) send(m *pb.Message) {
	t.mu.Lock()
	p := t.mu.peers[m.GetTo()]
	t.mu.Unlock()
	if p == nil {
		// A learner that has not connected since this node started.
		t.unreachable(m.GetTo())
		if m.GetType() == pb.MessageType_MsgSnap {
			t.snapDone(m.GetTo(), false)
		}
		return
	}
	select {
	case p.q <- m:
	default:
		t.unreachable(p.id)
		if m.GetType() == pb.MessageType_MsgSnap {
			t.snapDone(p.id, false)
		}
	}
}

// lastContact returns when a message from id was last read.
func (t *transport) lastContact(id uint64) time.Time {
	c, ok := t.contact.Load(id)
	if !ok {
		return time.Time{}
	}
	n := c.(*atomic.Int64).Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (t *transport) stopped() bool {
	select {
	case <-t.quit:
		return true
	default:
		return false
	}
}

func (t *transport) sendLoop(p *peer) {
	if p.addr == "" || t.learner {
		t.sendAttached(p)
		return
	}
	defer t.wg.Done()
	var conn net.Conn
	var w *bufio.Writer
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var buf []byte
	for {
		var m *pb.Message
		select {
		case <-t.quit:
			return
		case <-p.stop:
			return
		case m = <-p.q:
		}
		if conn == nil {
			c, err := t.dial(p.addr)
			if err != nil {
				t.dropped(p, m)
				t.drain(p)
				select {
				case <-t.quit:
					return
				case <-p.stop:
					return
				case <-time.After(redialBackoff):
				}
				continue
			}
			conn, w = c, bufio.NewWriterSize(c, 256<<10)
			if _, err := w.Write(t.hello()); err != nil {
				conn.Close()
				conn = nil
				t.dropped(p, m)
				continue
			}
		}
		err := t.write(w, m, &buf)
		// Write what else is queued, then flush once.
		for err == nil && len(p.q) > 0 {
			err = t.write(w, <-p.q, &buf)
		}
		if err == nil {
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			err = w.Flush()
		}
		if err != nil {
			t.logger.Debug("raft transport: send failed", "peer", p.id-1, "err", err)
			conn.Close()
			conn = nil
			t.dropped(p, m)
			continue
		}
		if m.GetType() == pb.MessageType_MsgSnap {
			t.snapDone(p.id, true)
		}
	}
}

// sendAttached writes p's messages on the connection attached to it (a
// learner's connection to a voter, on either side), dropping them while
// there is none.
func (t *transport) sendAttached(p *peer) {
	defer t.wg.Done()
	var cur net.Conn
	var w *bufio.Writer
	var buf []byte
	for {
		var m *pb.Message
		select {
		case <-t.quit:
			return
		case <-p.stop:
			return
		case m = <-p.q:
		}
		c := p.attached()
		if c == nil {
			t.dropped(p, m)
			t.drain(p)
			continue
		}
		if c != cur {
			cur, w = c, bufio.NewWriterSize(c, 256<<10)
		}
		err := t.write(w, m, &buf)
		for err == nil && len(p.q) > 0 {
			err = t.write(w, <-p.q, &buf)
		}
		if err == nil {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			err = w.Flush()
		}
		if err != nil {
			t.logger.Debug("raft transport: send failed", "peer", p.id-1, "err", err)
			p.detach(c)
			c.Close()
			cur = nil
			t.dropped(p, m)
			continue
		}
		if m.GetType() == pb.MessageType_MsgSnap {
			t.snapDone(p.id, true)
		}
	}
}

// learnerConn keeps a learner's connection to voter p open: it dials,
// says hello, attaches the connection for sendAttached and reads the
// voter's messages from it until it fails, then dials again.
func (t *transport) learnerConn(p *peer) {
	defer t.wg.Done()
	for {
		c, err := t.dial(p.addr)
		if err == nil {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Write(t.hello())
			c.SetWriteDeadline(time.Time{})
			if err == nil && t.track(c) {
				p.attach(c)
				select {
				case <-p.stop: // closed before the attach: close it now
					c.Close()
				default:
				}
				t.readMessages(bufio.NewReaderSize(c, 256<<10), p.id)
				p.detach(c)
				t.untrack(c)
			}
			c.Close()
		}
		select {
		case <-t.quit:
			return
		case <-p.stop:
			return
		case <-time.After(redialBackoff):
		}
	}
}

// dial opens a connection to a peer's controller listener, with TLS if
// the transport has it.
func (t *transport) dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if t.dialTLS == nil {
		return c, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(c, t.dialTLS(host))
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		t.warnTLS("raft transport: TLS handshake failed", "addr", addr, "err", err)
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// warnTLS logs a failed TLS handshake: a warning once every 10 s (a
// peer with the wrong certificate retries ten times a second), else at
// debug level.
func (t *transport) warnTLS(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := t.tlsWarned.Load(); now-last < int64(10*time.Second) || !t.tlsWarned.CompareAndSwap(last, now) {
		t.logger.Debug(msg, args...)
		return
	}
	t.logger.Warn(msg, args...)
}

// track registers c to be closed by stop; false if stopping.
func (t *transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped() {
		return false
	}
	t.mu.conns[c] = struct{}{}
	return true
}

func (t *transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.mu.conns, c)
	t.mu.Unlock()
}

// dropped tells raft that m did not reach its peer.
func (t *transport) dropped(p *peer, m *pb.Message) {
	t.unreachable(p.id)
	if m.GetType() == pb.MessageType_MsgSnap {
		t.snapDone(p.id, false)
	}
}

// drain drops what is queued for a peer that cannot be reached.
func (t *transport) drain(p *peer) {
	for {
		select {
		case m := <-p.q:
			if m.GetType() == pb.MessageType_MsgSnap {
				t.snapDone(p.id, false)
			}
		default:
			return
		}
	}
}

func (t *transport) hello() []byte {
	b := append([]byte(helloMagic), transportVer)
	b = binary.BigEndian.AppendUint64(b, t.id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.clusterID)))
	return append(b, t.clusterID...)
}

func (t *transport) write(w *bufio.Writer, m *pb.Message, buf *[]byte) error {
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		return err
	}
	*buf = b
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (t *transport) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.stopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.logger.Warn("raft transport: accept", "err", err)
			select {
			case <-t.quit:
				return
			case <-time.After(redialBackoff):
			}
			continue
		}
		if !t.track(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go t.serve(c)
	}
}

// serve reads one peer's connection until it fails or the transport
// stops. A learner's connection also carries this node's messages to it.
func (t *transport) serve(raw net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.untrack(raw)
		raw.Close()
	}()
	c := raw
	if t.serverTLS != nil {
		tc := tls.Server(c, t.serverTLS)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.warnTLS("raft transport: refused a connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	r := bufio.NewReaderSize(c, 256<<10)
	from, err := t.readHello(r)
	if err != nil {
		t.logger.Warn("raft transport: refused a connection", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	t.mu.Lock()
	voter := t.voters[from]
	t.mu.Unlock()
	if !voter {
		p := t.learnerPeer(from)
		p.attach(c)
		defer p.detach(c)
	}
	t.readMessages(r, from)
}

// readMessages reads messages from node from until the connection fails.
func (t *transport) readMessages(r *bufio.Reader, from uint64) {
	contact := t.contactOf(from)
	var buf []byte
	for {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(l[:])
		if n > maxMessageSize {
			t.logger.Warn("raft transport: message too large", "peer", from-1, "bytes", n)
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		m := &pb.Message{}
		if err := proto.Unmarshal(buf, m); err != nil {
			t.logger.Warn("raft transport: message does not decode", "peer", from-1, "err", err)
			return
		}
		if m.GetFrom() != from {
			continue
		}
		contact.Store(time.Now().UnixNano())
		t.recv(m)
	}
}

func (t *transport) readHello(r *bufio.Reader) (uint64, error) {
	h := make([]byte, len(helloMagic)+1+8+2)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, err
	}
	if string(h[:len(helloMagic)]) != helloMagic {
		return 0, errors.New("not a raft connection")
	}
	if v := h[len(helloMagic)]; v != transportVer {
		return 0, fmt.Errorf("transport version %d", v)
	}
	from := binary.BigEndian.Uint64(h[len(helloMagic)+1:])
	cl := make([]byte, binary.BigEndian.Uint16(h[len(h)-2:]))
	if _, err := io.ReadFull(r, cl); err != nil {
		return 0, err
	}
	if string(cl) != t.clusterID {
		return 0, fmt.Errorf("node %d belongs to cluster %q, not %q", int64(from)-1, cl, t.clusterID)
	}
	switch {
	case from == 0 || from > math.MaxInt32+1:
		return 0, fmt.Errorf("raft id %d is not a node.id's", from)
	case from == t.id:
		return 0, fmt.Errorf("node %d is this node", int64(from)-1)
	}
	return from, nil
}

// stop closes the listener and every connection and waits for the
// transport's goroutines.
func (t *transport) stop() {
	t.mu.Lock()
	close(t.quit)
	for c := range t.mu.conns {
		c.Close()
	}
	t.mu.Unlock()
	if t.ln != nil {
		t.ln.Close()
	}
	t.wg.Wait()
}
