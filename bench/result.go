package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Result is what one produce, consume or e2e run measured.
type Result struct {
	// Mode is produce, consume or e2e.
	Mode string `json:"mode"`
	// Scenario and Target name the compare scenario and target, when the
	// run was part of a comparison.
	Scenario string `json:"scenario,omitempty"`
	Target   string `json:"target,omitempty"`

	Brokers     []string `json:"brokers"`
	Topic       string   `json:"topic"`
	Partitions  int      `json:"partitions"`
	Size        int      `json:"size"`
	Acks        string   `json:"acks,omitempty"`
	Compression string   `json:"compression,omitempty"`
	Producers   int      `json:"producers,omitempty"`
	Consumers   int      `json:"consumers,omitempty"`
	Group       string   `json:"group,omitempty"`
	// Fanout: every consumer read every partition.
	Fanout bool `json:"fanout,omitempty"`
	// Linger is the producers' linger in milliseconds (produce, e2e).
	Linger *float64 `json:"linger_ms,omitempty"`
	// TxnRecords is the size of each producer's transactions, zero when
	// it did not use transactions.
	TxnRecords int `json:"txn_records,omitempty"`

	// Records and Bytes are what was measured: acknowledged for produce,
	// received for consume and e2e. Bytes count keys and values.
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Seconds is the measured time: from the end of the warmup to the last
	// acknowledgement (produce) or record (consume, e2e); a group consume
	// starts at its first assignment, leaving the rebalance out (the wait
	// for the first record, joining included, is Latency).
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MiBPerSec     float64 `json:"mib_per_sec"`
	// Latency is the ack, end-to-end or time-to-first-record histogram.
	Latency Latency `json:"latency"`

	// TargetRate is the requested rate (records/s), zero for none;
	// ProducedRate is the rate the producer reached (records sent after
	// the warmup over the time spent sending them; the wait for the last
	// acknowledgements is left out), RateHeld whether it reached at least
	// 98% of the target and never fell a second behind, and MaxBehind how
	// far (ms) the producer fell behind its schedule at worst.
	// PublishRate is, for a queue run, the records whose produce was
	// acknowledged per second while the consumers ran.
	PublishRate float64 `json:"publish_rate,omitempty"`

	TargetRate   float64 `json:"target_rate,omitempty"`
	ProducedRate float64 `json:"produced_rate,omitempty"`
	RateHeld     *bool   `json:"rate_held,omitempty"`
	MaxBehind    float64 `json:"max_behind_ms,omitempty"`

	// CPU is this process's CPU use while measuring (after the warmup).
	CPU CPU `json:"cpu"`
	// BrokerCPU is the broker process's CPU use while measuring, when
	// Config.Broker names it.
	BrokerCPU *BrokerCPU `json:"broker_cpu,omitempty"`
	// Bulk is what the bulk load beside an e2e run did (Config.Bulk).
	Bulk *Result `json:"bulk,omitempty"`
	// LoadAverage is the machine's 1-minute load average at the end of
	// the run (Linux), -1 when unknown.
	LoadAverage float64 `json:"load_average"`
	// Series is the per-second throughput, warmup included.
	Series []Sample `json:"series,omitempty"`
	// Notes are warnings a reader should see (rate not held, records
	// missing, in-process broker sharing the CPU).
	Notes []string `json:"notes,omitempty"`
}

// CPU is the load generator's own CPU use, from getrusage(RUSAGE_SELF). When
// the broker runs in the same process (-embedded, -sink) it is included.
type CPU struct {
	UserSeconds   float64 `json:"user_s"`
	SystemSeconds float64 `json:"system_s"`
	// Percent is CPU time over wall time: 100 is one core busy.
	Percent float64 `json:"percent"`
	// Cores is runtime.NumCPU().
	Cores int `json:"cores"`
	// MicrosPerRecord is CPU microseconds spent per measured record,
	// counted from the end of the warmup.
	MicrosPerRecord float64 `json:"us_per_record"`
}

type cpuClock struct {
	wall      time.Time
	user, sys time.Duration
	ok        bool
}

func startCPU() cpuClock {
	u, s, ok := processCPU()
	return cpuClock{wall: time.Now(), user: u, sys: s, ok: ok}
}

// cpuWindow measures this process's CPU use from a time that may still be
// ahead, the end of a run's warmup, so the warmup's CPU does not count: a
// timer takes the start reading then.
type cpuWindow struct {
	timer *time.Timer
	fired chan struct{} // closed once the timer has taken start
	start cpuClock
}

// startCPUAt starts measuring CPU use at t (at once if t has passed).
func startCPUAt(t time.Time) *cpuWindow {
	w := &cpuWindow{fired: make(chan struct{})}
	w.timer = time.AfterFunc(time.Until(t), func() {
		w.start = startCPU()
		close(w.fired)
	})
	return w
}

// stop returns the CPU used since the start reading, per record for
// records measured records. A run that ends before the start reading is
// taken reports what it used from now: nothing.
func (w *cpuWindow) stop(records int64) CPU {
	if w.timer.Stop() {
		w.start = startCPU()
	} else {
		<-w.fired
	}
	return w.start.stop(records)
}

func (c cpuClock) stop(records int64) CPU {
	out := CPU{Cores: runtime.NumCPU()}
	u, s, ok := processCPU()
	if !ok || !c.ok {
		return out
	}
	wall := time.Since(c.wall)
	out.UserSeconds = (u - c.user).Seconds()
	out.SystemSeconds = (s - c.sys).Seconds()
	if wall > 0 {
		out.Percent = 100 * (out.UserSeconds + out.SystemSeconds) / wall.Seconds()
	}
	if records > 0 {
		out.MicrosPerRecord = 1e6 * (out.UserSeconds + out.SystemSeconds) / float64(records)
	}
	return out
}

