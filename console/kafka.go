package console

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The helpers here each cost a bounded number of Kafka requests, whatever
// the number of partitions they cover: one Metadata; one ListOffsets per
// broker leading some of them; one DescribeLogDirs per broker.

// clusterMeta is a Metadata answer.
type clusterMeta struct {
	clusterID  string
	controller int32
	brokers    []brokerInfo
	topics     map[string]*topicMeta
}

type brokerInfo struct {
	NodeID int32   `json:"node_id"`
	Host   string  `json:"host"`
	Port   int32   `json:"port"`
	Rack   *string `json:"rack,omitempty"`
}

// topicMeta is one topic of a Metadata answer; err is its error (an
// unknown topic is kerr.UnknownTopicOrPartition).
type topicMeta struct {
	name       string
	id         [16]byte
	internal   bool
	partitions []partitionMeta // by partition number
	err        error
}

type partitionMeta struct {
	partition   int32
	leader      int32
	leaderEpoch int32
	replicas    []int32
	isr         []int32
	offline     []int32
	err         error
}

// numbers returns the partition numbers of t.
func (t *topicMeta) numbers() []int32 {
	out := make([]int32, len(t.partitions))
	for i, p := range t.partitions {
		out[i] = p.partition
	}
	return out
}

// replicationFactor is the number of replicas of the first partition.
func (t *topicMeta) replicationFactor() int {
	if len(t.partitions) == 0 {
		return 0
	}
	return len(t.partitions[0].replicas)
}

// metadata asks a broker for the named topics (every topic when none are
// named), bypassing the client's metadata cache so a topic just created
// or deleted shows at once.
func (c *Console) metadata(ctx context.Context, topics ...string) (*clusterMeta, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false // looking at a topic never creates it
	if len(topics) > 0 {
		for _, t := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
	} else {
		req.Topics = nil // all topics
	}
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return nil, err
	}
	m := &clusterMeta{controller: resp.ControllerID, topics: make(map[string]*topicMeta, len(resp.Topics))}
	if resp.ClusterID != nil {
		m.clusterID = *resp.ClusterID
	}
	for _, b := range resp.Brokers {
		m.brokers = append(m.brokers, brokerInfo{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Rack: b.Rack})
	}
	sort.Slice(m.brokers, func(i, j int) bool { return m.brokers[i].NodeID < m.brokers[j].NodeID })
	for _, rt := range resp.Topics {
		if rt.Topic == nil {
			continue
		}
		t := &topicMeta{name: *rt.Topic, id: rt.TopicID, internal: rt.IsInternal, err: kerr.ErrorForCode(rt.ErrorCode)}
		for _, rp := range rt.Partitions {
			t.partitions = append(t.partitions, partitionMeta{
				partition: rp.Partition, leader: rp.Leader, leaderEpoch: rp.LeaderEpoch,
				replicas: rp.Replicas, isr: rp.ISR, offline: rp.OfflineReplicas,
				err: kerr.ErrorForCode(rp.ErrorCode),
			})
		}
		sort.Slice(t.partitions, func(i, j int) bool { return t.partitions[i].partition < t.partitions[j].partition })
		m.topics[t.name] = t
	}
	return m, nil
}

// topic returns the metadata of one topic, or an error wrapping
// kerr.UnknownTopicOrPartition when it does not exist.
func (c *Console) topic(ctx context.Context, name string) (*topicMeta, error) {
	if name == "" {
		return nil, badRequest("empty topic name")
	}
	m, err := c.metadata(ctx, name)
	if err != nil {
		return nil, err
	}
	t := m.topics[name]
	if t == nil {
		return nil, kerr.UnknownTopicOrPartition
	}
	if t.err != nil {
		return nil, t.err
	}
	return t, nil
}

// tp names a partition.
type tp struct {
	topic     string
	partition int32
}

// offsetAt is one partition's answer to ListOffsets.
type offsetAt struct {
	offset    int64 // -1 when none (a time after the last record)
	timestamp int64
	err       error
}

// Special ListOffsets timestamps.
const (
	latest   = -1
	earliest = -2
)

// listOffsets asks the leaders of parts for the offset at ts (earliest,
// latest or a time in unix milliseconds): one ListOffsets request per
// broker. A partition missing from the answer (its broker failed) is
// absent from the map.
func (c *Console) listOffsets(ctx context.Context, parts map[string][]int32, ts int64) (map[tp]offsetAt, error) {
	out := map[tp]offsetAt{}
	if len(parts) == 0 {
		return out, nil
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	for t, ps := range parts {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = t
		for _, p := range ps {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = p
			rp.Timestamp = ts
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	var errs []error
	for _, shard := range c.cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			errs = append(errs, shard.Err)
			continue
		}
		resp := shard.Resp.(*kmsg.ListOffsetsResponse)
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				out[tp{rt.Topic, rp.Partition}] = offsetAt{offset: rp.Offset, timestamp: rp.Timestamp, err: kerr.ErrorForCode(rp.ErrorCode)}
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// logSizes returns the size on disk of each partition of parts (every
// partition of every topic when parts is nil): one DescribeLogDirs per
// broker.
func (c *Console) logSizes(ctx context.Context, parts map[string][]int32) (map[tp]int64, error) {
	var set kadm.TopicsSet
	if parts != nil {
		set = kadm.TopicsSet{}
		for t, ps := range parts {
			set.Add(t, ps...)
		}
		if len(set) == 0 {
			return map[tp]int64{}, nil
		}
	}
	dirs, err := c.adm.DescribeAllLogDirs(ctx, set)
	if err != nil && !isShardErr(err) {
		return nil, err
	}
	out := map[tp]int64{}
	dirs.Each(func(d kadm.DescribedLogDir) {
		for t, ps := range d.Topics {
			for p, dp := range ps {
				out[tp{t, p}] += dp.Size
			}
		}
	})
	return out, nil
}

// allPartitions maps each topic to every one of its partitions.
func allPartitions(topics ...*topicMeta) map[string][]int32 {
	out := make(map[string][]int32, len(topics))
	for _, t := range topics {
		out[t.name] = t.numbers()
	}
	return out
}

// errString is err's text, or "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
