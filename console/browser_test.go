package console

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console's screenshots to docs/console-*.png")

// findChromium returns the browser the tests drive: $FERRY_CHROMIUM, else
// Debian's chromium on the PATH. Without one the test is skipped.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FERRY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on the PATH: the browser tests need it (apt-get install -y chromium; .ci/run installs it)")
	return ""
}

// browser is one headless Chromium tab on the console, with every console
// error and uncaught exception of its pages collected.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := findChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, base: base}
	messages := chromedp.Console(ctx) // starts the browser
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-done
	})
	return b
}

// do runs steps, failing the test on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v\nconsole errors: %v", what, err, b.consoleErrors())
	}
}

// open loads the console at a route (#/...) and waits for sel.
func (b *browser) open(route, sel string) {
	b.t.Helper()
	b.do("open "+route, chromedp.Navigate(b.base+"/"+route), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// text returns the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitText waits until the text of sel satisfies ok.
func (b *browser) waitText(sel, what string, ok func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: %s shows %q (%v)", what, sel, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eval runs JavaScript in the page.
func (b *browser) eval(js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
		b.t.Fatalf("eval %s: %v", js, err)
	}
}

// screenshot captures the whole page and, with -update-screenshots,
// writes it to docs/console-NAME.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		b.t.Fatalf("screenshot %s is not a PNG", name)
	}
	if *updateScreenshots {
		path := filepath.Join("..", "docs", "console-"+name+".png")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("wrote %s (%d bytes)", path, len(png))
	}
}

