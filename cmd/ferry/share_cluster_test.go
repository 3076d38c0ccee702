package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/ferrytest"
)

// TestShareResetCluster: `ferry group reset-offsets` of a share group
// against a three-node cluster moves its start offsets back, once the
// group has no members, and the next consumer gets the records again.
func TestShareResetCluster(t *testing.T) {
	reserve := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	var voters, kafka []string
	for i := range 3 {
		voters = append(voters, fmt.Sprintf("%d@%s", i, reserve()))
		kafka = append(kafka, reserve())
	}
	for i := range 3 {
		ferrytest.Start(t, ferrytest.ListenAddr(kafka[i]), ferrytest.Props(map[string]string{
			"node.id":                                      fmt.Sprint(i),
			"controller.quorum.voters":                     strings.Join(voters, ","),
			"controller.quorum.election.timeout.ms":        "500",
			"broker.session.timeout.ms":                    "1500",
			"offsets.topic.num.partitions":                 "3",
			"share.coordinator.state.topic.num.partitions": "3",
		}))
	}
	b := "-brokers=" + strings.Join(kafka, ",")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, errOut, code := ferry(t, "", "topic", "create", "jobs", b, "-partitions", "3", "-replicas", "3")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating the topic: %s", errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustFerry(t, "one\ntwo\nthree\nfour\nfive\nsix\n", "produce", "jobs", b)
	mustFerry(t, "", "group", "alter-config", "workers", b, "-set", "share.auto.offset.reset=earliest")
	if out := mustFerry(t, "", "consume", "jobs", "-share", "workers", "-idle", "3s", b); len(strings.Fields(out)) != 6 {
		t.Fatalf("consumed %q, want the six records", out)
	}
	// The start offsets, and the lag of every partition, though the
	// group's coordinator leads one of them at most.
	starts := func() (sum int64) {
		t.Helper()
		var ds []groupDescribed
		out := mustFerry(t, "", "group", "describe", "workers", "-o", "json", b)
		if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 || ds[0].Type != "share" || len(ds[0].ShareOffsets) != 3 {
			t.Fatalf("describe: %v\n%s", err, out)
		}
		lag := int64(0)
		for _, so := range ds[0].ShareOffsets {
			sum += so.StartOffset
			lag += so.Lag
		}
		if lag != 6-sum || ds[0].TotalLag != lag {
			t.Fatalf("lags sum to %d (total %d), want %d:\n%s", lag, ds[0].TotalLag, 6-sum, out)
		}
		return sum
	}
	if got := starts(); got != 6 {
		t.Fatalf("start offsets sum to %d after consuming, want 6", got)
	}
	out := mustFerry(t, "", "group", "reset-offsets", "workers", "-to-earliest", "-execute", b)
	contains(t, "reset", out, "jobs", "reset")
	if got := starts(); got != 0 {
		t.Fatalf("start offsets sum to %d after the reset to earliest, want 0", got)
	}
	if out := mustFerry(t, "", "consume", "jobs", "-share", "workers", "-idle", "3s", b); len(strings.Fields(out)) != 6 {
		t.Fatalf("consumed %q after the reset, want the six records again", out)
	}
	out = mustFerry(t, "", "group", "delete", "workers", b)
	contains(t, "delete", out, "workers", "deleted")
}
