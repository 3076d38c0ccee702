package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ferrymq/ferry/record"
)

// TestKcat runs kcat (librdkafka) against the ferry binary: metadata, keyed
// produce with headers, consume from the beginning, from an offset, the
// last N, and each codec.
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	b := startBinary(t)
	ctx := testCtx(t)
	adm := b.admin()
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "kc"); err != nil {
		t.Fatal(err)
	}
	// runErr runs kcat and returns its stdout and stderr.
	runErr := func(t *testing.T, stdin string, args ...string) (string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, append([]string{"-b", b.addr}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	run := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		out, _ := runErr(t, stdin, args...)
		return out
	}
	// Producer settings that make kcat quick: no linger.
	produce := []string{"-P", "-X", "queue.buffering.max.ms=1"}
	consume := []string{"-C", "-q", "-X", "fetch.wait.max.ms=50"}

	// kcat -e exits when it reaches the end of every partition; that needs
	// the broker's answer for a partition with nothing new to decode.
	// Find out whether it does, with the empty partition kc/0.
	eofWorks, eofErr := func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kcat, "-b", b.addr, "-C", "-e", "-X", "fetch.wait.max.ms=50", "-t", "kc", "-p", "0", "-o", "beginning")
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Stop at the first protocol error rather than wait for the
		// timeout: librdkafka retries forever.
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "PROTOERR") {
				cancel()
			}
		}
		err = cmd.Wait()
		return err == nil && stdout.Len() == 0, log.String()
	}()
	// upTo makes kcat stop after the n records expected: at the end of
	// the partitions (-e) where that works, else after n records.
	upTo := func(n int) []string {
		if eofWorks {
			return []string{"-e"}
		}
		return []string{"-c", fmt.Sprint(n)}
	}

	t.Run("end of partition", func(t *testing.T) {
		// librdkafka rejects null records ("invalid MessageSetSize
		// -1") and retries forever; an empty partition must come back
		// with empty records. (The other cases then stop after the
		// records they expect, so they do not hang too.)
		if !eofWorks {
			t.Fatalf("kcat -C -e on an empty partition did not exit cleanly:\n%s", eofErr)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		out := run(t, "", "-L", "-J")
		var md struct {
			ControllerID int32 `json:"controllerid"`
			Brokers      []struct {
				ID   int32  `json:"id"`
				Name string `json:"name"`
			} `json:"brokers"`
			Topics []struct {
				Topic      string `json:"topic"`
				Error      string `json:"error"`
				Partitions []struct {
					Partition int32 `json:"partition"`
					Leader    int32 `json:"leader"`
					Replicas  []struct {
						ID int32 `json:"id"`
					} `json:"replicas"`
				} `json:"partitions"`
			} `json:"topics"`
		}
		if err := json.Unmarshal([]byte(out), &md); err != nil {
			t.Fatalf("kcat -L -J: %v\n%s", err, out)
		}
		if md.ControllerID != 0 || len(md.Brokers) != 1 || md.Brokers[0].ID != 0 || md.Brokers[0].Name != b.addr {
			t.Fatalf("kcat -L: controller %d brokers %+v, want broker 0 at %s", md.ControllerID, md.Brokers, b.addr)
		}
		found := false
		for _, tp := range md.Topics {
			if tp.Topic != "kc" {
				continue
			}
			found = true
			if tp.Error != "" || len(tp.Partitions) != 3 {
				t.Fatalf("kcat -L: topic kc: error %q, %d partitions", tp.Error, len(tp.Partitions))
			}
			for i, p := range tp.Partitions {
				if p.Partition != int32(i) || p.Leader != 0 || len(p.Replicas) != 1 || p.Replicas[0].ID != 0 {
					t.Fatalf("kcat -L: kc partition %+v", p)
				}
			}
		}
		if !found {
			t.Fatalf("kcat -L does not list topic kc:\n%s", out)
		}
		text := run(t, "", "-L", "-t", "kc")
		for _, want := range []string{
			fmt.Sprintf("  broker 0 at %s (controller)\n", b.addr),
			"  topic \"kc\" with 3 partitions:\n",
			"    partition 2, leader 0, replicas: 0, isrs: 0\n",
		} {
			if !strings.Contains(text, want) {
				t.Fatalf("kcat -L -t kc lacks %q:\n%s", want, text)
			}
		}
	})

	t.Run("keyed produce and consume", func(t *testing.T) {
		var in, want strings.Builder
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&in, "key%d:value %d\n", i, i)
			fmt.Fprintf(&want, "key%d value %d 1 %d src=kcat,n=%d\n", i, i, i, 1)
		}
		run(t, in.String(), append(produce, "-t", "kc", "-p", "1", "-K:", "-H", "src=kcat", "-H", "n=1")...)
		format := []string{"-f", `%k %s %p %o %h\n`}
		got := run(t, "", append(append(append(consume, upTo(10)...), "-t", "kc", "-p", "1", "-o", "beginning"), format...)...)
		if got != want.String() {
			t.Fatalf("kcat -C -o beginning:\n%s\nwant:\n%s", got, want.String())
		}
		lines := strings.SplitAfter(want.String(), "\n")
		got = run(t, "", append(append(append(consume, upTo(5)...), "-t", "kc", "-p", "1", "-o", "5"), format...)...)
		if w := strings.Join(lines[5:], ""); got != w {
			t.Fatalf("kcat -C -o 5:\n%s\nwant:\n%s", got, w)
		}
		got = run(t, "", append(append(append(consume, upTo(3)...), "-t", "kc", "-p", "1", "-o", "-3"), format...)...)
		if w := strings.Join(lines[7:], ""); got != w {
			t.Fatalf("kcat -C -o -3:\n%s\nwant:\n%s", got, w)
		}
		// A Kafka client of another family reads the same records.
		recs := readAll(t, b.addr, "kc")[1]
		if len(recs) != 10 {
			t.Fatalf("kgo read %d records from kc/1", len(recs))
		}
		for i, r := range recs {
			if string(r.Key) != fmt.Sprintf("key%d", i) || string(r.Value) != fmt.Sprintf("value %d", i) ||
				len(r.Headers) != 2 || r.Headers[0].Key != "src" || string(r.Headers[0].Value) != "kcat" || r.Headers[1].Key != "n" {
				t.Fatalf("kgo read record %d as key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
			}
		}
	})

	t.Run("partitioned by key", func(t *testing.T) {
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, "kc-keys"); err != nil {
			t.Fatal(err)
		}
		var in strings.Builder
		for i := 0; i < 60; i++ {
			fmt.Fprintf(&in, "k%d:%d\n", i%12, i)
		}
		run(t, in.String(), append(produce, "-t", "kc-keys", "-K:")...)
		out := run(t, "", append(append(consume, upTo(60)...), "-t", "kc-keys", "-o", "beginning", "-f", `%k %s %p %o\n`)...)
		partOf := map[string]string{}
		nextOffset := map[string]int{}
		lastValue := map[string]int{}
		n := 0
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			var key, part string
			var value, offset int
			if _, err := fmt.Sscanf(line, "%s %d %s %d", &key, &value, &part, &offset); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if p, ok := partOf[key]; ok && p != part {
				t.Fatalf("key %s in partitions %s and %s", key, p, part)
			}
			partOf[key] = part
			if offset != nextOffset[part] {
				t.Fatalf("partition %s: offset %d, want %d", part, offset, nextOffset[part])
			}
			nextOffset[part]++
			if v, ok := lastValue[key]; ok && value != v+12 {
				t.Fatalf("key %s: value %d after %d", key, value, v)
			}
			lastValue[key] = value
			n++
		}
		if n != 60 || len(partOf) != 12 {
			t.Fatalf("consumed %d records of %d keys, want 60 of 12", n, len(partOf))
		}
	})

	for _, cc := range []struct {
		name  string
		bits  int
		extra []string
	}{
		{"gzip", record.CodecGzip, nil},
		{"snappy", record.CodecSnappy, nil},
		{"lz4", record.CodecLZ4, nil},
		{"zstd", record.CodecZstd, []string{"-X", "enable.idempotence=true"}},
	} {
		t.Run("codec "+cc.name, func(t *testing.T) {
			topic := "kc-" + cc.name
			if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			var in, want strings.Builder
			for i := 0; i < 20; i++ {
				v := fmt.Sprintf("%s-%d-%s", cc.name, i, strings.Repeat("abc", 40))
				fmt.Fprintf(&in, "k%d:%s\n", i, v)
				fmt.Fprintf(&want, "k%d %s %d\n", i, v, i)
			}
			// -d msg makes librdkafka say when it decides not to
			// compress.
			args := append(append(produce, "-t", topic, "-K:", "-z", cc.name, "-d", "msg"), cc.extra...)
			_, debug := runErr(t, in.String(), args...)
			// librdkafka before 2.10 compresses with gzip, snappy and
			// lz4 only for brokers that advertise Produce v0, which is
			// why Ferry serves Produce v0-v2 (converting message sets).
			if strings.Contains(debug, "Broker does not support compression type") {
				t.Fatalf("librdkafka sent %s uncompressed:\n%s", cc.name, debug)
			}
			got := run(t, "", append(append(consume, upTo(20)...), "-t", topic, "-o", "beginning", "-f", `%k %s %o\n`)...)
			if got != want.String() {
				t.Fatalf("kcat -z %s round trip:\n%s\nwant:\n%s", cc.name, got, want.String())
			}
			batches := fetchBatches(t, b.client(), topic, topicIDOf(t, b.addr, topic), 0, 0, 20)
			for _, batch := range batches {
				h, err := record.Validate(batch)
				if err != nil || h.Codec() != cc.bits {
					t.Fatalf("batch at %d: codec %d (%v), kcat sent codec %d", h.BaseOffset, h.Codec(), err, cc.bits)
				}
				if idem := len(cc.extra) > 0; (h.ProducerID >= 0) != idem {
					t.Fatalf("batch at %d: producer id %d, idempotent producer %v", h.BaseOffset, h.ProducerID, idem)
				}
			}
		})
	}

	// kcat's view of end offsets agrees with the broker's.
	ends, err := kadm.NewClient(b.client()).ListEndOffsets(ctx, "kc")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("kc", 1); o.Offset != 10 {
		t.Fatalf("kc/1 ends at %d, want 10", o.Offset)
	}
}
