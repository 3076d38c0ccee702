package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/ferrytest"
	"github.com/ferrymq/ferry/internal/benchpeers"
)

// stdinMu serializes tests that replace stdin.
var stdinMu sync.Mutex

// ferry runs one command line in-process and returns what it printed and
// its exit code.
func ferry(t *testing.T, input string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if input != "" {
		stdinMu.Lock()
		defer stdinMu.Unlock()
		old := stdin
		stdin = strings.NewReader(input)
		defer func() { stdin = old }()
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), code
}

// mustFerry runs a command that must succeed.
func mustFerry(t *testing.T, input string, args ...string) string {
	t.Helper()
	out, errOut, code := ferry(t, input, args...)
	if code != 0 {
		t.Fatalf("ferry %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func contains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: missing %q in:\n%s", what, w, got)
		}
	}
}

func TestTopicCommands(t *testing.T) {
	b := "-brokers=" + ferrytest.Start(t).Addr()

	out := mustFerry(t, "", "topic", "create", "orders", b, "-partitions", "3", "-c", "retention.ms=3600000")
	contains(t, "create", out, "TOPIC", "orders", "created")
	out = mustFerry(t, "", "topic", "create", "payments", "-o", "json", b)
	var created []topicCreated
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created) != 1 || created[0].Topic != "payments" || created[0].Error != "" {
		t.Fatalf("create json: %v %+v\n%s", err, created, out)
	}

	// Creating it again names the topic and Kafka's error.
	out, errOut, code := ferry(t, "", "topic", "create", "orders", b)
	if code != 1 {
		t.Fatalf("create twice: exit %d", code)
	}
	contains(t, "create twice", out+errOut, "orders", "TOPIC_ALREADY_EXISTS")

	out = mustFerry(t, "", "topic", "list", b)
	contains(t, "list", out, "TOPIC", "PARTITIONS", "orders", "payments")
	out = mustFerry(t, "", "topic", "list", b, "-o", "json")
	var listed []topicListed
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, l := range listed {
		parts[l.Topic] = l.Partitions
	}
	if parts["orders"] != 3 {
		t.Errorf("list json: orders has %d partitions: %s", parts["orders"], out)
	}

	mustFerry(t, "a\nb\nc\nd\n", "produce", "orders", b)
	out = mustFerry(t, "", "topic", "describe", "orders", b)
	contains(t, "describe", out, "TOPIC orders", "PARTITIONS 3", "LOG-START", "LOG-END", "SIZE", "retention.ms", "3600000")
	out = mustFerry(t, "", "topic", "describe", "orders", b, "-o", "json")
	var described []topicDescribed
	if err := json.Unmarshal([]byte(out), &described); err != nil || len(described) != 1 {
		t.Fatalf("describe json: %v\n%s", err, out)
	}
	var total int64
	for _, p := range described[0].Partitions {
		total += p.LogEnd - p.LogStart
	}
	if total != 4 || len(described[0].Partitions) != 3 {
		t.Errorf("describe json: %d records in %d partitions", total, len(described[0].Partitions))
	}

	out = mustFerry(t, "", "topic", "alter-config", "orders", b, "-set", "retention.ms=7200000", "-set", "cleanup.policy=delete")
	contains(t, "alter-config", out, "orders", "retention.ms", "7200000", "set")
	out = mustFerry(t, "", "topic", "describe", "orders", b)
	contains(t, "describe after alter", out, "7200000")
	out = mustFerry(t, "", "topic", "alter-config", "orders", b, "-delete", "retention.ms", "-o", "json")
	contains(t, "alter-config json", out, `"action": "reset to default"`)

	out = mustFerry(t, "", "topic", "add-partitions", "orders", b, "-count", "5")
	contains(t, "add-partitions", out, "orders", "5", "ok")
	out = mustFerry(t, "", "topic", "add-partitions", "orders", b, "-add", "1", "-o", "json")
	contains(t, "add-partitions json", out, `"partitions": 6`)

	out = mustFerry(t, "", "topic", "delete", "payments", b)
	contains(t, "delete", out, "payments", "deleted")
	out = mustFerry(t, "", "topic", "list", b)
	if strings.Contains(out, "payments") {
		t.Errorf("payments still listed:\n%s", out)
	}
}

