package server

import "errors"

// ErrNotServing is what Ready returns before Serve has taken a listener.
var ErrNotServing = errors.New("server: not accepting connections yet")

// Ready reports whether the broker serves clients: its storage is open (New
// returned and Shutdown has not begun) and Serve has taken a listener. It
// returns nil when ready, ErrNotServing before Serve, and ErrServerClosed
// once Shutdown or Close has begun, so a load balancer polling it stops
// sending clients while requests in flight drain. It is what the admin
// listener's /readyz answers, and is safe to call from any goroutine.
func (s *Server) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.closed:
		return ErrServerClosed
	case len(s.mu.listeners) == 0:
		return ErrNotServing
	}
	return nil
}
