package console

import (
	"net/http"
	"sort"
	"strconv"
	"time"
)

// clusterView is the overview page.
type clusterView struct {
	ClusterID      string         `json:"cluster_id"`
	Controller     int32          `json:"controller"`
	Brokers        []brokerInfo   `json:"brokers"`
	Topics         int            `json:"topics"`
	InternalTopics int            `json:"internal_topics"`
	Partitions     int            `json:"partitions"` // of user topics
	Groups         int            `json:"groups"`
	GroupsByType   map[string]int `json:"groups_by_type"`
	// Records and LogBytes are the sums over user topics of end offsets
	// and sizes, from the latest throughput sample (SampledAt, unix ms;
	// 0 before the first one).
	Records   int64 `json:"records"`
	LogBytes  int64 `json:"log_bytes"`
	SampledAt int64 `json:"sampled_at"`
	// SampleIntervalMS is how often throughput is sampled.
	SampleIntervalMS int64       `json:"sample_interval_ms"`
	Throughput       []point     `json:"throughput"`
	TopTopics        []topicRate `json:"top_topics"`
	SampleError      string      `json:"sample_error,omitempty"`
}

// getCluster: one Metadata request and one ListGroups per broker, plus
// what the sampler holds.
func (c *Console) getCluster(w http.ResponseWriter, r *http.Request) error {
	m, err := c.metadata(r.Context())
	if err != nil {
		return err
	}
	v := clusterView{
		ClusterID: m.clusterID, Controller: m.controller, Brokers: m.brokers,
		GroupsByType:     map[string]int{},
		SampleIntervalMS: c.cfg.SampleInterval.Milliseconds(),
	}
	for _, t := range m.topics {
		if t.internal {
			v.InternalTopics++
			continue
		}
		v.Topics++
		v.Partitions += len(t.partitions)
	}
	groups, err := c.adm.ListGroups(r.Context())
	if err != nil && !isShardErr(err) {
		return err
	}
	for _, g := range groups {
		v.Groups++
		v.GroupsByType[groupType(g.GroupType)]++
	}
	if rec, size, at, ok := c.sampler.latest(); ok {
		v.Records, v.LogBytes, v.SampledAt = rec, size, at.UnixMilli()
	}
	v.Throughput, err = c.sampler.since(0)
	v.SampleError = errString(err)
	v.TopTopics = c.sampler.topRates(10)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// getThroughput returns the samples newer than ?since (unix ms), for the
// overview's charts to poll.
func (c *Console) getThroughput(w http.ResponseWriter, r *http.Request) error {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		var err error
		if since, err = strconv.ParseInt(s, 10, 64); err != nil {
			return badRequest("since %q is not a number", s)
		}
	}
	points, err := c.sampler.since(since)
	body := struct {
		Now         int64       `json:"now"`
		Points      []point     `json:"points"`
		TopTopics   []topicRate `json:"top_topics"`
		SampleError string      `json:"sample_error,omitempty"`
	}{time.Now().UnixMilli(), points, c.sampler.topRates(10), errString(err)}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// sortTopRates orders by records/s, then bytes/s, then name.
func sortTopRates(rs []topicRate) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.RecordsPerSec != b.RecordsPerSec {
			return a.RecordsPerSec > b.RecordsPerSec
		}
		if a.BytesPerSec != b.BytesPerSec {
			return a.BytesPerSec > b.BytesPerSec
		}
		return a.Topic < b.Topic
	})
}
