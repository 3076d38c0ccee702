package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// counted returns the error codes st counted, by name.
func counted(st *apiStats) map[string]uint64 {
	m := map[string]uint64{}
	for i := range st.errors {
		if v := st.errors[i].Load(); v > 0 {
			m[errorName(i)] = v
		}
	}
	return m
}

// TestCountErrorCodes: every ErrorCode of a response is counted, at
// every level, for the APIs counted directly and for those walked by
// reflection; codes of 0 are not.
func TestCountErrorCodes(t *testing.T) {
	offsetFetch := kmsg.NewPtrOffsetFetchResponse()
	offsetFetch.ErrorCode = kerr.NotCoordinator.Code
	offsetFetch.Groups = []kmsg.OffsetFetchResponseGroup{
		{ErrorCode: kerr.GroupIDNotFound.Code, Topics: []kmsg.OffsetFetchResponseGroupTopic{
			{Partitions: []kmsg.OffsetFetchResponseGroupTopicPartition{{ErrorCode: kerr.UnstableOffsetCommit.Code}, {ErrorCode: 0}}},
		}},
	}
	createTopics := kmsg.NewPtrCreateTopicsResponse()
	createTopics.Topics = []kmsg.CreateTopicsResponseTopic{{ErrorCode: kerr.TopicAlreadyExists.Code}, {ErrorCode: kerr.TopicAlreadyExists.Code}, {}}
	describeConfigs := kmsg.NewPtrDescribeConfigsResponse()
	describeConfigs.Resources = []kmsg.DescribeConfigsResponseResource{{ErrorCode: kerr.InvalidRequest.Code}}
	produce := kmsg.NewPtrProduceResponse()
	produce.Topics = []kmsg.ProduceResponseTopic{{Partitions: []kmsg.ProduceResponseTopicPartition{{ErrorCode: kerr.KafkaStorageError.Code}, {}, {ErrorCode: kerr.KafkaStorageError.Code}}}}
	metadata := kmsg.NewPtrMetadataResponse()
	metadata.Topics = []kmsg.MetadataResponseTopic{{ErrorCode: kerr.UnknownTopicOrPartition.Code}, {Partitions: []kmsg.MetadataResponseTopicPartition{{ErrorCode: kerr.LeaderNotAvailable.Code}}}}
	odd := kmsg.NewPtrHeartbeatResponse()
	odd.ErrorCode = 30000 // no such code

	for _, tt := range []struct {
		name string
		resp kmsg.Response
		want map[string]uint64
	}{
		{"OffsetFetch (reflection, nested)", offsetFetch, map[string]uint64{"NOT_COORDINATOR": 1, "GROUP_ID_NOT_FOUND": 1, "UNSTABLE_OFFSET_COMMIT": 1}},
		{"CreateTopics (reflection)", createTopics, map[string]uint64{"TOPIC_ALREADY_EXISTS": 2}},
		{"DescribeConfigs (reflection)", describeConfigs, map[string]uint64{"INVALID_REQUEST": 1}},
		{"Produce", produce, map[string]uint64{"KAFKA_STORAGE_ERROR": 2}},
		{"Metadata", metadata, map[string]uint64{"UNKNOWN_TOPIC_OR_PARTITION": 1, "LEADER_NOT_AVAILABLE": 1}},
		{"unknown code", odd, map[string]uint64{"UNKNOWN_CODE": 1}},
		{"no error", kmsg.NewPtrSyncGroupResponse(), map[string]uint64{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &apiStats{}
			countErrorCodes(st, tt.resp)
			countErrorCodes(st, tt.resp) // the cached walk counts the same
			got := counted(st)
			if len(got) != len(tt.want) {
				t.Fatalf("counted %v, want each of %v twice", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != 2*v {
					t.Fatalf("counted %v, want each of %v twice", got, tt.want)
				}
			}
		})
	}
	if got := errorName(0); got != "UNKNOWN_SERVER_ERROR" {
		t.Errorf("errorName of -1 = %q", got)
	}
}

// TestCountErrorCodesAllocatesNothing: counting the codes of a produce
// or a fetch response, or one walked by reflection, allocates nothing.
func TestCountErrorCodesAllocatesNothing(t *testing.T) {
	produce := kmsg.NewPtrProduceResponse()
	produce.Topics = []kmsg.ProduceResponseTopic{{Partitions: []kmsg.ProduceResponseTopicPartition{{ErrorCode: kerr.NotLeaderForPartition.Code}, {}}}}
	fetch := kmsg.NewPtrFetchResponse()
	fetch.Topics = []kmsg.FetchResponseTopic{{Partitions: []kmsg.FetchResponseTopicPartition{{}, {}}}}
	commit := kmsg.NewPtrTxnOffsetCommitResponse()
	commit.Topics = []kmsg.TxnOffsetCommitResponseTopic{{Partitions: []kmsg.TxnOffsetCommitResponseTopicPartition{{ErrorCode: 1}}}}
	st := &apiStats{}
	countErrorCodes(st, commit) // plan the walk
	for _, resp := range []kmsg.Response{produce, fetch, commit} {
		if n := testing.AllocsPerRun(100, func() { countErrorCodes(st, resp) }); n != 0 {
			t.Errorf("%T: %v allocations", resp, n)
		}
	}
}

// TestFetchedRecords: records counted out are the offsets from the fetch
// position to the end of the last batch.
func TestFetchedRecords(t *testing.T) {
	var data []byte
	for _, base := range []int64{10, 15, 20} { // batches of 5 records
		data = append(data, batchAt(base, 5)...)
	}
	for _, tt := range []struct {
		from int64
		want int64
	}{{10, 15}, {12, 13}, {15, 10}, {0, 15}} {
		if got := fetchedRecords(data, tt.from); got != tt.want {
			t.Errorf("fetchedRecords from %d = %d, want %d", tt.from, got, tt.want)
		}
	}
	if got := fetchedRecords(data[:len(data)-1], 10); got != 10 {
		t.Errorf("with a cut last batch: %d, want 10", got)
	}
	if got := fetchedRecords(nil, 0); got != 0 {
		t.Errorf("no data: %d", got)
	}
}

// batchAt is a batch of n records at offset base.
func batchAt(base int64, n int) []byte {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Value: []byte("v"), OffsetDelta: int32(i)}
	}
	return record.AppendBatch(nil, record.Batch{BaseOffset: base, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
}
