package group

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchMember is a simulated KIP-848 consumer: what it was told.
type benchMember struct {
	id    string
	epoch int32
	owned assignment
}

func (m *benchMember) heartbeat(c *Coordinator, group string, full bool) *kmsg.ConsumerGroupHeartbeatResponse {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, group, m.id, m.epoch
	if m.epoch == 0 {
		req.RebalanceTimeoutMillis = 30000
		req.SubscribedTopicNames = []string{"t"}
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	} else if full {
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		for _, id := range m.owned.sortedIDs() {
			req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id, Partitions: m.owned[id]})
		}
	}
	resp := c.ConsumerGroupHeartbeat(context.Background(), req)
	if resp.ErrorCode != 0 {
		return resp
	}
	m.epoch = resp.MemberEpoch
	if resp.Assignment != nil {
		m.owned = assignment{}
		for _, t := range resp.Assignment.Topics {
			for _, p := range t.Partitions {
				m.owned.add(t.TopicID, p)
			}
		}
	}
	return resp
}

// stableGroup builds a KIP-848 group of n members over one topic of n
// partitions and heartbeats them until the group is Stable.
func stableGroup(tb testing.TB, c *Coordinator, n int) []*benchMember {
	tb.Helper()
	ms := make([]*benchMember, n)
	for i := range ms {
		ms[i] = &benchMember{id: fmt.Sprintf("member-%05d", i)}
		if resp := ms[i].heartbeat(c, "g", true); resp.ErrorCode != 0 {
			tb.Fatalf("join %d: error %d", i, resp.ErrorCode)
		}
	}
	for round := 0; ; round++ {
		if round > 10 {
			tb.Fatalf("group of %d not stable after %d rounds", n, round)
		}
		for _, m := range ms {
			if resp := m.heartbeat(c, "g", true); resp.ErrorCode != 0 {
				tb.Fatalf("heartbeat: error %d", resp.ErrorCode)
			}
		}
		d := c.ConsumerGroupDescribe(context.Background(), &kmsg.ConsumerGroupDescribeRequest{Groups: []string{"g"}})
		if d.Groups[0].State == "Stable" {
			return ms
		}
	}
}

// BenchmarkConsumerHeartbeat measures a heartbeat that changes nothing (a
// member of a Stable group repeating what it owns): its cost and
// allocations must not grow with the group.
func BenchmarkConsumerHeartbeat(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 2000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			store := newMemStore()
			c, err := New(Config{
				Store: store,
				Topics: func() map[string]TopicInfo {
					return map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: int32(n)}}
				},
				OffsetsTopicPartitions: 1,
				Logger:                 slog.New(slog.DiscardHandler),
				ConsumerSessionTimeout: time.Hour, // the setup must not outlast a session
			})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ms := stableGroup(b, c, n)
			store.mu.Lock()
			before := store.parts[0].next
			store.mu.Unlock()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m := ms[i%n]
				if resp := m.heartbeat(c, "g", false); resp.ErrorCode != 0 {
					b.Fatalf("heartbeat: error %d", resp.ErrorCode)
				}
			}
			b.StopTimer()
			store.mu.Lock()
			after := store.parts[0].next
			store.mu.Unlock()
			if after != before {
				b.Errorf("no-op heartbeats wrote %d records", after-before)
			}
		})
	}
}

// TestConsumerHeartbeatAllocs: a heartbeat that changes nothing allocates
// as much in a group of 400 members as in one of 20 (it used to copy and
// encode the whole group), and writes nothing.
func TestConsumerHeartbeatAllocs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		allocs := map[int]float64{}
		for _, n := range []int{20, 400} {
			store := newMemStore()
			c, err := New(Config{
				Store: store,
				Topics: func() map[string]TopicInfo {
					return map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: int32(n)}}
				},
				OffsetsTopicPartitions: 1,
				Logger:                 slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			ms := stableGroup(t, c, n)
			store.mu.Lock()
			before := store.parts[0].next
			store.mu.Unlock()
			i := 0
			allocs[n] = testing.AllocsPerRun(200, func() {
				ms[i%n].heartbeat(c, "g", false)
				i++
			})
			store.mu.Lock()
			after := store.parts[0].next
			store.mu.Unlock()
			if after != before {
				t.Errorf("%d members: no-op heartbeats wrote %d records", n, after-before)
			}
			c.Close()
		}
		if allocs[400] > allocs[20]+1 {
			t.Errorf("allocations per no-op heartbeat: %.1f at 20 members, %.1f at 400", allocs[20], allocs[400])
		}
	})
}
