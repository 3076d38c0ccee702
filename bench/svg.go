package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// series is one line of a chart.
type series struct {
	name   string
	xs, ys []float64
}

// tick is a labelled position on an axis.
type tick struct {
	at    float64
	label string
}

// chart describes a line chart; lineChart renders it as SVG.
type chart struct {
	title, xLabel, yLabel string
	series                []series
	// xTicks, when set, replace the evenly spaced x ticks.
	xTicks []tick
}

// percentileX maps a percentile to the x position of a percentile chart:
// 0 → 0, 90 → 1, 99 → 2, 99.9 → 3, the 1/(1-p) scale of HdrHistogram plots.
func percentileX(p float64) float64 {
	if p >= 100 {
		p = 99.9999
	}
	return -math.Log10(1 - p/100)
}

var percentileTicks = []tick{{0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}, {5, "99.999%"}}

var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// niceStep returns a round step giving about n intervals over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e4)/100)
	case a >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/10)/100)
	default:
		return fmt.Sprintf("%g", math.Round(v*1000)/1000)
	}
}

// lineChart renders c as a standalone SVG document.
func lineChart(c chart) []byte {
	const (
		width, height          = 720, 420
		left, right, top, bott = 80, 150, 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bott)
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 0.0
	for _, s := range c.series {
		for i := range s.xs {
			xmin, xmax = math.Min(xmin, s.xs[i]), math.Max(xmax, s.xs[i])
			ymax = math.Max(ymax, s.ys[i])
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0, 1
	}
	if len(c.xTicks) > 0 {
		xmin = math.Min(xmin, c.xTicks[0].at)
		xmax = math.Max(xmax, c.xTicks[len(c.xTicks)-1].at)
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ystep := niceStep(ymax, 5)
	ymax = math.Max(ystep, math.Ceil(ymax/ystep)*ystep)
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return top + ph - y/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.title))
	// y grid and labels
	for y := 0.0; y <= ymax+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, py(y), left+pw, py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, fmtTick(y))
	}
	// x ticks
	ticks := c.xTicks
	if len(ticks) == 0 {
		step := niceStep(xmax-xmin, 8)
		for x := math.Ceil(xmin/step) * step; x <= xmax+step/1000; x += step {
			ticks = append(ticks, tick{x, fmtTick(x)})
		}
	}
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", px(t.at), top, px(t.at), top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(t.at), top+ph+16, html.EscapeString(t.label))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", left+pw/2, height-10, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", top+ph/2, top+ph/2, html.EscapeString(c.yLabel))
	for i, s := range c.series {
		color := chartColors[i%len(chartColors)]
		if len(s.xs) > 0 {
			var pts []string
			for j := range s.xs {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.xs[j]), py(s.ys[j])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		}
		ly := top + 10 + i*18
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%d" x2="%.0f" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", left+pw+12, ly, left+pw+32, ly, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d">%s</text>`+"\n", left+pw+38, ly+4, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
