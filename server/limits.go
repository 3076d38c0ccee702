package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// Connection and request-memory limits.
//
//   - max.connections and max.connections.per.ip (Kafka's names) bound the
//     connections held open; max.connections.per.ip.overrides
//     ("host:count,ip:count") sets the limit of named addresses. A refused
//     connection is closed at once, with a log line. Ferry's per-address
//     default is 1000 (Kafka's is unlimited): a Kafka client holds one
//     connection per broker and one to its coordinator, so a thousand from
//     one address is a leak, which must not take every file descriptor
//     the partitions need. Clients behind one NAT address may need more.
//   - queued.max.request.bytes bounds the request bytes held in memory by
//     every connection together (requestBudget). Kafka's default is -1, no
//     bound; Ferry's is 256 MiB, on by default: that holds two requests of
//     socket.request.max.bytes (100 MiB) and a reserve for small ones, and
//     is about 1% of a 24 GiB machine. Without it, every connection can
//     make the broker allocate 100 MiB by sending four bytes.
//   - Each connection keeps at most maxInflight requests, and
//     maxInflightBytes of request and response bytes, in flight: it reads
//     no further request until it is below both (conn.awaitRoom).

const (
	// maxInflight bounds the requests of one connection that are being
	// handled or waiting to be written.
	maxInflight = 64
	// maxInflightBytes bounds the bytes one connection has in flight:
	// bodies of requests not yet answered plus responses not yet written
	// (a fetch response counts the mapped segment bytes it will write).
	// A connection over it reads no new request; the request that crosses
	// it is still read whole, so any single request fits.
	maxInflightBytes = 64 << 20
	// smallRequest is the size up to which a request may use the whole
	// request budget, reserve included. One batch of Kafka's default
	// max.message.bytes fits.
	smallRequest = 1 << 20
)

// requestBudget bounds the bytes of request bodies held in memory across
// all connections (queued.max.request.bytes). A reader takes budget for a
// request's whole size before it allocates the body, and gives it back
// once the request is answered (a produce request: once its batches are
// appended). Small requests (up to smallRequest bytes) may use all of the
// budget; larger ones all but a reserve of an eighth, so small requests
// are still read while large ones wait. Each class waits in arrival order,
// so a large request is not passed over forever by later ones either.
type requestBudget struct {
	total    int64 // 0: no bound
	largeCap int64 // what large requests may hold together
	small    int64 // requests up to this size are small
	mu       struct {
		sync.Mutex
		used      int64 // held by all requests
		usedLarge int64 // held by large requests
		smallQ    []*budgetWaiter
		largeQ    []*budgetWaiter
	}
}

// budgetWaiter is a reader waiting for n bytes of budget; ready is closed
// once they are taken for it.
type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// newRequestBudget bounds request bytes to total (0 or less: no bound);
// maxRequest (socket.request.max.bytes) must fit in what large requests
// may hold.
func newRequestBudget(total, maxRequest int64) (*requestBudget, error) {
	b := &requestBudget{}
	if total <= 0 {
		return b, nil
	}
	reserve := total / 8
	b.total, b.largeCap, b.small = total, total-reserve, min(smallRequest, reserve)
	if maxRequest > b.largeCap {
		return nil, fmt.Errorf("queued.max.request.bytes %d is too small for socket.request.max.bytes %d: it must hold the largest request plus a reserve of an eighth for small requests (at least %d), or be -1 for no bound", total, maxRequest, maxRequest+maxRequest/7+1)
	}
	return b, nil
}

// acquire takes n bytes of budget, waiting until they are free or ctx is
// done (then it returns ctx's error and holds nothing).
func (b *requestBudget) acquire(ctx context.Context, n int64) error {
	if b.total == 0 {
		return nil
	}
	large := n > b.small
	b.mu.Lock()
	q := &b.mu.smallQ
	if large {
		q = &b.mu.largeQ
	}
	if len(*q) == 0 && b.fitsLocked(n) {
		b.takeLocked(n)
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	*q = append(*q, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.releaseLocked(n)
	default:
		for i, o := range *q {
			if o == w {
				*q = append((*q)[:i], (*q)[i+1:]...)
				break
			}
		}
		b.grantLocked() // the next in line may fit now
	}
	b.mu.Unlock()
	return ctx.Err()
}

// release gives back n bytes taken by acquire.
func (b *requestBudget) release(n int64) {
	if b.total == 0 || n == 0 {
		return
	}
	b.mu.Lock()
	b.releaseLocked(n)
	b.mu.Unlock()
}

// held returns the bytes held.
func (b *requestBudget) held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.used
}

