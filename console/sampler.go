package console

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// sampler records, every interval while the console is in use, the sum of
// every partition's end offset and size, per topic and in all (internal
// topics left out). Throughput is the difference between two samples:
// records/s from end offsets, bytes/s from log sizes (a retention deletion
// counts as zero, not as negative throughput).
//
// One sample costs a Metadata request, one ListOffsets per broker and one
// DescribeLogDirs per broker, whatever the number of partitions.
type sampler struct {
	c         *Console
	interval  time.Duration
	idleAfter time.Duration // no sampling once the console has been unused this long
	kickc     chan struct{} // one slot: wakes the loop for a sample now

	mu struct {
		sync.Mutex
		points []point         // oldest first, at most history
		last   *snapshot       // the latest sample; nil after a rest
		rates  map[string]rate // per topic, between the last two samples
		err    error           // of the latest attempt
	}
	history int
}

// point is one throughput sample, as the API gives it.
type point struct {
	Time          int64   `json:"t"` // unix milliseconds
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	RecordsPerSec float64 `json:"records_per_sec"`
	BytesPerSec   float64 `json:"bytes_per_sec"`
}

// rate is one topic's throughput between the last two samples.
type rate struct {
	RecordsPerSec float64 `json:"records_per_sec"`
	BytesPerSec   float64 `json:"bytes_per_sec"`
}

// snapshot is what one sample saw.
type snapshot struct {
	at      time.Time
	records int64
	bytes   int64
	topics  map[string]topicTotals
}

type topicTotals struct {
	end   int64 // sum of end offsets
	bytes int64 // sum of log sizes
}

func newSampler(c *Console, interval, idleAfter time.Duration, history int) *sampler {
	s := &sampler{
		c:         c,
		interval:  interval,
		idleAfter: idleAfter,
		kickc:     make(chan struct{}, 1),
		history:   history,
	}
	s.mu.rates = map[string]rate{}
	return s
}

// kick asks for a sample now.
func (s *sampler) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}

// run samples until the console closes. It is owned by the Console.
func (s *sampler) run() {
	defer s.c.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	// soon fires once for a second sample shortly after a first one, so a
	// rate shows within a second of opening the console.
	var soon <-chan time.Time
	for {
		select {
		case <-s.c.ctx.Done():
			return
		case <-t.C:
		case <-s.kickc:
		case <-soon:
			soon = nil
		}
		now := time.Now()
		if !s.c.inUse(now) {
			s.rest()
			continue
		}
		ctx, cancel := context.WithTimeout(s.c.ctx, max(s.interval, 10*time.Second))
		snap, err := s.take(ctx)
		cancel()
		if s.c.ctx.Err() != nil {
			return
		}
		if first := s.record(snap, err); first && s.interval > time.Second {
			soon = time.After(time.Second)
		}
	}
}

// rest forgets the last sample, so the next one after a pause does not
// average over it.
func (s *sampler) rest() {
	s.mu.Lock()
	s.mu.last = nil
	s.mu.Unlock()
}

// take lists every user topic's end offsets and log sizes. Its Metadata
// request bypasses the client's cache, so a new topic counts at once.
func (s *sampler) take(ctx context.Context) (*snapshot, error) {
	m, err := s.c.metadata(ctx)
	if err != nil {
		return nil, err
	}
	snap := &snapshot{at: time.Now(), topics: map[string]topicTotals{}}
	var user []*topicMeta
	for _, t := range m.topics {
		if !t.internal && t.err == nil {
			user = append(user, t)
			snap.topics[t.name] = topicTotals{}
		}
	}
	if len(user) == 0 {
		return snap, nil
	}
	ends, err := s.c.listOffsets(ctx, allPartitions(user...), latest)
	if err != nil {
		return nil, err
	}
	sizes, err := s.c.logSizes(ctx, nil) // every partition: one request per broker, no list to send
	if err != nil {
		return nil, err
	}
	for k, o := range ends {
		if o.err != nil || o.offset < 0 {
			continue
		}
		tt := snap.topics[k.topic]
		tt.end += o.offset
		snap.topics[k.topic] = tt
		snap.records += o.offset
	}
	for k, size := range sizes {
		tt, ok := snap.topics[k.topic]
		if !ok { // internal, or created since the listing
			continue
		}
		tt.bytes += size
		snap.topics[k.topic] = tt
		snap.bytes += size
	}
	return snap, nil
}

// record adds a sample and the rates since the previous one. It reports
// whether the sample was the first since a rest (no rate yet).
func (s *sampler) record(snap *snapshot, err error) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.err = err
	if err != nil {
		s.c.logger.Debug("throughput sample failed", "err", err)
		return false
	}
	p := point{Time: snap.at.UnixMilli(), Records: snap.records, Bytes: snap.bytes}
	if prev := s.mu.last; prev != nil {
		dt := snap.at.Sub(prev.at).Seconds()
		rates := make(map[string]rate, len(snap.topics))
		for name, now := range snap.topics {
			was, ok := prev.topics[name]
			if !ok {
				continue
			}
			r := rate{
				RecordsPerSec: max(0, float64(now.end-was.end)/dt),
				BytesPerSec:   max(0, float64(now.bytes-was.bytes)/dt),
			}
			rates[name] = r
			p.RecordsPerSec += r.RecordsPerSec
			p.BytesPerSec += r.BytesPerSec
		}
		s.mu.rates = rates
		if len(s.mu.points) == s.history {
			s.mu.points = append(s.mu.points[:0], s.mu.points[1:]...)
		}
		s.mu.points = append(s.mu.points, p)
	}
	first = s.mu.last == nil
	s.mu.last = snap
	return first
}

// since returns the samples newer than ms (unix milliseconds) and the
// error of the latest attempt.
func (s *sampler) since(ms int64) ([]point, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []point{}
	for _, p := range s.mu.points {
		if p.Time > ms {
			out = append(out, p)
		}
	}
	return out, s.mu.err
}

// latest returns the totals of the latest sample, if there is one.
func (s *sampler) latest() (records, bytes int64, at time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.last == nil {
		return 0, 0, time.Time{}, false
	}
	return s.mu.last.records, s.mu.last.bytes, s.mu.last.at, true
}

// rateOf returns a topic's latest throughput.
func (s *sampler) rateOf(topic string) (rate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.mu.rates[topic]
	return r, ok
}

// topRates returns up to n topics with the highest record rate.
func (s *sampler) topRates(n int) []topicRate {
	s.mu.Lock()
	out := make([]topicRate, 0, len(s.mu.rates))
	for name, r := range s.mu.rates {
		if r.RecordsPerSec > 0 || r.BytesPerSec > 0 {
			out = append(out, topicRate{Topic: name, rate: r})
		}
	}
	s.mu.Unlock()
	sortTopRates(out)
	return out[:min(n, len(out))]
}

// topicRate is a topic and its throughput.
type topicRate struct {
	Topic string `json:"topic"`
	rate
}

// isShardErr reports whether err is kadm's *ShardErrors: some brokers of
// a request sent to several did not answer, and the rest is usable.
func isShardErr(err error) bool {
	var se *kadm.ShardErrors
	return errors.As(err, &se)
}
