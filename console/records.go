package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record browsing limits.
const (
	maxRecords     = 500      // per page
	defaultRecords = 50       //
	maxShownBytes  = 64 << 10 // of one key, value or header shown; the rest is cut
	fetchMaxBytes  = 1 << 20  // per Fetch request
	maxFetches     = 8        // per page: a page of small records takes one
	maxPageBytes   = 16 << 20 // per page, decompressed
)

// bytesView is a key, value or header value: its size and up to
// maxShownBytes of it. The UI shows it as text, JSON or hex.
type bytesView struct {
	Size      int    `json:"size"`
	Data      []byte `json:"data"` // base64 in JSON
	Truncated bool   `json:"truncated,omitempty"`
	// UTF8 and JSON say whether the shown bytes are valid UTF-8 and
	// valid JSON, so the UI picks a fitting default format.
	UTF8 bool `json:"utf8"`
	JSON bool `json:"json"`
}

func viewBytes(b []byte) *bytesView {
	if b == nil {
		return nil
	}
	v := &bytesView{Size: len(b), Data: b}
	if len(b) > maxShownBytes {
		v.Data, v.Truncated = b[:maxShownBytes], true
	}
	v.UTF8 = utf8.Valid(v.Data)
	v.JSON = !v.Truncated && len(b) > 0 && json.Valid(b)
	return v
}

type headerView struct {
	Key   string     `json:"key"`
	Value *bytesView `json:"value"`
}

type recordView struct {
	Offset      int64        `json:"offset"`
	Timestamp   int64        `json:"timestamp"` // unix ms
	LeaderEpoch int32        `json:"leader_epoch"`
	Key         *bytesView   `json:"key"`
	Value       *bytesView   `json:"value"`
	Headers     []headerView `json:"headers"`
}

// recordsPage is one page of a partition's records.
type recordsPage struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	StartOffset int64  `json:"start_offset"` // log start
	EndOffset   int64  `json:"end_offset"`   // high watermark
	// From is where the page starts; NextOffset where the next page
	// would (EndOffset once the page reached it).
	From       int64        `json:"from"`
	NextOffset int64        `json:"next_offset"`
	Records    []recordView `json:"records"`
}

