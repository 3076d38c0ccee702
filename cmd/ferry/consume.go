package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

type consumeOpts struct {
	client    *clientFlags
	offset    string
	partition int
	count     int
	group     string
	format    string
	exitAtEnd bool
	share     string
	ack       string
	idle      time.Duration
}

func consumeFlags() (*flag.FlagSet, *consumeOpts) {
	fs := newFlagSet("consume")
	o := &consumeOpts{client: addClientFlags(fs)}
	fs.StringVar(&o.offset, "offset", "beginning", "where to start: beginning, end, N (offset), -N (last N per partition), @T (time: unix ms or RFC 3339); with -group, only where the group has no committed offset")
	fs.IntVar(&o.partition, "partition", -1, "read only this partition (-1: all)")
	fs.IntVar(&o.count, "n", 0, "stop after this many records (0: no limit)")
	fs.StringVar(&o.group, "group", "", "consume as this consumer group and commit what was printed")
	fs.StringVar(&o.format, "f", `%v\n`, `output format: %t topic, %k key, %v value, %p partition, %o offset, %T timestamp (ms), %h headers, %K key length, %S value length, %d delivery count (-share), %% percent; \n \t \\ escapes`)
	fs.BoolVar(&o.exitAtEnd, "e", false, "exit at the end of every partition (as of the start)")
	fs.StringVar(&o.share, "share", "", "consume as this share group (a queue: records are shared among its members and acknowledged one by one); it starts where the group's share.auto.offset.reset says")
	fs.StringVar(&o.ack, "ack", "accept", "with -share, how to acknowledge each record printed: accept, release (deliver again) or reject (dead-letter it)")
	fs.DurationVar(&o.idle, "idle", 0, "with -share, exit after this long without a record (0: never)")
	return fs, o
}