// waiting returns how many readers wait for budget.
func (b *requestBudget) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.mu.smallQ) + len(b.mu.largeQ)
}

func (b *requestBudget) fitsLocked(n int64) bool {
	if b.mu.used+n > b.total {
		return false
	}
	return n <= b.small || b.mu.usedLarge+n <= b.largeCap
}

func (b *requestBudget) takeLocked(n int64) {
	b.mu.used += n
	if n > b.small {
		b.mu.usedLarge += n
	}
}

func (b *requestBudget) releaseLocked(n int64) {
	b.mu.used -= n
	if n > b.small {
		b.mu.usedLarge -= n
	}
	b.grantLocked()
}

// grantLocked hands budget to the waiters at the head of each queue while
// they fit.
func (b *requestBudget) grantLocked() {
	for _, q := range []*[]*budgetWaiter{&b.mu.smallQ, &b.mu.largeQ} {
		for len(*q) > 0 && b.fitsLocked((*q)[0].n) {
			w := (*q)[0]
			*q = (*q)[1:]
			b.takeLocked(w.n)
			close(w.ready)
		}
	}
}

// connLimits admits connections within max.connections and
// max.connections.per.ip, and holds the request budget.
type connLimits struct {
	budget *requestBudget
	// overrides are the per-address limits of
	// max.connections.per.ip.overrides, by address.
	overrides map[netip.Addr]int64
	mu        struct {
		sync.Mutex
		total int                // connections admitted and not yet gone
		perIP map[netip.Addr]int // the same, by client address
	}
}

func newConnLimits(b brokerSettings) (*connLimits, error) {
	budget, err := newRequestBudget(b.int64("queued.max.request.bytes"), b.int64("socket.request.max.bytes"))
	if err != nil {
		return nil, err
	}
	v, _ := b.Get("max.connections.per.ip.overrides")
	overrides, err := parseConnOverrides(v, true)
	if err != nil {
		return nil, err
	}
	l := &connLimits{budget: budget, overrides: overrides}
	l.mu.perIP = map[netip.Addr]int{}
	return l, nil
}

// parseConnOverrides reads max.connections.per.ip.overrides:
// comma-separated host:count pairs, host an address or a name (resolved
// now, when resolve is set, as Kafka resolves them at start).
func parseConnOverrides(v string, resolve bool) (map[netip.Addr]int64, error) {
	m := map[netip.Addr]int64{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := strings.LastIndexByte(item, ':')
		if i <= 0 {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %q is not host:count", item)
		}
		host := strings.Trim(item[:i], "[]")
		n, err := strconv.ParseInt(item[i+1:], 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %q: count must be an integer of at least 0", item)
		}
		if a, err := netip.ParseAddr(host); err == nil {
			m[a.Unmap()] = n
			continue
		}
		if !resolve {
			continue
		}
		addrs, err := net.LookupHost(host)
		if err != nil {
			return nil, fmt.Errorf("max.connections.per.ip.overrides: %w", err)
		}
		for _, s := range addrs {
			if a, err := netip.ParseAddr(s); err == nil {
				m[a.Unmap()] = n
			}
		}
	}
	return m, nil
}

// admit counts a new connection from addr, or says why it is refused.
func (l *connLimits) admit(addr netip.Addr, b brokerSettings) (refused string) {
	perIP, ok := l.overrides[addr]
	if !ok {
		perIP = b.int64("max.connections.per.ip")
	}
	maxTotal := b.int64("max.connections")
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case int64(l.mu.total) >= maxTotal:
		return fmt.Sprintf("max.connections (%d) reached", maxTotal)
	case int64(l.mu.perIP[addr]) >= perIP:
		return fmt.Sprintf("max.connections.per.ip (%d) reached for %s", perIP, addr)
	}
	l.mu.total++
	l.mu.perIP[addr]++
	return ""
}

// leave forgets a connection admit counted.
func (l *connLimits) leave(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.total--
	if l.mu.perIP[addr]--; l.mu.perIP[addr] <= 0 {
		delete(l.mu.perIP, addr)
	}
}

// connAddr is the client address of nc, as connection limits count it.
func connAddr(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{} // not TCP: all such connections count as one address
}
