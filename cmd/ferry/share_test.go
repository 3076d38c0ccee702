package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/ferrytest"
)

// TestShareCommands: consume as a share group with each kind of
// acknowledgement, describe the group, configure it and reset its start
// offsets.
func TestShareCommands(t *testing.T) {
	b := "-brokers=" + ferrytest.Start(t).Addr()
	mustFerry(t, "", "topic", "create", "jobs", b, "-partitions", "2")
	mustFerry(t, "one\ntwo\nthree\nfour\n", "produce", "jobs", b)

	// A new share group starts at the log end unless told otherwise.
	out := mustFerry(t, "", "group", "alter-config", "workers", b, "-set", "share.auto.offset.reset=earliest", "-set", "share.record.lock.duration.ms=15000")
	contains(t, "alter-config", out, "workers", "share.auto.offset.reset", "earliest", "set")
	_, errOut, code := ferry(t, "", "group", "alter-config", "workers", b, "-set", "share.record.lock.duration.ms=5")
	if code != 1 || !strings.Contains(errOut, "INVALID_CONFIG") {
		t.Fatalf("bad lock duration: exit %d, %s", code, errOut)
	}

	// Release two (the records fetched with them go back too): they come
	// back with a higher delivery count.
	out = mustFerry(t, "", "consume", "jobs", "-share", "workers", "-ack", "release", "-n", "2", "-f", `%v %d\n`, b)
	if lines := strings.Fields(out); len(lines) != 4 || lines[1] != "1" || lines[3] != "1" {
		t.Fatalf("released: %q", out)
	}
	out = mustFerry(t, "", "consume", "jobs", "-share", "workers", "-idle", "2s", "-o", "json", b)
	var got []consumedRecord
	for line := range strings.Lines(out) {
		var r consumedRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		got = append(got, r)
	}
	if len(got) != 4 {
		t.Fatalf("accepted %d records:\n%s", len(got), out)
	}
	for _, r := range got {
		if r.DeliveryCount < 2 {
			t.Errorf("record %d delivered once only after its release:\n%s", r.Offset, out)
		}
	}
	// Everything is acknowledged: nothing more to consume, no lag.
	if out := mustFerry(t, "", "consume", "jobs", "-share", "workers", "-idle", "1s", b); out != "" {
		t.Errorf("after accepting all: %q", out)
	}
	out = mustFerry(t, "", "group", "describe", "workers", "-o", "json", b)
	var ds []groupDescribed
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	d := ds[0]
	if d.Type != "share" || d.State != "Empty" || d.TotalLag != 0 || len(d.ShareOffsets) != 2 {
		t.Fatalf("described %+v", d)
	}
	ends := int64(0)
	for _, so := range d.ShareOffsets {
		if so.StartOffset != so.LogEnd || so.Lag != 0 {
			t.Errorf("partition %d: %+v", so.Partition, so)
		}
		ends += so.LogEnd
	}
	if ends != 4 {
		t.Errorf("log ends sum to %d", ends)
	}
	out = mustFerry(t, "", "group", "list", b)
	contains(t, "list", out, "workers", "share")

	// Back to the start: everything again.
	out = mustFerry(t, "", "group", "reset-offsets", "workers", "-to-earliest", "-execute", b)
	contains(t, "reset", out, "jobs", "reset")
	out = mustFerry(t, "", "group", "describe", "workers", b)
	contains(t, "describe after reset", out, "share/simple", "TOTAL-LAG 4", "START-OFFSET")

	// Rejected records are archived: never delivered again.
	out = mustFerry(t, "", "consume", "jobs", "-share", "workers", "-ack", "reject", "-idle", "2s", b)
	if n := len(strings.Fields(out)); n != 4 {
		t.Fatalf("rejected %d: %q", n, out)
	}
	if out := mustFerry(t, "", "consume", "jobs", "-share", "workers", "-idle", "1s", b); out != "" {
		t.Errorf("after rejecting all: %q", out)
	}

	for _, bad := range [][]string{
		{"consume", "jobs", "-share", "w", "-group", "g", b},
		{"consume", "jobs", "-share", "w", "-offset", "end", b},
		{"consume", "jobs", "-share", "w", "-ack", "maybe", b},
	} {
		if _, _, code := ferry(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	out = mustFerry(t, "", "group", "delete", "workers", b)
	contains(t, "delete", out, "workers", "deleted")
}

// TestQueueTableNotHeld: a bench queue row whose run could not hold its
// rate says so in the table, since its latency includes a backlog.
func TestQueueTableNotHeld(t *testing.T) {
	rep := queueReport{Size: 100, Acks: "all", Partitions: 3, MaxRecords: 500, Rows: []queueRow{
		{Consumers: 1, Rate: 1000, Publish: 1000, Consumed: 1000, P50: 1, P99: 2},
		{Consumers: 2, Rate: 1000, Publish: 900, Consumed: 800, P50: 300, P99: 900, NotHeld: true},
	}}
	var b strings.Builder
	if err := rep.writeTable(&b, 1); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) < 4 || strings.Contains(lines[2], "NOT HELD") || !strings.Contains(lines[3], "NOT HELD") {
		t.Fatalf("table:\n%s", b.String())
	}
}
