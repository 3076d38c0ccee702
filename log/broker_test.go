package log_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/ferrytest"
)

// These tests run compaction in a real broker (package ferrytest) and
// look at it as Kafka clients do, with franz-go.

// cleanerProps makes the broker's cleaner look for work every 20 ms.
var cleanerProps = map[string]string{"log.cleaner.backoff.ms": "20"}

// compactedTopic creates a one-partition compacted topic of small
// segments that is cleaned as soon as anything is dirty and keeps
// tombstones for retention.
func compactedTopic(t *testing.T, ctx context.Context, adm *kadm.Client, name string, retention time.Duration) {
	t.Helper()
	ms := fmt.Sprint(retention.Milliseconds())
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("4096"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
		"delete.retention.ms":       kadm.StringPtr(ms),
	}, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// consumeFrom reads partition 0 of topic from offset from to the high
// watermark, as a new consumer. The record before the high watermark must
// be kept (the tests end with records of keys written once).
func consumeFrom(t *testing.T, ctx context.Context, addr, topic string, from int64) []*kgo.Record {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Err != nil {
		t.Fatal(end.Err)
	}
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))
	defer cl.Close()
	var out []*kgo.Record
	for len(out) == 0 || out[len(out)-1].Offset < end.Offset-1 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s from %d: at %d of %d: %v", topic, from, firstOffset(out), end.Offset, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("fetch: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// view replays records as a consumer of a compacted topic does: the
// newest value of each key, tombstones deleting.
func view(recs []*kgo.Record) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		if r.Value == nil {
			delete(m, string(r.Key))
		} else {
			m[string(r.Key)] = string(r.Value)
		}
	}
	return m
}

