package share

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestClassicDescribeOfShareGroup checks DescribeGroup, which the server
// merges into DescribeGroups: a share group is Dead there, and from v6
// GROUP_ID_NOT_FOUND, as Kafka answers for groups that are not classic.
func TestClassicDescribeOfShareGroup(t *testing.T) {
	reader := newFakeReader()
	c, err := New(Config{
		Store:           newMemStore(),
		Reader:          reader,
		Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: topicID("t"), Partitions: 1}} },
		StatePartitions: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.DescribeGroup(6, "g"); ok {
		t.Fatal("an unknown group described")
	}
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.GroupID, req.MemberID, req.SubscribedTopicNames = "g", "m", []string{"t"}
	if resp := c.ShareGroupHeartbeat(context.Background(), req); resp.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if !c.Exists("g") {
		t.Fatal("Exists is false for a share group")
	}
	for _, v := range []int16{0, 5, 6} {
		dg, ok := c.DescribeGroup(v, "g")
		wantCode := int16(0)
		if v >= 6 {
			wantCode = kerr.GroupIDNotFound.Code
		}
		if !ok || dg.State != "Dead" || dg.ErrorCode != wantCode {
			t.Errorf("v%d: ok=%v state=%q code=%d", v, ok, dg.State, dg.ErrorCode)
		}
	}
	if code, ok := c.DeleteGroup("g"); !ok || code != kerr.NonEmptyGroup.Code {
		t.Errorf("deleting a group with members: ok=%v code=%d", ok, code)
	}
	if code, ok := c.DeleteGroup("other"); ok {
		t.Errorf("deleting an unknown group: ok=%v code=%d", ok, code)
	}
}

// TestValidateGroupConfig checks the bounds of the group configs.
func TestValidateGroupConfig(t *testing.T) {
	c, err := New(Config{
		Store:  newMemStore(),
		Reader: newFakeReader(),
		Topics: func() map[string]TopicInfo { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{GroupRecordLockDuration, "30000", true},
		{GroupRecordLockDuration, "14999", false},
		{GroupRecordLockDuration, "60001", false},
		{GroupRecordLockDuration, "x", false},
		{GroupDeliveryCountLimit, "2", true},
		{GroupDeliveryCountLimit, "11", false},
		{GroupSessionTimeout, "45000", true},
		{GroupSessionTimeout, "30000", false},
		{GroupHeartbeatInterval, "15000", true},
		{GroupHeartbeatInterval, "16000", false},
		{GroupAutoOffsetReset, "EARLIEST", true},
		{GroupAutoOffsetReset, "by_duration:P1DT2H3M4.5S", true},
		{GroupAutoOffsetReset, "by_duration:-PT1H", false},
		{GroupAutoOffsetReset, "by_duration:1h", false},
		{GroupIsolationLevel, "read_committed", true},
		{GroupIsolationLevel, "serializable", false},
		{GroupDLQTopic, "dlq.orders", true},
		{GroupDLQTopic, "", true},
		{GroupDLQTopic, "orders.dlq", false},
		{GroupDLQCopyRecord, "true", true},
		{GroupDLQCopyRecord, "yes", false},
		{GroupDeliveryBackoff, "250", true},
		{GroupDeliveryBackoff, "-1", false},
		{"share.unknown", "1", false},
	} {
		err := c.ValidateGroupConfig(tc.name, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("%s=%q: %v", tc.name, tc.value, err)
		}
	}
	for name := range c.GroupConfigDefaults() {
		if err := c.ValidateGroupConfig(name, c.GroupConfigDefaults()[name]); err != nil {
			t.Errorf("default %s: %v", name, err)
		}
	}
	if d, err := parseISODuration("P1DT2H3M4.5S"); err != nil || d.String() != "26h3m4.5s" {
		t.Errorf("P1DT2H3M4.5S: %v %v", d, err)
	}
}

// TestDeliveryTimesOnlyWhenMayDelay checks that record headers are read
// only for batches the reader says may carry HeaderDeliverAt.
func TestDeliveryTimesOnlyWhenMayDelay(t *testing.T) {
	reader := newFakeReader()
	tp := TopicPartition{topicID("t"), 0}
	for range 3 {
		reader.produce(tp, 5, 0, false, false, -1, nil)
	}
	reader.produce(tp, 5, 0, false, false, -1, map[int]int64{2: 1})
	c, err := New(Config{
		Store:           newMemStore(),
		Reader:          reader,
		Topics:          func() map[string]TopicInfo { return map[string]TopicInfo{"t": {ID: tp.TopicID, Partitions: 1}} },
		StatePartitions: 1,
		GroupConfigs:    earliest,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, e := c.Acquire(AcquireOptions{Group: "g", Member: "m", Partition: tp, MaxRecords: 100}, nil)
	if e != nil || formatRanges(got) != "0-19x1" {
		t.Fatalf("acquired %s (%v)", formatRanges(got), e)
	}
	reader.mu.Lock()
	defer reader.mu.Unlock()
	if reader.decodes != 1 {
		t.Errorf("DeliveryTimes called %d times for 1 batch that may delay", reader.decodes)
	}
}
