package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/meta"
	"github.com/ferrymq/ferry/record"
)

// offlineProps keeps these tests' brokers small: each starts three times.
var offlineProps = map[string]string{"offsets.topic.num.partitions": "2"}

func startSmallBroker(t *testing.T, dir string) *testBroker {
	t.Helper()
	props := map[string]string{}
	for k, v := range offlineProps {
		props[k] = v
	}
	return startBroker(t, props, dir)
}

// produceValues appends n records to one partition, acks=all, with values
// "<topic>-<partition>-<i>" from first.
func produceValues(t *testing.T, b *testBroker, topic string, p int32, first, n int) {
	t.Helper()
	cl := b.client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	var rs []*kgo.Record
	for i := first; i < first+n; i++ {
		rs = append(rs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%s-%d-%d", topic, p, i)})
	}
	if err := cl.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s-%d: %v", topic, p, err)
	}
}

// checkValues reads one partition from its start and wants the n values
// produceValues wrote.
func checkValues(t *testing.T, b *testBroker, topic string, p int32, n int) {
	t.Helper()
	got := consumeFrom(t, b.addr, topic, p, kgo.NewOffset().AtStart(), n)
	for i, r := range got[:n] {
		if want := fmt.Sprintf("%s-%d-%d", topic, p, i); string(r.Value) != want || r.Offset != int64(i) {
			t.Fatalf("%s-%d offset %d: %q, want %q at %d", topic, p, r.Offset, r.Value, want, i)
		}
	}
}

// dirFiles returns every entry under dir (relative name -> content, nil
// for what is not a regular file).
func dirFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = nil
		if info, err := d.Info(); err == nil && info.Size() > 64<<20 {
			out[rel] = []byte(fmt.Sprintf("(%d bytes)", info.Size()))
			return nil
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out[rel] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkUntouched fails if an entry of before is gone from dir, or a
// segment (.log) or partition.metadata differs: the broker's start must
// delete and change nothing of a partition it could not open. (Indexes
// and checkpoints are derived data a failed open may have rewritten.)
func checkUntouched(t *testing.T, dir string, before map[string][]byte) {
	t.Helper()
	after := dirFiles(t, dir)
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("%s: %s is gone", dir, name)
			continue
		}
		if (strings.HasSuffix(name, ".log") || name == "partition.metadata") && !bytes.Equal(a, b) {
			t.Errorf("%s: %s changed (%d bytes, was %d)", dir, name, len(a), len(b))
		}
	}
}

// partitionFault breaks a partition directory so that the partition
// cannot be opened, and repairs it.
type partitionFault struct {
	name           string
	inject, repair func(t *testing.T, dir string)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A segment name after the partition's only one (which starts at 0).
const laterSegment = "00000000000000001000.log"

var partitionFaults = []partitionFault{
	{
		name:   "segment file is a directory",
		inject: func(t *testing.T, d string) { must(t, os.Mkdir(filepath.Join(d, laterSegment), 0o755)) },
		repair: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, laterSegment))) },
	},
	{
		name: "segment file gone when opened",
		inject: func(t *testing.T, d string) {
			must(t, os.Symlink("/nonexistent-ferry-test/gone.log", filepath.Join(d, laterSegment)))
		},
		repair: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, laterSegment))) },
	},
	{
		name: "segment larger than 2 GiB",
		inject: func(t *testing.T, d string) {
			f, err := os.Create(filepath.Join(d, laterSegment))
			must(t, err)
			must(t, f.Truncate(1<<31+1)) // sparse
			must(t, f.Close())
		},
		repair: func(t *testing.T, d string) { must(t, os.Remove(filepath.Join(d, laterSegment))) },
	},
	{
		name: "partition directory is a file",
		inject: func(t *testing.T, d string) {
			must(t, os.Rename(d, d+".saved"))
			must(t, os.WriteFile(d, []byte("not a directory"), 0o644))
		},
		repair: func(t *testing.T, d string) {
			must(t, os.Remove(d))
			must(t, os.Rename(d+".saved", d))
		},
	},
	{
		name: "checkpoint cannot be written",
		inject: func(t *testing.T, d string) {
			cp := filepath.Join(d, "log.checkpoint")
			must(t, os.Remove(cp))
			must(t, os.MkdirAll(filepath.Join(cp, "x"), 0o755))
		},
		repair: func(t *testing.T, d string) { must(t, os.RemoveAll(filepath.Join(d, "log.checkpoint"))) },
	},
	{
		name: "partition.metadata does not parse",
		inject: func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "partition.metadata"), filepath.Join(d, "saved")))
			must(t, os.WriteFile(filepath.Join(d, "partition.metadata"), []byte("garbage\n"), 0o644))
		},
		repair: func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "saved"), filepath.Join(d, "partition.metadata")))
		},
	},
	{
		name: "partition.metadata unreadable",
		inject: func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "partition.metadata"), filepath.Join(d, "saved")))
			must(t, os.Mkdir(filepath.Join(d, "partition.metadata"), 0o755))
		},
		repair: func(t *testing.T, d string) {
			must(t, os.Remove(filepath.Join(d, "partition.metadata")))
			must(t, os.Rename(filepath.Join(d, "saved"), filepath.Join(d, "partition.metadata")))
		},
	},
	{
		name: "partition.metadata names another topic",
		inject: func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "partition.metadata"), filepath.Join(d, "saved")))
			other := "version: 0\ntopic_id: " + meta.TopicIDString([16]byte{1, 2, 3}) + "\n"
			must(t, os.WriteFile(filepath.Join(d, "partition.metadata"), []byte(other), 0o644))
		},
		repair: func(t *testing.T, d string) {
			must(t, os.Rename(filepath.Join(d, "saved"), filepath.Join(d, "partition.metadata")))
		},
	},
}

