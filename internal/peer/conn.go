package peer

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

// maxResponse bounds the size of an answer a Conn reads.
const maxResponse = 256 << 20

// apiVersionsKey is ApiVersions' API key.
const apiVersionsKey = 18

// Conn is a connection to another broker's Kafka listener, speaking the
// Kafka protocol with kmsg: one request at a time.
type Conn struct {
	c        net.Conn
	r        *bufio.Reader
	corr     int32  // correlation id of the last request sent
	clientID string // sent in every request header
	buf      []byte // reused to encode requests
}

// Dial connects to the Kafka listener at addr, waiting at most timeout.
func Dial(addr, clientID string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReaderSize(c, 1<<20), clientID: clientID}, nil
}

// Request sends req at its version and reads the answer, waiting at most
// timeout for both.
func (b *Conn) Request(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	if err := b.Send(req, timeout); err != nil {
		return nil, err
	}
	return b.Recv(req)
}

// Send writes req and sets the deadline of its answer, timeout from now.
func (b *Conn) Send(req kmsg.Request, timeout time.Duration) error {
	b.corr++
	buf := b.buf[:0]
	buf = append(buf, 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.Key()))
	buf = binary.BigEndian.AppendUint16(buf, uint16(req.GetVersion()))
	buf = binary.BigEndian.AppendUint32(buf, uint32(b.corr))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(b.clientID)))
	buf = append(buf, b.clientID...)
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

// Recv reads the answer to req, sent last. A read deadline set meanwhile
// (Interrupt) ends it early.
func (b *Conn) Recv(req kmsg.Request) (kmsg.Response, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(b.r, hdr[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(hdr[:]))
	if size < 4 || size > maxResponse {
		return nil, fmt.Errorf("peer: response of %d bytes", size)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != b.corr {
		return nil, fmt.Errorf("peer: response to request %d, expected %d", corr, b.corr)
	}
	body := make([]byte, size-4)
	if _, err := io.ReadFull(b.r, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != apiVersionsKey {
		// A flexible response header has tags, except ApiVersions',
		// which is always version 0 so that any client can read it.
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

// Close closes the connection.
func (b *Conn) Close() { b.c.Close() }

// Interrupt makes a Recv in progress return at once with an error; the
// connection is then of no further use.
func (b *Conn) Interrupt() { b.c.SetReadDeadline(time.Now()) }
