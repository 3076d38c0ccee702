package console

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestShareGroupAPI follows a share group (KIP-932) consumed by franz-go's
// share consumer: listed beside consumer groups and on its own with the
// type filter, its state, member (client, host, subscription,
// assignment), start offsets and lag as it accepts records; a reset and a
// delete refused while it has a member; then a dry run, a reset of its
// start offsets and its deletion once the member has left.
func TestShareGroupAPI(t *testing.T) {
	tc := startConsole(t, shareProps())
	tc.call("POST", "/api/topics", createRequest{Name: "queue", Partitions: 2}, nil)
	tc.setGroupConfigs("sq", "share.auto.offset.reset", "earliest", "share.delivery.count.limit", "10")
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: "queue", Partition: int32(i % 2), Value: fmt.Appendf(nil, "job %d", i)})
	}
	tc.produce(recs...)
	// A classic group beside it, for the type filter.
	tc.client(kgo.ConsumerGroup("plain"), kgo.ConsumeTopics("queue")).CommitOffsetsSync(context.Background(),
		map[string]map[int32]kgo.EpochOffset{"queue": {0: {Epoch: -1, Offset: 1}}}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc := tc.shareConsumer("sq", kgo.ConsumeTopics("queue"), kgo.ClientID("sharer-1"))
	sc.accept(ctx, 10)

	var g groupAnswer
	waitFor(t, "the member's assignment", func() bool {
		tc.mustGet("/api/groups/sq", &g)
		return len(g.Members) == 1 && len(g.Members[0].Assignment) == 1 && g.Members[0].Assignment[0].Count == 2 && g.Total == 2
	})
	if g.Type != "share" || g.State != "Stable" || g.ProtocolType != "share" || g.Lag != 30 || !g.LagKnown || g.Error != "" {
		t.Fatalf("group: %+v", g.groupInfo)
	}
	cfgs := map[string]configRow{}
	for _, c := range g.Configs {
		cfgs[c.Name] = c
	}
	if c := cfgs["share.auto.offset.reset"]; c.Value == nil || *c.Value != "earliest" || c.Default || c.Source != "GROUP" {
		t.Fatalf("share.auto.offset.reset: %+v", c)
	}
	if c := cfgs["share.record.lock.duration.ms"]; c.Value == nil || *c.Value != "30000" || !c.Default {
		t.Fatalf("share.record.lock.duration.ms: %+v", c)
	}
	m := g.Members[0]
	if m.ClientID != "sharer-1" || m.Host == "" || m.Assignment[0].Topic != "queue" || m.Assignment[0].Partitions != "0-1" || !hasString(m.Subscribed, "queue") {
		t.Fatalf("member: %+v", m)
	}
	var lag int64
	for _, o := range g.Offsets {
		if o.Topic != "queue" || o.End != 20 || o.Start != 0 || o.Committed < 0 || o.Committed > 20 || o.Lag < 0 || o.Member != m.MemberID || o.Error != "" {
			t.Fatalf("offsets: %+v", g.Offsets)
		}
		lag += o.Lag
	}
	if lag != 30 || len(g.TopicLag) != 1 || g.TopicLag[0] != (topicLag{Topic: "queue", Partitions: 2, Lag: 30}) {
		t.Fatalf("lag by partition %d, by topic %+v", lag, g.TopicLag)
	}

	var list struct {
		page
		Groups []groupInfo `json:"groups"`
	}
	tc.mustGet("/api/groups?type=share", &list)
	if list.Total != 1 || list.Groups[0].Group != "sq" || list.Groups[0].Type != "share" || list.Groups[0].Lag != 30 || len(list.Groups[0].Members) != 1 {
		t.Fatalf("share groups: %+v", list)
	}
	tc.mustGet("/api/groups", &list)
	if list.Total != 2 || list.Groups[0].Group != "plain" || list.Groups[1].Group != "sq" || list.Groups[1].Lag != 30 {
		t.Fatalf("groups: %+v", list)
	}
	tc.mustGet("/api/groups?type=classic", &list)
	if list.Total != 1 || list.Groups[0].Group != "plain" {
		t.Fatalf("classic groups: %+v", list)
	}

	// Accepting the rest takes the lag to 0 and the start offsets to the
	// log end.
	sc.accept(ctx, 30)
	waitFor(t, "lag 0", func() bool {
		tc.mustGet("/api/groups/sq", &g)
		return g.Lag == 0 && g.Offsets[0].Committed == 20 && g.Offsets[1].Committed == 20
	})

	// Refused while the member is there, as Kafka refuses.
	var e apiError
	if code := tc.call("POST", "/api/groups/sq/reset-offsets", resetRequest{To: "earliest"}, &e); code != http.StatusConflict || e.Code != "NON_EMPTY_GROUP" {
		t.Fatalf("reset of an active share group: %d %+v", code, e)
	}
	if code := tc.call("DELETE", "/api/groups/sq?confirm=sq", nil, &e); code != http.StatusConflict || e.Code != "NON_EMPTY_GROUP" {
		t.Fatalf("delete of an active share group: %d %+v", code, e)
	}
	sc.cl.Close() // leaves the group
	waitFor(t, "the share group to be empty", func() bool {
		tc.mustGet("/api/groups/sq", &g)
		return g.State == "Empty" && len(g.Members) == 0
	})

	type resetAnswer struct {
		Executed bool       `json:"executed"`
		Total    int        `json:"total"`
		Failed   int        `json:"failed"`
		Plan     []resetRow `json:"plan"`
	}
	var plan resetAnswer
	if code := tc.call("POST", "/api/groups/sq/reset-offsets", resetRequest{To: "earliest"}, &plan); code != 200 || plan.Executed || plan.Total != 2 ||
		plan.Plan[0] != (resetRow{Topic: "queue", Partition: 0, Current: 20, New: 0}) {
		t.Fatalf("dry run: %d %+v", code, plan)
	}
	tc.mustGet("/api/groups/sq", &g)
	if g.Lag != 0 {
		t.Fatalf("a dry run changed the start offsets: lag %d", g.Lag)
	}
	if code := tc.call("POST", "/api/groups/sq/reset-offsets", resetRequest{To: "shift", Shift: -15, Execute: true}, &plan); code != 200 || !plan.Executed || plan.Failed != 0 ||
		plan.Plan[1] != (resetRow{Topic: "queue", Partition: 1, Current: 20, New: 5}) {
		t.Fatalf("reset: %d %+v", code, plan)
	}
	offs, err := tc.admin().DescribeShareGroupOffsets(ctx, "sq")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if o, _ := offs["sq"].Offsets.Lookup("queue", p); o.StartOffset != 5 || o.Lag != 15 {
			t.Fatalf("partition %d after the reset: start %d lag %d, want 5 and 15", p, o.StartOffset, o.Lag)
		}
	}
	tc.mustGet("/api/groups/sq", &g)
	if g.Lag != 30 || g.Offsets[0].Committed != 5 {
		t.Fatalf("after the reset: lag %d offsets %+v", g.Lag, g.Offsets)
	}

	// Deleting needs the name repeated.
	if code := tc.call("DELETE", "/api/groups/sq?confirm=sx", nil, &e); code != http.StatusBadRequest {
		t.Fatalf("delete without the name: %d %+v", code, e)
	}
	var del struct {
		Deleted bool `json:"deleted"`
	}
	if code := tc.call("DELETE", "/api/groups/sq?confirm=sq", nil, &del); code != 200 || !del.Deleted {
		t.Fatalf("delete: %d %+v", code, del)
	}
	listed, err := tc.admin().ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed["sq"]; ok {
		t.Fatalf("the deleted share group is listed: %+v", listed)
	}
	if code := tc.call("GET", "/api/groups/sq", nil, &e); code != http.StatusNotFound {
		t.Fatalf("deleted group: %d %+v", code, e)
	}
	if code := tc.call("DELETE", "/api/groups/sq?confirm=sq", nil, &e); code != http.StatusNotFound {
		t.Fatalf("deleting it again: %d %+v", code, e)
	}
}