func TestErrors(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	b := "-brokers=" + addr
	unreachable := []string{"-brokers=127.0.0.1:1", "-timeout=1s"}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"describe unknown topic", []string{"topic", "describe", "nope", b}, 1, []string{`"nope"`, addr, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"delete unknown topic", []string{"topic", "delete", "nope", b}, 1, []string{`"nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"consume unknown topic", []string{"consume", "nope", b, "-e"}, 1, []string{`"nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"alter unknown topic", []string{"topic", "alter-config", "nope", b, "-set", "retention.ms=1"}, 1, []string{`"nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"add partitions unknown topic", []string{"topic", "add-partitions", "nope", b, "-count", "2"}, 1, []string{`"nope"`, "UNKNOWN_TOPIC_OR_PARTITION"}},
		{"unreachable list", append([]string{"topic", "list"}, unreachable...), 1, []string{"cannot reach broker 127.0.0.1:1", "connection refused"}},
		{"unreachable describe", append([]string{"topic", "describe", "x"}, unreachable...), 1, []string{`"x"`, "127.0.0.1:1"}},
		{"unreachable cluster", append([]string{"cluster", "info"}, unreachable...), 1, []string{"127.0.0.1:1"}},
		{"unreachable group list", append([]string{"group", "list"}, unreachable...), 1, []string{"127.0.0.1:1"}},
		{"no command", nil, 2, []string{"Usage"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}},
		{"unknown subcommand", []string{"topic", "frob"}, 2, []string{`unknown command "topic frob"`}},
		{"bad flag", []string{"topic", "list", "-bogus"}, 2, []string{"-bogus"}},
		{"bad output", []string{"topic", "list", "-o", "yaml"}, 2, []string{"yaml"}},
		{"create without name", []string{"topic", "create", b}, 2, []string{"name at least one topic"}},
		{"bad offset", []string{"consume", "t", "-offset", "soon", b}, 2, []string{"soon"}},
		{"bad format", []string{"consume", "t", "-f", "%z", b}, 2, []string{"%z"}},
		{"reset needs a mode", []string{"group", "reset-offsets", "g", b}, 2, []string{"exactly one of"}},
		{"bad acks", []string{"bench", "produce", "-acks", "2", b}, 2, []string{"acks"}},
		{"bad completion", []string{"completion", "fish"}, 2, []string{"fish"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := ferry(t, "", tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			contains(t, "stderr", errOut, tt.want...)
			if time.Since(start) > 15*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
		})
	}
}

func TestProduceConsume(t *testing.T) {
	b := "-brokers=" + ferrytest.Start(t).Addr()
	mustFerry(t, "", "topic", "create", "events", b, "-partitions", "1")
	before := time.Now().Add(-time.Second).UnixMilli()

	out := mustFerry(t, "k1:v1\nk2:v2\nk3:v3\n", "produce", "events", b, "-key-delimiter", ":", "-header", "h=1", "-v")
	contains(t, "produce -v", out, "events partition 0 offset 0", "events partition 0 offset 2")
	out = mustFerry(t, "plain\n", "produce", "events", b, "-v", "-o", "json", "-acks", "1", "-compression", "zstd")
	var p produced
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Offset != 3 {
		t.Fatalf("produce json: %v %+v\n%s", err, p, out)
	}
	// Consumers see an acks=1 record once the broker's background flush
	// has made it durable (flush.max.delay.ms).
	for deadline := time.Now().Add(10 * time.Second); mustFerry(t, "", "consume", "events", b, "-e", "-offset", "3") != "plain\n"; {
		if time.Now().After(deadline) {
			t.Fatal("the acks=1 record never became visible")
		}
		time.Sleep(10 * time.Millisecond)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default format", []string{"-e"}, "v1\nv2\nv3\nplain\n"},
		{"format", []string{"-e", "-f", `%k=%v p%p o%o %h\n`}, "k1=v1 p0 o0 h=1\nk2=v2 p0 o1 h=1\nk3=v3 p0 o2 h=1\n=plain p0 o3 \n"},
		{"offset", []string{"-e", "-offset", "2"}, "v3\nplain\n"},
		{"last", []string{"-e", "-offset", "-1"}, "plain\n"},
		{"end", []string{"-e", "-offset", "end"}, ""},
		{"count", []string{"-n", "2"}, "v1\nv2\n"},
		{"partition", []string{"-e", "-partition", "0", "-n", "1"}, "v1\n"},
		{"timestamp", []string{"-e", "-offset", fmt.Sprintf("@%d", before), "-n", "1"}, "v1\n"},
		{"future timestamp", []string{"-e", "-offset", fmt.Sprintf("@%d", time.Now().Add(time.Hour).UnixMilli())}, ""},
		{"lengths", []string{"-e", "-n", "1", "-f", `%K %S %T\n`}, "2 2 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustFerry(t, "", append([]string{"consume", "events", b}, tt.args...)...)
			if tt.name == "lengths" {
				if !strings.HasPrefix(out, tt.want) {
					t.Fatalf("got %q, want prefix %q", out, tt.want)
				}
				return
			}
			if out != tt.want {
				t.Fatalf("got %q, want %q", out, tt.want)
			}
		})
	}

	out = mustFerry(t, "", "consume", "events", b, "-e", "-o", "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("json lines: %q", out)
	}
	var r consumedRecord
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	if r.Key == nil || *r.Key != "k1" || r.Value != "v1" || r.Headers["h"] != "1" || r.Timestamp < before {
		t.Errorf("json record %+v", r)
	}
}

