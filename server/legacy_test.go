package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ferrymq/ferry/record"
)

// TestLegacyProduce produces with franz-go pinned to old protocol versions
// (Produce v0 and v1 carry message format v0, v2 carries v1) in every codec
// those formats have, then reads the records back with a current client:
// offsets, keys, values and timestamps (format v1; v0 has none) as sent,
// and each stored batch compressed with the producer's codec.
func TestLegacyProduce(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	adm := b.admin()
	for _, v := range []struct {
		name     string
		versions *kversion.Versions
		produce  int16 // the Produce version the client must pick
	}{
		{"produce-v0", kversion.V0_8_0(), 0},
		{"produce-v1", kversion.V0_9_0(), 1},
		{"produce-v2", kversion.V0_10_1(), 2},
	} {
		if got, _ := v.versions.LookupMaxKeyVersion(0); got != v.produce {
			t.Fatalf("%s: client would send Produce v%d", v.name, got)
		}
		for _, cc := range testCodecs {
			if cc.bits == record.CodecZstd {
				continue // not in message format v0/v1
			}
			t.Run(v.name+"-"+cc.name, func(t *testing.T) {
				topic := "legacy-" + v.name + "-" + cc.name
				if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
					t.Fatal(err)
				}
				prod := b.client(kgo.MaxVersions(v.versions), kgo.DisableIdempotentWrite(),
					kgo.ProducerBatchCompression(cc.codec), kgo.DefaultProduceTopic(topic),
					kgo.ProducerLinger(20*time.Millisecond))
				const n = 60
				base := time.UnixMilli(1_700_000_000_000)
				var sent []*kgo.Record
				for i := range n {
					r := &kgo.Record{Value: bytes.Repeat([]byte{byte('a' + i%26)}, 10+i), Timestamp: base.Add(time.Duration(i) * time.Millisecond)}
					if i%7 != 0 {
						r.Key = fmt.Appendf(nil, "k%d", i)
					}
					if i == 5 {
						r.Value = nil
					}
					sent = append(sent, r)
				}
				if err := prod.ProduceSync(ctx, sent...).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
				got := readAll(t, b.addr, topic)[0]
				if len(got) != n {
					t.Fatalf("read %d records, want %d", len(got), n)
				}
				for i, r := range got {
					s := sent[i]
					if r.Offset != int64(i) || !bytes.Equal(r.Key, s.Key) || (r.Key == nil) != (s.Key == nil) ||
						!bytes.Equal(r.Value, s.Value) || (r.Value == nil) != (s.Value == nil) {
						t.Fatalf("record %d: offset %d key %q value %q; sent key %q value %q", i, r.Offset, r.Key, r.Value, s.Key, s.Value)
					}
					wantTS := s.Timestamp.UnixMilli()
					if v.produce < 2 {
						wantTS = -1
					}
					if r.Timestamp.UnixMilli() != wantTS {
						t.Fatalf("record %d: timestamp %d, want %d", i, r.Timestamp.UnixMilli(), wantTS)
					}
				}
				for _, batch := range fetchBatches(t, b.client(), topic, topicIDOf(t, b.addr, topic), 0, 0, n) {
					h, err := record.Validate(batch)
					if err != nil || h.Codec() != cc.bits || h.ProducerID != -1 {
						t.Fatalf("batch at %d: codec %d producer %d (%v), want codec %d and no producer id", h.BaseOffset, h.Codec(), h.ProducerID, err, cc.bits)
					}
				}
			})
		}
	}
}

// legacyMessage appends one message of format v1 (or v0) to a message set.
func legacyMessage(set []byte, magic, attrs int8, ts int64, key, value []byte) []byte {
	be := binary.BigEndian
	var m []byte
	m = append(m, 0, 0, 0, 0, byte(magic), byte(attrs))
	if magic == 1 {
		m = be.AppendUint64(m, uint64(ts))
	}
	for _, b := range [][]byte{key, value} {
		if b == nil {
			m = be.AppendUint32(m, 0xffffffff)
		} else {
			m = be.AppendUint32(m, uint32(len(b)))
			m = append(m, b...)
		}
	}
	be.PutUint32(m, crc32.ChecksumIEEE(m[4:]))
	set = be.AppendUint64(set, 0)
	set = be.AppendUint32(set, uint32(len(m)))
	return append(set, m...)
}

// TestLegacyProduceErrors sends bad message sets over Produce v2 and
// checks Kafka's answer for each, and what is stored: only the good set,
// the complete message of a set with an incomplete tail, and a batch v2
// (Produce v0-v2 may carry one; Kafka takes it as it is).
func TestLegacyProduceErrors(t *testing.T) {
	b := startBroker(t, nil)
	ctx := testCtx(t)
	const topic = "legacy-bad"
	good := legacyMessage(nil, 1, 0, 1000, []byte("k"), []byte("v"))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	zstd := legacyMessage(nil, 1, record.CodecZstd, 1000, nil, []byte("not really zstd"))
	magic3 := legacyMessage(nil, 1, 0, 1000, nil, []byte("v"))
	magic3[12+4] = 3
	binary.BigEndian.PutUint32(magic3[12:], crc32.ChecksumIEEE(magic3[16:]))
	v2 := record.AppendBatch(nil, record.Batch{BaseTimestamp: 2000, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: []record.Record{{Value: []byte("v2-a")}, {Value: []byte("v2-b")}}})
	badV2 := bytes.Clone(v2)
	badV2[len(badV2)-1] ^= 1
	cases := []struct {
		set  []byte
		want *kerr.Error
		vals []string // stored
	}{
		{good, nil, []string{"v"}},
		{badCRC, kerr.CorruptMessage, nil},
		{append(bytes.Clone(good), good[:len(good)-3]...), nil, []string{"v"}},
		{good[:len(good)-3], nil, nil},
		{zstd, kerr.UnsupportedCompressionType, nil},
		{magic3, kerr.CorruptMessage, nil},
		{[]byte{}, nil, nil},
		{v2, nil, []string{"v2-a", "v2-b"}},
		{badV2, kerr.CorruptMessage, nil},
	}
	if _, err := b.admin().CreateTopic(ctx, int32(len(cases)), 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(2)
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	for i, c := range cases {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(i), c.set
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	resp, err := rawRoundTrip(nc, 1, req)
	if err != nil {
		t.Fatal(err)
	}
	parts := resp.(*kmsg.ProduceResponse).Topics[0].Partitions
	for i, c := range cases {
		if err := kerr.ErrorForCode(parts[i].ErrorCode); err != c.want && !(c.want == nil && err == nil) {
			t.Errorf("partition %d: %v, want %v", i, err, c.want)
		}
	}
	got := readAll(t, b.addr, topic)
	for i, c := range cases {
		var vals []string
		for _, r := range got[int32(i)] {
			vals = append(vals, string(r.Value))
		}
		if fmt.Sprint(vals) != fmt.Sprint(c.vals) {
			t.Errorf("partition %d stores %q, want %q", i, vals, c.vals)
		}
	}
}
