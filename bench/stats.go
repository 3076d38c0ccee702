package bench

import (
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latency kinds reported in Latency.Kind.
const (
	LatencyAck         = "ack"          // produce: send to acknowledgement
	LatencyEndToEnd    = "end-to-end"   // e2e: timestamp in the record to receipt
	LatencyFirstRecord = "first-record" // consume: client start to first record
	LatencyCommit      = "commit"       // transactional produce: last record of a transaction to its commit's return
)

// histogram range: 1µs to 10 minutes, 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// Latency summarizes a latency histogram. Values are milliseconds.
type Latency struct {
	// Kind says what was measured: "ack", "end-to-end" or "first-record".
	Kind string `json:"kind"`
	// Count is the number of samples.
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// Curve is the percentile curve (percentile, milliseconds) for charts.
	Curve []CurvePoint `json:"curve,omitempty"`
}

// CurvePoint is one point of a latency percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	Millis     float64 `json:"ms"`
}

// Sample is one second of a run's throughput.
type Sample struct {
	// Second is the end of the interval, in seconds since measuring began
	// (negative during the warmup).
	Second        float64 `json:"t_s"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MiBPerSec     float64 `json:"mib_per_sec"`
}

// curvePercentiles are the points of Latency.Curve: 0 to 99.999 spaced
// evenly on the 1/(1-p) scale HdrHistogram plots use.
var curvePercentiles = func() []float64 {
	var ps []float64
	for _, decade := range []float64{0, 90, 99, 99.9, 99.99} {
		step := (100 - decade) / 10
		for i := range 9 {
			ps = append(ps, decade+float64(i)*step)
		}
	}
	return append(ps, 99.999, 100)
}()

func summarize(kind string, h *hdrhistogram.Histogram) Latency {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	l := Latency{Kind: kind, Count: h.TotalCount()}
	if l.Count == 0 {
		return l
	}
	l.Mean = h.Mean() / 1000
	l.P50 = ms(h.ValueAtQuantile(50))
	l.P90 = ms(h.ValueAtQuantile(90))
	l.P99 = ms(h.ValueAtQuantile(99))
	l.P999 = ms(h.ValueAtQuantile(99.9))
	l.Max = ms(h.Max())
	for _, p := range curvePercentiles {
		l.Curve = append(l.Curve, CurvePoint{Percentile: p, Millis: ms(h.ValueAtQuantile(p))})
	}
	return l
}

// recorder is one client's share of a meter: counters bumped per record and
// a histogram. A client's promises (or its poll loop) run serially, so the
// mutex is contended only by the once-a-second progress reader.
type recorder struct {
	records atomic.Int64
	bytes   atomic.Int64
	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	last    time.Time // time of the last counted record
	_       [64]byte  // keep recorders of different clients off one cache line
}

func newRecorder() *recorder { return &recorder{hist: newHist()} }

// add counts n records of b bytes. Safe to call concurrently with
// everything else.
func (r *recorder) add(n, b int64) {
	r.records.Add(n)
	r.bytes.Add(b)
}

// observe records one latency sample and the time it was taken.
func (r *recorder) observe(now time.Time, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < histMin {
		us = histMin
	} else if us > histMax {
		us = histMax
	}
	r.mu.Lock()
	r.hist.RecordValue(us)
	if now.After(r.last) {
		r.last = now
	}
	r.mu.Unlock()
}

// touch notes that a record was counted at now without a latency sample.
func (r *recorder) touch(now time.Time) {
	r.mu.Lock()
	if now.After(r.last) {
		r.last = now
	}
	r.mu.Unlock()
}

// meter adds up the recorders of a run and prints the progress line.
type meter struct {
	name      string
	kind      string
	recs      []*recorder
	start     time.Time // measuring starts (after the warmup)
	out       io.Writer
	prevRecs  int64
	prevBytes int64
	prevTime  time.Time

	mu     sync.Mutex
	series []Sample

	stop chan struct{}
	done chan struct{}
}

func newMeter(name, kind string, n int, start time.Time, out io.Writer) *meter {
	m := &meter{name: name, kind: kind, start: start, out: out}
	for range n {
		m.recs = append(m.recs, newRecorder())
	}
	return m
}

// run prints one progress line per second until stop is called. It is
// started once, in its own goroutine, by the run that owns the meter.
func (m *meter) run(begin time.Time) {
	m.stop = make(chan struct{})
	m.done = make(chan struct{})
	m.prevTime = begin
	go func() {
		defer close(m.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case now := <-t.C:
				m.tick(now, true)
			}
		}
	}()
}

// halt stops the progress goroutine, waits for it and adds the last
// partial second to the series.
func (m *meter) halt() {
	if m.stop == nil {
		return
	}
	close(m.stop)
	<-m.done
	m.stop = nil
	if now := time.Now(); now.Sub(m.prevTime) > 50*time.Millisecond {
		m.tick(now, false)
	}
}

func (m *meter) totals() (recs, bytes int64) {
	for _, r := range m.recs {
		recs += r.records.Load()
		bytes += r.bytes.Load()
	}
	return recs, bytes
}

func (m *meter) merged() *hdrhistogram.Histogram {
	h := newHist()
	for _, r := range m.recs {
		r.mu.Lock()
		h.Merge(r.hist)
		r.mu.Unlock()
	}
	return h
}

// lastCounted is the time the last record was counted, zero when none was.
func (m *meter) lastCounted() time.Time {
	var last time.Time
	for _, r := range m.recs {
		r.mu.Lock()
		if r.last.After(last) {
			last = r.last
		}
		r.mu.Unlock()
	}
	return last
}

func (m *meter) tick(now time.Time, print bool) {
	recs, bytes := m.totals()
	dt := now.Sub(m.prevTime).Seconds()
	if dt <= 0 {
		return
	}
	s := Sample{
		Second:        now.Sub(m.start).Seconds(),
		RecordsPerSec: float64(recs-m.prevRecs) / dt,
		MiBPerSec:     float64(bytes-m.prevBytes) / dt / (1 << 20),
	}
	m.prevRecs, m.prevBytes, m.prevTime = recs, bytes, now
	m.mu.Lock()
	m.series = append(m.series, s)
	m.mu.Unlock()
	if m.out == nil || !print {
		return
	}
	phase := ""
	if now.Before(m.start) {
		phase = " (warmup)"
	}
	lat := ""
	if m.kind != LatencyFirstRecord {
		h := m.merged()
		if h.TotalCount() > 0 {
			lat = fmt.Sprintf("  %s latency so far p50 %s p99 %s", m.kind, fmtMillis(float64(h.ValueAtQuantile(50))/1000), fmtMillis(float64(h.ValueAtQuantile(99))/1000))
		}
	}
	fmt.Fprintf(m.out, "%s %5.0fs %12s rec/s %9.2f MiB/s%s%s\n",
		m.name, math.Round(s.Second), FormatCount(s.RecordsPerSec), s.MiBPerSec, lat, phase)
}

func (m *meter) samples() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Sample(nil), m.series...)
}

// FormatCount prints n with thousands separators: 2,512,345.
func FormatCount(n float64) string {
	v := int64(math.Round(n))
	neg := v < 0
	if neg {
		v = -v
	}
	s := fmt.Sprint(v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fmtMillis prints a millisecond value with a unit that suits it.
func fmtMillis(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}