func TestGroupCommands(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	b := "-brokers=" + addr
	mustFerry(t, "", "topic", "create", "jobs", b, "-partitions", "2")
	mustFerry(t, "a\nb\nc\nd\ne\nf\n", "produce", "jobs", b)

	// Consume four records as group "workers": it commits them.
	out := mustFerry(t, "", "consume", "jobs", b, "-group", "workers", "-n", "4")
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("consumed %d lines: %q", n, out)
	}
	out = mustFerry(t, "", "group", "list", b)
	contains(t, "group list", out, "GROUP", "workers")
	out = mustFerry(t, "", "group", "list", b, "-o", "json")
	contains(t, "group list json", out, `"group": "workers"`)

	out = mustFerry(t, "", "group", "describe", "workers", b)
	contains(t, "group describe", out, "GROUP workers", "TOTAL-LAG 2", "COMMITTED", "LOG-END", "LAG", "jobs")
	out = mustFerry(t, "", "group", "describe", "workers", b, "-o", "json")
	var gd []groupDescribed
	if err := json.Unmarshal([]byte(out), &gd); err != nil || len(gd) != 1 || gd[0].TotalLag != 2 || len(gd[0].Offsets) != 2 {
		t.Fatalf("group describe json: %v\n%s", err, out)
	}

	// Dry run changes nothing.
	out, errOut, code := ferry(t, "", "group", "reset-offsets", "workers", b, "-to-earliest")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	contains(t, "reset dry run", out+errOut, "CURRENT", "NEW", "dry run", "-execute")
	out = mustFerry(t, "", "group", "describe", "workers", b, "-o", "json")
	if err := json.Unmarshal([]byte(out), &gd); err != nil || gd[0].TotalLag != 2 {
		t.Fatalf("after dry run: %s", out)
	}
	// Execute: back to the start, lag 6.
	out = mustFerry(t, "", "group", "reset-offsets", "workers", b, "--to-earliest", "--execute", "-topic", "jobs")
	contains(t, "reset execute", out, "committed")
	out = mustFerry(t, "", "group", "describe", "workers", b, "-o", "json")
	if err := json.Unmarshal([]byte(out), &gd); err != nil || gd[0].TotalLag != 6 {
		t.Fatalf("after reset: %s", out)
	}
	out = mustFerry(t, "", "group", "reset-offsets", "workers", b, "-shift-by", "2", "-execute", "-topic", "jobs:0", "-o", "json")
	var plan []offsetReset
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan) != 1 || plan[0].Partition != 0 || plan[0].New != min(2, plan[0].New) {
		t.Fatalf("shift json: %v\n%s", err, out)
	}
	mustFerry(t, "", "group", "reset-offsets", "workers", b, "-to-latest", "-execute")
	out = mustFerry(t, "", "group", "describe", "workers", b, "-o", "json")
	if err := json.Unmarshal([]byte(out), &gd); err != nil || gd[0].TotalLag != 0 {
		t.Fatalf("after to-latest: %s", out)
	}

	// A group with a live member: reset-offsets and delete are refused.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("live"), kgo.ConsumeTopics("jobs"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	for got := 0; got < 6; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("live consumer read %d records", got)
		}
		got += fs.NumRecords()
	}
	cancel()
	if err := cl.CommitUncommittedOffsets(t.Context()); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ferry(t, "", "group", "reset-offsets", "live", b, "-to-earliest", "-execute")
	if code != 1 {
		t.Fatalf("reset of live group: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "reset live group", errOut, `"live"`, "on "+addr, "active member", "NON_EMPTY_GROUP")
	out = mustFerry(t, "", "group", "describe", "live", b)
	contains(t, "describe live group", out, "MEMBER", "CLIENT-ID", "jobs:0,1")
	out, errOut, code = ferry(t, "", "group", "delete", "live", b)
	if code != 1 {
		t.Fatalf("delete of live group: exit %d\n%s%s", code, out, errOut)
	}
	contains(t, "delete live group", errOut, `"live"`, "NON_EMPTY_GROUP")
	cl.Close()

	out = mustFerry(t, "", "group", "delete", "workers", b)
	contains(t, "group delete", out, "workers", "deleted")
	_, errOut, code = ferry(t, "", "group", "describe", "workers", b)
	if code != 1 {
		t.Fatalf("describe deleted group: exit %d", code)
	}
	contains(t, "describe deleted group", errOut, `"workers"`, "GROUP_ID_NOT_FOUND")
}

func TestClusterInfo(t *testing.T) {
	b := "-brokers=" + ferrytest.Start(t).Addr()
	out := mustFerry(t, "", "cluster", "info", b)
	contains(t, "cluster info", out, "CLUSTER-ID", "CONTROLLER", "BROKER", "HOST", "API VERSIONS", "Produce", "Fetch", "ApiVersions")
	out = mustFerry(t, "", "cluster", "info", b, "-o", "json")
	var info clusterInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Brokers) == 0 || len(info.APIVersions) == 0 {
		t.Fatalf("cluster info json: %v\n%s", err, out)
	}
}

