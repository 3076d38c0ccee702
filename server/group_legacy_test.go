package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
)

// legacyMember is a member of a KIP-848 group in the single record older
// versions wrote (__consumer_offsets key version 1000).
type legacyMember struct {
	id, clientID              string
	epoch, prevEpoch          int32
	assigned, pending, target []int32 // partitions of the one topic
}

// legacyConsumerGroup encodes a KIP-848 group of one topic in the older
// single-record form: [int16 0][int32 epoch][int32 assignment epoch]
// [string subscription] then per member its metadata, epochs, state and
// three assignments (see group/consumer_legacy.go).
func legacyConsumerGroup(epoch int32, topic string, id [16]byte, partitions int32, members []legacyMember) []byte {
	assignment := func(b []byte, ps []int32) []byte {
		if len(ps) == 0 {
			return kbin.AppendArrayLen(b, 0)
		}
		b = kbin.AppendArrayLen(b, 1)
		b = kbin.AppendUuid(b, id)
		b = kbin.AppendArrayLen(b, len(ps))
		for _, p := range ps {
			b = kbin.AppendInt32(b, p)
		}
		return b
	}
	b := kbin.AppendInt16(nil, 0)
	b = kbin.AppendInt32(b, epoch)
	b = kbin.AppendInt32(b, epoch)
	b = kbin.AppendString(b, fmt.Sprintf("%s/%x/%d;", topic, id, partitions))
	b = kbin.AppendArrayLen(b, len(members))
	for _, m := range members {
		b = kbin.AppendString(b, m.id)
		b = kbin.AppendNullableString(b, nil) // instance ID
		b = kbin.AppendNullableString(b, nil) // rack ID
		b = kbin.AppendString(b, m.clientID)
		b = kbin.AppendString(b, "/127.0.0.1")
		b = kbin.AppendInt32(b, 60000)
		b = kbin.AppendString(b, "") // server assignor
		b = kbin.AppendArrayLen(b, 1)
		b = kbin.AppendString(b, topic)
		b = kbin.AppendNullableString(b, nil) // regex
		b = kbin.AppendInt32(b, m.epoch)
		b = kbin.AppendInt32(b, m.prevEpoch)
		b = kbin.AppendInt8(b, 0) // stable
		b = assignment(b, m.assigned)
		b = assignment(b, m.pending)
		b = assignment(b, m.target)
	}
	return b
}

// TestConsumerGroupLegacyRecord: a data directory whose __consumer_offsets
// holds a KIP-848 group in the single record older versions wrote starts
// with the group as it was. The group is rewritten at once as Kafka's
// records (key versions 3 to 8) and the old record deleted; after another
// restart it is the same, and its members carry on with their epochs.
func TestConsumerGroupLegacyRecord(t *testing.T) {
	dir := t.TempDir()
	const topic, groupName = "legacy", "legacy-group"
	b := startBroker(t, nil, dir)
	ctx := testCtx(t)
	if _, err := b.admin().CreateTopic(ctx, 4, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	tds, err := b.admin().ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := tds[topic].ID
	b.stop()

	// Write the old record into the group's __consumer_offsets partition
	// while no broker runs, as an older version left it.
	p := offsetsPartitionOf(groupName)
	key := kbin.AppendString(kbin.AppendInt16(nil, 1000), groupName)
	val := legacyConsumerGroup(5, topic, id, 4, []legacyMember{
		{id: "member-a", clientID: "ca", epoch: 5, prevEpoch: 4, assigned: []int32{0, 1}, target: []int32{0, 1}},
		{id: "member-b", clientID: "cb", epoch: 5, prevEpoch: 3, assigned: []int32{2, 3}, target: []int32{2, 3}},
	})
	part, err := partition.Open(filepath.Join(dir, fmt.Sprintf("%s-%d", offsetsTopic, p)), partition.Config{})
	if err != nil {
		t.Fatal(err)
	}
	batch := record.AppendBatch(nil, record.Batch{
		BaseTimestamp: time.Now().UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Key: key, Value: val}},
	})
	if _, err := part.Append(batch); err != nil {
		t.Fatal(err)
	}
	if err := part.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := part.Close(); err != nil {
		t.Fatal(err)
	}

	want := strings.Join([]string{
		"epoch=5 assignment-epoch=5 assignor=uniform",
		"member-a epoch=5 topics=[legacy] assigned=[legacy[0 1]] target=[legacy[0 1]]",
		"member-b epoch=5 topics=[legacy] assigned=[legacy[2 3]] target=[legacy[2 3]]",
		"",
	}, "\n")
	for restart := range 2 {
		b = startBroker(t, nil, dir)
		g := &simGroup{t: t, cl: b.client(), name: groupName}
		d, err := g.describe(ctx)
		if err != nil {
			t.Fatalf("restart %d: %v", restart, err)
		}
		if got := describedGroup(d); got != want || d.State != "Stable" {
			t.Fatalf("restart %d: group is %s:\n%s\nwant\n%s", restart, d.State, got, want)
		}
		types := offsetsRecordTypes(ctx, t, b, p)
		if types["1000"] != 1 || types["1000 tombstone"] != 1 {
			t.Errorf("restart %d: old record and its tombstone: %v", restart, types)
		}
		for _, typ := range []string{"3", "4", "6"} {
			if types[typ] != 1 {
				t.Errorf("restart %d: %d records of type %s, want 1: %v", restart, types[typ], typ, types)
			}
		}
		for _, typ := range []string{"5", "7", "8"} {
			if types[typ] != 2 {
				t.Errorf("restart %d: %d records of type %s, want 2: %v", restart, types[typ], typ, types)
			}
		}
		g.cl.Close()
		b.stop()
	}

	// The members heartbeat with the epochs and partitions they had.
	b = startBroker(t, nil, dir)
	g := &simGroup{t: t, cl: b.client(), name: groupName, topics: []string{topic}}
	g.members = []*simMember{
		{id: "member-a", epoch: 5, owned: map[[16]byte][]int32{id: {0, 1}}},
		{id: "member-b", epoch: 5, owned: map[[16]byte][]int32{id: {2, 3}}},
	}
	if changed, err := g.each(ctx, g.members); err != nil || changed != 0 {
		t.Fatalf("heartbeats: %d changed, %v", changed, err)
	}
}

// offsetsRecordTypes reads a __consumer_offsets partition from its start
// and counts its records by key version ("N", or "N tombstone").
func offsetsRecordTypes(ctx context.Context, t testing.TB, b *testBroker, p int32) map[string]int {
	t.Helper()
	ends, err := b.admin().ListEndOffsets(ctx, offsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(offsetsTopic, p)
	cl := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{offsetsTopic: {p: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	types := map[string]int{}
	for next := int64(0); next < end.Offset; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if len(r.Key) < 2 {
				return
			}
			typ := fmt.Sprint(int16(r.Key[0])<<8 | int16(r.Key[1]))
			if r.Value == nil {
				typ += " tombstone"
			}
			types[typ]++
		})
	}
	return types
}
