package log

import (
	"context"
	"math"
	"sync"
	"time"
)

// throttle bounds the bytes the cleaner threads read and write together
// to a rate (log.cleaner.io.max.bytes.per.second), as Kafka's Throttler
// does: each thread reports what it did and sleeps while the threads are
// ahead of the rate. A burst of up to a tenth of a second's worth passes
// at once. Safe for concurrent use.
type throttle struct {
	rate float64 // bytes per second; +Inf: no limit

	mu struct {
		sync.Mutex
		// debt is how many bytes were done ahead of the rate at last:
		// it drains at rate bytes per second.
		debt float64
		last time.Time
	}
}

func newThrottle(rate float64) *throttle {
	if rate <= 0 || math.IsNaN(rate) {
		rate = math.Inf(1)
	}
	return &throttle{rate: rate}
}

// wait records n bytes read or written and sleeps until the rate allows
// them, or until ctx is done (returning its error).
func (t *throttle) wait(ctx context.Context, n int64) error {
	if math.IsInf(t.rate, 1) || n <= 0 {
		return ctx.Err()
	}
	t.mu.Lock()
	now := time.Now()
	if !t.mu.last.IsZero() {
		t.mu.debt = max(0, t.mu.debt-now.Sub(t.mu.last).Seconds()*t.rate)
	}
	t.mu.last = now
	t.mu.debt += float64(n)
	// What passes the burst allowance is waited out.
	over := t.mu.debt - t.rate/10
	t.mu.Unlock()
	if over <= 0 {
		return ctx.Err()
	}
	d := time.Duration(over / t.rate * float64(time.Second))
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
