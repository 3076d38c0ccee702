package server

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCreateTopics(t *testing.T) {
	b := startBroker(t, map[string]string{"num.partitions": "3"})
	ctx := testCtx(t)
	adm := b.admin()
	tests := []struct {
		name       string
		topic      string
		partitions int32
		rf         int16
		configs    map[string]*string
		want       error
	}{
		{"defaults", "t-defaults", -1, -1, nil, nil},
		{"explicit", "t-explicit", 5, 1, map[string]*string{"retention.ms": kadm.StringPtr("1000")}, nil},
		{"replication too high", "t-rf", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"zero partitions", "t-zero", 0, 1, nil, kerr.InvalidPartitions},
		{"bad name", "bad/name", 1, 1, nil, kerr.InvalidTopicException},
		{"dot name", "..", 1, 1, nil, kerr.InvalidTopicException},
		{"long name", strings.Repeat("x", 250), 1, 1, nil, kerr.InvalidTopicException},
		{"unknown config", "t-badcfg", 1, 1, map[string]*string{"no.such.config": kadm.StringPtr("1")}, kerr.InvalidConfig},
		{"bad config value", "t-badval", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, kerr.InvalidConfig},
		{"already exists", "t-defaults", 1, 1, nil, kerr.TopicAlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := adm.CreateTopic(ctx, tt.partitions, tt.rf, tt.configs, tt.topic)
			if err != nil && !errors.Is(err, tt.want) {
				t.Fatalf("CreateTopic: %v", err)
			}
			if !errors.Is(resp.Err, tt.want) {
				t.Fatalf("CreateTopic err = %v, want %v", resp.Err, tt.want)
			}
		})
	}
	// Validate-only creates nothing.
	vresp, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, "t-validate")
	if err != nil || vresp.Error() != nil {
		t.Fatalf("validate-only: %v %v", err, vresp.Error())
	}
	details, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if details.Has("t-validate") {
		t.Fatal("validate-only created the topic")
	}
	if got := len(details["t-defaults"].Partitions); got != 3 {
		t.Fatalf("t-defaults has %d partitions, want num.partitions=3", got)
	}
	if got := len(details["t-explicit"].Partitions); got != 5 {
		t.Fatalf("t-explicit has %d partitions", got)
	}
	// Replica assignment naming only this broker works; another broker does not.
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "t-assigned", -1, -1
	rt.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: []int32{0}}, {Partition: 1, Replicas: []int32{0}}}
	rt2 := rt
	rt2.Topic = "t-assigned-bad"
	rt2.ReplicaAssignment = []kmsg.CreateTopicsRequestTopicReplicaAssignment{{Partition: 0, Replicas: []int32{7}}}
	req.Topics = []kmsg.CreateTopicsRequestTopic{rt, rt2}
	cresp, err := req.RequestWith(ctx, b.client())
	if err != nil {
		t.Fatal(err)
	}
	if cresp.Topics[0].ErrorCode != 0 || cresp.Topics[0].NumPartitions != 2 {
		t.Fatalf("assigned topic: code %d partitions %d", cresp.Topics[0].ErrorCode, cresp.Topics[0].NumPartitions)
	}
	if cresp.Topics[1].ErrorCode != kerr.InvalidReplicaAssignment.Code {
		t.Fatalf("bad assignment: code %d", cresp.Topics[1].ErrorCode)
	}
}

func TestDeleteTopics(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	for _, name := range []string{"del-by-name", "del-by-id"} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	produceN(t, b, "del-by-name", 10)
	if _, err := os.Stat(filepath.Join(b.dir, "del-by-name-0")); err != nil {
		t.Fatal("partition directory missing before delete")
	}
	if resp, err := adm.DeleteTopics(ctx, "del-by-name"); err != nil || resp.Error() != nil {
		t.Fatalf("delete by name: %v %v", err, resp.Error())
	}
	if _, err := os.Stat(filepath.Join(b.dir, "del-by-name-0")); !os.IsNotExist(err) {
		t.Fatal("partition directory still there after delete")
	}
	td, _ := adm.ListTopics(ctx, "del-by-id")
	id := td["del-by-id"].ID
	req := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = id
	req.Topics = []kmsg.DeleteTopicsRequestTopic{dt, {TopicID: [16]byte{1, 2, 3}}}
	dresp, err := req.RequestWith(ctx, b.client())
	if err != nil {
		t.Fatal(err)
	}
	if dresp.Topics[0].ErrorCode != 0 || dresp.Topics[0].Topic == nil || *dresp.Topics[0].Topic != "del-by-id" {
		t.Fatalf("delete by id: %+v", dresp.Topics[0])
	}
	if dresp.Topics[1].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("delete unknown id: code %d", dresp.Topics[1].ErrorCode)
	}
	if resp, _ := adm.DeleteTopics(ctx, "never-existed"); !errors.Is(resp.Error(), kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete unknown = %v", resp.Error())
	}
	if resp, _ := adm.DeleteTopics(ctx, offsetsTopic); resp.Error() == nil {
		t.Fatal("deleted the internal offsets topic")
	}
	// A new topic of the same name starts empty, with a new id.
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "del-by-name"); err != nil {
		t.Fatal(err)
	}
	offs, _ := adm.ListEndOffsets(ctx, "del-by-name")
	if o, _ := offs.Lookup("del-by-name", 0); o.Offset != 0 {
		t.Fatalf("recreated topic ends at %d", o.Offset)
	}
}

