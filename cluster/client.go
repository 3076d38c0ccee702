package cluster

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/internal/peer"
)

// brokerConn is a connection from a follower to its leader's Kafka
// listener (package peer): one request at a time.
type brokerConn struct{ c *peer.Conn }

func dialBroker(ctx context.Context, d peer.Dialer, addr string, timeout time.Duration) (*brokerConn, error) {
	c, err := d.DialContext(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &brokerConn{c: c}, nil
}

// request sends req at its version and reads the answer into resp,
// waiting at most timeout.
func (b *brokerConn) request(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	return b.c.Request(req, timeout)
}

// send writes req and sets the deadline of its answer, timeout from now.
func (b *brokerConn) send(req kmsg.Request, timeout time.Duration) error {
	return b.c.Send(req, timeout)
}

// recv reads the answer to req, sent last. A read deadline set meanwhile
// (interrupt) ends it early.
func (b *brokerConn) recv(req kmsg.Request) (kmsg.Response, error) { return b.c.Recv(req) }

func (b *brokerConn) close() { b.c.Close() }

// interrupt makes a recv in progress return at once with an error; the
// connection is then of no further use.
func (b *brokerConn) interrupt() { b.c.Interrupt() }
