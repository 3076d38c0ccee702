package server

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The killed-member test (TestGroupMemberKilled) runs one group member in
// a child process, the test binary started again with
// -test.run=^TestGroupMemberChild$ and groupMemberChildEnv set, so that it
// can be SIGKILLed without leaving the group.
const (
	// groupMemberChildEnv holds "addr,group,topic"; set, it makes
	// TestGroupMemberChild a group member instead of a skipped test.
	groupMemberChildEnv = "FERRY_GROUP_MEMBER_CHILD"

	// Group timings of the child; the parent's in-process member uses the
	// same ones. The broker must run with group.min.session.timeout.ms at
	// or below childSessionTimeout.
	childSessionTimeout   = 2 * time.Second
	childHeartbeat        = 200 * time.Millisecond
	childProcessingTime   = 300 * time.Millisecond
	childMaxLifetime      = 2 * time.Minute
	childRebalanceTimeout = 10 * time.Second
)

func TestGroupMemberChild(t *testing.T) {
	if os.Getenv(groupMemberChildEnv) == "" {
		t.Skip("runs only as the child process of TestGroupMemberKilled")
	}
	os.Exit(runGroupMemberChild())
}

// runGroupMemberChild is a consumer-group member that reports on stdout
// everything the parent needs to know, one event per line:
//
//	A p,p,...      partitions assigned (OnPartitionsAssigned)
//	V p,p,...      partitions revoked (OnPartitionsRevoked)
//	R p offset v   a record received, before it is processed
//	C p next       the commit of next (the offset after the last record
//	               processed) was acknowledged
//	E message      an error
//
// It polls, prints the records, spends childProcessingTime "processing"
// them, commits them synchronously and only then allows a rebalance
// (BlockRebalanceOnPoll), so every record it processed is committed
// before it gives up a partition. A SIGKILL during processing leaves the
// records printed last uncommitted. It never returns on its own: it is
// killed, or exits with 1 on an error or after childMaxLifetime. A write
// to stdout after the parent is gone kills it with SIGPIPE.
func runGroupMemberChild() int {
	args := strings.Split(os.Getenv(groupMemberChildEnv), ",")
	if len(args) != 3 {
		fmt.Fprintf(os.Stderr, "%s=%q: want addr,group,topic\n", groupMemberChildEnv, os.Getenv(groupMemberChildEnv))
		return 2
	}
	addr, group, topic := args[0], args[1], args[2]
	emit := func(format string, a ...any) { fmt.Fprintf(os.Stdout, format+"\n", a...) }
	partitions := func(m map[string][]int32) string {
		ps := slices.Clone(m[topic])
		slices.Sort(ps)
		var b strings.Builder
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, p)
		}
		return b.String()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.SessionTimeout(childSessionTimeout),
		kgo.HeartbeatInterval(childHeartbeat),
		kgo.RebalanceTimeout(childRebalanceTimeout),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit("A %s", partitions(m))
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit("V %s", partitions(m))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit("E lost partitions %s", partitions(m))
		}),
	)
	if err != nil {
		emit("E %v", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), childMaxLifetime)
	defer cancel()
	var out bytes.Buffer
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			emit("E child lived past %v", childMaxLifetime)
			return 1
		}
		fs.EachError(func(t string, p int32, err error) { emit("E fetch %s/%d: %v", t, p, err) })
		recs := fs.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			continue
		}
		out.Reset()
		for _, r := range recs {
			fmt.Fprintf(&out, "R %d %d %s\n", r.Partition, r.Offset, r.Value)
		}
		os.Stdout.Write(out.Bytes())
		time.Sleep(childProcessingTime)
		if err := cl.CommitRecords(ctx, recs...); err != nil {
			emit("E commit: %v", err)
		} else {
			out.Reset()
			last := map[int32]int64{}
			for _, r := range recs {
				last[r.Partition] = max(last[r.Partition], r.Offset+1)
			}
			for _, p := range slices.Sorted(maps.Keys(last)) {
				fmt.Fprintf(&out, "C %d %d\n", p, last[p])
			}
			os.Stdout.Write(out.Bytes())
		}
		cl.AllowRebalance()
	}
}
