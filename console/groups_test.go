package console

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type groupAnswer struct {
	groupInfo
	TopicLag []topicLag `json:"topic_lag"`
	page
	Offsets      []offsetRow `json:"offsets"`
	Configs      []configRow `json:"configs"`
	ConfigsError string      `json:"configs_error"`
}

// TestGroupsAPI follows a classic consumer group: its lag before and
// after it consumes half of a topic, its members and assignments while it
// runs, a reset refused while it is active, then a dry run and a reset
// once it has left, and its deletion.
func TestGroupsAPI(t *testing.T) {
	tc := startConsole(t, nil)
	tc.call("POST", "/api/topics", createRequest{Name: "jobs", Partitions: 2}, nil)
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: "jobs", Partition: int32(i % 2), Value: fmt.Appendf(nil, "%d", i)})
	}
	tc.produce(recs...)

	cons := tc.client(kgo.ConsumerGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("worker-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < 40 {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got = append(got, fs.Records()...)
	}
	// Commit the first 10 records of each partition: lag 20.
	var first []*kgo.Record
	for _, r := range got {
		if r.Offset == 9 {
			first = append(first, r)
		}
	}
	if err := cons.CommitRecords(ctx, first...); err != nil {
		t.Fatal(err)
	}

	var g groupAnswer
	tc.mustGet("/api/groups/workers", &g)
	if g.Type != "classic" || g.State != "Stable" || g.ProtocolType != "consumer" || len(g.Members) != 1 || g.Lag != 20 || !g.LagKnown {
		t.Fatalf("group: %+v", g.groupInfo)
	}
	m := g.Members[0]
	if m.ClientID != "worker-1" || len(m.Assignment) != 1 || m.Assignment[0].Topic != "jobs" || m.Assignment[0].Partitions != "0-1" || m.Assignment[0].Count != 2 {
		t.Fatalf("member: %+v", m)
	}
	if g.Total != 2 || len(g.Offsets) != 2 || g.Offsets[1] != (offsetRow{Topic: "jobs", Partition: 1, Committed: 10, Start: 0, End: 20, Lag: 10, Member: m.MemberID}) {
		t.Fatalf("offsets: %+v", g.Offsets)
	}
	if len(g.TopicLag) != 1 || g.TopicLag[0] != (topicLag{Topic: "jobs", Partitions: 2, Lag: 20}) {
		t.Fatalf("topic lag: %+v", g.TopicLag)
	}
	tc.mustGet("/api/groups/workers?offset=1&limit=1", &g)
	if g.Total != 2 || len(g.Offsets) != 1 || g.Offsets[0].Partition != 1 {
		t.Fatalf("offsets page: %+v", g.Offsets)
	}

	var list struct {
		page
		Groups []groupInfo `json:"groups"`
	}
	tc.mustGet("/api/groups", &list)
	if list.Total != 1 || list.Groups[0].Group != "workers" || list.Groups[0].Lag != 20 || len(list.Groups[0].Members) != 1 {
		t.Fatalf("groups: %+v", list)
	}
	tc.mustGet("/api/groups?type=share", &list)
	if list.Total != 0 {
		t.Fatalf("share groups: %+v", list)
	}

	// Consuming everything takes the lag to 0.
	if err := cons.CommitRecords(ctx, got...); err != nil {
		t.Fatal(err)
	}
	tc.mustGet("/api/groups/workers", &g)
	if g.Lag != 0 {
		t.Fatalf("lag after committing everything: %d", g.Lag)
	}

	var e apiError
	if code := tc.call("POST", "/api/groups/workers/reset-offsets", resetRequest{To: "earliest"}, &e); code != http.StatusConflict || e.Code != "NON_EMPTY_GROUP" {
		t.Fatalf("reset of an active group: %d %+v", code, e)
	}
	cons.Close() // leaves the group
	waitFor(t, "the group to be empty", func() bool {
		tc.mustGet("/api/groups/workers", &g)
		return g.State == "Empty"
	})

	type resetAnswer struct {
		Executed bool       `json:"executed"`
		Total    int        `json:"total"`
		Failed   int        `json:"failed"`
		Plan     []resetRow `json:"plan"`
	}
	var plan resetAnswer
	if code := tc.call("POST", "/api/groups/workers/reset-offsets", resetRequest{To: "shift", Shift: -5}, &plan); code != 200 || plan.Executed || plan.Total != 2 || plan.Plan[0] != (resetRow{Topic: "jobs", Partition: 0, Current: 20, New: 15}) {
		t.Fatalf("dry run: %d %+v", code, plan)
	}
	tc.mustGet("/api/groups/workers", &g)
	if g.Lag != 0 {
		t.Fatalf("a dry run changed the offsets: lag %d", g.Lag)
	}
	if code := tc.call("POST", "/api/groups/workers/reset-offsets", resetRequest{To: "offset", Offset: 5, Topics: []string{"jobs"}, Execute: true}, &plan); code != 200 || !plan.Executed || plan.Failed != 0 || plan.Plan[1].New != 5 {
		t.Fatalf("reset: %d %+v", code, plan)
	}
	committed, err := tc.admin().FetchOffsets(ctx, "workers")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if o, _ := committed.Lookup("jobs", p); o.At != 5 {
			t.Fatalf("partition %d committed at %d after the reset, want 5", p, o.At)
		}
	}
	tc.mustGet("/api/groups/workers", &g)
	if g.Lag != 30 {
		t.Fatalf("lag after the reset: %d, want 30", g.Lag)
	}
	for _, bad := range []resetRequest{{To: "somewhere"}, {To: "time", Time: "noon"}, {To: "offset", Topics: []string{"nope"}}} {
		if code := tc.call("POST", "/api/groups/workers/reset-offsets", bad, &e); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("reset %+v: %d %+v", bad, code, e)
		}
	}
	if code := tc.call("GET", "/api/groups/nobody", nil, &e); code != http.StatusNotFound {
		t.Fatalf("unknown group: %d %+v", code, e)
	}

	// Deleting the group takes its offsets with it.
	if code := tc.call("DELETE", "/api/groups/workers", nil, &e); code != http.StatusBadRequest {
		t.Fatalf("delete without confirm: %d %+v", code, e)
	}
	if code := tc.call("DELETE", "/api/groups/workers?confirm=workers", nil, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code := tc.call("GET", "/api/groups/workers", nil, &e); code != http.StatusNotFound {
		t.Fatalf("deleted group: %d %+v", code, e)
	}
}

