package peer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrClosed is returned by a Pool's requests after Close.
var ErrClosed = errors.New("peer: pool closed")

// maxIdle bounds the idle connections a Pool keeps per address.
const maxIdle = 4

// Pool holds connections to other brokers, by address. See the package
// comment.
type Pool struct {
	dialer  Dialer
	timeout time.Duration // of a request whose context has no earlier deadline

	mu struct {
		sync.Mutex
		closed bool
		idle   map[string][]*Conn
	}
}

// NewPool returns a pool whose connections are dialed by d and whose
// requests wait at most timeout (or their context's deadline, if sooner).
func NewPool(d Dialer, timeout time.Duration) *Pool {
	p := &Pool{dialer: d, timeout: timeout}
	p.mu.idle = map[string][]*Conn{}
	return p
}

// Request sends req to the broker at addr and returns its answer. ctx
// bounds the dial and the wait; when it is done the request ends with its
// error.
func (p *Pool) Request(ctx context.Context, addr string, req kmsg.Request) (kmsg.Response, error) {
	timeout := p.timeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := p.get(ctx, addr, timeout)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, c.Interrupt)
	resp, err := c.Request(req, timeout)
	if interrupted := !stop(); err != nil || interrupted {
		c.Close() // its read deadline may be past, or an answer half read
	} else {
		p.put(addr, c)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return resp, nil
}

func (p *Pool) get(ctx context.Context, addr string, timeout time.Duration) (*Conn, error) {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if cs := p.mu.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		p.mu.idle[addr] = cs[:len(cs)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	return p.dialer.DialContext(ctx, addr, timeout)
}

func (p *Pool) put(addr string, c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed || len(p.mu.idle[addr]) >= maxIdle {
		c.Close()
		return
	}
	p.mu.idle[addr] = append(p.mu.idle[addr], c)
}

// Close closes the idle connections; those in use close as they come
// back. Requests after Close fail with ErrClosed. It is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	for addr, cs := range p.mu.idle {
		for _, c := range cs {
			c.Close()
		}
		delete(p.mu.idle, addr)
	}
}
