package server

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/meta"
)

// Client quotas, as Kafka enforces them.
//
// Quotas are set per user, per client id, or per both, each named or the
// default (AlterClientQuotas, `ferry quota set`), and kept in the metadata
// log. A request's user (the principal's name: ANONYMOUS, the SASL user,
// or a client certificate's subject) and client id pick, for each kind of
// quota, the first entity in Kafka's order that sets it:
//
//	user+client-id, user+default client-id, user,
//	default user+client-id, default user+default client-id, default user,
//	client-id, default client-id
//
// and the requests of every client matching that entity share one rate
// (a default stands for each user or client id on its own).
//
//   - producer_byte_rate: the bytes of produce requests per second;
//   - consumer_byte_rate: the bytes of fetch responses per second;
//   - request_percentage: the time spent handling requests (read and
//     answered on the connection's goroutine, not the time a request
//     waits for an fsync or a long poll), in percent of one core.
//
// A rate is measured over quota.window.num samples of
// quota.window.size.seconds (11 of 1 s), and over no less than all but
// one of them, as Kafka's. A request that takes a rate over its quota is
// answered at once with throttle_time_ms, the time the rate needs to fall
// back to the quota ((rate - quota) / quota × window), and the broker
// reads nothing more from that connection until then (KIP-219): the
// client waits whether it honours the field or not. A fetch asked while
// its rate is over quota is answered without data. controller_mutation_rate
// and ip quotas (connection_creation_rate) are stored and described but
// not enforced. With no quota set, none of this runs: a request pays for
// one atomic load.

// quota names.
const (
	quotaProduce  = "producer_byte_rate"
	quotaFetch    = "consumer_byte_rate"
	quotaRequest  = "request_percentage"
	quotaMutation = "controller_mutation_rate"
	quotaConnRate = "connection_creation_rate"
)

// quotas measures clients' rates against their quotas.
type quotas struct {
	// enabled is set when any quota is set.
	enabled atomic.Bool
	// set is the image's quotas, by meta.QuotaEntity.Key.
	set atomic.Pointer[map[string]meta.ClientQuota]
	// window and samples: quota.window.size.seconds, quota.window.num.
	window  time.Duration
	samples int
	mu      struct {
		sync.Mutex
		sensors map[sensorKey]*sensor
	}
}

// sensorKey names the rate one quota is measured on.
type sensorKey struct {
	quota        string
	user, client string // the request's, where the matched entity names them
	limit        float64
}

func newQuotas(window time.Duration, samples int) *quotas {
	q := &quotas{window: window, samples: max(samples, 2)}
	q.mu.sensors = map[sensorKey]*sensor{}
	q.update(map[string]meta.ClientQuota{})
	return q
}

// update takes the image's quotas.
func (q *quotas) update(set map[string]meta.ClientQuota) {
	q.set.Store(&set)
	q.enabled.Store(len(set) > 0)
	q.mu.Lock()
	clear(q.mu.sensors) // limits may have changed; start afresh
	q.mu.Unlock()
}

func entityKey(user, client *string, hasUser, hasClient bool) string {
	var e meta.QuotaEntity
	if hasUser {
		e = append(e, meta.QuotaEntityPart{Type: "user", Name: user})
	}
	if hasClient {
		e = append(e, meta.QuotaEntityPart{Type: "client-id", Name: client})
	}
	return e.Key()
}

// match returns the quota of that name applying to user and client, and
// the sensor it is measured on; ok is false when none applies.
func (q *quotas) match(name, user, client string) (limit float64, key sensorKey, ok bool) {
	set := *q.set.Load()
	type cand struct {
		user, client       *string
		hasUser, hasClient bool
	}
	u, c := &user, &client
	for _, cd := range [...]cand{
		{u, c, true, true}, {u, nil, true, true}, {u, nil, true, false},
		{nil, c, true, true}, {nil, nil, true, true}, {nil, nil, true, false},
		{nil, c, false, true}, {nil, nil, false, true},
	} {
		cq, found := set[entityKey(cd.user, cd.client, cd.hasUser, cd.hasClient)]
		if !found {
			continue
		}
		v, found := cq.Values[name]
		if !found {
			continue
		}
		key = sensorKey{quota: name, limit: v}
		if cd.hasUser {
			key.user = user
		}
		if cd.hasClient {
			key.client = client
		}
		return v, key, true
	}
	return 0, sensorKey{}, false
}

func (q *quotas) sensor(key sensorKey) *sensor {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.mu.sensors[key]
	if s == nil {
		if len(q.mu.sensors) > 100000 {
			clear(q.mu.sensors) // bounded: forget idle clients' rates
		}
		s = &sensor{window: q.window, samples: make([]sample, q.samples)}
		q.mu.sensors[key] = s
	}
	return s
}

// record adds v to the rate of quota name for user and client and returns
// the throttle time it calls for, in ms (0 when within quota). The
// request_percentage quota is in percent of one core; v then is
// milliseconds, which the quota allows limit × 10 of per second.
func (q *quotas) record(name, user, client string, v float64, now time.Time) int32 {
	limit, key, ok := q.match(name, user, client)
	if !ok {
		return 0
	}
	if name == quotaRequest {
		limit *= 10
	}
	s := q.sensor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(v, now)
	return s.throttleLocked(limit, now, time.Duration(len(s.samples))*s.window)
}

