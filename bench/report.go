package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// machine describes where the comparison ran.
func machine() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s %s/%s, %d CPUs, %s", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// cell is one entry of the side-by-side table.
type cell struct {
	text  string
	ratio float64 // shown as "(0.49x)" after the value unless zero or first
}

// table lays the medians out with one row per scenario and metric and one
// column per target.
func (c *Comparison) table() (header []string, rows [][]cell) {
	header = []string{"SCENARIO", "METRIC"}
	for _, t := range c.Targets {
		header = append(header, t.Name)
	}
	byKey := map[[2]string]Row{}
	for _, r := range c.Rows {
		byKey[[2]string{r.Scenario, r.Target}] = r
	}
	type metric struct {
		name     string
		value    func(Row) (string, float64)
		optional func(Row) bool // shown only when true for some target
	}
	metrics := []metric{
		{name: "records/s", value: func(r Row) (string, float64) { return FormatCount(r.RecordsPerSec), r.Ratio }},
		{name: "MiB/s", value: func(r Row) (string, float64) { return fmt.Sprintf("%.1f", r.MiBPerSec), r.Ratio }},
		{name: "bulk MiB/s", value: func(r Row) (string, float64) { return fmt.Sprintf("%.1f", r.BulkMiBPerSec), 0 },
			optional: func(r Row) bool { return r.BulkMiBPerSec > 0 }},
		{name: "p50", value: func(r Row) (string, float64) { return fmtMillis(r.P50), 0 }},
		{name: "p90", value: func(r Row) (string, float64) { return fmtMillis(r.P90), 0 }},
		{name: "p99", value: func(r Row) (string, float64) { return fmtMillis(r.P99), r.P99Ratio }},
		{name: "p99.9", value: func(r Row) (string, float64) { return fmtMillis(r.P999), 0 }},
		{name: "max", value: func(r Row) (string, float64) { return fmtMillis(r.Max), 0 }},
		{name: "broker cpu s/GB", value: func(r Row) (string, float64) {
			if r.BrokerCPUPerGB == 0 {
				return "-", 0
			}
			return fmt.Sprintf("%.2f", r.BrokerCPUPerGB), 0
			// A measured broker is shown even when its window counted
			// no CPU time (a run too short for a clock tick): "-".
		}, optional: func(r Row) bool { return r.BrokerCPUSource != "" }},
		{name: "client cpu", value: func(r Row) (string, float64) { return fmt.Sprintf("%.0f%%", r.CPUPercent), 0 }},
		{name: "load avg", value: func(r Row) (string, float64) { return loadRange(r.LoadAverages), 0 },
			optional: func(r Row) bool { return loadRange(r.LoadAverages) != "" }},
	}
	for _, sc := range c.Scenarios {
		first := true
		for _, m := range metrics {
			if m.optional != nil && !slices.ContainsFunc(c.Targets, func(t Target) bool {
				return m.optional(byKey[[2]string{sc.Name, t.Name}])
			}) {
				continue
			}
			name := ""
			if first {
				name = sc.Name
			}
			label := m.name
			if r, ok := byKey[[2]string{sc.Name, c.Targets[0].Name}]; ok && m.name[0] == 'p' && r.LatencyKind != "" {
				label = m.name + " " + r.LatencyKind
				if m.name == "p50" && r.Linger != nil {
					label += " (linger " + fmtLinger(*r.Linger) + ")"
				}
			}
			row := []cell{{text: name}, {text: label}}
			for ti, t := range c.Targets {
				r := byKey[[2]string{sc.Name, t.Name}]
				var cl cell
				switch {
				case r.Runs == 0 && r.Unsupported > 0 && r.Failed == 0:
					cl.text = "n/a"
				case r.Runs == 0:
					cl.text = "failed"
				default:
					cl.text, cl.ratio = m.value(r)
					if ti == 0 {
						cl.ratio = 0
					}
					if first && r.RateHeld != nil && !*r.RateHeld {
						cl.text += " rate not held"
					}
					if first && r.Failed > 0 {
						cl.text += fmt.Sprintf(" (%d failed)", r.Failed)
					}
				}
				row = append(row, cl)
			}
			rows = append(rows, row)
			first = false
		}
	}
	return header, rows
}