// consumedRecord is the JSON form of a record.
type consumedRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       *string           `json:"key"`
	Value     string            `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
	// DeliveryCount is how often a share group delivered the record
	// (with -share).
	DeliveryCount int32 `json:"delivery_count,omitempty"`
}

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := consumeFlags()
	pos, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	if o.group != "" && o.partition >= 0 {
		return usageError("consume: -partition and -group exclude each other")
	}
	topic := pos[0]
	if o.share != "" {
		return runShareConsume(ctx, o, topic, stdout, explicitFlags(fs))
	}
	start, err := parseStartOffset(o.offset)
	if err != nil {
		return err
	}
	format, err := compileFormat(o.format)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("consume topic %q", topic)

	// Resolve partitions and offsets first: an unknown topic is an error
	// here, not an endless wait.
	admin, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	defer admin.close()
	tds, err := admin.adm.ListTopicsWithInternal(rctx, topic)
	if err != nil {
		return admin.fail(where, err)
	}
	td, ok := tds[topic]
	if !ok {
		return admin.fail(where, kerr.UnknownTopicOrPartition)
	}
	if td.Err != nil {
		return admin.fail(where, td.Err)
	}
	parts := td.Partitions.Numbers()
	if o.partition >= 0 {
		if _, ok := td.Partitions[int32(o.partition)]; !ok {
			return admin.fail(fmt.Sprintf("%s partition %d", where, o.partition), kerr.UnknownTopicOrPartition)
		}
		parts = []int32{int32(o.partition)}
	}
	begin, end, err := resolveOffsets(rctx, admin.adm, topic, parts, start)
	if err != nil {
		return admin.fail(where, err)
	}
	if o.group != "" {
		// Where the group has committed offsets, it starts there.
		committed, err := admin.adm.FetchOffsetsForTopics(rctx, o.group, topic)
		if errors.Is(err, kerr.GroupIDNotFound) {
			err = nil // a new group: nothing committed yet
		}
		if err != nil {
			return admin.fail(fmt.Sprintf("%s: offsets of group %q", where, o.group), err)
		}
		for _, p := range parts {
			if co, ok := committed.Lookup(topic, p); ok && co.Err == nil && co.At >= 0 {
				begin[p] = co.At
			}
		}
	}

	// Partitions still to finish (with -e).
	pending := map[int32]int64{}
	for _, p := range parts {
		if begin[p] < end[p] {
			pending[p] = end[p]
		}
	}
	if o.exitAtEnd && len(pending) == 0 {
		return nil
	}

	var opts []kgo.Opt
	if o.group != "" {
		opts = append(opts,
			kgo.ConsumerGroup(o.group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(start.kgo()),
			kgo.AutoCommitMarks(),
		)
	} else {
		offsets := map[int32]kgo.Offset{}
		for _, p := range parts {
			offsets[p] = kgo.NewOffset().At(begin[p])
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	}
	c, err := o.client.connect(opts...)
	if err != nil {
		return err
	}
	defer c.close()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var n int
	var pollErr error
loop:
	for {
		fetches := c.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				break loop
			}
			pollErr = c.fail(fmt.Sprintf("%s partition %d", where, fe.Partition), fe.Err)
			break loop
		}
		var records []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { records = append(records, r) })
		for _, r := range records {
			if o.client.json() {
				if err := writeJSONLine(out, toConsumed(r)); err != nil {
					return err
				}
			} else {
				out.Write(format(nil, r))
			}
			if o.group != "" {
				c.cl.MarkCommitRecords(r)
			}
			n++
			if e, ok := pending[r.Partition]; ok && r.Offset+1 >= e {
				delete(pending, r.Partition)
			}
			if o.count > 0 && n >= o.count {
				break loop
			}
			if o.exitAtEnd && len(pending) == 0 {
				break loop
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if o.group != "" {
		cctx, cancel := c.ctx(context.WithoutCancel(ctx))
		defer cancel()
		if err := c.cl.CommitMarkedOffsets(cctx); err != nil && pollErr == nil {
			pollErr = c.fail(fmt.Sprintf("%s: commit offsets of group %q", where, o.group), err)
		}
	}
	return pollErr
}

// startOffset is a parsed -offset.
type startOffset struct {
	kind string // beginning, end, at, last, time
	n    int64  // offset, count or unix ms
}

func parseStartOffset(s string) (startOffset, error) {
	switch {
	case s == "beginning" || s == "start" || s == "earliest":
		return startOffset{kind: "beginning"}, nil
	case s == "end" || s == "latest":
		return startOffset{kind: "end"}, nil
	case strings.HasPrefix(s, "@"):
		ms, err := parseTime(s[1:])
		if err != nil {
			return startOffset{}, usageError("-offset %q: %v", s, err)
		}
		return startOffset{kind: "time", n: ms}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return startOffset{}, usageError("-offset %q: want beginning, end, N, -N or @time", s)
	}
	if n < 0 {
		return startOffset{kind: "last", n: -n}, nil
	}
	return startOffset{kind: "at", n: n}, nil
}

// parseTime reads unix milliseconds or an RFC 3339 time.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, fmt.Errorf("time %q: want unix milliseconds or RFC 3339", s)
}

// kgo is the reset offset for a group without a commit.
func (s startOffset) kgo() kgo.Offset {
	switch s.kind {
	case "end":
		return kgo.NewOffset().AtEnd()
	case "at":
		return kgo.NewOffset().At(s.n)
	case "last":
		return kgo.NewOffset().AtEnd().Relative(-s.n)
	case "time":
		return kgo.NewOffset().AfterMilli(s.n)
	}
	return kgo.NewOffset().AtStart()
}

// resolveOffsets turns a start offset into exact per-partition offsets and
// lists the current ends.
func resolveOffsets(ctx context.Context, adm *kadm.Client, topic string, parts []int32, s startOffset) (begin, end map[int32]int64, err error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, err
	}
	var after kadm.ListedOffsets
	if s.kind == "time" {
		if after, err = adm.ListOffsetsAfterMilli(ctx, s.n, topic); err == nil {
			err = after.Error()
		}
		if err != nil {
			return nil, nil, err
		}
	}
	begin, end = map[int32]int64{}, map[int32]int64{}
	for _, p := range parts {
		so, _ := starts.Lookup(topic, p)
		eo, _ := ends.Lookup(topic, p)
		lo, hi := so.Offset, eo.Offset
		end[p] = hi
		var b int64
		switch s.kind {
		case "beginning":
			b = lo
		case "end":
			b = hi
		case "at":
			b = s.n
		case "last":
			b = hi - s.n
		case "time":
			b = hi
			if ao, ok := after.Lookup(topic, p); ok && ao.Offset >= 0 {
				b = ao.Offset
			}
		}
		begin[p] = min(max(b, lo), hi)
	}
	return begin, end, nil
}

func toConsumed(r *kgo.Record) consumedRecord {
	c := consumedRecord{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp.UnixMilli(), Value: string(r.Value),
	}
	if r.Key != nil {
		k := string(r.Key)
		c.Key = &k
	}
	if len(r.Headers) > 0 {
		c.Headers = map[string]string{}
		for _, h := range r.Headers {
			c.Headers[h.Key] = string(h.Value)
		}
	}
	return c
}

// compileFormat turns a kcat-like format string into an appender.
func compileFormat(f string) (func([]byte, *kgo.Record) []byte, error) {
	type part func([]byte, *kgo.Record) []byte
	var parts []part
	lit := func(s string) part { return func(b []byte, _ *kgo.Record) []byte { return append(b, s...) } }
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			parts = append(parts, lit(text.String()))
			text.Reset()
		}
	}
	for i := 0; i < len(f); i++ {
		ch := f[i]
		if (ch != '%' && ch != '\\') || i+1 == len(f) {
			text.WriteByte(ch)
			continue
		}
		i++
		next := f[i]
		if ch == '\\' {
			switch next {
			case 'n':
				text.WriteByte('\n')
			case 't':
				text.WriteByte('\t')
			case 'r':
				text.WriteByte('\r')
			case '\\':
				text.WriteByte('\\')
			default:
				text.WriteByte('\\')
				text.WriteByte(next)
			}
			continue
		}
		var p part
		switch next {
		case '%':
			text.WriteByte('%')
			continue
		case 't':
			p = func(b []byte, r *kgo.Record) []byte { return append(b, r.Topic...) }
		case 'k':
			p = func(b []byte, r *kgo.Record) []byte { return append(b, r.Key...) }
		case 'v':
			p = func(b []byte, r *kgo.Record) []byte { return append(b, r.Value...) }
		case 'p':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, int64(r.Partition), 10) }
		case 'o':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, r.Offset, 10) }
		case 'T':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10) }
		case 'd':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, int64(r.DeliveryCount()), 10) }
		case 'K':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, int64(len(r.Key)), 10) }
		case 'S':
			p = func(b []byte, r *kgo.Record) []byte { return strconv.AppendInt(b, int64(len(r.Value)), 10) }
		case 'h':
			p = func(b []byte, r *kgo.Record) []byte {
				for i, h := range r.Headers {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, h.Key...)
					b = append(b, '=')
					b = append(b, h.Value...)
				}
				return b
			}
		default:
			return nil, usageError("-f: unknown directive %%%c", next)
		}
		flush()
		parts = append(parts, p)
	}
	flush()
	return func(b []byte, r *kgo.Record) []byte {
		for _, p := range parts {
			b = p(b, r)
		}
		return b
	}, nil
}