// TestStartKeepsData: a partition that cannot be opened at start, for
// any of several reasons, is offline (KAFKA_STORAGE_ERROR in Produce,
// Fetch, ListOffsets and Metadata, unknown size in DescribeLogDirs) while
// the other partitions of its topic and of other topics serve; nothing of
// it is deleted or changed; and once the fault is repaired a restart
// serves it with all its records.
func TestStartKeepsData(t *testing.T) {
	for _, f := range partitionFaults {
		t.Run(f.name, func(t *testing.T) {
			const n = 20
			dir := t.TempDir()
			b := startSmallBroker(t, dir)
			adm := b.admin()
			if _, err := adm.CreateTopic(testCtx(t), 3, 1, nil, "t"); err != nil {
				t.Fatal(err)
			}
			if _, err := adm.CreateTopic(testCtx(t), 1, 1, nil, "u"); err != nil {
				t.Fatal(err)
			}
			for p := range int32(3) {
				produceValues(t, b, "t", p, 0, n)
			}
			produceValues(t, b, "u", 0, 0, n)
			id := topicIDOf(t, b.addr, "t")
			b.stop()

			broken := filepath.Join(dir, "t-1")
			f.inject(t, broken)
			before := dirFiles(t, broken)

			b = startSmallBroker(t, dir)
			checkValues(t, b, "t", 0, n)
			checkValues(t, b, "t", 2, n)
			checkValues(t, b, "u", 0, n)
			produceValues(t, b, "t", 0, n, 1)
			checkOffline(t, b, "t", id, 1)
			b.stop()
			checkUntouched(t, broken, before)

			f.repair(t, broken)
			b = startSmallBroker(t, dir)
			for p := range int32(3) {
				checkValues(t, b, "t", p, n)
			}
			produceValues(t, b, "t", 1, n, 1)
			checkValues(t, b, "t", 1, n+1)
			checkValues(t, b, "t", 0, n+1)
		})
	}
}

