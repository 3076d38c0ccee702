package console

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicRow is one topic in the list, and the head of a topic's page.
type topicRow struct {
	Name              string `json:"name"`
	ID                string `json:"id"`
	Internal          bool   `json:"internal"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	// Records is the sum over partitions of end minus start offset: the
	// records retained (control records and gaps count).
	Records  int64 `json:"records"`
	LogBytes int64 `json:"log_bytes"`
	// Rate is the throughput of the latest samples; absent before two.
	Rate *rate `json:"rate,omitempty"`
	// Errors counts partitions whose offsets could not be listed.
	Errors int    `json:"errors,omitempty"`
	Error  string `json:"error,omitempty"`
}

// listTopics: one Metadata for the names, then for the page's topics only
// two ListOffsets and one DescribeLogDirs per broker.
func (c *Console) listTopics(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePage(r)
	if err != nil {
		return err
	}
	q := r.URL.Query().Get("q")
	internal := r.URL.Query().Get("internal") == "true"
	m, err := c.metadata(r.Context())
	if err != nil {
		return err
	}
	var names []string
	for name, t := range m.topics {
		if (internal || !t.internal) && matches(name, q) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	lo, hi := pg.window(len(names))
	shown := make([]*topicMeta, 0, hi-lo)
	for _, name := range names[lo:hi] {
		shown = append(shown, m.topics[name])
	}
	rows, err := c.topicRows(r.Context(), shown)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		page
		Topics []topicRow `json:"topics"`
	}{pg, rows})
	return nil
}

// topicRows sums offsets and sizes over every partition of topics.
func (c *Console) topicRows(ctx context.Context, topics []*topicMeta) ([]topicRow, error) {
	parts := allPartitions(topics...)
	starts, err := c.listOffsets(ctx, parts, earliest)
	if err != nil {
		return nil, err
	}
	ends, err := c.listOffsets(ctx, parts, latest)
	if err != nil {
		return nil, err
	}
	sizes, err := c.logSizes(ctx, parts)
	if err != nil {
		return nil, err
	}
	rows := make([]topicRow, 0, len(topics))
	for _, t := range topics {
		row := topicRow{
			Name: t.name, ID: topicID(t.id), Internal: t.internal,
			Partitions: len(t.partitions), ReplicationFactor: t.replicationFactor(),
			Error: errString(t.err),
		}
		for _, p := range t.partitions {
			k := tp{t.name, p.partition}
			s, okS := starts[k]
			e, okE := ends[k]
			if !okS || !okE || s.err != nil || e.err != nil {
				row.Errors++
			} else {
				row.Records += e.offset - s.offset
			}
			row.LogBytes += sizes[k]
		}
		if rt, ok := c.sampler.rateOf(t.name); ok {
			row.Rate = &rt
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// topicID is a topic id as Kafka's tools print it: 22 characters of URL
// base64 without padding; all zeros (no id) is "".
func topicID(id [16]byte) string {
	if id == [16]byte{} {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// configRow is one topic config, as DescribeConfigs gives it.
type configRow struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"` // nil when sensitive or unset
	Source    string  `json:"source"`
	Default   bool    `json:"default"` // the broker's or Kafka's default, not set on the topic
	Sensitive bool    `json:"sensitive"`
}

// topicView is a topic's page: its totals and configs. Its partitions
// come a page at a time from listPartitions.
type topicView struct {
	topicRow
	Configs []configRow `json:"configs"`
}

// getTopic: Metadata of the topic, two ListOffsets and one
// DescribeLogDirs per broker, one DescribeConfigs.
func (c *Console) getTopic(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	t, err := c.topic(r.Context(), name)
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	rows, err := c.topicRows(r.Context(), []*topicMeta{t})
	if err != nil {
		return err
	}
	v := topicView{topicRow: rows[0], Configs: []configRow{}}
	rcs, err := c.adm.DescribeTopicConfigs(r.Context(), name)
	if err != nil {
		return err
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return fmt.Errorf("configs of topic %q: %w", name, rc.Err)
		}
		for _, cfg := range rc.Configs {
			src := cfg.Source
			v.Configs = append(v.Configs, configRow{
				Name: cfg.Key, Value: cfg.Value, Sensitive: cfg.Sensitive,
				Source:  strings.TrimSuffix(src.String(), "_CONFIG"),
				Default: src != kmsg.ConfigSourceDynamicTopicConfig,
			})
		}
	}
	sort.Slice(v.Configs, func(i, j int) bool { return v.Configs[i].Name < v.Configs[j].Name })
	writeJSON(w, http.StatusOK, v)
	return nil
}