// TestConsumerProtocolGroup: a KIP-848 group shows with its type, assignor,
// members, subscriptions and lag.
func TestConsumerProtocolGroup(t *testing.T) {
	tc := startConsole(t, map[string]string{"group.consumer.heartbeat.interval.ms": "100"})
	tc.call("POST", "/api/topics", createRequest{Name: "tasks", Partitions: 3}, nil)
	tc.produce(&kgo.Record{Topic: "tasks", Partition: 0, Value: []byte("a")}, &kgo.Record{Topic: "tasks", Partition: 2, Value: []byte("b")})
	cons := tc.client(kgo.ConsumerGroup("g848"), kgo.ConsumeTopics("tasks"), kgo.ServerSideBalancer(),
		kgo.Balancers(kgo.RangeBalancer()), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n := 0; n < 2; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	var g groupAnswer
	waitFor(t, "the member's assignment", func() bool {
		tc.mustGet("/api/groups/g848", &g)
		return len(g.Members) == 1 && len(g.Members[0].Assignment) == 1 && g.Members[0].Assignment[0].Count == 3
	})
	if g.Type != "consumer" || g.Protocol != "range" || g.State != "Stable" || !hasString(g.Members[0].Subscribed, "tasks") {
		t.Fatalf("group: %+v", g.groupInfo)
	}
	// Nothing committed: every partition of the subscribed topic shows,
	// with its lag from the log start.
	if g.Total != 3 || g.Lag != 2 || g.Offsets[0].Committed != -1 || g.Offsets[0].Lag != 1 || g.Offsets[1].Lag != 0 {
		t.Fatalf("offsets: lag %d %+v", g.Lag, g.Offsets)
	}
	var list struct {
		page
		Groups []groupInfo `json:"groups"`
	}
	tc.mustGet("/api/groups?type=consumer", &list)
	if list.Total != 1 || list.Groups[0].Type != "consumer" || len(list.Groups[0].Members) != 1 {
		t.Fatalf("consumer groups: %+v", list)
	}
}