// TestShareGroupSharedPartition: two members of a share group on a topic
// of one partition are both assigned it, and its row names both.
func TestShareGroupSharedPartition(t *testing.T) {
	tc := startConsole(t, shareProps())
	tc.call("POST", "/api/topics", createRequest{Name: "one", Partitions: 1}, nil)
	// The records the first member fetches ahead and holds come back
	// for the second within a second.
	tc.setGroupConfigs("pair", "share.auto.offset.reset", "earliest", "share.record.lock.duration.ms", "1000", "share.delivery.count.limit", "10")
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: "one", Value: fmt.Appendf(nil, "r%d", i)})
	}
	tc.produce(recs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := tc.shareConsumer("pair", kgo.ConsumeTopics("one"), kgo.ClientID("a"))
	a.accept(ctx, 4)
	b := tc.shareConsumer("pair", kgo.ConsumeTopics("one"), kgo.ClientID("b"))
	b.accept(ctx, 3)
	var g groupAnswer
	waitFor(t, "both members assigned partition 0", func() bool {
		tc.mustGet("/api/groups/pair", &g)
		if len(g.Members) != 2 || len(g.Offsets) != 1 {
			return false
		}
		for _, m := range g.Members {
			if len(m.Assignment) != 1 || m.Assignment[0].Partitions != "0" {
				return false
			}
		}
		return true
	})
	row := g.Offsets[0]
	if row.Member != g.Members[0].MemberID+","+g.Members[1].MemberID && row.Member != g.Members[1].MemberID+","+g.Members[0].MemberID {
		t.Fatalf("partition 0 is assigned to %q, want both of %+v", row.Member, g.Members)
	}
	if g.Lag != 3 || row.Lag != 3 || row.End != 10 {
		t.Fatalf("lag %d, row %+v", g.Lag, row)
	}
}
