package server

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
)

// SaslHandshake, v0-v1, and SaslAuthenticate, v0-v2.
//
// Behavior:
//   - On a SASL_PLAINTEXT or SASL_SSL listener a connection may send only
//     ApiVersions, SaslHandshake and SaslAuthenticate until it has
//     authenticated; anything else closes it, with a log line.
//   - SaslHandshake picks the mechanism (UNSUPPORTED_SASL_MECHANISM, with
//     the enabled ones, otherwise). After v0 the client sends the SASL
//     tokens as bare size-prefixed frames, without Kafka headers, and gets
//     bare frames back; after v1 they travel in SaslAuthenticate.
//   - A failed authentication is logged, answered
//     SASL_AUTHENTICATION_FAILED after a delay, and the connection is
//     closed. The delay is connection.failed.authentication.delay.ms
//     (100), doubled for each failure from the same address within a
//     minute, up to 5 s, so guessing passwords from one address slows down
//     (a shutdown cuts the wait short).
//   - Re-authentication (KIP-368): the session lasts
//     connections.max.reauth.ms (0: for ever), or until the credential
//     expires (an OAUTHBEARER token's exp) if that is sooner; v1+ tells the
//     client in SessionLifetimeMillis. Before then the client sends
//     SaslHandshake and SaslAuthenticate again on the same connection
//     (its other requests go on meanwhile, under the old identity); a
//     request after the session ended without that closes the connection.
//     Re-authenticating as another principal fails.
//   - On a listener without SASL both are answered ILLEGAL_SASL_STATE.
//
// Version notes:
//   - SaslAuthenticate v1 adds SessionLifetimeMillis; v2 is flexible.

func init() {
	regKey(17, 0, 1, handleSaslHandshake)
	regKey(36, 0, 2, handleSaslAuthenticate)
}

// connAuth is a connection's identity and SASL state. Only the reader
// goroutine touches it (handlers run there); each request takes a copy of
// the identity when it is dispatched.
type connAuth struct {
	// principal is "User:name" (User:ANONYMOUS until authenticated).
	principal string
	// user is the principal's name, what user quotas apply to.
	user string
	// authenticated: the SASL exchange succeeded (always true on a
	// listener without SASL).
	authenticated bool
	// expiry ends the session unless the client re-authenticates first;
	// zero means never.
	expiry time.Time
	// mechanism and exchange are the SASL exchange in progress.
	mechanism string
	exchange  auth.Exchange
	// raw: after a v0 handshake, the next frames are bare SASL tokens.
	raw bool
}

// saslGate reports whether a request of key may be handled now on the
// connection, logging why not.
func (c *conn) saslGate(key int16) bool {
	if c.ep.l.sasl == nil || key == 18 || key == 17 || key == 36 {
		return true
	}
	if !c.auth.authenticated {
		c.logger.Warn("request before SASL authentication; closing connection", "api", kmsg.NameForKey(key))
		return false
	}
	if !c.auth.expiry.IsZero() && time.Now().After(c.auth.expiry) {
		c.logger.Info("SASL session expired without re-authentication; closing connection", "principal", c.auth.principal)
		return false
	}
	return true
}

func handleSaslHandshake(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	c := r.c
	a := c.ep.l.sasl
	if a == nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp
	}
	resp.SupportedMechanisms = a.Enabled()
	ex, err := a.Start(req.Mechanism)
	if err != nil {
		c.logger.Warn("SASL handshake with an unsupported mechanism; closing connection", "mechanism", req.Mechanism)
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		r.closeAfter()
		return resp
	}
	c.auth.mechanism, c.auth.exchange = req.Mechanism, ex
	c.auth.raw = r.version == 0
	return resp
}

func handleSaslAuthenticate(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	c := r.c
	if c.ep.l.sasl == nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = errMsg("this listener does not use SASL")
		return resp
	}
	if c.auth.exchange == nil || c.auth.raw {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = errMsg("SaslAuthenticate without a SaslHandshake v1 first")
		r.closeAfter()
		return resp
	}
	answer, lifetime, err := c.stepSASL(req.SASLAuthBytes)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := err.Error()
		resp.ErrorMessage = &msg
		r.closeAfter()
		delay := s.authFailures.record(c.addr, s.settings().int64("connection.failed.authentication.delay.ms"))
		r.await(func() kmsg.Response {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.ctx.Done():
			}
			return resp
		})
		return nil
	}
	resp.SASLAuthBytes = answer
	resp.SessionLifetimeMillis = lifetime
	return resp
}