// checkOffline asks for partition p of topic every way a client can and
// wants KAFKA_STORAGE_ERROR (and no leader in Metadata), while the
// topic's other partitions answer normally.
func checkOffline(t *testing.T, b *testBroker, topic string, id [16]byte, p int32) {
	t.Helper()
	cl := b.client()
	ctx := testCtx(t)
	storage := kerr.KafkaStorageError.Code
	// Straight to the broker: the client's own routing of sharded
	// requests would answer for a partition with no leader itself.
	broker := cl.Broker(0)

	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, broker)
	if err != nil {
		t.Fatal(err)
	}
	if len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %+v", topic, mresp.Topics)
	}
	for _, mp := range mresp.Topics[0].Partitions {
		switch {
		case mp.Partition == p && (mp.ErrorCode != storage || mp.Leader != -1 || len(mp.OfflineReplicas) != 1):
			t.Errorf("metadata of offline %s-%d: error %d leader %d offline replicas %v", topic, p, mp.ErrorCode, mp.Leader, mp.OfflineReplicas)
		case mp.Partition != p && (mp.ErrorCode != 0 || mp.Leader != 0):
			t.Errorf("metadata of %s-%d: error %d leader %d", topic, mp.Partition, mp.ErrorCode, mp.Leader)
		}
	}

	preq := kmsg.NewPtrProduceRequest()
	preq.Acks, preq.TimeoutMillis = -1, 10000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic, pt.TopicID = topic, id
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Partition, pp.Records = p, testBatch("offline", 1, time.Now().UnixMilli())
	pt.Partitions = append(pt.Partitions, pp)
	preq.Topics = append(preq.Topics, pt)
	presp, err := preq.RequestWith(ctx, broker)
	if err != nil {
		t.Fatal(err)
	}
	pr := presp.Topics[0].Partitions[0]
	if pr.ErrorCode != storage || pr.ErrorMessage == nil || !strings.Contains(*pr.ErrorMessage, "offline") {
		t.Errorf("produce to offline %s-%d: error %d, message %v", topic, p, pr.ErrorCode, pr.ErrorMessage)
	}

	freq := kmsg.NewPtrFetchRequest()
	freq.MaxBytes, freq.SessionEpoch = 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = topic, id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.PartitionMaxBytes = p, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	freq.Topics = append(freq.Topics, ft)
	fresp, err := freq.RequestWith(ctx, broker)
	if err != nil {
		t.Fatal(err)
	}
	if code := fresp.Topics[0].Partitions[0].ErrorCode; code != storage {
		t.Errorf("fetch of offline %s-%d: error %d", topic, p, code)
	}

	// One request per timestamp: a partition named twice in one request
	// is INVALID_REQUEST (v1+).
	for _, ts := range []int64{-2, -1} {
		lreq := kmsg.NewPtrListOffsetsRequest()
		lt := kmsg.NewListOffsetsRequestTopic()
		lt.Topic = topic
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = p, ts
		lt.Partitions = append(lt.Partitions, lp)
		lreq.Topics = append(lreq.Topics, lt)
		lresp, err := lreq.RequestWith(ctx, broker)
		if err != nil {
			t.Fatal(err)
		}
		if code := lresp.Topics[0].Partitions[0].ErrorCode; code != storage {
			t.Errorf("list offsets (%d) of offline %s-%d: error %d", ts, topic, p, code)
		}
	}

	dirs, err := kadm.NewClient(cl).DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatalf("describe log dirs: %v", err)
	}
	dirs.Each(func(d kadm.DescribedLogDir) {
		for q, dp := range d.Topics[topic] {
			if (q == p) != (dp.Size < 0) {
				t.Errorf("log dirs: %s-%d has size %d", topic, q, dp.Size)
			}
		}
	})
}

// batchHolding returns the position and size of the record batch of a
// segment that holds the byte at pos.
func batchHolding(t *testing.T, seg []byte, at int) (int, int) {
	t.Helper()
	for pos := 0; pos+record.LengthOverhead <= len(seg); {
		size := record.LengthOverhead + int(binary.BigEndian.Uint32(seg[pos+8:]))
		if at < pos+size {
			return pos, size
		}
		pos += size
	}
	t.Fatalf("no batch holds position %d", at)
	return 0, 0
}

// TestStartMetadataCutShort: the metadata log loses its last record (a
// torn write cut by recovery). The topic it created is unknown after the
// start, but its partition directories are reported and left in place,
// byte for byte; the other topics serve; and with the record restored a
// restart serves the topic again with its data.
func TestStartMetadataCutShort(t *testing.T) {
	const n = 10
	dir := t.TempDir()
	b := startSmallBroker(t, dir)
	if _, err := b.admin().CreateTopic(testCtx(t), 2, 1, nil, "early"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin().CreateTopic(testCtx(t), 2, 1, nil, "late"); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		produceValues(t, b, "early", p, 0, n)
		produceValues(t, b, "late", p, 0, n)
	}
	b.stop()

	metaDir := filepath.Join(dir, meta.MetadataDir)
	segPath := filepath.Join(metaDir, "00000000000000000000.log")
	orig, err := os.ReadFile(segPath)
	must(t, err)
	// Tear the batch that created "late" (the log ends there), and drop
	// the clean marker, as a crash in the middle of that write would.
	at := bytes.Index(orig, []byte(`"topic":"late"`))
	if at < 0 {
		t.Fatal("no record of topic late in the metadata log")
	}
	pos, size := batchHolding(t, orig, at)
	must(t, os.Truncate(segPath, int64(pos+size/2)))
	must(t, os.Remove(filepath.Join(metaDir, "log.checkpoint")))
	before := map[string]map[string][]byte{}
	for _, d := range []string{"late-0", "late-1"} {
		before[d] = dirFiles(t, filepath.Join(dir, d))
	}

	b = startSmallBroker(t, dir)
	td, err := b.admin().ListTopics(testCtx(t), "early", "late")
	must(t, err)
	if !td.Has("early") || td.Has("late") && td["late"].Err == nil {
		t.Fatalf("after the cut: early %v, late %v", td.Has("early"), td["late"].Err)
	}
	for p := range int32(2) {
		checkValues(t, b, "early", p, n)
	}
	b.stop()
	for d, files := range before {
		if got := dirFiles(t, filepath.Join(dir, d)); fmt.Sprint(got) != fmt.Sprint(files) {
			t.Errorf("%s changed across the start", d)
		}
	}

	// Repair: the metadata log as it was.
	must(t, os.WriteFile(segPath, orig, 0o644))
	must(t, os.Remove(filepath.Join(metaDir, "log.checkpoint")))
	b = startSmallBroker(t, dir)
	for p := range int32(2) {
		checkValues(t, b, "early", p, n)
		checkValues(t, b, "late", p, n)
	}
}