// partitionRow is one partition of a topic's page.
type partitionRow struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	Offline     []int32 `json:"offline,omitempty"`
	StartOffset int64   `json:"start_offset"` // -1 when unknown
	EndOffset   int64   `json:"end_offset"`   // -1 when unknown
	Records     int64   `json:"records"`
	LogBytes    int64   `json:"log_bytes"`
	Error       string  `json:"error,omitempty"`
}

// listPartitions: Metadata of the topic, then for the page's partitions
// only two ListOffsets and one DescribeLogDirs per broker.
func (c *Console) listPartitions(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePage(r)
	if err != nil {
		return err
	}
	name := r.PathValue("topic")
	t, err := c.topic(r.Context(), name)
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	lo, hi := pg.window(len(t.partitions))
	shown := t.partitions[lo:hi]
	nums := make([]int32, len(shown))
	for i, p := range shown {
		nums[i] = p.partition
	}
	parts := map[string][]int32{name: nums}
	starts, err := c.listOffsets(r.Context(), parts, earliest)
	if err != nil {
		return err
	}
	ends, err := c.listOffsets(r.Context(), parts, latest)
	if err != nil {
		return err
	}
	sizes, err := c.logSizes(r.Context(), parts)
	if err != nil {
		return err
	}
	rows := make([]partitionRow, 0, len(shown))
	for _, p := range shown {
		k := tp{name, p.partition}
		row := partitionRow{
			Partition: p.partition, Leader: p.leader, LeaderEpoch: p.leaderEpoch,
			Replicas: nonNil(p.replicas), ISR: nonNil(p.isr), Offline: p.offline,
			StartOffset: -1, EndOffset: -1, LogBytes: sizes[k], Error: errString(p.err),
		}
		s, e := starts[k], ends[k]
		switch {
		case s.err != nil:
			row.Error = s.err.Error()
		case e.err != nil:
			row.Error = e.err.Error()
		}
		if _, ok := starts[k]; ok && s.err == nil {
			row.StartOffset = s.offset
		}
		if _, ok := ends[k]; ok && e.err == nil {
			row.EndOffset = e.offset
		}
		if row.StartOffset >= 0 && row.EndOffset >= 0 {
			row.Records = row.EndOffset - row.StartOffset
		}
		rows = append(rows, row)
	}
	writeJSON(w, http.StatusOK, struct {
		page
		Topic      string         `json:"topic"`
		Partitions []partitionRow `json:"partitions"`
	}{pg, name, rows})
	return nil
}

func nonNil(xs []int32) []int32 {
	if xs == nil {
		return []int32{}
	}
	return xs
}

// createRequest is the body of POST /api/topics.
type createRequest struct {
	Name              string            `json:"name"`
	Partitions        int32             `json:"partitions"`         // -1 or 0: the broker's num.partitions
	ReplicationFactor int16             `json:"replication_factor"` // -1 or 0: the broker's default
	Configs           map[string]string `json:"configs"`
}

// createTopic creates a topic with CreateTopics, which validates it as
// Kafka does (name, partitions, configs).
func (c *Console) createTopic(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" {
		return badRequest("name the topic")
	}
	if req.Partitions <= 0 {
		req.Partitions = -1
	}
	if req.ReplicationFactor <= 0 {
		req.ReplicationFactor = -1
	}
	cfgs := make(map[string]*string, len(req.Configs))
	for k, v := range req.Configs {
		cfgs[k] = &v
	}
	resp, err := c.adm.CreateTopic(r.Context(), req.Partitions, req.ReplicationFactor, cfgs, req.Name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		if resp.ErrMessage != "" {
			return fmt.Errorf("create topic %q: %w: %s", req.Name, err, resp.ErrMessage)
		}
		return fmt.Errorf("create topic %q: %w", req.Name, err)
	}
	c.logger.Info("topic created from the console", "topic", req.Name, "partitions", resp.NumPartitions)
	writeJSON(w, http.StatusCreated, struct {
		Name       string `json:"name"`
		ID         string `json:"id"`
		Partitions int32  `json:"partitions"`
	}{req.Name, topicID(resp.ID), resp.NumPartitions})
	return nil
}

// deleteTopic deletes a topic and its data. ?confirm must repeat the
// topic's name: the UI asks the user to type it.
func (c *Console) deleteTopic(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("topic")
	if r.URL.Query().Get("confirm") != name {
		return badRequest("deleting topic %q needs ?confirm= with its name", name)
	}
	resp, err := c.adm.DeleteTopic(r.Context(), name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	c.logger.Info("topic deleted from the console", "topic", name)
	writeJSON(w, http.StatusOK, struct {
		Name    string `json:"name"`
		Deleted bool   `json:"deleted"`
	}{name, true})
	return nil
}
