package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// BrokerProcess names the process of a broker on this machine, so that a
// run can report the CPU time the broker spent on it (Result.BrokerCPU).
// Set one field.
type BrokerProcess struct {
	// PID is the broker's process id: its CPU time is read from
	// /proc/PID/stat (Linux only), at 10ms resolution.
	PID int `json:"pid,omitempty"`
	// Admin is the host:port of an HTTP listener whose /metrics has the
	// Prometheus process collector's process_cpu_seconds_total, as
	// Ferry's admin listener (`ferry serve -admin-listen`) has.
	Admin string `json:"admin,omitempty"`
	// Self says the broker runs in the load generator's own process
	// (-embedded): its CPU time includes the generator's.
	Self bool `json:"self,omitempty"`
}

// IsZero reports that no broker process is named.
func (b BrokerProcess) IsZero() bool { return b.PID == 0 && b.Admin == "" && !b.Self }

// source describes where the CPU time is read, for reports.
func (b BrokerProcess) source() string {
	switch {
	case b.Self:
		return "this process (broker and load generator together), getrusage"
	case b.PID != 0:
		return fmt.Sprintf("/proc/%d/stat", b.PID)
	case b.Admin != "":
		return "process_cpu_seconds_total at http://" + b.Admin + "/metrics"
	}
	return ""
}

// cpuSeconds reads the broker's CPU time used so far (user plus system).
func (b BrokerProcess) cpuSeconds(ctx context.Context) (float64, error) {
	switch {
	case b.Self:
		u, s, ok := processCPU()
		if !ok {
			return 0, fmt.Errorf("%w: no process CPU times on this system", ErrUnsupported)
		}
		return (u + s).Seconds(), nil
	case b.PID != 0:
		return procCPUSeconds(b.PID)
	case b.Admin != "":
		return adminCPUSeconds(ctx, b.Admin)
	}
	return 0, errors.New("bench: no broker process")
}

// BrokerCPU is the CPU time a broker process used during a run's measured
// window.
type BrokerCPU struct {
	// Seconds of CPU (user plus system) the broker used.
	Seconds float64 `json:"seconds"`
	// PerGB is Seconds per 10^9 bytes of the run's records (keys and
	// values): produced for produce runs, consumed for consume runs,
	// produced (and consumed once each) for e2e runs, bulk load
	// included.
	PerGB float64 `json:"s_per_gb"`
	// Percent is Seconds over the window's wall time: 100 is one core.
	Percent float64 `json:"percent"`
	// Source says where it was read.
	Source string `json:"source"`
}

// adminCPUSeconds reads process_cpu_seconds_total from an admin listener's
// /metrics.
func adminCPUSeconds(ctx context.Context, addr string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("bench: broker CPU from %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: broker CPU from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bench: broker CPU from %s: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: broker CPU from %s: %q: %w", addr, v, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("bench: broker CPU from %s: %w", addr, err)
	}
	return 0, fmt.Errorf("bench: broker CPU from %s: no process_cpu_seconds_total in /metrics", addr)
}

// brokerWindow measures a broker's CPU over a run's measured window, as
// cpuWindow does for this process: the first reading is taken at the end
// of the warmup.
type brokerWindow struct {
	proc  BrokerProcess
	timer *time.Timer
	fired chan struct{}
	start float64
	wall  time.Time
	err   error
}

// startBrokerCPUAt starts measuring proc's CPU at t; nil when proc is zero.
func startBrokerCPUAt(ctx context.Context, proc BrokerProcess, t time.Time) *brokerWindow {
	if proc.IsZero() {
		return nil
	}
	w := &brokerWindow{proc: proc, fired: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	read := func() {
		w.start, w.err = proc.cpuSeconds(ctx)
		w.wall = time.Now()
	}
	w.timer = time.AfterFunc(time.Until(t), func() {
		read()
		close(w.fired)
	})
	return w
}

// stop returns the broker's CPU since the start reading, per GB of bytes.
func (w *brokerWindow) stop(ctx context.Context, bytes int64) (*BrokerCPU, error) {
	if w == nil {
		return nil, nil
	}
	ctx = context.WithoutCancel(ctx) // the run's context may be over
	if w.timer.Stop() {
		w.start, w.err = w.proc.cpuSeconds(ctx)
		w.wall = time.Now()
	} else {
		<-w.fired
	}
	if w.err != nil {
		return nil, w.err
	}
	end, err := w.proc.cpuSeconds(ctx)
	if err != nil {
		return nil, err
	}
	out := &BrokerCPU{Seconds: max(end-w.start, 0), Source: w.proc.source()}
	if wall := time.Since(w.wall).Seconds(); wall > 0 {
		out.Percent = 100 * out.Seconds / wall
	}
	out.setBytes(bytes)
	return out, nil
}

// setBytes sets PerGB for bytes of records.
func (c *BrokerCPU) setBytes(bytes int64) {
	c.PerGB = 0
	if bytes > 0 {
		c.PerGB = c.Seconds / (float64(bytes) / 1e9)
	}
}
