package server

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/record"
)

// TestCompressionType: a topic's compression.type other than "producer"
// stores every batch with that codec, recompressing those produced with
// another; records read back as produced; the broker's compression.type is
// the default of topics; AlterConfigs takes effect at once; a batch that
// grows past max.message.bytes once recompressed is refused.
func TestCompressionType(t *testing.T) {
	b := startBroker(t, map[string]string{"compression.type": "lz4"})
	ctx := testCtx(t)
	adm := b.admin()
	topicCodec := func(t *testing.T, topic string, n int64) []int {
		t.Helper()
		var codecs []int
		for _, batch := range fetchBatches(t, b.client(), topic, topicIDOf(t, b.addr, topic), 0, 0, n) {
			h, err := record.Validate(batch)
			if err != nil {
				t.Fatalf("stored batch: %v", err)
			}
			codecs = append(codecs, h.Codec())
		}
		return codecs
	}
	// produce sends n records with every producer codec, idempotently,
	// one batch per codec, and returns them.
	produce := func(t *testing.T, topic string, n int) []*kgo.Record {
		t.Helper()
		var all []*kgo.Record
		for _, cc := range testCodecs {
			cl := b.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(cc.codec))
			var rs []*kgo.Record
			for i := range n {
				rs = append(rs, &kgo.Record{
					Key:       fmt.Appendf(nil, "%s-%d", cc.name, i),
					Value:     bytes.Repeat(fmt.Appendf(nil, "%s value %d ", cc.name, i), 20),
					Headers:   []kgo.RecordHeader{{Key: "codec", Value: []byte(cc.name)}},
					Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
				})
			}
			if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", cc.name, err)
			}
			all = append(all, rs...)
		}
		return all
	}
	check := func(t *testing.T, topic string, sent []*kgo.Record) {
		t.Helper()
		got := readAll(t, b.addr, topic)[0]
		if len(got) != len(sent) {
			t.Fatalf("read %d records, want %d", len(got), len(sent))
		}
		for i, r := range got {
			s := sent[i]
			if !bytes.Equal(r.Key, s.Key) || !bytes.Equal(r.Value, s.Value) || !r.Timestamp.Equal(s.Timestamp) ||
				len(r.Headers) != 1 || r.Headers[0].Key != "codec" || !bytes.Equal(r.Headers[0].Value, s.Headers[0].Value) {
				t.Fatalf("record %d: key %q ts %v headers %v; sent key %q ts %v", i, r.Key, r.Timestamp, r.Headers, s.Key, s.Timestamp)
			}
		}
	}
	allCodec := func(t *testing.T, codecs []int, want int) {
		t.Helper()
		if len(codecs) != len(testCodecs) {
			t.Fatalf("%d batches stored, want %d", len(codecs), len(testCodecs))
		}
		for i, c := range codecs {
			if c != want {
				t.Fatalf("batch %d (produced with %s) stored with codec %d, want %d", i, testCodecs[i].name, c, want)
			}
		}
	}

	for _, tc := range []struct {
		value string
		codec int
	}{
		{"zstd", record.CodecZstd},
		{"gzip", record.CodecGzip},
		{"snappy", record.CodecSnappy},
		{"uncompressed", record.CodecNone},
	} {
		t.Run(tc.value, func(t *testing.T) {
			topic := "ct-" + tc.value
			if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"compression.type": kadm.StringPtr(tc.value)}, topic); err != nil {
				t.Fatal(err)
			}
			sent := produce(t, topic, 30)
			check(t, topic, sent)
			allCodec(t, topicCodec(t, topic, int64(len(sent))), tc.codec)
		})
	}

	t.Run("broker default, then producer", func(t *testing.T) {
		const topic = "ct-default"
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		sent := produce(t, topic, 10)
		allCodec(t, topicCodec(t, topic, int64(len(sent))), record.CodecLZ4)
		// Altered to "producer": batches from now on are stored as sent.
		if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "compression.type", Value: kadm.StringPtr("producer")}}, topic); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, produce(t, topic, 10)...)
		check(t, topic, sent)
		codecs := topicCodec(t, topic, int64(len(sent)))
		allCodec(t, codecs[:len(testCodecs)], record.CodecLZ4)
		for i, cc := range testCodecs {
			if got := codecs[len(testCodecs)+i]; got != cc.bits {
				t.Fatalf("after the change, a %s batch stored with codec %d", cc.name, got)
			}
		}
	})

	t.Run("too large once recompressed", func(t *testing.T) {
		const topic = "ct-large"
		if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
			"compression.type":  kadm.StringPtr("uncompressed"),
			"max.message.bytes": kadm.StringPtr("4000"),
		}, topic); err != nil {
			t.Fatal(err)
		}
		cl := b.client(kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.GzipCompression()),
			kgo.RecordRetries(0))
		// 20 KB of zeros gzip to a few dozen bytes.
		err := cl.ProduceSync(ctx, &kgo.Record{Value: make([]byte, 20000)}).FirstErr()
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("produce = %v, want MESSAGE_TOO_LARGE", err)
		}
		if got := readAll(t, b.addr, topic); len(got[0]) != 0 {
			t.Fatalf("stored %d records", len(got[0]))
		}
	})
}
