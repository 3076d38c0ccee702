//go:build linux

package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFullDisk runs a broker whose data directory is a small tmpfs, then
// produces with acks=all, commits offsets and creates topics until the
// file system is full: the broker stays up and answers with errors. After
// it is stopped and space is freed, a restart serves every acknowledged
// record, commit and topic.
func TestFullDisk(t *testing.T) {
	fs := t.TempDir()
	if err := syscall.Mount("tmpfs", fs, "tmpfs", 0, "size=32m"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(fs, 0); err != nil {
			syscall.Unmount(fs, syscall.MNT_DETACH)
		}
	})
	data := filepath.Join(fs, "data")
	props := map[string]string{"offsets.topic.num.partitions": "3"}
	b := startBroker(t, props, data)
	ctx := testCtx(t)
	adm := b.admin()
	const topic, group = "full", "full-group"
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	// Leave about 3 MiB free.
	var st syscall.Statfs_t
	if err := syscall.Statfs(fs, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(fs, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-3<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	cl := b.client(kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(2*time.Second))
	acked := map[int64][]byte{} // offset -> value
	var committed int64 = -1    // last acknowledged commit
	var topics []string         // acknowledged creations
	failures := 0
	for i := 0; failures < 2 && i < 10_000; i++ {
		r := &kgo.Record{Value: []byte(fmt.Sprintf("%06d %s", i, bytes.Repeat([]byte("x"), 8<<10)))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			failures++
			continue
		}
		acked[r.Offset] = r.Value
		if i%10 == 0 {
			offs := kadm.Offsets{}
			offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: r.Offset + 1, LeaderEpoch: -1})
			if resp, err := adm.CommitOffsets(ctx, group, offs); err == nil && resp.Ok() {
				committed = r.Offset + 1
			}
		}
		if i%25 == 0 {
			name := fmt.Sprintf("more-%d", i)
			if resp, err := adm.CreateTopic(ctx, 2, 1, nil, name); err == nil && resp.Err == nil {
				topics = append(topics, name)
			}
		}
	}
	if failures < 2 {
		t.Fatalf("the file system never filled: %d records acknowledged", len(acked))
	}
	if len(acked) == 0 || committed < 0 || len(topics) == 0 {
		t.Fatalf("acknowledged %d records, commit %d, %d topics before the disk filled", len(acked), committed, len(topics))
	}
	t.Logf("acknowledged %d records, commit at %d, %d topics before the disk filled", len(acked), committed, len(topics))

	// The broker is up and answers: metadata, and errors for writes.
	if _, err := adm.ListTopics(ctx); err != nil {
		t.Fatalf("broker does not answer metadata on a full disk: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: bytes.Repeat([]byte("y"), 64<<10)}).FirstErr(); err == nil {
		t.Log("a produce on the full disk still succeeded")
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "after-full"); err == nil {
		t.Log("a topic creation on the full disk still succeeded")
	}

	// Stop (closing on a full disk may report errors), free space, restart.
	if err := b.srv.Close(); err != nil {
		t.Logf("close on a full disk: %v", err)
	}
	select {
	case err := <-b.done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	b.srv = nil
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	b2 := startBroker(t, props, data)
	got := map[int64][]byte{}
	for _, r := range readAll(t, b2.addr, topic)[0] {
		got[r.Offset] = r.Value
	}
	for off, v := range acked {
		if !bytes.Equal(got[off], v) {
			t.Fatalf("acknowledged record at offset %d lost or changed after the restart", off)
		}
	}
	adm2 := b2.admin()
	offs, err := adm2.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(topic, 0); !ok || o.At < committed {
		t.Fatalf("committed offset after the restart %+v, want at least %d", o, committed)
	}
	listed, err := adm2.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics {
		if !listed.Has(name) {
			t.Fatalf("topic %s, created before the disk filled, is gone after the restart", name)
		}
	}
	// And the broker takes writes again.
	cl2 := b2.client(kgo.DefaultProduceTopic(topic))
	if err := cl2.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after the restart: %v", err)
	}
}
