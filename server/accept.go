package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// endpoint is a listener being served: its settings and the address its
// clients are told.
type endpoint struct {
	l    *listener
	host string
	port int32
}

// Serve accepts connections on ln for the broker's first listener (the
// one PLAINTEXT listener of a broker configured without listeners) until
// Close, then returns ErrServerClosed. Temporary accept errors are
// retried with a backoff.
func (s *Server) Serve(ln net.Listener) error {
	return s.ServeListener(s.listeners[0].Name, ln)
}

// ServeListener is Serve for the listener of that name (of the listeners
// config), ln being bound to its address.
func (s *Server) ServeListener(name string, ln net.Listener) error {
	var l *listener
	for _, cand := range s.listeners {
		if strings.EqualFold(cand.Name, name) {
			l = cand
		}
	}
	if l == nil {
		ln.Close()
		return fmt.Errorf("server: no listener named %q", name)
	}
	override := ""
	if l == s.listeners[0] {
		override = s.cfg.AdvertisedAddr
	}
	ep := &endpoint{l: l}
	ep.host, ep.port = l.advertised(ln.Addr(), override)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = ep
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.logger.Info("listening", "listener", l.Name, "protocol", l.Protocol, "addr", ln.Addr().String(), "advertised", net.JoinHostPort(ep.host, fmt.Sprint(ep.port)))
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.mu.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		delay = 0
		s.startConn(c, ep)
	}
}

// brokerHostPort returns the host and port of this broker that the
// client of r is told: those of the listener it is connected to.
func (r *request) brokerHostPort() (string, int32) {
	return r.c.ep.host, r.c.ep.port
}