// stepSASL feeds the client's message to the exchange in progress. When
// it completes, the connection takes the new identity and the session's
// lifetime in milliseconds is returned (0: unbounded). An error is logged
// here.
func (c *conn) stepSASL(msg []byte) (answer []byte, lifetime int64, err error) {
	answer, done, err := c.auth.exchange.Step(msg)
	if err == nil && done {
		res := c.auth.exchange.Result()
		if c.auth.authenticated && res.Principal != c.auth.principal {
			err = errors.New("re-authentication as another principal (" + res.Principal + ") than the connection's (" + c.auth.principal + ")")
		} else {
			c.auth.principal, c.auth.user, c.auth.authenticated = res.Principal, res.User, true
			c.auth.exchange = nil
			c.auth.expiry = time.Time{}
			now := time.Now()
			if ms := c.s.settings().int64("connections.max.reauth.ms"); ms > 0 {
				c.auth.expiry = now.Add(time.Duration(ms) * time.Millisecond)
			}
			if !res.Expiry.IsZero() && (c.auth.expiry.IsZero() || res.Expiry.Before(c.auth.expiry)) {
				c.auth.expiry = res.Expiry
			}
			if !c.auth.expiry.IsZero() {
				lifetime = max(c.auth.expiry.Sub(now).Milliseconds(), 1)
			}
			c.logger.Debug("SASL authenticated", "principal", res.Principal, "mechanism", c.auth.mechanism, "session_ms", lifetime)
			return answer, lifetime, nil
		}
	}
	if err != nil {
		c.auth.exchange = nil
		c.logger.Warn("SASL authentication failed", "mechanism", c.auth.mechanism, "err", err, "failures_from_address", c.s.authFailures.count(c.addr)+1)
		return nil, 0, err
	}
	return answer, 0, nil
}

// rawSASL handles one bare SASL token after a v0 handshake: it answers
// with a bare frame, or closes the connection on failure. It returns
// false when the connection must close.
func (c *conn) rawSASL(seq uint64, token []byte) bool {
	c.outstanding.Add(1)
	answer, _, err := c.stepSASL(token)
	if err != nil {
		delay := c.s.authFailures.record(c.addr, c.s.settings().int64("connection.failed.authentication.delay.ms"))
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-c.s.ctx.Done():
			}
			c.queue(&response{seq: seq, fatal: true})
		}()
		return false
	}
	if c.auth.exchange == nil {
		c.auth.raw = false // done: Kafka requests follow
	}
	b := getBuf()
	*b = append((*b)[:0], byte(len(answer)>>24), byte(len(answer)>>16), byte(len(answer)>>8), byte(len(answer)))
	*b = append(*b, answer...)
	c.queue(&response{seq: seq, buf: b})
	return true
}

// authFailures counts failed authentications per address, to slow down
// password guessing.
type authFailures struct {
	mu     sync.Mutex
	byAddr map[netip.Addr]failureCount
}

type failureCount struct {
	n    int
	last time.Time
}

// failureWindow is how long a failure counts towards its address's delay.
const failureWindow = time.Minute

// maxFailureDelay bounds the delay before a failed authentication is
// answered.
const maxFailureDelay = 5 * time.Second

// record counts a failure from addr and returns how long to wait before
// answering it: baseMs doubled for each earlier failure within a minute,
// up to maxFailureDelay.
func (f *authFailures) record(addr netip.Addr, baseMs int64) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if f.byAddr == nil {
		f.byAddr = map[netip.Addr]failureCount{}
	}
	if len(f.byAddr) > 10000 {
		for a, fc := range f.byAddr {
			if now.Sub(fc.last) > failureWindow {
				delete(f.byAddr, a)
			}
		}
	}
	fc := f.byAddr[addr]
	if now.Sub(fc.last) > failureWindow {
		fc.n = 0
	}
	fc.n++
	fc.last = now
	f.byAddr[addr] = fc
	d := time.Duration(baseMs) * time.Millisecond << min(fc.n-1, 10)
	return min(d, maxFailureDelay)
}

// count is the failures from addr within the window.
func (f *authFailures) count(addr netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc := f.byAddr[addr]
	if time.Since(fc.last) > failureWindow {
		return 0
	}
	return fc.n
}