// TestClusterQuorumCommands: on a cluster of one voter, `cluster quorum`
// shows it leading, with its log; `cluster unregister` of an unknown
// broker, `cluster remove-voter` of the last voter or of a node that is
// none, and `cluster add-voter` of a voter or of a node that never joined
// fail with Kafka's errors; on a single node (no quorum) all say so.
func TestClusterQuorumCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctrl := ln.Addr().String()
	ln.Close()
	b := "-brokers=" + ferrytest.Start(t, ferrytest.Props(map[string]string{"controller.quorum.voters": "0@" + ctrl})).Addr()
	var st quorumStatus
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := ferry(t, "", "cluster", "quorum", b, "-o", "json")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("cluster quorum json: %v\n%s", err, out)
			}
			if st.HighWatermark > 0 && len(st.Members) == 1 && st.Members[0].LogEndOffset == st.HighWatermark {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster quorum: exit %d, %+v", code, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := st.Members[0]; st.LeaderID != 0 || st.LeaderEpoch < 1 || m.NodeID != 0 || m.Role != "Leader" || m.Lag != 0 || m.LastFetchMs <= 0 {
		t.Fatalf("cluster quorum: %+v", st)
	}
	out := mustFerry(t, "", "cluster", "quorum", b)
	contains(t, "cluster quorum", out, "LEADER 0", "HIGH-WATERMARK", "NODE", "LOG-END-OFFSET", "Leader", "ms ago")
	_, errOut, code := ferry(t, "", "cluster", "unregister", "5", b)
	if code != 1 {
		t.Fatalf("unregister of an unknown broker: exit %d", code)
	}
	contains(t, "unregister of an unknown broker", errOut, "BROKER_ID_NOT_REGISTERED")
	if _, _, code := ferry(t, "", "cluster", "unregister", "x", b); code != 2 {
		t.Fatalf("unregister x: exit %d", code)
	}
	// The voter changes' refusals, with Kafka's errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "remove-voter", "0", b}, "INVALID_REQUEST"},
		{[]string{"cluster", "remove-voter", "5", b}, "VOTER_NOT_FOUND"},
		{[]string{"cluster", "add-voter", "0", "-controller", ctrl, b}, "DUPLICATE_VOTER"},
		{[]string{"cluster", "add-voter", "5", "-controller", "127.0.0.1:1", b}, "REQUEST_TIMED_OUT"},
	} {
		_, errOut, code := ferry(t, "", tc.args...)
		if code != 1 {
			t.Fatalf("%v: exit %d", tc.args[:3], code)
		}
		contains(t, fmt.Sprint(tc.args[:3]), errOut, tc.want)
	}
	for _, args := range [][]string{{"cluster", "add-voter", "x", "-controller", ctrl, b}, {"cluster", "add-voter", "1", "-controller", "nohost", b}, {"cluster", "add-voter", "1", b}, {"cluster", "remove-voter", "x", b}} {
		if _, _, code := ferry(t, "", args...); code != 2 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}

	single := "-brokers=" + ferrytest.Start(t).Addr()
	for _, args := range [][]string{{"cluster", "quorum", single}, {"cluster", "unregister", "1", single}, {"cluster", "add-voter", "1", "-controller", "127.0.0.1:1", single}, {"cluster", "remove-voter", "1", single}} {
		_, errOut, code := ferry(t, "", args...)
		if code != 1 {
			t.Fatalf("%v on a single node: exit %d", args, code)
		}
		contains(t, fmt.Sprint(args, " on a single node"), errOut, "UNSUPPORTED_VERSION", "controller.quorum.voters")
	}
}

