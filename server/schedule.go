package server

import "time"

// startSchedulers starts the broker's background work, owned by s.ctx and
// s.wg: retention (and idle producer expiry) every
// log.retention.check.interval.ms.
func (s *Server) startSchedulers() {
	interval := time.Duration(s.settings().int64("log.retention.check.interval.ms")) * time.Millisecond
	s.wg.Add(1)
	go s.every(interval, s.meta.EnforceRetention)
}

// every calls fn with the time at each tick of interval until Close.
func (s *Server) every(interval time.Duration, fn func(now time.Time)) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}
