package group

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestStats: Stats lists every group with its members and committed
// offsets, sorted, and follows commits and deletions.
func TestStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := newTestCoordinator(t, nil)
		ctx := context.Background()
		commit := func(group, member string, gen int32, topic string, p int32, off int64) {
			t.Helper()
			req := &kmsg.OffsetCommitRequest{Version: 8, Group: group, MemberID: member, Generation: gen, Topics: []kmsg.OffsetCommitRequestTopic{
				{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: p, Offset: off, LeaderEpoch: -1}}},
			}}
			if code := c.OffsetCommit(ctx, req).Topics[0].Partitions[0].ErrorCode; code != 0 {
				t.Fatalf("commit %s %s/%d: code %d", group, topic, p, code)
			}
		}
		member, gen := joinStable(t, c, "b")
		commit("b", member, gen, "t2", 1, 7)
		commit("b", member, gen, "t1", 3, 5)
		commit("b", member, gen, "t1", 0, 9)
		commit("a", "", -1, "t1", 2, 4) // a simple group: commits, no members
		got := fmt.Sprint(c.Stats())
		want := "[{a classic 0 [{t1 2 4}]} {b classic 1 [{t1 0 9} {t1 3 5} {t2 1 7}]}]"
		if got != want {
			t.Fatalf("Stats() = %s\nwant %s", got, want)
		}
		commit("b", member, gen, "t1", 3, 6)
		del := kmsg.NewPtrDeleteGroupsRequest()
		del.Groups = []string{"a"}
		c.DeleteGroups(ctx, del)
		got = fmt.Sprint(c.Stats())
		want = "[{b classic 1 [{t1 0 9} {t1 3 6} {t2 1 7}]}]"
		if got != want {
			t.Fatalf("after a commit and a deletion, Stats() = %s\nwant %s", got, want)
		}
	})
}