func (r *Result) finish(records, bytes int64, elapsed time.Duration) {
	r.Records, r.Bytes = records, bytes
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.RecordsPerSec = float64(records) / r.Seconds
		r.MiBPerSec = float64(bytes) / r.Seconds / (1 << 20)
	}
}

// WriteText prints the summary a person reads at the end of a run.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	title := r.Mode
	if r.Scenario != "" {
		title = r.Scenario
	}
	fmt.Fprintf(&b, "%s: topic %s (%d partitions), %d B records", title, r.Topic, r.Partitions, r.Size)
	if r.Mode != "consume" {
		fmt.Fprintf(&b, ", acks=%s, compression=%s, %d producer(s)", r.Acks, r.Compression, r.Producers)
	}
	if r.TxnRecords > 0 {
		fmt.Fprintf(&b, ", transactions of %d records", r.TxnRecords)
	}
	if r.Mode != "produce" {
		fmt.Fprintf(&b, ", %d consumer(s)", r.Consumers)
		if r.Group != "" {
			fmt.Fprintf(&b, " in group %s", r.Group)
		}
		if r.Fanout {
			b.WriteString(", each reading every partition")
		}
	}
	fmt.Fprintf(&b, "\n  records     %s in %.2fs\n", FormatCount(float64(r.Records)), r.Seconds)
	if r.Mode != "redelivery" {
		fmt.Fprintf(&b, "  throughput  %s records/s, %.2f MiB/s\n", FormatCount(r.RecordsPerSec), r.MiBPerSec)
	}
	if r.PublishRate > 0 {
		fmt.Fprintf(&b, "  publish     %s records/s acknowledged (acks=%s); the rate above is records consumed and accepted\n", FormatCount(r.PublishRate), r.Acks)
	}
	if r.TargetRate > 0 {
		held := "held"
		if r.RateHeld != nil && !*r.RateHeld {
			held = "NOT HELD"
		}
		fmt.Fprintf(&b, "  rate        target %s/s, produced %s/s (%s; worst %s behind schedule)\n",
			FormatCount(r.TargetRate), FormatCount(r.ProducedRate), held, fmtMillis(r.MaxBehind))
	}
	l := r.Latency
	if l.Count > 0 {
		fmt.Fprintf(&b, "  latency     %s (%s samples%s): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
			l.Kind, FormatCount(float64(l.Count)), r.lingerText(), fmtMillis(l.P50), fmtMillis(l.P90), fmtMillis(l.P99), fmtMillis(l.P999), fmtMillis(l.Max))
	}
	if bk := r.Bulk; bk != nil {
		fmt.Fprintf(&b, "  bulk        topic %s (%d partitions), %d B records, acks=%s: %s records/s, %.2f MiB/s, ack p50 %s p99 %s\n",
			bk.Topic, bk.Partitions, bk.Size, bk.Acks, FormatCount(bk.RecordsPerSec), bk.MiBPerSec, fmtMillis(bk.Latency.P50), fmtMillis(bk.Latency.P99))
	}
	if bc := r.BrokerCPU; bc != nil {
		fmt.Fprintf(&b, "  broker cpu  %.2fs, %.0f%% of one core, %.2fs per GB (%s)\n", bc.Seconds, bc.Percent, bc.PerGB, bc.Source)
	}
	fmt.Fprintf(&b, "  client cpu  %.0f%% of one core (user %.2fs, system %.2fs, %.2fµs/record, %d cores)\n",
		r.CPU.Percent, r.CPU.UserSeconds, r.CPU.SystemSeconds, r.CPU.MicrosPerRecord, r.CPU.Cores)
	if r.LoadAverage >= 0 {
		fmt.Fprintf(&b, "  load        %.2f (1-minute load average at the end)\n", r.LoadAverage)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// lingerText is ", linger 0s" when the producers' linger is known.
func (r *Result) lingerText() string {
	if r.Linger == nil {
		return ""
	}
	return ", linger " + fmtLinger(*r.Linger)
}

// fmtLinger prints a linger in milliseconds: "0" or "10ms".
func fmtLinger(ms float64) string {
	if ms == 0 {
		return "0"
	}
	return fmtMillis(ms)
}

// setLinger records the linger the producers of cfg use.
func (r *Result) setLinger(cfg Config) {
	ms := float64(cfg.linger()) / float64(time.Millisecond)
	r.Linger = &ms
}

// oneLine summarizes the result for a progress line.
func (r *Result) oneLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s records/s, %.1f MiB/s, %s p50 %s p99 %s p99.9 %s max %s",
		FormatCount(r.RecordsPerSec), r.MiBPerSec, r.Latency.Kind,
		fmtMillis(r.Latency.P50), fmtMillis(r.Latency.P99), fmtMillis(r.Latency.P999), fmtMillis(r.Latency.Max))
	if r.Linger != nil {
		fmt.Fprintf(&b, " (linger %s)", fmtLinger(*r.Linger))
	}
	if r.Bulk != nil {
		fmt.Fprintf(&b, ", bulk %.1f MiB/s", r.Bulk.MiBPerSec)
	}
	if r.BrokerCPU != nil {
		fmt.Fprintf(&b, ", broker %.2f s/GB", r.BrokerCPU.PerGB)
	}
	if r.LoadAverage >= 0 {
		fmt.Fprintf(&b, ", load %.2f", r.LoadAverage)
	}
	return b.String()
}
