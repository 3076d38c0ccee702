package server

import (
	"context"
	"io"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// tcpProxy forwards the connections made to one address to another.
// Paused, it cuts the connections it carries and closes every new one at
// once: the broker behind it is unreachable at that address. Hung, it
// cuts them too but holds every new one open without forwarding a byte:
// the broker behind it accepts and never answers (SIGSTOP).
type tcpProxy struct {
	ln net.Listener
	to string
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		paused bool
		hung   bool
		conns  map[net.Conn]struct{} // forwarded
		held   []net.Conn            // accepted while hung
	}
}

// proxy puts a tcpProxy in front of node i, not started yet: the node
// listens elsewhere and advertises the proxy's address.
func (c *testCluster) proxy(i int) *tcpProxy {
	c.t.Helper()
	nd := c.nodes[i]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	nd.listen = ln.Addr().String()
	ln.Close()
	pln, err := net.Listen("tcp", nd.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	p := &tcpProxy{ln: pln, to: nd.listen}
	p.mu.conns = map[net.Conn]struct{}{}
	p.wg.Add(1)
	go p.accept()
	c.t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		paused, hung := p.mu.paused, p.mu.hung
		if hung {
			p.mu.held = append(p.mu.held, in) // closed by resume
		}
		p.mu.Unlock()
		if paused {
			in.Close()
			continue
		}
		if hung {
			continue
		}
		out, err := net.Dial("tcp", p.to)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.mu.conns[in], p.mu.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.mu.conns, dst)
			delete(p.mu.conns, src)
			p.mu.Unlock()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// pause cuts every connection and refuses new ones until resume.
func (p *tcpProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.paused = true
	for c := range p.mu.conns {
		c.Close()
	}
}

// hang cuts every connection and holds new ones unanswered until resume.
func (p *tcpProxy) hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.hung = true
	for c := range p.mu.conns {
		c.Close()
	}
}

func (p *tcpProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.paused, p.mu.hung = false, false
	for _, c := range p.mu.held {
		c.Close()
	}
	p.mu.held = nil
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.pause()
	p.resume()
	p.wg.Wait()
}

// directDialer is a kgo dialer that goes around the cluster's proxies,
// to each node's own listener.
func (c *testCluster) directDialer() kgo.Opt {
	direct := map[string]string{}
	for _, nd := range c.nodes {
		if nd.listen != "" {
			direct[nd.addr] = nd.listen
		}
	}
	var d net.Dialer
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if to, ok := direct[host]; ok {
			host = to
		}
		return d.DialContext(ctx, network, host)
	})
}

// TestClusterShareMemberGoneRetried checks that a share group's
// coordinator tells the leader of a data partition that a member left
// even when its first attempts fail: the leader is unreachable from the
// other brokers for a while (its members still reach it), and once it is
// back it releases the member's records at once, not when their
// acquisition locks (a minute) expire.
func TestClusterShareMemberGoneRetried(t *testing.T) {
	c := newCluster(t, 3, shareOpsProps())
	proxies := make([]*tcpProxy, len(c.nodes))
	for i := range c.nodes {
		proxies[i] = c.proxy(i)
	}
	c.startAll()
	o := shareOpsOn(t, c)
	group, coord := o.pickGroup()
	if coord == o.dataLeader {
		t.Fatalf("the group's coordinator %d leads q-0", coord)
	}
	setClusterGroupConfigs(t, o.c, group, "share.auto.offset.reset", "earliest")
	setClusterGroupConfigs(t, o.c, group, "share.record.lock.duration.ms", "60000")
	o.produce(5)

	m1 := o.member(group, c.directDialer())
	if got := rawFetchUntil(t, m1, o.q0, 5); len(got) != 5 {
		t.Fatalf("acquired %v", got)
	}
	m2 := o.member(group, c.directDialer())
	// q-0's leader is unreachable by the other brokers while m1 leaves:
	// the coordinator's notice fails, then is sent again.
	proxies[o.dataLeader].pause()
	m1.leave()
	time.Sleep(time.Second)
	proxies[o.dataLeader].resume()
	start := time.Now()
	got := rawFetchUntil(t, m2, o.q0, 5)
	t.Logf("m1's records acquired by m2 %v after q-0's leader was reachable again", time.Since(start).Round(time.Millisecond))
	if want := map[int64]int16{0: 2, 1: 2, 2: 2, 3: 2, 4: 2}; !maps.Equal(got, want) {
		t.Fatalf("acquired %v by m2, want 0-4 delivered a second time", got)
	}
}
