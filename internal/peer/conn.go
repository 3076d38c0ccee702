package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
)

// ErrAuthentication marks a failed SASL authentication with the other
// broker: wrong credentials, or a mechanism it does not serve.
var ErrAuthentication = errors.New("peer: SASL authentication failed")

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

// TLSError is a failed TLS handshake with another broker.
type TLSError struct {
	Addr string // the address dialed
	Err  error
}

func (e *TLSError) Error() string { return "peer: TLS handshake with " + e.Addr + ": " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

// Dialer says how to reach the other brokers' inter-broker listener:
// plain TCP, TLS, and SASL on either. Its zero value but ClientID is a
// PLAINTEXT listener.
type Dialer struct {
	// ClientID is sent in every request header.
	ClientID string
	// TLS, if set, returns the TLS settings of a connection to host (the
	// host of the address dialed, for the server name check). It is
	// called at each dial so that renewed certificates are used.
	TLS func(host string) *tls.Config
	// SASL, if set, authenticates each new connection with this
	// mechanism (SaslHandshake v1, then SaslAuthenticate) before any
	// request is sent on it.
	SASL sasl.Mechanism
}

// Dial connects to the Kafka listener at addr with d's security,
// waiting at most timeout for the connection, its TLS handshake and
// its SASL authentication.
func (d Dialer) Dial(addr string, timeout time.Duration) (*Conn, error) {
	return d.DialContext(context.Background(), addr, timeout)
}

// DialContext is Dial, ended early when ctx is done.
func (d Dialer) DialContext(ctx context.Context, addr string, timeout time.Duration) (*Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The SASL requests below wait on deadlines, not on ctx.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	c := raw
	if d.TLS != nil {
		tc := tls.Client(c, d.TLS(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, &TLSError{Addr: addr, Err: err}
		}
		c = tc
	}
	b := &Conn{c: c, r: bufio.NewReaderSize(c, 1<<20), clientID: d.ClientID}
	if d.SASL != nil {
		if err := b.authenticate(ctx, host, d.SASL); err != nil {
			c.Close()
			if op := (*net.OpError)(nil); d.TLS != nil && errors.As(err, &op) && op.Op == "remote error" {
				// Under TLS 1.3 the other broker's refusal of this
				// one's certificate arrives at the first read.
				return nil, &TLSError{Addr: addr, Err: err}
			}
			return nil, fmt.Errorf("%w with %s as %s: %w", ErrAuthentication, addr, d.SASL.Name(), err)
		}
	}
	return b, nil
}

// authenticate runs a SASL exchange on a new connection: SaslHandshake
// v1 names the mechanism, then each message of the mechanism travels in
// a SaslAuthenticate v1 until the mechanism is done. ctx, which has a
// deadline, bounds it all.
func (b *Conn) authenticate(ctx context.Context, host string, m sasl.Mechanism) error {
	deadline, _ := ctx.Deadline()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version = 1
	hs.Mechanism = m.Name()
	resp, err := b.Request(hs, time.Until(deadline))
	if err != nil {
		return err
	}
	if hr := resp.(*kmsg.SASLHandshakeResponse); hr.ErrorCode != 0 {
		return fmt.Errorf("mechanism not enabled there (enabled: %v): %w", hr.SupportedMechanisms, kerr.ErrorForCode(hr.ErrorCode))
	}
	session, msg, err := m.Authenticate(ctx, host)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err // a request would set a deadline of its own
		}
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version = 1
		req.SASLAuthBytes = msg
		resp, err := b.Request(req, time.Until(deadline))
		if err != nil {
			return err
		}
		ar := resp.(*kmsg.SASLAuthenticateResponse)
		if ar.ErrorCode != 0 {
			err := kerr.ErrorForCode(ar.ErrorCode)
			if ar.ErrorMessage != nil {
				err = fmt.Errorf("%w: %s", err, *ar.ErrorMessage)
			}
			return err
		}
		done, next, err := session.Challenge(ar.SASLAuthBytes)
		if err != nil {
			return err
		}
		if done && len(next) == 0 {
			return nil
		}
		msg = next
	}
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