// produceN produces n records with acks=all to topic and returns them.
func produceN(t testing.TB, b *testBroker, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx := testCtx(t)
	cl := b.client(append([]kgo.Opt{kgo.DefaultProduceTopic(topic)}, opts...)...)
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Key: []byte{byte(i)}, Value: []byte(strings.Repeat("v", i%50) + string(rune('a'+i%26)))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestConfigs(t *testing.T) {
	b := startBroker(t, map[string]string{"log.retention.ms": "123456"})
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1048576")}, "cfg"); err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("cfg", nil)
	byName := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		byName[c.Key] = c
	}
	if c := byName["segment.bytes"]; c.MaybeValue() != "1048576" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("segment.bytes = %q source %v", c.MaybeValue(), c.Source)
	}
	if c := byName["retention.ms"]; c.MaybeValue() != "123456" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Fatalf("retention.ms = %q source %v", c.MaybeValue(), c.Source)
	}
	if c := byName["cleanup.policy"]; c.MaybeValue() != "delete" || c.Source != kmsg.ConfigSourceDefaultConfig || len(c.Synonyms) == 0 {
		t.Fatalf("cleanup.policy = %q source %v synonyms %v", c.MaybeValue(), c.Source, c.Synonyms)
	}
	if len(byName) < 20 {
		t.Fatalf("only %d topic configs described", len(byName))
	}

	// Incremental alter takes effect at once: a small max.message.bytes
	// refuses a large batch.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kadm.StringPtr("200")}}, "cfg"); err != nil {
		t.Fatal(err)
	}
	cl := b.client(kgo.DefaultProduceTopic("cfg"), kgo.RecordRetries(0), kgo.DisableIdempotentWrite())
	big := make([]byte, 1000)
	rand.Read(big)
	err = cl.ProduceSync(ctx, &kgo.Record{Value: big}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("produce over max.message.bytes = %v", err)
	}
	// APPEND to a list config, then DELETE back to the default.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")}}, "cfg"); err != nil {
		t.Fatal(err)
	}
	if v := describedTopicConfig(t, adm, "cfg", "cleanup.policy"); v != "delete,compact" {
		t.Fatalf("cleanup.policy after APPEND = %q", v)
	}
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "max.message.bytes"}, {Op: kadm.DeleteConfig, Name: "cleanup.policy"}}, "cfg"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: make([]byte, 1000)}).FirstErr(); err != nil {
		t.Fatalf("produce after reset: %v", err)
	}
	// Bad values are refused.
	resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("-7")}}, "cfg")
	if err == nil {
		_, err = resps.On("cfg", nil)
		if r, _ := resps.On("cfg", nil); r.Err != nil {
			err = r.Err
		}
	}
	if !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("bad retention.ms = %v", err)
	}
	// Non-incremental AlterConfigs replaces the whole set.
	if _, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: kadm.StringPtr("5000")}}, "cfg"); err != nil {
		t.Fatal(err)
	}
	if v := describedTopicConfig(t, adm, "cfg", "segment.bytes"); v != "1073741824" {
		t.Fatalf("segment.bytes after replace = %q, want the default", v)
	}
	// Broker configs: described, and dynamic ones change topic defaults.
	bcs, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil || len(bcs) != 1 || len(bcs[0].Configs) == 0 {
		t.Fatalf("describe broker: %v", err)
	}
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "log.retention.ms", Value: kadm.StringPtr("777")}}, 0); err != nil {
		t.Fatal(err)
	}
	if v := describedTopicConfig(t, adm, "cfg", "retention.ms"); v != "777" {
		t.Fatalf("retention.ms after broker change = %q", v)
	}
	// Everything survives a restart.
	b.stop()
	b2 := startBroker(t, map[string]string{"log.retention.ms": "123456"}, b.dir)
	adm2 := b2.admin()
	if v := describedTopicConfig(t, adm2, "cfg", "retention.bytes"); v != "5000" {
		t.Fatalf("retention.bytes after restart = %q", v)
	}
	if v := describedTopicConfig(t, adm2, "cfg", "retention.ms"); v != "777" {
		t.Fatalf("dynamic broker config after restart = %q", v)
	}
}

func describedTopicConfig(t *testing.T, adm *kadm.Client, topic, key string) string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(testCtx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == key {
			return c.MaybeValue()
		}
	}
	return ""
}

