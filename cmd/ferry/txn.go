package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// ---- txn list ----

type txnListOpts struct {
	cf        *clientFlags
	states    listFlag
	producers listFlag
}

func txnListFlags() (*flag.FlagSet, *txnListOpts) {
	fs := newFlagSet("txn list")
	o := &txnListOpts{cf: addClientFlags(fs)}
	fs.Var(&o.states, "state", "only transactions in this state: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort (repeatable)")
	fs.Var(&o.producers, "producer-id", "only transactions of this producer id (repeatable)")
	return fs, o
}

type txnListed struct {
	TransactionalID string `json:"transactional_id"`
	ProducerID      int64  `json:"producer_id"`
	State           string `json:"state"`
	Coordinator     int32  `json:"coordinator"`
}

func runTxnList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := txnListFlags()
	_, c, rctx, err := startClient(ctx, fs, o.cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	var pids []int64
	for _, s := range o.producers {
		var id int64
		if _, err := fmt.Sscan(s, &id); err != nil {
			return usageError("-producer-id %q: not a number", s)
		}
		pids = append(pids, id)
	}
	listed, err := c.adm.ListTransactions(rctx, pids, o.states)
	if err != nil {
		return c.fail("list transactions", err)
	}
	out := []txnListed{}
	for _, l := range listed.Sorted() {
		out = append(out, txnListed{TransactionalID: l.TxnID, ProducerID: l.ProducerID, State: l.State, Coordinator: l.Coordinator})
	}
	return writeRows(stdout, o.cf, out, []string{"TRANSACTIONAL-ID", "PRODUCER-ID", "STATE", "COORDINATOR"}, func(l txnListed) []any {
		return []any{l.TransactionalID, l.ProducerID, l.State, l.Coordinator}
	})
}

// ---- txn describe ----

func txnDescribeFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("txn describe") }

type txnDescribed struct {
	TransactionalID string   `json:"transactional_id"`
	State           string   `json:"state"`
	ProducerID      int64    `json:"producer_id"`
	ProducerEpoch   int16    `json:"producer_epoch"`
	TimeoutMs       int32    `json:"timeout_ms"`
	Started         string   `json:"started,omitempty"` // RFC 3339, empty when no transaction is open
	Partitions      []string `json:"partitions"`        // topic-partition
	Coordinator     int32    `json:"coordinator"`
	Error           string   `json:"error,omitempty"`
}

func runTxnDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := txnDescribeFlags()
	ids, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	described, err := c.adm.DescribeTransactions(rctx, ids...)
	if err != nil && len(described) == 0 {
		return c.fail("describe transactions", err)
	}
	var out []txnDescribed
	failed := 0
	for _, id := range ids {
		d, ok := described[id]
		td := txnDescribed{TransactionalID: id, Partitions: []string{}}
		switch {
		case !ok:
			td.Error = "no answer"
		case d.Err != nil:
			td.Error = d.Err.Error()
		default:
			td.State, td.ProducerID, td.ProducerEpoch, td.TimeoutMs, td.Coordinator = d.State, d.ProducerID, d.ProducerEpoch, d.TimeoutMillis, d.Coordinator
			if d.StartTimestamp > 0 {
				td.Started = time.UnixMilli(d.StartTimestamp).UTC().Format(time.RFC3339Nano)
			}
			for _, tp := range d.Topics.Sorted() {
				for _, p := range tp.Partitions {
					td.Partitions = append(td.Partitions, fmt.Sprintf("%s-%d", tp.Topic, p))
				}
			}
		}
		if td.Error != "" {
			failed++
		}
		out = append(out, td)
	}
	if cf.json() {
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	} else {
		err = writeTable(stdout, []string{"TRANSACTIONAL-ID", "STATE", "PRODUCER-ID", "EPOCH", "TIMEOUT", "STARTED", "PARTITIONS"}, out, func(d txnDescribed) []any {
			if d.Error != "" {
				return []any{d.TransactionalID, d.Error, "-", "-", "-", "-", "-"}
			}
			return []any{d.TransactionalID, d.State, d.ProducerID, d.ProducerEpoch, time.Duration(d.TimeoutMs) * time.Millisecond, dash(d.Started), dash(strings.Join(d.Partitions, " "))}
		})
		if err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d transactional ids could not be described", failed, len(ids))
	}
	return nil
}

// ---- producers describe ----

type producersOpts struct {
	cf         *clientFlags
	partitions listFlag
}

func producersDescribeFlags() (*flag.FlagSet, *producersOpts) {
	fs := newFlagSet("producers describe")
	o := &producersOpts{cf: addClientFlags(fs)}
	fs.Var(&o.partitions, "partition", "only this partition (repeatable; default every partition)")
	return fs, o
}

type producerDescribed struct {
	Topic          string `json:"topic"`
	Partition      int32  `json:"partition"`
	ProducerID     int64  `json:"producer_id"`
	ProducerEpoch  int16  `json:"producer_epoch"`
	LastSequence   int32  `json:"last_sequence"`
	LastTimestamp  int64  `json:"last_timestamp"`   // Unix ms
	TxnStartOffset int64  `json:"txn_start_offset"` // -1: no transaction open
}

func runProducersDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := producersDescribeFlags()
	topics, c, rctx, err := startClient(ctx, fs, o.cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	var only []int32
	for _, s := range o.partitions {
		var p int32
		if _, err := fmt.Sscan(s, &p); err != nil || p < 0 {
			return usageError("-partition %q: not a partition number", s)
		}
		only = append(only, p)
	}
	details, err := c.adm.ListTopics(rctx, topics...)
	if err != nil {
		return c.fail("describe topics", err)
	}
	set := kadm.TopicsSet{}
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || d.Err != nil {
			return fmt.Errorf("topic %q: %v", topic, errors.Join(d.Err, errIfMissing(ok)))
		}
		for p := range d.Partitions {
			if len(only) == 0 || slices.Contains(only, p) {
				set.Add(topic, p)
			}
		}
	}
	described, err := c.adm.DescribeProducers(rctx, set)
	if err != nil && len(described) == 0 {
		return c.fail("describe producers", err)
	}
	out := []producerDescribed{}
	var errs []error
	for _, dp := range described.SortedPartitions() {
		if dp.Err != nil {
			errs = append(errs, fmt.Errorf("%s-%d: %w", dp.Topic, dp.Partition, dp.Err))
			continue
		}
		for _, p := range dp.ActiveProducers.Sorted() {
			out = append(out, producerDescribed{Topic: p.Topic, Partition: p.Partition, ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch,
				LastSequence: p.LastSequence, LastTimestamp: p.LastTimestamp, TxnStartOffset: p.CurrentTxnStartOffset})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	err = writeRows(stdout, o.cf, out, []string{"TOPIC", "PARTITION", "PRODUCER-ID", "EPOCH", "LAST-SEQUENCE", "LAST-APPEND", "TXN-START-OFFSET"}, func(p producerDescribed) []any {
		return []any{p.Topic, p.Partition, p.ProducerID, p.ProducerEpoch, p.LastSequence, time.UnixMilli(p.LastTimestamp).UTC().Format(time.RFC3339), intOrDash(p.TxnStartOffset)}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

func errIfMissing(ok bool) error {
	if ok {
		return nil
	}
	return errors.New("not found")
}