// forgive drops the console errors so far that contain s: those a step
// caused on purpose.
func (b *browser) forgive(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.errors[:0]
	for _, e := range b.errors {
		if !strings.Contains(e, s) {
			kept = append(kept, e)
		}
	}
	b.errors = kept
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// TestBrowser drives the console in headless Chromium against a real
// broker: every page loads without console errors, shows the topics the
// test produced, browses their records, follows a group's lag as it
// consumes, creates and deletes a topic and resets a group's offsets,
// each through its confirmation, and follows a share group's member and
// lag as it accepts records, resets its start offsets and deletes it.
// With -update-screenshots it writes the screenshots the README shows.
func TestBrowser(t *testing.T) {
	findChromium(t)
	tc := startConsole(t, nil, func(c *Config) { c.SampleInterval = 250 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// Topics and records: JSON values with keys and headers, plain text,
	// a group's topic.
	for _, c := range []createRequest{{Name: "orders", Partitions: 6}, {Name: "audit-log", Partitions: 1}, {Name: "payments", Partitions: 3}} {
		tc.call("POST", "/api/topics", c, nil)
	}
	var recs []*kgo.Record
	for i := range 600 {
		recs = append(recs, &kgo.Record{
			Topic: "orders", Partition: int32(i % 6), Key: fmt.Appendf(nil, "customer-%d", i%37),
			Value:   fmt.Appendf(nil, `{"order":%d,"amount":%d.%02d,"currency":"EUR"}`, i/6, 10+i%90, i%100),
			Headers: []kgo.RecordHeader{{Key: "source", Value: []byte("web")}, {Key: "trace-id", Value: fmt.Appendf(nil, "%016x", i*7919)}},
		})
	}
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: "audit-log", Value: fmt.Appendf(nil, "user %d signed in", i)})
	}
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: "payments", Partition: int32(i % 3), Value: fmt.Appendf(nil, "payment %d", i)})
	}
	tc.produce(recs...)

	// A producer keeps "orders" busy for the throughput charts.
	prod := tc.client(kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	pctx, stopProducing := context.WithCancel(ctx)
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for i := 0; pctx.Err() == nil; i++ {
			prod.ProduceSync(pctx, &kgo.Record{Value: fmt.Appendf(nil, `{"order":%d,"amount":1.00,"currency":"EUR"}`, 1000+i)})
			time.Sleep(time.Duration(2+i%5) * time.Millisecond)
		}
	}()
	defer func() { stopProducing(); producing.Wait() }()

	b := newBrowser(t, tc.url)

	// Overview: counts, and the charts once two samples are in.
	b.open("#/", "#overview-topics")
	b.waitText("#overview-topics", "topic count", func(s string) bool { return s == "3" })
	b.do("throughput chart", chromedp.WaitVisible(chromedp.CSS("#chart-records .u-wrap")), chromedp.WaitVisible(chromedp.CSS("#top-topics-table a")))
	if s := b.text("#top-topics-table"); !strings.Contains(s, "orders") {
		t.Fatalf("busiest topics: %q", s)
	}
	time.Sleep(1500 * time.Millisecond) // a few more points on the chart
	b.screenshot("overview")

	// Topics list and one topic.
	b.open("#/topics", `tr[data-topic="orders"]`)
	if s := b.text("#topics-table"); !strings.Contains(s, "audit-log") || !strings.Contains(s, "payments") {
		t.Fatalf("topics table: %q", s)
	}
	b.do("open orders", chromedp.Click(chromedp.CSS(`tr[data-topic="orders"] a`)), chromedp.WaitVisible(chromedp.CSS("#partitions-table")))
	b.waitText("#topic-name", "topic page", func(s string) bool { return s == "orders" })
	if s := b.text("#partitions-table"); !strings.Contains(s, "Browse") {
		t.Fatalf("partitions table: %q", s)
	}
	b.screenshot("topic")
	b.do("configs tab", chromedp.Click(chromedp.CSS("#tab-configs")), chromedp.WaitVisible(chromedp.CSS("#configs-table")))
	if s := b.text("#configs-table"); !strings.Contains(s, "retention.ms") {
		t.Fatalf("configs: %q", s)
	}

	// Records of a partition: JSON, headers, then hex and a time.
	b.open("#/topics/orders/records?partition=0&from=oldest&limit=20", `#records-table tr[data-offset="0"]`)
	s := b.text("#records-table")
	for _, want := range []string{`{"order":0,"amount":10,"currency":"EUR"}`, "customer-0", "source: web", "trace-id: 0000000000000000"} {
		if !strings.Contains(s, want) {
			t.Fatalf("records table lacks %q:\n%s", want, s)
		}
	}
	b.screenshot("records")
	b.do("newer page", chromedp.Click(chromedp.CSS("#rec-newer")), chromedp.WaitVisible(chromedp.CSS(`#records-table tr[data-offset="20"]`)))
	b.open("#/topics/orders/records?partition=1&offset=7&limit=1&format=json", `#records-table tr[data-offset="7"]`)
	if s := b.text("#records-table"); !strings.Contains(s, `"order": 7,`) {
		t.Fatalf("pretty JSON:\n%s", s)
	}
	b.open("#/topics/audit-log/records?partition=0&offset=3&limit=5&format=hex", `#records-table tr[data-offset="3"]`)
	if s := b.text("#records-table"); !strings.Contains(s, "75 73 65 72 20 33") { // "user 3"
		t.Fatalf("hex view:\n%s", s)
	}
	b.open(fmt.Sprintf("#/topics/audit-log/records?partition=0&time=%d", time.Now().Add(-time.Hour).UnixMilli()), `#records-table tr[data-offset="0"]`)

	// A group's lag falls as it consumes and commits.
	cons := tc.client(kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("payments"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("billing-worker"))
	var got []*kgo.Record
	for len(got) < 300 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	commitUpTo := func(n int64) {
		var upTo []*kgo.Record
		for _, r := range got {
			if r.Offset == n-1 {
				upTo = append(upTo, r)
			}
		}
		if err := cons.CommitRecords(ctx, upTo...); err != nil {
			t.Fatal(err)
		}
	}
	commitUpTo(30) // 30 of 100 in each partition
	b.open("#/groups", `tr[data-group="billing"]`)
	b.open("#/groups/billing", "#group-lag")
	b.waitText("#group-lag", "lag after 90 records", func(s string) bool { return s == "210" })
	b.waitText("#members-table", "member", func(s string) bool {
		return strings.Contains(s, "billing-worker") && strings.Contains(s, "payments 0-2 (3)")
	})
	commitUpTo(70)
	b.waitText("#group-lag", "lag after 210 records", func(s string) bool { return s == "90" })
	b.screenshot("group")
	commitUpTo(100)
	b.waitText("#group-lag", "lag after every record", func(s string) bool { return s == "0" })

	// Resetting offsets needs the group inactive; then the preview and
	// its confirmation move them back to the start.
	b.do("reset while active", chromedp.Click(chromedp.CSS("#reset-offsets")), chromedp.WaitVisible(chromedp.CSS("#reset-preview")),
		chromedp.Click(chromedp.CSS("#reset-preview")))
	b.waitText("#dialog-error", "refusal", func(s string) bool { return strings.Contains(s, "active member") })
	b.eval(`document.getElementById("dialog").close()`)
	cons.Close()
	b.waitText("#group-members", "members after the consumer left", func(s string) bool { return s == "0" })
	b.do("reset preview", chromedp.Click(chromedp.CSS("#reset-offsets")), chromedp.WaitVisible(chromedp.CSS("#reset-preview")),
		chromedp.Click(chromedp.CSS("#reset-preview")), chromedp.WaitVisible(chromedp.CSS("#reset-plan-table")))
	b.waitText("#reset-plan", "plan", func(s string) bool { return strings.Contains(s, "3 partitions would move") })
	if s := b.text("#group-lag"); s != "0" {
		t.Fatalf("the preview changed the lag to %s", s)
	}
	b.do("reset confirm", chromedp.Click(chromedp.CSS("#reset-confirm")))
	b.waitText("#group-lag", "lag after the reset", func(s string) bool { return s == "300" })
	b.eval(`document.getElementById("dialog").close()`)

	// Create a topic, then delete it, each through its dialog.
	b.open("#/topics", "#create-topic")
	b.do("create dialog", chromedp.Click(chromedp.CSS("#create-topic")), chromedp.WaitVisible(chromedp.CSS("#new-topic-name")),
		chromedp.SendKeys(chromedp.CSS("#new-topic-name"), "made-in-browser"),
		chromedp.SetValue(chromedp.CSS("#new-topic-partitions"), "4"),
		chromedp.SendKeys(chromedp.CSS("#new-topic-configs"), "retention.ms=3600000"),
		chromedp.Click(chromedp.CSS("#confirm-create")))
	b.waitText("#topic-name", "created topic", func(s string) bool { return s == "made-in-browser" })
	td, err := tc.admin().ListTopics(ctx, "made-in-browser")
	if err != nil || td["made-in-browser"].Err != nil || len(td["made-in-browser"].Partitions) != 4 {
		t.Fatalf("topic made in the browser: %v %+v", err, td)
	}
	b.do("delete dialog", chromedp.Click(chromedp.CSS("#delete-topic")), chromedp.WaitVisible(chromedp.CSS("#confirm-name")))
	disabled, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById("confirm-delete").disabled`))
	if err != nil || !disabled {
		t.Fatalf("delete is enabled before the name is typed: %v", err)
	}
	b.do("confirm delete", chromedp.SendKeys(chromedp.CSS("#confirm-name"), "made-in-browser"), chromedp.Click(chromedp.CSS("#confirm-delete")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-topic="orders"]`)))
	if s := b.text("#topics-table"); strings.Contains(s, "made-in-browser") {
		t.Fatalf("deleted topic still listed: %q", s)
	}
	td, err = tc.admin().ListTopics(ctx, "made-in-browser")
	if err != nil || td["made-in-browser"].Err == nil {
		t.Fatalf("topic still there after the delete: %v %+v", err, td)
	}

	// A share group: its member and its lag falling as the member
	// accepts records, a reset of its start offsets refused while the
	// member is there and done once it has left, then its deletion.
	sctx, cancelShare := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelShare()
	tc.call("POST", "/api/topics", createRequest{Name: "tasks", Partitions: 3}, nil)
	tc.setGroupConfigs("dispatch", "share.auto.offset.reset", "earliest", "share.delivery.count.limit", "10")
	recs = recs[:0]
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: "tasks", Partition: int32(i % 3), Value: fmt.Appendf(nil, "task %d", i)})
	}
	tc.produce(recs...)
	sc := tc.shareConsumer("dispatch", kgo.ConsumeTopics("tasks"), kgo.ClientID("dispatch-worker"))
	sc.accept(sctx, 90)
	b.open("#/groups?type=share", `tr[data-group="dispatch"]`)
	if s := b.text("#groups-table"); strings.Contains(s, "billing") || !strings.Contains(s, "share") {
		t.Fatalf("share groups tab: %q", s)
	}
	b.open("#/groups", `tr[data-group="dispatch"]`)
	if s := b.text(`tr[data-group="dispatch"]`); !strings.Contains(s, "share") || !strings.Contains(s, "tasks") {
		t.Fatalf("share group among all groups: %q", s)
	}
	if s := b.text("#groups-table"); !strings.Contains(s, "billing") {
		t.Fatalf("all groups: %q", s)
	}
	b.do("open the share group", chromedp.Click(chromedp.CSS(`tr[data-group="dispatch"] a`)), chromedp.WaitVisible(chromedp.CSS("#group-lag")))
	b.waitText("#group-lag", "share lag after 90 records", func(s string) bool { return s == "210" })
	b.waitText("#members-table", "share member", func(s string) bool {
		return strings.Contains(s, "dispatch-worker") && strings.Contains(s, "tasks 0-2 (3)")
	})
	if s := b.text("#group-type"); s != "share" {
		t.Fatalf("group type: %q", s)
	}
	if s := b.text("#group-configs-table"); !strings.Contains(s, "share.auto.offset.reset") || !strings.Contains(s, "earliest") || !strings.Contains(s, "set on group") {
		t.Fatalf("share group configs: %q", s)
	}
	if s := b.text("main"); strings.Contains(s, "null") || strings.Contains(s, "undefined") {
		t.Fatalf("the share group's page shows a missing value:\n%s", s)
	}
	sc.accept(sctx, 120)
	b.waitText("#group-lag", "share lag after 210 records", func(s string) bool { return s == "90" })
	b.screenshot("share-group")
	sc.accept(sctx, 90)
	b.waitText("#group-lag", "share lag after every record", func(s string) bool { return s == "0" })
	if s := b.text("#offsets-table"); !strings.Contains(s, "Start offset") || strings.Count(s, "100") < 6 {
		t.Fatalf("start offsets: %q", s)
	}

	b.do("share reset while active", chromedp.Click(chromedp.CSS("#reset-offsets")), chromedp.WaitVisible(chromedp.CSS("#reset-preview")),
		chromedp.Click(chromedp.CSS("#reset-preview")))
	b.waitText("#dialog-error", "refusal", func(s string) bool { return strings.Contains(s, "active member") })
	b.eval(`document.getElementById("dialog").close()`)
	sc.cl.Close() // leaves the group
	b.waitText("#group-members", "share members after the consumer left", func(s string) bool { return s == "0" })
	b.do("share reset preview", chromedp.Click(chromedp.CSS("#reset-offsets")), chromedp.WaitVisible(chromedp.CSS("#reset-preview")),
		chromedp.Click(chromedp.CSS("#reset-preview")), chromedp.WaitVisible(chromedp.CSS("#reset-plan-table")))
	b.waitText("#reset-plan", "share plan", func(s string) bool { return strings.Contains(s, "3 partitions would move") })
	b.do("share reset confirm", chromedp.Click(chromedp.CSS("#reset-confirm")))
	b.waitText("#group-lag", "share lag after the reset", func(s string) bool { return s == "300" })
	b.eval(`document.getElementById("dialog").close()`)

	b.do("delete group dialog", chromedp.Click(chromedp.CSS("#delete-group")), chromedp.WaitVisible(chromedp.CSS("#confirm-group")),
		chromedp.SendKeys(chromedp.CSS("#confirm-group"), "dispatch"), chromedp.Click(chromedp.CSS("#confirm-delete-group")),
		chromedp.WaitVisible(chromedp.CSS("#groups-table")))
	b.waitText("#groups-table", "share groups after the delete", func(s string) bool { return strings.Contains(s, "No share groups") })
	if listed, err := tc.admin().ListGroups(sctx); err != nil || func() bool { _, ok := listed["dispatch"]; return ok }() {
		t.Fatalf("share group still there after the delete: %v %+v", err, listed)
	}

	// The browser logs the refusal of the reset as an error; it is the
	// only one expected.
	b.forgive("409 (Conflict) (" + tc.url + "/api/groups/billing/reset-offsets")
	b.forgive("409 (Conflict) (" + tc.url + "/api/groups/dispatch/reset-offsets")
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
