package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressLine: the per-second line's latency is over the whole run so
// far (the histogram is not reset each second), and its label says so.
func TestProgressLine(t *testing.T) {
	start := time.Now()
	var out bytes.Buffer
	m := newMeter("produce", LatencyAck, 1, start, &out)
	m.prevTime = start
	for i, d := range []time.Duration{2 * time.Millisecond, 40 * time.Millisecond} {
		r := m.recs[0]
		r.add(1, 100)
		r.observe(start, d)
		m.tick(start.Add(time.Duration(i+1)*time.Second), true)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"ack latency so far p50 2.00ms p99 2.00ms",
		"ack latency so far p50 2.00ms p99 40.0ms",
	}
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want %q in it", i+1, lines[i], w)
		}
	}
}
