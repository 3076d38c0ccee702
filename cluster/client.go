package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerConn is a connection from a follower to its leader's Kafka
// listener, speaking the Kafka protocol with kmsg: one request at a time.
type brokerConn struct {
	c    net.Conn
	r    *bufio.Reader
	corr int32
	id   string // client id
	buf  []byte
}

func dialBroker(addr, clientID string, timeout time.Duration) (*brokerConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &brokerConn{c: c, r: bufio.NewReaderSize(c, 1<<20), id: clientID}, nil
}

// request sends req at its version and reads the answer into resp,
// waiting at most timeout.
func (b *brokerConn) request(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	if err := b.send(req, timeout); err != nil {
		return nil, err
	}
	return b.recv(req)
}

// send writes req and sets the deadline of its answer, timeout from now.
func (b *brokerConn) send(req kmsg.Request, timeout time.Duration) error {
	b.corr++
	buf := b.buf[:0]
	buf = append(buf, 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.Key()))
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.GetVersion()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(b.corr))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(b.id)))
	buf = append(buf, b.id...)
	if req.IsFlexible() {
		buf = append(buf, 0) // no tagged fields
	}
	buf = req.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	b.buf = buf
	b.c.SetDeadline(time.Now().Add(timeout))
	_, err := b.c.Write(buf)
	return err
}

// recv reads the answer to req, sent last. A read deadline set meanwhile
// (interrupt) ends it early.
func (b *brokerConn) recv(req kmsg.Request) (kmsg.Response, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(hdr[:]))
	if size < 4 || size > 256<<20 {
		return nil, fmt.Errorf("response of %d bytes", size)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != b.corr {
		return nil, fmt.Errorf("response to request %d, expected %d", corr, b.corr)
	}
	body := make([]byte, size-4)
	if _, err := io.ReadFull(b.r, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() {
		r := kbin.Reader{Src: body}
		kmsg.SkipTags(&r)
		if err := r.Complete(); err != nil {
			return nil, err
		}
		body = r.Src
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, err
	}
	return resp, nil
}

func (b *brokerConn) close() { b.c.Close() }

// interrupt makes a recv in progress return at once with an error; the
// connection is then of no further use.
func (b *brokerConn) interrupt() { b.c.SetReadDeadline(time.Now()) }