// getRecords returns up to ?limit records of ?partition, starting at
// ?offset, at the first record at or after ?time (unix ms or RFC 3339),
// or ?from=oldest, or (the default) the newest ones. It costs one
// Metadata, two or three single-partition ListOffsets and a few Fetch
// requests to the partition's leader.
func (c *Console) getRecords(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("topic")
	q := r.URL.Query()
	partition, err := intParam(r, "partition", 0)
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit", defaultRecords)
	if err != nil {
		return err
	}
	if limit <= 0 {
		return badRequest("limit must be > 0")
	}
	limit = min(limit, maxRecords)
	t, err := c.topic(ctx, name)
	if err != nil {
		return fmt.Errorf("topic %q: %w", name, err)
	}
	var pm *partitionMeta
	for i := range t.partitions {
		if t.partitions[i].partition == int32(partition) {
			pm = &t.partitions[i]
		}
	}
	if pm == nil {
		return fmt.Errorf("topic %q partition %d: %w", name, partition, kerr.UnknownTopicOrPartition)
	}
	if pm.err != nil {
		return fmt.Errorf("topic %q partition %d: %w", name, partition, pm.err)
	}
	if pm.leader < 0 {
		return fmt.Errorf("topic %q partition %d: %w", name, partition, kerr.LeaderNotAvailable)
	}
	one := map[string][]int32{name: {pm.partition}}
	k := tp{name, pm.partition}
	bounds := [2]int64{}
	for i, ts := range []int64{earliest, latest} {
		offs, err := c.listOffsets(ctx, one, ts)
		if err != nil {
			return err
		}
		o, ok := offs[k]
		if !ok {
			return fmt.Errorf("topic %q partition %d: no offsets listed", name, partition)
		}
		if o.err != nil {
			return fmt.Errorf("topic %q partition %d: %w", name, partition, o.err)
		}
		bounds[i] = o.offset
	}
	page := recordsPage{Topic: name, Partition: pm.partition, StartOffset: bounds[0], EndOffset: bounds[1], Records: []recordView{}}

	switch {
	case q.Get("offset") != "":
		off, err := strconv.ParseInt(q.Get("offset"), 10, 64)
		if err != nil {
			return badRequest("offset %q is not a number", q.Get("offset"))
		}
		page.From = min(max(off, page.StartOffset), page.EndOffset)
	case q.Get("time") != "":
		ms, err := parseTime(q.Get("time"))
		if err != nil {
			return badRequest("time: %v", err)
		}
		offs, err := c.listOffsets(ctx, one, ms)
		if err != nil {
			return err
		}
		o := offs[k]
		if o.err != nil {
			return fmt.Errorf("topic %q partition %d: %w", name, partition, o.err)
		}
		page.From = page.EndOffset // no record at or after the time
		if o.offset >= 0 {
			page.From = max(o.offset, page.StartOffset)
		}
	case q.Get("from") == "oldest":
		page.From = page.StartOffset
	case q.Get("from") == "" || q.Get("from") == "newest":
		page.From = max(page.StartOffset, page.EndOffset-int64(limit))
	default:
		return badRequest("from %q: want oldest or newest", q.Get("from"))
	}
	if err := c.fetchRecords(ctx, t, pm, &page, limit); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// fetchRecords fills page with up to limit records from page.From, with
// at most maxFetches Fetch requests to the partition's leader.
func (c *Console) fetchRecords(ctx context.Context, t *topicMeta, pm *partitionMeta, page *recordsPage, limit int) error {
	page.NextOffset = page.From
	leader := c.cl.Broker(int(pm.leader))
	decompressor := kgo.DefaultDecompressor()
	bytesSeen := 0
	for range maxFetches {
		if len(page.Records) >= limit || page.NextOffset >= page.EndOffset || bytesSeen >= maxPageBytes {
			return nil
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = fetchMaxBytes
		req.SessionEpoch = -1 // no fetch session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = t.name, t.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = pm.partition
		rp.FetchOffset = page.NextOffset
		rp.PartitionMaxBytes = fetchMaxBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, leader)
		if err != nil {
			return err
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return fmt.Errorf("fetch %s-%d: %w", t.name, pm.partition, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return fmt.Errorf("fetch %s-%d: the answer holds no partition", t.name, pm.partition)
		}
		frp := &resp.Topics[0].Partitions[0]
		bytesSeen += len(frp.RecordBatches)
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset: page.NextOffset, Topic: t.name, Partition: pm.partition,
		}, frp, decompressor, nil)
		if fp.Err != nil {
			return fmt.Errorf("fetch %s-%d at %d: %w", t.name, pm.partition, page.NextOffset, fp.Err)
		}
		if frp.HighWatermark > page.EndOffset {
			page.EndOffset = frp.HighWatermark
		}
		for _, rec := range fp.Records {
			if len(page.Records) == limit {
				return nil
			}
			page.Records = append(page.Records, viewRecord(rec))
			page.NextOffset = rec.Offset + 1
		}
		if next <= page.NextOffset && len(fp.Records) == 0 {
			return nil // no progress: nothing more to read now
		}
		page.NextOffset = max(page.NextOffset, next)
	}
	return nil
}

func viewRecord(r *kgo.Record) recordView {
	v := recordView{
		Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), LeaderEpoch: r.LeaderEpoch,
		Key: viewBytes(r.Key), Value: viewBytes(r.Value), Headers: make([]headerView, 0, len(r.Headers)),
	}
	for _, h := range r.Headers {
		v.Headers = append(v.Headers, headerView{Key: h.Key, Value: viewBytes(h.Value)})
	}
	return v
}

// parseTime reads unix milliseconds or an RFC 3339 time.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither unix milliseconds nor an RFC 3339 time", s)
	}
	return t.UnixMilli(), nil
}
