package server

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/record"
)

// boundsTopic creates topic with partitions partitions of batches batches
// each, of about 10 KiB, and returns the size of one batch.
func boundsTopic(t *testing.T, b *testBroker, topic string, partitions int32, batches int) int {
	t.Helper()
	if _, err := b.admin().CreateTopic(testCtx(t), partitions, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	cl := b.client()
	id := topicIDOf(t, b.addr, topic)
	batch := testBatch(topic, 80, time.Now().UnixMilli())
	for p := range partitions {
		for range batches {
			if sp := produceRaw(t, cl, topic, id, p, -1, batch); sp.ErrorCode != 0 {
				t.Fatalf("produce: error %d", sp.ErrorCode)
			}
		}
	}
	return len(batch)
}

// fetchAll is a sessionless Fetch v11 of every partition of topic from
// offset 0.
func fetchAll(topic string, partitions int32, maxBytes, partitionMaxBytes int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID, req.MaxWaitMillis, req.MaxBytes, req.SessionEpoch = -1, 0, maxBytes, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes, rp.LogStartOffset = p, partitionMaxBytes, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// batchesIn counts the whole batches of each partition of a response.
func batchesIn(t *testing.T, resp *kmsg.FetchResponse) []int {
	t.Helper()
	var counts []int
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("partition %d: error %d", rp.Partition, rp.ErrorCode)
			}
			n := 0
			for b := rp.RecordBatches; len(b) > 0; n++ {
				size, err := record.BatchSize(b)
				if err != nil || size > len(b) {
					t.Fatalf("partition %d: batch %d: %v", rp.Partition, n, err)
				}
				b = b[size:]
			}
			counts = append(counts, n)
		}
	}
	return counts
}

// TestFetchByteBounds: a Fetch whose MaxBytes, or partition max bytes, is
// zero or negative gets one batch; fetch.max.bytes caps what a client
// asks for.
func TestFetchByteBounds(t *testing.T) {
	b := startBroker(t, map[string]string{"fetch.max.bytes": "25000"})
	size := boundsTopic(t, b, "bounds", 3, 2)
	nc := dialRaw(t, b.addr)
	corr := int32(0)
	for _, tc := range []struct {
		name                        string
		maxBytes, partitionMaxBytes int32
		want                        string
	}{
		{"MaxBytes 0", 0, 1 << 20, "[1 0 0]"},
		{"MaxBytes -1", -1, 1 << 20, "[1 0 0]"},
		{"MaxBytes min int32", math.MinInt32, 1 << 20, "[1 0 0]"},
		{"partition max bytes 0", 1 << 20, 0, "[1 0 0]"},
		{"partition max bytes -1", 1 << 20, -1, "[1 0 0]"},
		// 25000 bytes hold two batches of about 10 KiB.
		{"fetch.max.bytes caps MaxBytes", math.MaxInt32, math.MaxInt32, "[2 0 0]"},
		{"within fetch.max.bytes", 15000, 1 << 20, "[1 0 0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corr++
			resp := roundTrip(t, nc, fetchAll("bounds", 3, tc.maxBytes, tc.partitionMaxBytes), corr).(*kmsg.FetchResponse)
			if got := batchesIn(t, resp); fmt.Sprint(got) != tc.want {
				t.Errorf("batches per partition %v, want %s (batches of %d bytes)", got, tc.want, size)
			}
		})
	}
}

// TestFetchResponseSizeBound: a response whose data would take its frame
// past the largest size (int32; lowered here) leaves partitions out until
// it fits, and a consumer still reads everything.
func TestFetchResponseSizeBound(t *testing.T) {
	size := len(testBatch("frame", 80, 0))
	old := maxResponseSize
	maxResponseSize = int64(3*size + 512) // three batches and the rest of the frame
	t.Cleanup(func() { maxResponseSize = old })
	b := startBroker(t, nil) // stopped before maxResponseSize is restored
	boundsTopic(t, b, "frame", 3, 2)

	nc := dialRaw(t, b.addr)
	writeAll(t, nc, requestFrame(fetchAll("frame", 3, math.MaxInt32, math.MaxInt32), 1))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var head [4]byte
	if _, err := io.ReadFull(nc, head[:]); err != nil {
		t.Fatal(err)
	}
	frame := int64(binary.BigEndian.Uint32(head[:]))
	if frame > maxResponseSize {
		t.Fatalf("response frame of %d bytes, over the limit of %d", frame, maxResponseSize)
	}
	body := make([]byte, frame)
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 11
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
	got := batchesIn(t, resp)
	if total := got[0] + got[1] + got[2]; total == 0 || total > 3 {
		t.Fatalf("batches per partition %v in a frame of %d bytes, want one to three", got, frame)
	}

	// A consumer fetches what was left out next time.
	n := len(consumeFrom(t, b.addr, "frame", 0, kgo.NewOffset().At(0), 160))
	n += len(consumeFrom(t, b.addr, "frame", 1, kgo.NewOffset().At(0), 160))
	n += len(consumeFrom(t, b.addr, "frame", 2, kgo.NewOffset().At(0), 160))
	if n != 480 {
		t.Fatalf("consumed %d records, want 480", n)
	}
}

// mappingsOf counts the memory mappings of files under dir.
func mappingsOf(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps: %v", err)
	}
	return strings.Count(string(b), dir+string(filepath.Separator))
}

// TestFetchPanicReleasesSegments: when a fetch handler panics after it
// has read segment data, the connection is closed and the segments it
// referenced are released: once the topic is deleted, nothing of it stays
// mapped.
func TestFetchPanicReleasesSegments(t *testing.T) {
	for _, tc := range []struct {
		name     string
		minBytes int32
		maxWait  int32
	}{
		{"answered at once", 1, 0},
		{"long poll", 1 << 30, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fetchRespondHook = func(req *kmsg.FetchRequest) {
				if req.Topics[0].Topic == "leak" {
					panic("injected by the test")
				}
			}
			t.Cleanup(func() { fetchRespondHook = nil })
			b := startBroker(t, nil) // stopped before the hook is removed
			boundsTopic(t, b, "leak", 1, 3)
			dir := filepath.Join(b.dir, "leak-0")
			req := fetchAll("leak", 1, 1<<20, 1<<20)
			req.MinBytes, req.MaxWaitMillis = tc.minBytes, tc.maxWait
			nc := dialRaw(t, b.addr)
			writeAll(t, nc, requestFrame(req, 1))
			expectClosed(t, nc)
			// Segments are mapped when read, and stay mapped while the
			// broker's file cache keeps them: the fetch mapped this one.
			if mappingsOf(t, dir) == 0 {
				t.Fatalf("nothing of %s is mapped after the fetch", dir)
			}

			if _, err := b.admin().DeleteTopic(testCtx(t), "leak"); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); mappingsOf(t, dir) > 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d mappings of %s remain after the topic was deleted: the panicked fetch kept its segments", mappingsOf(t, dir), dir)
				}
			}
		})
	}
}
