package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
// Each node dials every peer once (and again after an error) and sends its
// messages in order on that connection; it reads the connections its
// peers opened. Raft tolerates lost messages, so a message that finds its
// peer's queue full or its connection broken is dropped and raft is told
// the peer is unreachable.
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
	ln        net.Listener
	// recv gets every message read from a peer.
	recv func(*pb.Message)
	// report is told of unreachable peers and of snapshot sends.
	unreachable func(id uint64)
	snapDone    func(id uint64, ok bool)

	peers map[uint64]*peer
	// contact holds, per peer id, the Unix nanoseconds of the last
	// message read from it.
	contact map[uint64]*atomic.Int64

	quit chan struct{}
	wg   sync.WaitGroup
	mu   struct {
		sync.Mutex
		conns map[net.Conn]struct{}
	}
}

// peer is the outbound side towards one node.
type peer struct {
	id   uint64
	addr string
	q    chan *pb.Message
}

func newTransport(id uint64, clusterID string, ln net.Listener, addrs map[uint64]string, logger *slog.Logger) *transport {
	t := &transport{id: id, clusterID: clusterID, logger: logger, ln: ln, peers: map[uint64]*peer{}, contact: map[uint64]*atomic.Int64{}, quit: make(chan struct{})}
	t.mu.conns = map[net.Conn]struct{}{}
	for pid, addr := range addrs {
		t.contact[pid] = new(atomic.Int64)
		if pid == id {
			continue
		}
		t.peers[pid] = &peer{id: pid, addr: addr, q: make(chan *pb.Message, peerQueue)}
	}
	return t
}

func (t *transport) start() {
	t.wg.Add(1)
	go t.accept()
	for _, p := range t.peers {
		t.wg.Add(1)
		go t.sendLoop(p)
	}
}

// send queues m for its peer without blocking.
func (t *transport) send(m *pb.Message) {
	p := t.peers[m.GetTo()]
	if p == nil {
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
	c := t.contact[id]
	if c == nil {
		return time.Time{}
	}
	n := c.Load()
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
		case m = <-p.q:
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", p.addr, dialTimeout)
			if err != nil {
				t.dropped(p, m)
				t.drain(p)
				select {
				case <-t.quit:
					return
				case <-time.After(redialBackoff):
				}
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
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
		t.mu.Lock()
		if t.stopped() {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.mu.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go t.serve(c)
	}
}

// serve reads one peer's connection until it fails or the transport
// stops.
func (t *transport) serve(c net.Conn) {
	defer t.wg.Done()
	defer func() {
		t.mu.Lock()
		delete(t.mu.conns, c)
		t.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 256<<10)
	from, err := t.readHello(r)
	if err != nil {
		t.logger.Warn("raft transport: refused a connection", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	contact := t.contact[from]
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
	if _, ok := t.contact[from]; !ok || from == t.id {
		return 0, fmt.Errorf("node %d is not a voter of this cluster", int64(from)-1)
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
	t.ln.Close()
	t.wg.Wait()
}