func (cl cell) String() string {
	if cl.ratio == 0 {
		return cl.text
	}
	return fmt.Sprintf("%s (%.2fx)", cl.text, cl.ratio)
}

// WriteTable prints the medians as an aligned text table, ratios to the
// first target in parentheses.
func (c *Comparison) WriteTable(w io.Writer) error {
	header, rows := c.table()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		parts := make([]string, len(r))
		for i, cl := range r {
			parts[i] = cl.String()
		}
		fmt.Fprintln(tw, strings.Join(parts, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "medians of %d runs per scenario and target; (Nx) = ratio to %s\n", c.Repeat, c.Targets[0].Name)
	return err
}

// Markdown renders the comparison as a Markdown document.
func (c *Comparison) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ferry bench compare\n\n")
	fmt.Fprintf(&b, "- started: %s\n- machine: %s\n- repetitions: %d, %gs per produce/e2e run\n",
		c.Started.Format(time.RFC3339), c.Machine, c.Repeat, c.Duration)
	for _, t := range c.Targets {
		fmt.Fprintf(&b, "- target `%s`: %s\n", t.Name, strings.Join(t.Brokers, ","))
	}
	fmt.Fprintf(&b, "\nMedians; (Nx) is the ratio to `%s` (throughput: higher is better; p99: lower is better). "+
		"Broker CPU is seconds of the broker process's CPU per 10^9 bytes of records; client CPU is the load "+
		"generator process's own use (100%% = one core); load avg is the machine's 1-minute load average at the "+
		"end of each run.\n\n", c.Targets[0].Name)
	for _, t := range c.Targets {
		if src := t.Process.source(); src != "" {
			fmt.Fprintf(&b, "- broker CPU of `%s`: %s\n", t.Name, src)
		}
	}
	b.WriteString("\n")
	header, rows := c.table()
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, r := range rows {
		parts := make([]string, len(r))
		for i, cl := range r {
			parts[i] = strings.ReplaceAll(cl.String(), "|", "\\|")
		}
		b.WriteString("| " + strings.Join(parts, " | ") + " |\n")
	}
	b.WriteString("\n## Charts\n\n")
	for _, sc := range c.Scenarios {
		fmt.Fprintf(&b, "### %s\n\n![latency](%s)\n![throughput](%s)\n\n", sc.Name, latencyChartName(sc.Name), throughputChartName(sc.Name))
	}
	var errs []string
	for _, r := range c.Rows {
		for _, e := range r.Errors {
			errs = append(errs, fmt.Sprintf("- %s on %s: %s", r.Scenario, r.Target, e))
		}
	}
	if len(errs) > 0 {
		b.WriteString("## Failed runs\n\n" + strings.Join(errs, "\n") + "\n")
	}
	return b.String()
}

func latencyChartName(scenario string) string    { return "latency-" + scenario + ".svg" }
func throughputChartName(scenario string) string { return "throughput-" + scenario + ".svg" }