func TestBenchCommands(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	b := "-brokers=" + addr
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"produce", []string{"bench", "produce", b, "-records", "3000", "-partitions", "2", "-topic", "bp"}, []string{"records     3,000", "ack", "p99.9", "cpu"}},
		{"consume", []string{"bench", "consume", b, "-records", "2000", "-topic", "bc", "-consumers", "2", "-partitions", "2"}, []string{"records     2,000", "first-record"}},
		{"consume group", []string{"bench", "consume", b, "-records", "1000", "-topic", "bg", "-group", "bench-g"}, []string{"in group bench-g"}},
		{"e2e", []string{"bench", "e2e", b, "-records", "500", "-rate", "2000", "-topic", "be"}, []string{"end-to-end", "rate        target 2,000/s", "linger 0"}},
		{"e2e linger", []string{"bench", "e2e", b, "-records", "500", "-rate", "2000", "-topic", "bel", "-linger", "2ms"}, []string{"linger 2.00ms"}},
		{"e2e flat out", []string{"bench", "e2e", b, "-records", "2000", "-rate", "0", "-partitions", "2", "-topic", "bef"}, []string{"records     2,000", "end-to-end"}},
		{"e2e bulk", []string{"bench", "e2e", b, "-records", "500", "-rate", "2000", "-topic", "beb", "-bulk-size", "512", "-bulk-partitions", "2"},
			[]string{"bulk        topic beb-bulk (2 partitions), 512 B records, acks=all"}},
		{"produce round robin", []string{"bench", "produce", b, "-records", "1000", "-partitions", "4", "-round-robin", "-linger", "0", "-topic", "brr",
			"-broker-pid", strconv.Itoa(os.Getpid())}, []string{"linger 0", "broker cpu", "/proc/"}},
		{"consume fanout", []string{"bench", "consume", b, "-records", "600", "-topic", "bfo", "-consumers", "2", "-partitions", "2", "-fanout"},
			[]string{"records     1,200", "each reading every partition"}},
		{"produce in transactions", []string{"bench", "produce", b, "-records", "1000", "-txn-records", "100", "-topic", "bt"}, []string{"records     1,000", "transactions of 100 records", "commit"}},
		{"sink", []string{"bench", "produce", "-sink", "-duration", "300ms"}, []string{"null broker", "throughput"}},
		{"embedded default produce", []string{"bench", "-embedded", "-records", "2000"}, []string{"produce: topic ferry-bench", "records     2,000", "-embedded"}},
		{"queue", []string{"bench", "queue", b, "-duration", "500ms", "-warmup", "200ms", "-consumers", "1,2", "-rate", "1000", "-size", "100", "-trials", "1", "-held", "100"},
			[]string{"acked consume rec/s", "e2e p99 ms", "1,000/s", "redelivery of 100 records"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := ferry(t, "", tt.args...)
			if code == 1 && strings.Contains(errOut, "rate not held") {
				// A loaded test machine can stall a short run: the
				// command must say so, and it did.
				contains(t, tt.name, out, "NOT HELD")
			} else if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			contains(t, tt.name, out, tt.want...)
		})
	}
	out, errOut, code := ferry(t, "", "bench", "produce", b, "-records", "500", "-json", "-q")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res struct {
		Mode    string `json:"mode"`
		Records int64  `json:"records"`
		Latency struct {
			P99 float64 `json:"p99_ms"`
		} `json:"latency"`
		CPU struct {
			Cores int `json:"cores"`
		} `json:"cpu"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Mode != "produce" || res.Records != 500 || res.CPU.Cores == 0 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if errOut != "" {
		t.Errorf("-q still printed: %q", errOut)
	}
}

func TestBenchCompare(t *testing.T) {
	a, c := ferrytest.Start(t).Addr(), benchpeers.StartKfake(t)
	dir := filepath.Join(t.TempDir(), "report")
	consume := "consume-group-8p-1KiB"
	out, errOut, code := ferry(t, "", "bench", "compare", "-target", "one="+a, "-target", "two="+c,
		"-repeat", "1", "-duration", "200ms", "-fill-records", "500",
		"-scenarios", "produce-1p-100B,"+consume, "-report", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	contains(t, "compare table", out, "SCENARIO", "one", "two", "produce-1p-100B", consume, "records/s", "x)")
	contains(t, "compare progress", errOut, "[1/1] one produce-1p-100B", "report written")
	for _, f := range []string{"index.html", "report.md", "report.json", "latency-produce-1p-100B.svg", "throughput-" + consume + ".svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	out, errOut, code = ferry(t, "", "bench", "compare", "-target", "one="+a+",pid="+strconv.Itoa(os.Getpid()), "-target", "two="+c,
		"-repeat", "1", "-duration", "200ms", "-fill-records", "500", "-scenarios", "consume-3x-8p-1KiB")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	contains(t, "compare load table", out, "consume-3x-8p-1KiB", "broker cpu s/GB", "load avg")
	// The transaction set, against kfake too.
	out, errOut, code = ferry(t, "", "bench", "compare", "-target", "one="+a, "-target", "two="+c,
		"-repeat", "1", "-duration", "300ms", "-scenarios", "produce-txn100-1p-100B")
	if code != 0 {
		t.Fatalf("transactions: exit %d\n%s\n%s", code, out, errOut)
	}
	contains(t, "compare transactions", out, "produce-txn100-1p-100B", "commit")
	_, errOut, code = ferry(t, "", "bench", "compare", "-scenarios", "nope", "-target", "x=127.0.0.1:1")
	if code != 2 || !strings.Contains(errOut, `unknown scenario "nope"`) {
		t.Fatalf("unknown scenario: exit %d %s", code, errOut)
	}
}

func TestHelpAndCompletion(t *testing.T) {
	out := mustFerry(t, "", "help")
	contains(t, "help", out, "serve", "bench", "topic", "produce", "consume", "group", "cluster", "completion")
	out = mustFerry(t, "", "help", "group", "reset-offsets")
	contains(t, "help group reset-offsets", out, "-to-earliest", "-execute", "-shift-by")
	out = mustFerry(t, "", "consume", "-h")
	contains(t, "consume -h", out, "Usage: ferry consume [flags] TOPIC", "-offset")
	out = mustFerry(t, "", "completion", "bash")
	contains(t, "bash", out, "complete -o default -F _ferry ferry", `"topic create"*`, "-partitions", `"group") cands="list describe delete reset-offsets alter-config"`)
	out = mustFerry(t, "", "completion", "zsh")
	contains(t, "zsh", out, "#compdef ferry", "compdef _ferry ferry", "reset-offsets")
	if _, _, code := ferry(t, "", "bench", "produce", "-h"); code != 0 {
		t.Errorf("-h exit %d", code)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		n       int
		wantErr bool
	}{
		{[]string{"a", "-n", "3", "b"}, []string{"a", "b"}, 3, false},
		{[]string{"-n=2", "a"}, []string{"a"}, 2, false},
		{[]string{"--n", "4", "a", "--", "-n", "x"}, []string{"a", "-n", "x"}, 4, false},
		{[]string{"a", "-m"}, nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := newFlagSet("test")
			n := fs.Int("n", 0, "")
			pos, err := parseArgs(fs, tt.args, &bytes.Buffer{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if tt.wantErr {
				if !errors.Is(err, errUsage) {
					t.Fatalf("err %v is not a usage error", err)
				}
				return
			}
			if strings.Join(pos, "|") != strings.Join(tt.pos, "|") || *n != tt.n {
				t.Fatalf("pos %q n %d", pos, *n)
			}
		})
	}
	if _, err := parseArgs(newFlagSet("x"), []string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestBrokersFromEnv(t *testing.T) {
	t.Setenv(envBrokers, "h1:1, h2:2")
	fs := newFlagSet("x")
	cf := addClientFlags(fs)
	if got := strings.Join(cf.brokerList(), ","); got != "h1:1,h2:2" {
		t.Fatalf("brokers %q", got)
	}
}

// TestGroupCommandsKIP848 covers a group of the consumer protocol (KIP-848):
// DescribeGroups answers GROUP_ID_NOT_FOUND for it, as Kafka does, so
// describe and reset-offsets must use ConsumerGroupDescribe.
func TestGroupCommandsKIP848(t *testing.T) {
	// Members heartbeat at the interval the broker tells them; the default
	// 5s would slow every step.
	addr := ferrytest.Start(t, ferrytest.Props(map[string]string{"group.consumer.heartbeat.interval.ms": "100"})).Addr()
	b := "-brokers=" + addr
	mustFerry(t, "", "topic", "create", "jobs", b, "-partitions", "2")
	mustFerry(t, "a\nb\nc\n", "produce", "jobs", b, "-partition", "0")

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("g848"), kgo.ConsumeTopics("jobs"),
		kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	for got := 0; got < 3; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumer read %d records", got)
		}
		got += fs.NumRecords()
	}
	cancel()
	if err := cl.CommitUncommittedOffsets(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := mustFerry(t, "", "group", "list", b)
	contains(t, "group list", out, "g848", "consumer")

	// describe: the member, its assignment and the offsets.
	out = mustFerry(t, "", "group", "describe", "g848", b)
	contains(t, "describe", out, "GROUP g848", "MEMBERS 1", "TOTAL-LAG 0", "MEMBER", "jobs:0,1", "COMMITTED")
	out = mustFerry(t, "", "group", "describe", "g848", b, "-o", "json")
	var gd []groupDescribed
	if err := json.Unmarshal([]byte(out), &gd); err != nil || len(gd) != 1 {
		t.Fatalf("describe json: %v\n%s", err, out)
	}
	d := gd[0]
	if d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol != "range" || len(d.Members) != 1 ||
		strings.Join(d.Members[0].Assigned, " ") != "jobs:0,1" || d.TotalLag != 0 || len(d.Offsets) != 2 {
		t.Fatalf("describe json: %+v\n%s", d, out)
	}
	for _, off := range d.Offsets {
		want := map[int32]int64{0: 3, 1: -1}[off.Partition]
		if off.Topic != "jobs" || off.Committed != want || off.Member != d.Members[0].MemberID {
			t.Errorf("offset %+v: want committed %d and member %s", off, want, d.Members[0].MemberID)
		}
	}

	// reset-offsets is refused while the group has a member, naming the
	// broker like every other failure.
	for _, mode := range [][]string{{"-to-earliest"}, {"-to-earliest", "-execute"}} {
		out, errOut, code := ferry(t, "", append([]string{"group", "reset-offsets", "g848", b}, mode...)...)
		if code != 1 {
			t.Fatalf("reset %v of active group: exit %d\n%s%s", mode, code, out, errOut)
		}
		contains(t, "reset active group", errOut, `"g848"`, "on "+addr, "1 active member", "NON_EMPTY_GROUP")
	}

	// Once the member leaves, the group is Empty and can be reset.
	cl.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out = mustFerry(t, "", "group", "describe", "g848", b, "-o", "json")
		if err := json.Unmarshal([]byte(out), &gd); err == nil && len(gd) == 1 && len(gd[0].Members) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member did not leave:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if gd[0].State != "Empty" || gd[0].TotalLag != 0 {
		t.Fatalf("after leaving: %+v", gd[0])
	}
	out = mustFerry(t, "", "group", "reset-offsets", "g848", b, "-to-earliest", "-execute", "-topic", "jobs:0")
	contains(t, "reset empty group", out, "committed")
	out = mustFerry(t, "", "group", "describe", "g848", b, "-o", "json")
	if err := json.Unmarshal([]byte(out), &gd); err != nil || len(gd) != 1 || gd[0].TotalLag != 3 {
		t.Fatalf("after reset: %v\n%s", err, out)
	}
}

// TestGroupResetShiftWithoutCommit: -shift-by needs a committed offset to
// shift from; like Kafka, refuse a partition that has none rather than
// shifting from the log start.
func TestGroupResetShiftWithoutCommit(t *testing.T) {
	addr := ferrytest.Start(t).Addr()
	b := "-brokers=" + addr
	mustFerry(t, "", "topic", "create", "jobs", b, "-partitions", "2")
	mustFerry(t, "a\nb\nc\nd\ne\n", "produce", "jobs", b, "-partition", "0")
	mustFerry(t, "x\ny\nz\nw\n", "produce", "jobs", b, "-partition", "1")
	mustFerry(t, "", "group", "reset-offsets", "g", b, "-to-latest", "-topic", "jobs:0", "-execute")

	for _, mode := range [][]string{{"-shift-by", "-1"}, {"-shift-by", "1", "-execute"}} {
		out, errOut, code := ferry(t, "", append([]string{"group", "reset-offsets", "g", b, "-topic", "jobs"}, mode...)...)
		if code != 1 {
			t.Fatalf("shift %v with partition 1 uncommitted: exit %d\n%s%s", mode, code, out, errOut)
		}
		contains(t, "shift without commit", errOut, `"g"`, "cannot shift offset for partition jobs-1 since there is no current committed offset")
	}
	// Nothing was committed for partition 1, and partition 0 is unchanged.
	out := mustFerry(t, "", "group", "describe", "g", b, "-o", "json")
	var gd []groupDescribed
	if err := json.Unmarshal([]byte(out), &gd); err != nil || len(gd) != 1 || len(gd[0].Offsets) != 2 ||
		gd[0].Offsets[0].Committed != 5 || gd[0].Offsets[1].Committed != -1 {
		t.Fatalf("after refused shift: %v\n%s", err, out)
	}
	// The committed partition alone shifts.
	out = mustFerry(t, "", "group", "reset-offsets", "g", b, "-shift-by", "-2", "-topic", "jobs:0", "-execute", "-o", "json")
	var plan []offsetReset
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan) != 1 || plan[0].Current != 5 || plan[0].New != 3 {
		t.Fatalf("shift of committed partition: %v\n%s", err, out)
	}
}