func TestCreatePartitionsAndDeleteRecords(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "grow"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreatePartitions(ctx, 3, "grow"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := adm.UpdatePartitions(ctx, 2, "grow"); !errors.Is(resp.Error(), kerr.InvalidPartitions) {
		t.Fatalf("shrinking = %v", resp.Error())
	}
	td, _ := adm.ListTopics(ctx, "grow")
	if len(td["grow"].Partitions) != 4 {
		t.Fatalf("%d partitions after adding 3", len(td["grow"].Partitions))
	}
	produceN(t, b, "grow", 50, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// DeleteRecords moves the log start offset; reads below it fail.
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: "grow", Partition: 0, At: 20})
	dr, err := adm.DeleteRecords(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("grow", 0); r.Err != nil || r.LowWatermark != 20 {
		t.Fatalf("delete records: %+v", r)
	}
	starts, _ := adm.ListStartOffsets(ctx, "grow")
	if s, _ := starts.Lookup("grow", 0); s.Offset != 20 {
		t.Fatalf("start offset %d", s.Offset)
	}
	o2 := kadm.Offsets{}
	o2.Add(kadm.Offset{Topic: "grow", Partition: 0, At: 51})
	dr, _ = adm.DeleteRecords(ctx, o2)
	if r, _ := dr.Lookup("grow", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete past end = %v", r.Err)
	}
	cons := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"grow": {0: kgo.NewOffset().At(5)}}), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cons.PollFetches(ctx)
	var first int64 = -1
	fs.EachRecord(func(r *kgo.Record) {
		if first < 0 {
			first = r.Offset
		}
	})
	if first != 20 {
		t.Fatalf("consuming from 5 after delete records started at %d, want reset to 20", first)
	}
}

func TestClusterAndLogDirs(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	produceN(t, b, "auto-created", 5, kgo.AllowAutoTopicCreation())
	meta, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Cluster == "" || meta.Controller != 0 || len(meta.Brokers) != 1 || !meta.Topics.Has("auto-created") {
		t.Fatalf("metadata: cluster %q controller %d brokers %d", meta.Cluster, meta.Controller, len(meta.Brokers))
	}
	if !meta.Topics[offsetsTopic].IsInternal || len(meta.Topics[offsetsTopic].Partitions) != 50 {
		t.Fatal("offsets topic missing or not internal with 50 partitions")
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	dirs.Each(func(d kadm.DescribedLogDir) {
		if p, ok := d.Topics["auto-created"][0]; ok {
			size = p.Size
		}
	})
	if size <= 0 {
		t.Fatalf("log dir size of auto-created-0 = %d", size)
	}
	// The cluster id persists across restarts.
	b.stop()
	b2 := startBroker(t, nil, b.dir)
	meta2, err := b2.admin().Metadata(testCtx(t))
	if err != nil || meta2.Cluster != meta.Cluster || meta2.Topics["auto-created"].ID != meta.Topics["auto-created"].ID {
		t.Fatalf("after restart cluster %q (was %q), topic id changed: %v", meta2.Cluster, meta.Cluster, err)
	}
	dc := kmsg.NewPtrDescribeClusterRequest()
	dcr, err := dc.RequestWith(testCtx(t), b2.client())
	if err != nil || dcr.ClusterID != meta.Cluster || len(dcr.Brokers) != 1 {
		t.Fatalf("describe cluster: %v %+v", err, dcr)
	}
}

// TestInternalTopicProtected: the offsets topic's records cannot be
// deleted nor its partition count changed by clients.
func TestInternalTopicProtected(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: offsetsTopic, Partition: 0, At: -1})
	dr, err := adm.DeleteRecords(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup(offsetsTopic, 0); !errors.Is(r.Err, kerr.InvalidTopicException) {
		t.Fatalf("DeleteRecords on %s = %v", offsetsTopic, r.Err)
	}
	if resp, _ := adm.CreatePartitions(ctx, 1, offsetsTopic); resp.Error() == nil {
		t.Fatalf("partitions of %s changed", offsetsTopic)
	}
}

// TestListOffsetsTiered: -5 (latest tiered) and -6 (earliest pending
// upload) find nothing without tiered storage; -4 is the log start.
func TestListOffsetsTiered(t *testing.T) {
	b := startBroker(t, nil)
	produceN(t, b, "tiered", 5, kgo.AllowAutoTopicCreation())
	for _, tc := range []struct {
		ts   int64
		want int64
	}{{-4, 0}, {-5, -1}, {-6, -1}, {-1, 5}, {-2, 0}} {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "tiered"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = tc.ts
		rt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{rp}
		req.Topics = []kmsg.ListOffsetsRequestTopic{rt}
		resp, err := req.RequestWith(testCtx(t), b.client())
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		if sp.ErrorCode != 0 || sp.Offset != tc.want {
			t.Errorf("ListOffsets(%d) = offset %d code %d, want %d", tc.ts, sp.Offset, sp.ErrorCode, tc.want)
		}
	}
}