// WriteReport writes report.md, report.json, an SVG latency-percentile and
// throughput-over-time chart per scenario, and index.html showing them all,
// into dir (created if missing).
func (c *Comparison) WriteReport(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	write := func(name string, data []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("bench: report: %w", err)
		}
		return nil
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if err := write("report.json", append(js, '\n')); err != nil {
		return err
	}
	if err := write("report.md", []byte(c.Markdown())); err != nil {
		return err
	}
	var page strings.Builder
	page.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ferry bench compare</title>\n")
	page.WriteString("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,td:nth-child(2){text-align:left}img{max-width:48%;margin:4px}</style>\n")
	page.WriteString("</head><body>\n<h1>ferry bench compare</h1>\n")
	fmt.Fprintf(&page, "<p>%s &middot; %s &middot; %d repetitions, %gs per produce/e2e run</p>\n<ul>\n",
		html.EscapeString(c.Started.Format(time.RFC3339)), html.EscapeString(c.Machine), c.Repeat, c.Duration)
	for _, t := range c.Targets {
		fmt.Fprintf(&page, "<li><b>%s</b>: %s</li>\n", html.EscapeString(t.Name), html.EscapeString(strings.Join(t.Brokers, ",")))
	}
	fmt.Fprintf(&page, "</ul>\n<p>Medians; (Nx) is the ratio to %s.</p>\n<table>\n<tr>", html.EscapeString(c.Targets[0].Name))
	header, rows := c.table()
	for _, h := range header {
		fmt.Fprintf(&page, "<th>%s</th>", html.EscapeString(h))
	}
	page.WriteString("</tr>\n")
	for _, r := range rows {
		page.WriteString("<tr>")
		for _, cl := range r {
			fmt.Fprintf(&page, "<td>%s</td>", html.EscapeString(cl.String()))
		}
		page.WriteString("</tr>\n")
	}
	page.WriteString("</table>\n")

	byScenario := map[string][]Row{}
	for _, r := range c.Rows {
		byScenario[r.Scenario] = append(byScenario[r.Scenario], r)
	}
	for _, sc := range c.Scenarios {
		var lat, thr []series
		kind := ""
		for _, r := range byScenario[sc.Name] {
			if r.median == nil {
				continue
			}
			kind = r.median.Latency.Kind
			var l series
			l.name = r.Target
			for _, p := range r.median.Latency.Curve {
				if p.Percentile >= 100 {
					continue
				}
				l.xs = append(l.xs, percentileX(p.Percentile))
				l.ys = append(l.ys, p.Millis)
			}
			lat = append(lat, l)
			var t series
			t.name = r.Target
			for _, s := range r.median.Series {
				t.xs = append(t.xs, s.Second)
				t.ys = append(t.ys, s.RecordsPerSec)
			}
			thr = append(thr, t)
		}
		latSVG := lineChart(chart{
			title: sc.Name + ": " + kind + " latency by percentile (median run)", xLabel: "percentile", yLabel: "ms",
			series: lat, xTicks: percentileTicks,
		})
		thrSVG := lineChart(chart{
			title: sc.Name + ": throughput over time (median run)", xLabel: "seconds", yLabel: "records/s",
			series: thr,
		})
		if err := write(latencyChartName(sc.Name), latSVG); err != nil {
			return err
		}
		if err := write(throughputChartName(sc.Name), thrSVG); err != nil {
			return err
		}
		fmt.Fprintf(&page, "<h2>%s</h2>\n<img src=\"%s\" alt=\"latency\"><img src=\"%s\" alt=\"throughput\">\n",
			html.EscapeString(sc.Name), html.EscapeString(latencyChartName(sc.Name)), html.EscapeString(throughputChartName(sc.Name)))
	}
	page.WriteString("<p>Data: <a href=\"report.json\">report.json</a>, <a href=\"report.md\">report.md</a></p>\n</body></html>\n")
	return write("index.html", []byte(page.String()))
}

// loadRange prints the load averages of a row's runs as "1.2" or
// "0.8-2.4"; empty when none is known.
func loadRange(ls []float64) string {
	lo, hi := -1.0, -1.0
	for _, l := range ls {
		if l < 0 {
			continue
		}
		if lo < 0 || l < lo {
			lo = l
		}
		hi = max(hi, l)
	}
	switch {
	case lo < 0:
		return ""
	case fmt.Sprintf("%.1f", lo) == fmt.Sprintf("%.1f", hi):
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f-%.1f", lo, hi)
}
