package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymq/ferry/bench"
)

// stdin is what `ferry produce` reads; tests replace it.
var stdin io.Reader = os.Stdin

type produceOpts struct {
	client       *clientFlags
	keyDelimiter string
	headers      kvFlag
	partition    int
	acks         string
	compression  string
	verbose      bool
	maxLine      int
}

func produceFlags() (*flag.FlagSet, *produceOpts) {
	fs := newFlagSet("produce")
	o := &produceOpts{client: addClientFlags(fs)}
	fs.StringVar(&o.keyDelimiter, "key-delimiter", "", "split each line at the first `DELIM` into key and value (default: no key)")
	fs.Var(&o.headers, "header", "add header `key=value` to every record (repeatable)")
	fs.IntVar(&o.partition, "partition", -1, "produce to this partition (-1: the partitioner picks by key)")
	fs.StringVar(&o.acks, "acks", "all", "acks: 0, 1 or all")
	fs.StringVar(&o.compression, "compression", "none", "compression: none, gzip, snappy, lz4, zstd")
	fs.BoolVar(&o.verbose, "v", false, "print the partition and offset of each record")
	fs.IntVar(&o.maxLine, "max-line", 16<<20, "longest line accepted, in bytes")
	return fs, o
}

type produced struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

func runProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := produceFlags()
	pos, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	topic := pos[0]
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0)}
	acks, err := producerAcks(o.acks)
	if err != nil {
		return err
	}
	opts = append(opts, kgo.RequiredAcks(acks))
	if o.acks != "all" && o.acks != "-1" {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	codec, err := producerCodec(o.compression)
	if err != nil {
		return err
	}
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	if o.partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	c, err := o.client.connect(opts...)
	if err != nil {
		return err
	}
	defer c.close()

	var headers []kgo.RecordHeader
	for _, kv := range o.headers.pairs {
		headers = append(headers, kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])})
	}
	where := fmt.Sprintf("produce to topic %q", topic)
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		out      = bufio.NewWriter(stdout)
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		if !o.verbose {
			return
		}
		if o.client.json() {
			writeJSONLine(out, produced{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
		} else {
			fmt.Fprintf(out, "%s partition %d offset %d\n", r.Topic, r.Partition, r.Offset)
		}
	}

	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), o.maxLine)
	var sent int
	for sc.Scan() {
		line := bytes.Clone(sc.Bytes())
		r := &kgo.Record{Value: line, Headers: headers}
		if o.keyDelimiter != "" {
			if k, v, ok := bytes.Cut(line, []byte(o.keyDelimiter)); ok {
				r.Key, r.Value = k, v
			}
		}
		if o.partition >= 0 {
			r.Partition = int32(o.partition)
		}
		c.cl.Produce(ctx, r, promise)
		sent++
	}
	scanErr := sc.Err()
	fctx, cancel := c.ctx(ctx)
	defer cancel()
	flushErr := c.cl.Flush(fctx)
	mu.Lock()
	defer mu.Unlock()
	if err := out.Flush(); err != nil {
		return err
	}
	if scanErr != nil {
		return fmt.Errorf("%s: reading stdin: %w", where, scanErr)
	}
	if firstErr != nil {
		return c.fail(fmt.Sprintf("%s: %d of %d records failed", where, failed, sent), firstErr)
	}
	if flushErr != nil {
		return c.fail(where, flushErr)
	}
	return nil
}

func producerAcks(s string) (kgo.Acks, error) {
	switch strings.ToLower(s) {
	case "0":
		return kgo.NoAck(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	}
	return kgo.Acks{}, usageError("-acks %q: want 0, 1 or all", s)
}

func producerCodec(s string) (kgo.CompressionCodec, error) {
	codec, err := bench.CompressionCodec(s)
	if err != nil {
		return kgo.CompressionCodec{}, usageError("-compression %q: want none, gzip, snappy, lz4 or zstd", s)
	}
	return codec, nil
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