// TestBrokerCompaction produces keyed records with overwrites and
// tombstones to a compacted topic and reads it as new consumers: once
// cleaned, a consumer from the beginning sees exactly the newest value of
// each key, offsets increase with gaps, the tombstones stay until
// delete.retention.ms passed and then go, a consumer starting in the
// middle of a cleaned range is served from the next record kept, and all
// of it survives a restart. A record without a key is refused.
func TestBrokerCompaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	b := ferrytest.Start(t, ferrytest.Props(cleanerProps))
	const topic = "table"
	adm := kadm.NewClient(newClient(t, b.Addr()))
	compactedTopic(t, ctx, adm, topic, 2*time.Second)
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	want := map[string]string{}
	offsets := map[string]int64{} // newest offset of each key
	produce := func(k string, v []byte) {
		t.Helper()
		r := &kgo.Record{Key: []byte(k), Value: v}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if v == nil {
			delete(want, k)
		} else {
			want[k] = string(v)
		}
		offsets[k] = r.Offset
	}
	for i := range 1500 {
		k := fmt.Sprintf("key-%d", i%50)
		produce(k, []byte(fmt.Sprintf("%s=%d %s", k, i, strings.Repeat("x", i%40))))
	}
	// Batches of 20 records, compressed: cleaning rewrites them with
	// some of their records.
	zcl := newClient(t, b.Addr(), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	for i := range 10 {
		var batch []*kgo.Record
		for j := range 20 {
			k := fmt.Sprintf("key-%d", (i*20+j)%70)
			batch = append(batch, &kgo.Record{Key: []byte(k), Value: []byte(fmt.Sprintf("%s=z%d", k, i*20+j))})
		}
		if err := zcl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			want[string(r.Key)], offsets[string(r.Key)] = string(r.Value), r.Offset
		}
	}
	deleted := []string{"key-3", "key-17", "key-42"}
	for _, k := range deleted {
		produce(k, nil)
	}
	// Records of other keys roll the overwritten ones out of the active
	// segment, which is never cleaned.
	for i := range 60 {
		produce(fmt.Sprintf("filler-%d", i), []byte(strings.Repeat("f", 60)))
	}
	// A record without a key is refused.
	err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("record without a key: %v, want INVALID_RECORD", err)
	}

	// Cleaned: each key once, tombstones visible.
	var recs []*kgo.Record
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs = consumeFrom(t, ctx, b.Addr(), topic, 0)
		if onceEach(recs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not compacted after 60s: %d records", len(recs))
		}
	}
	checkCompacted(t, recs, want, offsets)
	tombs := 0
	for _, r := range recs {
		if r.Value == nil {
			tombs++
		}
	}
	if tombs != len(deleted) {
		t.Logf("%d tombstones seen right after cleaning (delete.retention.ms may have passed already)", tombs)
	}

	// A consumer in the middle of a cleaned range: from an offset whose
	// record is gone, it is served from the next record kept.
	gap := int64(-1)
	for i := 1; i < len(recs); i++ {
		if recs[i].Offset > recs[i-1].Offset+1 {
			gap = recs[i-1].Offset + 1
			mid := consumeFrom(t, ctx, b.Addr(), topic, gap)
			if len(mid) == 0 || mid[0].Offset != recs[i].Offset || string(mid[0].Value) != string(recs[i].Value) {
				t.Fatalf("a consumer from %d (removed) got %v first, want offset %d", gap, firstOffset(mid), recs[i].Offset)
			}
			break
		}
	}
	if gap < 0 {
		t.Fatal("no gap in the offsets of a compacted topic")
	}
	lst, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := lst.Lookup(topic, 0); s.Offset != 0 {
		t.Fatalf("log start offset %d after compaction, want 0", s.Offset)
	}

	// delete.retention.ms later, the tombstones go.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		recs = consumeFrom(t, ctx, b.Addr(), topic, 0)
		n := 0
		for _, r := range recs {
			if r.Value == nil {
				n++
			}
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tombstones left 60s after delete.retention.ms", n)
		}
	}
	checkCompacted(t, recs, want, offsets)
	for _, k := range deleted {
		delete(offsets, k)
	}

	// The idempotent producers go on where they were.
	produce("key-1", []byte("after cleaning"))
	if err := zcl.ProduceSync(ctx, &kgo.Record{Key: []byte("key-2"), Value: []byte("after cleaning")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	want["key-2"] = "after cleaning"
	delete(offsets, "key-2")
	produce("filler-last", []byte("end"))

	// A restart keeps it all, and the producers go on.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = ferrytest.Start(t, ferrytest.DataDir(b.DataDir()), ferrytest.ListenAddr(b.Addr()), ferrytest.Props(cleanerProps))
	checkCompacted(t, consumeFrom(t, ctx, b.Addr(), topic, 0), want, offsets)
	produce("key-1", []byte("after restart"))
}

func firstOffset(recs []*kgo.Record) int64 {
	if len(recs) == 0 {
		return -1
	}
	return recs[0].Offset
}

// onceEach reports whether no key but the fillers' appears twice.
func onceEach(recs []*kgo.Record) bool {
	seen := map[string]bool{}
	for _, r := range recs {
		k := string(r.Key)
		if seen[k] && !strings.HasPrefix(k, "filler-") {
			return false
		}
		seen[k] = true
	}
	return true
}

// checkCompacted checks what a consumer from the beginning read: offsets
// increase, with gaps; replayed, the records give want; each key's
// newest record is at the offset it was produced at (offsets of deleted
// keys whose tombstones went are not checked).
func checkCompacted(t *testing.T, recs []*kgo.Record, want map[string]string, offsets map[string]int64) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Offset <= recs[i-1].Offset {
			t.Fatalf("offset %d after %d", recs[i].Offset, recs[i-1].Offset)
		}
	}
	if n := len(recs); n == 0 || recs[n-1].Offset-recs[0].Offset+1 == int64(n) {
		t.Fatalf("%d records without gaps: nothing was compacted", n)
	}
	got := view(recs)
	if len(got) != len(want) {
		t.Fatalf("%d keys read, %d written", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s: read %q, newest written %q", k, got[k], v)
		}
	}
	newest := map[string]int64{}
	for _, r := range recs {
		newest[string(r.Key)] = r.Offset
	}
	for k, off := range offsets {
		if o, ok := newest[k]; ok && o != off {
			t.Fatalf("key %s: newest record at %d, produced at %d", k, o, off)
		}
	}
}