// throttle is the throttle time quota name calls for now, without
// recording anything.
func (q *quotas) throttle(name, user, client string, now time.Time) int32 {
	limit, key, ok := q.match(name, user, client)
	if !ok {
		return 0
	}
	s := q.sensor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttleLocked(limit, now, time.Duration(len(s.samples))*s.window)
}

// sensor is a rate over a ring of samples, as Kafka's Rate measures it.
type sensor struct {
	mu      sync.Mutex
	window  time.Duration
	samples []sample
	cur     int
}

type sample struct {
	start time.Time
	value float64
}

func (s *sensor) recordLocked(v float64, now time.Time) {
	cur := &s.samples[s.cur]
	if cur.start.IsZero() || now.Sub(cur.start) >= s.window {
		s.cur = (s.cur + 1) % len(s.samples)
		cur = &s.samples[s.cur]
		cur.start, cur.value = now, 0
	}
	cur.value += v
}

// rateLocked is the rate per second: the samples of the last
// len(samples) windows over the time they span, counted as at least
// len(samples)-1 windows. It also returns that span.
func (s *sensor) rateLocked(now time.Time) (float64, time.Duration) {
	var total float64
	oldest := now
	horizon := time.Duration(len(s.samples)) * s.window
	for _, sm := range s.samples {
		if sm.start.IsZero() || now.Sub(sm.start) >= horizon {
			continue
		}
		total += sm.value
		if sm.start.Before(oldest) {
			oldest = sm.start
		}
	}
	span := max(now.Sub(oldest), time.Duration(len(s.samples)-1)*s.window)
	return total / span.Seconds(), span
}

// throttleLocked is how long, in ms, the rate needs to fall to limit:
// (rate - limit) / limit × span, at most maxThrottle.
func (s *sensor) throttleLocked(limit float64, now time.Time, maxThrottle time.Duration) int32 {
	rate, span := s.rateLocked(now)
	if rate <= limit || limit <= 0 {
		if limit <= 0 && rate > 0 {
			return int32(maxThrottle.Milliseconds())
		}
		return 0
	}
	ms := (rate - limit) / limit * float64(span.Milliseconds())
	return int32(math.Min(ms, float64(maxThrottle.Milliseconds())))
}

// startQuotas reads the quota settings and the image's quotas.
func (s *Server) startQuotas() {
	bs := s.settings()
	s.quotas = newQuotas(time.Duration(bs.int64("quota.window.size.seconds"))*time.Second, int(bs.int64("quota.window.num")))
	s.quotas.update(s.meta.ClientQuotas())
}

// quotasChanged follows the image's quotas.
func (s *Server) quotasChanged() {
	if s.quotas != nil {
		s.quotas.update(s.meta.ClientQuotas())
	}
}

// quotaProduce records a produce request's bytes (dispatch calls it before
// the handler) and throttles the request if its rate is over quota.
func (r *request) quotaProduce(n int) {
	q := r.c.s.quotas
	if !q.enabled.Load() {
		return
	}
	r.throttleAtLeast(q.record(quotaProduce, r.user, r.clientID, float64(n), time.Now()))
}

// quotaRequestTime records the time the handler of r took on the
// connection's goroutine.
func (r *request) quotaRequestTime(took time.Duration) {
	q := r.c.s.quotas
	if !q.enabled.Load() {
		return
	}
	r.throttleAtLeast(q.record(quotaRequest, r.user, r.clientID, float64(took)/float64(time.Millisecond), time.Now()))
}

// throttleAtLeast raises the request's throttle time to ms.
func (r *request) throttleAtLeast(ms int32) {
	for {
		cur := r.throttle.Load()
		if ms <= cur || r.throttle.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// throttleResponse puts the request's throttle time in its response and
// mutes the connection for it.
func (s *Server) throttleResponse(r *request, resp kmsg.Response) {
	ms := r.throttle.Load()
	if ms <= 0 {
		return
	}
	if tr, ok := resp.(throttleSetter); ok {
		if cur, _ := tr.Throttle(); cur < ms {
			tr.SetThrottle(ms)
		}
	}
	r.c.mute(ms)
}

// throttleSetter is a response with a throttle_time_ms field.
type throttleSetter interface {
	Throttle() (int32, bool)
	SetThrottle(int32)
}

// mute stops the reader from reading requests for ms from now.
func (c *conn) mute(ms int32) {
	until := time.Now().Add(time.Duration(ms) * time.Millisecond).UnixNano()
	for {
		cur := c.mutedUntil.Load()
		if until <= cur || c.mutedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// awaitUnmuted waits while the connection is muted for a quota; false
// means the connection is closing.
func (c *conn) awaitUnmuted() bool {
	until := c.mutedUntil.Load()
	if until == 0 {
		return true
	}
	d := time.Until(time.Unix(0, until))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}
