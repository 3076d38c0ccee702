package server

import (
	"errors"
	"net"
	"time"
)

// Serve accepts connections on ln until Close, then returns
// ErrServerClosed. Temporary accept errors are retried with a backoff.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.mu.listeners[ln] = struct{}{}
	if s.mu.advertised == "" {
		s.mu.advertised = ln.Addr().String()
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
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
		s.startConn(c)
	}
}

// advertisedAddr returns the address advertised to clients.
func (s *Server) advertisedAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.advertised
}