// TestCreateOverStrayDirectory: a directory of a topic the metadata does
// not know is left alone at start; creating a topic of that name moves
// it aside (renamed <dir>.<topic id>-stray), with its content intact,
// instead of removing it.
func TestCreateOverStrayDirectory(t *testing.T) {
	dir := t.TempDir()
	b := startSmallBroker(t, dir)
	if _, err := b.admin().CreateTopic(testCtx(t), 1, 1, nil, "x"); err != nil {
		t.Fatal(err)
	}
	produceValues(t, b, "x", 0, 0, 5)
	xid := topicIDOf(t, b.addr, "x")
	b.stop()
	// A stray: the data of a topic "y" the metadata log does not name.
	stray := filepath.Join(dir, "y-0")
	must(t, os.CopyFS(stray, os.DirFS(filepath.Join(dir, "x-0"))))
	want := dirFiles(t, stray)

	b = startSmallBroker(t, dir)
	if got := dirFiles(t, stray); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("the start changed a directory the metadata does not know")
	}
	if _, err := b.admin().CreateTopic(testCtx(t), 1, 1, nil, "y"); err != nil {
		t.Fatal(err)
	}
	aside := stray + "." + meta.TopicIDString(xid) + "-stray"
	if got := dirFiles(t, aside); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s does not hold the stray directory as it was", aside)
	}
	produceValues(t, b, "y", 0, 0, 3)
	checkValues(t, b, "y", 0, 3)
	checkValues(t, b, "x", 0, 5)
}

// TestStartOffsetsPartitionOffline: a partition of __consumer_offsets that
// cannot be opened stops the start (the coordinator cannot load the groups
// it holds), with the reason, and deletes nothing; once repaired, the
// broker starts and the committed offsets are there.
func TestStartOffsetsPartitionOffline(t *testing.T) {
	dir := t.TempDir()
	b := startSmallBroker(t, dir)
	if _, err := b.admin().CreateTopic(testCtx(t), 1, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "t", Partition: 0, At: 7})
	for _, g := range []string{"g1", "g2", "g3", "g4"} {
		if _, err := b.admin().CommitOffsets(testCtx(t), g, offsets); err != nil {
			t.Fatal(err)
		}
	}
	b.stop()

	broken := filepath.Join(dir, offsetsTopic+"-0")
	metaFile := filepath.Join(broken, "partition.metadata")
	saved, err := os.ReadFile(metaFile)
	must(t, err)
	must(t, os.WriteFile(metaFile, []byte("garbage\n"), 0o644))
	before := dirFiles(t, broken)
	srv, err := New(Config{DataDir: dir, Props: offlineProps})
	if err == nil {
		srv.Close()
		t.Fatal("the broker started without a partition of __consumer_offsets")
	}
	if !strings.Contains(err.Error(), "offline") || !strings.Contains(err.Error(), "partition.metadata") {
		t.Fatalf("start error does not say why: %v", err)
	}
	checkUntouched(t, broken, before)

	must(t, os.WriteFile(metaFile, saved, 0o644))
	b = startSmallBroker(t, dir)
	for _, g := range []string{"g1", "g2", "g3", "g4"} {
		got, err := b.admin().FetchOffsets(testCtx(t), g)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := got.Lookup("t", 0); !ok || o.At != 7 {
			t.Fatalf("group %s: committed offset %+v after the repair", g, o)
		}
	}
}
