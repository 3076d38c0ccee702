package shareio

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/partition"
	"github.com/ferrymq/ferry/record"
	"github.com/ferrymq/ferry/share"
)

func openMeta(t *testing.T, props map[string]string) *meta.Store {
	t.Helper()
	st, err := meta.Open(meta.Config{DataDir: t.TempDir(), Props: props})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func createTopic(t *testing.T, st *meta.Store, name string, parts int32, configs map[string]*string) *meta.Topic {
	t.Helper()
	tp, err := st.CreateTopic(meta.NewTopic{Name: name, Partitions: parts, ReplicationFactor: 1, Configs: configs})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func part(t *testing.T, tp *meta.Topic, i int32) *partition.Partition {
	t.Helper()
	p, err := tp.Partition(i)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// produce appends one batch of recs (compressed with codec) and syncs it.
func produce(t *testing.T, p *partition.Partition, codec int, recs ...record.Record) int64 {
	t.Helper()
	b := record.AppendBatch(nil, record.Batch{BaseTimestamp: 1000, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, Records: recs})
	if codec != record.CodecNone {
		var err error
		if b, err = record.Recompress(b, codec); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.Append(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	return res.BaseOffset
}

func plain(v string) record.Record { return record.Record{Key: []byte("k"), Value: []byte(v)} }

func delayed(v string, at int64) record.Record {
	r := plain(v)
	r.Headers = []record.RecordHeader{{Key: "x", Value: []byte("y")}, {Key: share.HeaderDeliverAt, Value: []byte(strconv.FormatInt(at, 10))}}
	return r
}

func str(s string) *string { return &s }

// TestReader reads batch headers, flags the batches that may carry the
// delivery-time header and reads the delivery times of flagged ones,
// compressed or not.
func TestReader(t *testing.T) {
	st := openMeta(t, nil)
	tp := createTopic(t, st, "q", 1, nil)
	p := part(t, tp, 0)
	produce(t, p, record.CodecNone, plain("a"), plain("b"))                          // 0-1
	produce(t, p, record.CodecNone, plain("c"), delayed("d", 5000), plain("e"))      // 2-4
	produce(t, p, record.CodecSnappy, plain("f"), plain("g"))                        // 5-6
	produce(t, p, record.CodecZstd, delayed("h", 7000), plain("i"), delayed("j", 9)) // 7-9

	r := NewReader(st)
	id := share.TopicPartition{TopicID: tp.ID(), Partition: 0}
	offs, err := r.Offsets(id)
	if err != nil || offs.LogStart != 0 || offs.HighWatermark != 10 || offs.LastStable != 10 {
		t.Fatalf("offsets %+v, %v", offs, err)
	}
	bs, err := r.ReadBatches(nil, id, 0, offs.HighWatermark, 1000)
	if err != nil || len(bs) != 4 {
		t.Fatalf("batches %+v, %v", bs, err)
	}
	want := []struct {
		base, last int64
		may        bool
	}{{0, 1, false}, {2, 4, true}, {5, 6, true}, {7, 9, true}}
	for i, w := range want {
		if b := bs[i]; b.BaseOffset != w.base || b.LastOffset != w.last || b.MayDelay != w.may || b.ProducerID != -1 || b.Control {
			t.Errorf("batch %d = %+v, want %+v", i, b, w)
		}
	}
	// From inside a batch, bounded by records and by limit.
	if bs, _ := r.ReadBatches(nil, id, 3, 10, 2); len(bs) != 1 || bs[0].BaseOffset != 2 {
		t.Fatalf("from 3, 2 records: %+v", bs)
	}
	if bs, _ := r.ReadBatches(nil, id, 3, 10, 3); len(bs) != 2 || bs[0].BaseOffset != 2 || bs[1].BaseOffset != 5 {
		t.Fatalf("from 3, 3 records: %+v", bs)
	}
	if bs, _ := r.ReadBatches(nil, id, 0, 5, 1000); len(bs) != 2 {
		t.Fatalf("limit 5: %+v", bs)
	}
	for i, w := range [][]share.RecordTime{nil, {{Offset: 3, DeliverAt: 5000}}, nil, {{Offset: 7, DeliverAt: 7000}, {Offset: 9, DeliverAt: 9}}} {
		got, err := r.DeliveryTimes(nil, id, &bs[0])
		if i > 0 {
			all, _ := r.ReadBatches(nil, id, 0, 10, 1000)
			got, err = r.DeliveryTimes(nil, id, &all[i])
		}
		if err != nil || len(got) != len(w) {
			t.Fatalf("delivery times of batch %d = %v, %v; want %v", i, got, err, w)
		}
		for j := range w {
			if got[j] != w[j] {
				t.Fatalf("delivery times of batch %d = %v; want %v", i, got, w)
			}
		}
	}
	if off, err := r.OffsetForTime(id, 500); err != nil || off != 0 {
		t.Fatalf("offset for time 500 = %d, %v", off, err)
	}
	if off, err := r.OffsetForTime(id, 1<<40); err != nil || off != 10 {
		t.Fatalf("offset for a future time = %d, %v", off, err)
	}
	if _, err := r.Offsets(share.TopicPartition{TopicID: [16]byte{1}}); !errors.Is(err, share.ErrUnknownPartition) {
		t.Fatalf("unknown topic: %v", err)
	}
	if _, err := r.Offsets(share.TopicPartition{TopicID: tp.ID(), Partition: 1}); !errors.Is(err, share.ErrUnknownPartition) {
		t.Fatalf("unknown partition: %v", err)
	}
}

// readAll returns every record of p with its headers as a map.
func readAll(t *testing.T, p *partition.Partition) []map[string]string {
	t.Helper()
	var out []map[string]string
	err := p.Walk(0, func(b []byte, h *record.Header) bool {
		recs, err := record.Decompress(h.Codec(), b[record.HeaderSize:h.Size()])
		if err != nil {
			t.Fatal(err)
		}
		record.ForEachIn(recs, h.RecordCount, func(r *record.Record) error {
			m := map[string]string{"key": string(r.Key), "value": string(r.Value)}
			for _, hd := range r.Headers {
				m[hd.Key] = string(hd.Value)
			}
			out = append(out, m)
			return nil
		})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDLQWriter writes dead letters with and without the source record,
// refuses topics that do not accept them, creates a missing one only
// when the broker allows it, and finds what was written.
func TestDLQWriter(t *testing.T) {
	st := openMeta(t, nil)
	src := createTopic(t, st, "orders", 3, nil)
	p := part(t, src, 2)
	produce(t, p, record.CodecNone, plain("a"), delayed("b", 1)) // 0-1
	produce(t, p, record.CodecSnappy, plain("c"))                // 2
	w := NewDLQWriter(st, nil)
	w.now = func() time.Time { return time.UnixMilli(4242) }
	dl := &share.DeadLetter{
		Group: "g", Topic: "dlq.orders", CopyRecord: true,
		Source: share.TopicPartition{TopicID: src.ID(), Partition: 2}, SourceTopic: "orders",
		FirstOffset: 1, LastOffset: 4, DeliveryCount: 3, Reason: share.ReasonDeliveryCountExceeded,
	}
	if err := w.WriteDeadLetters(dl); !errors.Is(err, share.ErrDeadLetterRejected) {
		t.Fatalf("missing topic: %v", err)
	}
	if next, err := w.DeadLettersWritten(dl); err != nil || next != 1 {
		t.Fatalf("written to a missing topic: %d, %v", next, err)
	}
	dlq := createTopic(t, st, "dlq.orders", 2, nil)
	if err := w.WriteDeadLetters(dl); !errors.Is(err, share.ErrDeadLetterRejected) {
		t.Fatalf("topic without %s: %v", TopicDLQEnable, err)
	}
	if err := st.AlterTopicConfigs(dlq, meta.Alter{Changes: map[string]*string{TopicDLQEnable: str("true")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDeadLetters(dl); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, part(t, dlq, 0)) // 2 mod 2
	if len(got) != 4 {
		t.Fatalf("dead letters: %v", got)
	}
	for i, off := range []string{"1", "2", "3", "4"} {
		g := got[i]
		if g[share.HeaderDLQOffset] != off || g[share.HeaderDLQTopic] != "orders" || g[share.HeaderDLQPartition] != "2" ||
			g[share.HeaderDLQGroup] != "g" || g[share.HeaderDLQDeliveryCount] != "3" || g[share.HeaderDLQMessage] != share.ReasonDeliveryCountExceeded.Message() {
			t.Errorf("dead letter %d: %v", i, g)
		}
	}
	if got[0]["value"] != "b" || got[0]["x"] != "y" || got[0][share.HeaderDeliverAt] != "1" || got[1]["value"] != "c" {
		t.Errorf("copied records: %v %v", got[0], got[1])
	}
	if got[2]["value"] != "" || got[3]["key"] != "" {
		t.Errorf("offsets past the log end have headers alone: %v %v", got[2], got[3])
	}
	if next, err := w.DeadLettersWritten(dl); err != nil || next != 5 {
		t.Fatalf("written = %d, %v", next, err)
	}
	other := *dl
	other.Group, other.FirstOffset, other.LastOffset = "h", 0, 0
	if next, err := w.DeadLettersWritten(&other); err != nil || next != 0 {
		t.Fatalf("another group's = %d, %v", next, err)
	}
	// Without copying: headers alone.
	other.CopyRecord = false
	if err := w.WriteDeadLetters(&other); err != nil {
		t.Fatal(err)
	}
	got = readAll(t, part(t, dlq, 0))
	if last := got[len(got)-1]; len(got) != 5 || last["value"] != "" || last[share.HeaderDLQGroup] != "h" || last[share.HeaderDLQOffset] != "0" {
		t.Fatalf("without copy: %v", got)
	}

	// Auto-creation.
	st2 := openMeta(t, map[string]string{BrokerDLQAutoCreate: "true", "num.partitions": "3"})
	src2 := createTopic(t, st2, "orders", 1, nil)
	produce(t, part(t, src2, 0), record.CodecNone, plain("a"))
	w2 := NewDLQWriter(st2, nil)
	dl2 := &share.DeadLetter{Group: "g", Topic: "dlq.auto", Source: share.TopicPartition{TopicID: src2.ID()}, SourceTopic: "orders", Reason: share.ReasonRejected, CopyRecord: true}
	if err := w2.WriteDeadLetters(dl2); err != nil {
		t.Fatal(err)
	}
	auto := st2.Topic("dlq.auto")
	if auto == nil || auto.NumPartitions() != 3 || auto.Configs()[TopicDLQEnable] != "true" {
		t.Fatalf("auto-created topic: %v", auto)
	}
	if got := readAll(t, part(t, auto, 0)); len(got) != 1 || got[0]["value"] != "a" || got[0][share.HeaderDLQMessage] != share.ReasonRejected.Message() {
		t.Fatalf("auto-created dead letters: %v", got)
	}
	// An internal topic never.
	if _, err := st2.CreateTopic(meta.NewTopic{Name: "__internal", Partitions: 1, ReplicationFactor: 1, Internal: true, Configs: map[string]*string{TopicDLQEnable: str("true")}}); err != nil {
		t.Fatal(err)
	}
	dl2.Topic = "__internal"
	if err := w2.WriteDeadLetters(dl2); !errors.Is(err, share.ErrDeadLetterRejected) {
		t.Fatalf("internal topic: %v", err)
	}
}

// TestDLQWriterBatches: a long run is written in batches of at most
// max.message.bytes, and a record too large for one gets its headers
// alone.
func TestDLQWriterBatches(t *testing.T) {
	st := openMeta(t, nil)
	src := createTopic(t, st, "s", 1, nil)
	p := part(t, src, 0)
	big := make([]byte, 3000)
	for range 20 {
		produce(t, p, record.CodecNone, record.Record{Value: big[:1000]})
	}
	produce(t, p, record.CodecNone, record.Record{Value: big})
	dlq := createTopic(t, st, "dlq.s", 1, map[string]*string{TopicDLQEnable: str("true"), "max.message.bytes": str("2500")})
	w := NewDLQWriter(st, nil)
	dl := &share.DeadLetter{Group: "g", Topic: "dlq.s", CopyRecord: true, Source: share.TopicPartition{TopicID: src.ID()}, SourceTopic: "s", LastOffset: 20, Reason: share.ReasonRejected}
	if err := w.WriteDeadLetters(dl); err != nil {
		t.Fatal(err)
	}
	d := part(t, dlq, 0)
	batches := 0
	d.Walk(0, func(b []byte, h *record.Header) bool {
		batches++
		if h.Size() > 2500 {
			t.Errorf("batch of %d bytes", h.Size())
		}
		return true
	})
	got := readAll(t, d)
	if len(got) != 21 || batches < 10 || len(got[19]["value"]) != 1000 || got[20]["value"] != "" || got[20][share.HeaderDLQOffset] != "20" {
		t.Fatalf("%d dead letters in %d batches; last %v", len(got), batches, got[len(got)-1])
	}
	if next, err := w.DeadLettersWritten(dl); err != nil || next != 21 {
		t.Fatalf("written = %d, %v", next, err)
	}
}
