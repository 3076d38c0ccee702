package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ---- topic create ----

type topicCreateOpts struct {
	client     *clientFlags
	partitions int
	replicas   int
	configs    kvFlag
	dryRun     bool
}

func topicCreateFlags() (*flag.FlagSet, *topicCreateOpts) {
	fs := newFlagSet("topic create")
	o := &topicCreateOpts{client: addClientFlags(fs)}
	fs.IntVar(&o.partitions, "partitions", -1, "number of partitions (-1: the broker's num.partitions)")
	fs.IntVar(&o.replicas, "replicas", -1, "replication factor (-1: the broker's default)")
	fs.Var(&o.configs, "c", "topic config `key=value` (repeatable), e.g. -c retention.ms=3600000")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate only; create nothing")
	return fs, o
}

type topicCreated struct {
	Topic             string `json:"topic"`
	ID                string `json:"id,omitempty"`
	Partitions        int32  `json:"partitions"`
	ReplicationFactor int16  `json:"replication_factor"`
	Error             string `json:"error,omitempty"`
}

func runTopicCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := topicCreateFlags()
	topics, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	configs := map[string]*string{}
	for _, kv := range o.configs.pairs {
		configs[kv[0]] = &kv[1]
	}
	create := c.adm.CreateTopics
	if o.dryRun {
		create = c.adm.ValidateCreateTopics
	}
	resps, err := create(rctx, int32(o.partitions), int16(o.replicas), configs, topics...)
	if err != nil {
		return c.fail(fmt.Sprintf("create topic %q", topics[0]), err)
	}
	var out []topicCreated
	var errs []error
	for _, t := range topics {
		r, ok := resps[t]
		row := topicCreated{Topic: t, Partitions: r.NumPartitions, ReplicationFactor: r.ReplicationFactor}
		if !ok {
			r.Err = errors.New("no answer for this topic")
		}
		if r.Err != nil {
			row.Error = errorText(r.Err, r.ErrMessage)
			errs = append(errs, c.fail(fmt.Sprintf("create topic %q", t), withMessage(r.Err, r.ErrMessage)))
		} else if r.ID != (kadm.TopicID{}) {
			row.ID = r.ID.String()
		}
		out = append(out, row)
	}
	status := "created"
	if o.dryRun {
		status = "valid (dry run)"
	}
	err = writeRows(stdout, o.client, out, []string{"TOPIC", "ID", "PARTITIONS", "REPLICAS", "STATUS"}, func(r topicCreated) []any {
		return []any{r.Topic, dash(r.ID), r.Partitions, r.ReplicationFactor, cmpOr(r.Error, status)}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// ---- topic list ----

type topicListOpts struct {
	client   *clientFlags
	internal bool
}

func topicListFlags() (*flag.FlagSet, *topicListOpts) {
	fs := newFlagSet("topic list")
	o := &topicListOpts{client: addClientFlags(fs)}
	fs.BoolVar(&o.internal, "internal", false, "include internal topics (__consumer_offsets, ...)")
	return fs, o
}

type topicListed struct {
	Topic             string `json:"topic"`
	ID                string `json:"id"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal,omitempty"`
}

func runTopicList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := topicListFlags()
	_, c, rctx, err := startClient(ctx, fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	list := c.adm.ListTopics
	if o.internal {
		list = c.adm.ListTopicsWithInternal
	}
	tds, err := list(rctx)
	if err != nil {
		return c.fail("list topics", err)
	}
	out := []topicListed{}
	for _, td := range tds.Sorted() {
		rf := 0
		for _, p := range td.Partitions {
			rf = max(rf, len(p.Replicas))
		}
		out = append(out, topicListed{Topic: td.Topic, ID: td.ID.String(), Partitions: len(td.Partitions), ReplicationFactor: rf, Internal: td.IsInternal})
	}
	return writeRows(stdout, o.client, out, []string{"TOPIC", "PARTITIONS", "REPLICAS", "ID"}, func(t topicListed) []any {
		return []any{t.Topic, t.Partitions, t.ReplicationFactor, t.ID}
	})
}

// ---- topic describe ----

func topicDescribeFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("topic describe") }

type partitionDescribed struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	LogStart    int64   `json:"log_start_offset"`
	LogEnd      int64   `json:"log_end_offset"`
	Size        int64   `json:"size_bytes"` // -1 when the broker does not say
	Error       string  `json:"error,omitempty"`
}

type configDescribed struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

type topicDescribed struct {
	Topic             string               `json:"topic"`
	ID                string               `json:"id"`
	Internal          bool                 `json:"internal,omitempty"`
	ReplicationFactor int                  `json:"replication_factor"`
	Partitions        []partitionDescribed `json:"partitions"`
	Configs           []configDescribed    `json:"configs"`
}

func runTopicDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := topicDescribeFlags()
	topics, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	tds, err := c.adm.ListTopicsWithInternal(rctx, topics...)
	if err != nil {
		return c.fail(fmt.Sprintf("describe topic %q", topics[0]), err)
	}
	for _, t := range topics {
		td, ok := tds[t]
		if !ok {
			return c.fail(fmt.Sprintf("describe topic %q", t), kerr.UnknownTopicOrPartition)
		}
		if td.Err != nil {
			return c.fail(fmt.Sprintf("describe topic %q", t), td.Err)
		}
	}
	// A partition without a leader (offline) fails its own shard only:
	// its offsets show as unknown, the others as they are.
	starts, err := c.adm.ListStartOffsets(rctx, topics...)
	if err != nil && !isShardErrors(err) {
		return c.fail(fmt.Sprintf("list start offsets of %q", topics[0]), err)
	}
	ends, err := c.adm.ListEndOffsets(rctx, topics...)
	if err != nil && !isShardErrors(err) {
		return c.fail(fmt.Sprintf("list end offsets of %q", topics[0]), err)
	}
	sizes := map[string]map[int32]int64{}
	if dirs, err := c.adm.DescribeAllLogDirs(rctx, tds.TopicsSet()); err == nil {
		dirs.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
				if sizes[p.Topic] == nil {
					sizes[p.Topic] = map[int32]int64{}
				}
				sizes[p.Topic][p.Partition] += p.Size
			})
		})
	}
	cfgs, cfgErr := c.adm.DescribeTopicConfigs(rctx, topics...)

	var out []topicDescribed
	for _, t := range topics {
		td := tds[t]
		d := topicDescribed{Topic: t, ID: td.ID.String(), Internal: td.IsInternal, Configs: []configDescribed{}}
		for _, p := range td.Partitions.Sorted() {
			pd := partitionDescribed{
				Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: p.Replicas, ISR: p.ISR, LogStart: -1, LogEnd: -1, Size: -1,
			}
			d.ReplicationFactor = max(d.ReplicationFactor, len(p.Replicas))
			if p.Err != nil {
				pd.Error = p.Err.Error()
			}
			if so, ok := starts.Lookup(t, p.Partition); ok && so.Err == nil {
				pd.LogStart = so.Offset
			}
			if eo, ok := ends.Lookup(t, p.Partition); ok && eo.Err == nil {
				pd.LogEnd = eo.Offset
			}
			if s, ok := sizes[t][p.Partition]; ok {
				pd.Size = s
			}
			d.Partitions = append(d.Partitions, pd)
		}
		if cfgErr == nil {
			if rc, err := cfgs.On(t, nil); err == nil && rc.Err == nil {
				for _, cfg := range rc.Configs {
					if cfg.Source == kmsg.ConfigSourceDefaultConfig || cfg.Source == kmsg.ConfigSourceUnknown {
						continue
					}
					v := cfg.MaybeValue()
					if cfg.Sensitive {
						v = "(sensitive)"
					}
					d.Configs = append(d.Configs, configDescribed{Name: cfg.Key, Value: v, Source: configSourceName(cfg.Source)})
				}
				sort.Slice(d.Configs, func(i, j int) bool { return d.Configs[i].Name < d.Configs[j].Name })
			}
		}
		out = append(out, d)
	}
	if cf.json() {
		return writeJSON(stdout, out)
	}
	for i, d := range out {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "TOPIC %s  ID %s  PARTITIONS %d  REPLICAS %d\n", d.Topic, d.ID, len(d.Partitions), d.ReplicationFactor)
		err = writeTable(stdout, []string{"PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "LOG-END", "SIZE", "STATUS"}, d.Partitions, func(p partitionDescribed) []any {
			size := "-"
			if p.Size >= 0 {
				size = fmtBytes(p.Size)
			}
			return []any{p.Partition, p.Leader, p.LeaderEpoch, joinInt32(p.Replicas), joinInt32(p.ISR), p.LogStart, p.LogEnd, size, partitionStatus(p.Error)}
		})
		if err != nil {
			return err
		}
		if len(d.Configs) == 0 {
			fmt.Fprintln(stdout, "CONFIGS (non-default): none")
			continue
		}
		fmt.Fprintln(stdout, "CONFIGS (non-default):")
		err = writeTable(stdout, []string{"  NAME", "VALUE", "SOURCE"}, d.Configs, func(cfg configDescribed) []any {
			return []any{"  " + cfg.Name, cfg.Value, cfg.Source}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// isShardErrors reports an error of some shards of a request, which
// leaves the answers of the others.
func isShardErrors(err error) bool {
	var se *kadm.ShardErrors
	return errors.As(err, &se)
}

// partitionStatus is the STATUS column of topic describe: "online", or
// the partition's error; KAFKA_STORAGE_ERROR marks a partition the broker
// could not open at start (offline; its log says why).
func partitionStatus(errText string) string {
	switch {
	case errText == "":
		return "online"
	case strings.HasPrefix(errText, kerr.KafkaStorageError.Message):
		return "offline (" + kerr.KafkaStorageError.Message + ")"
	}
	return errText
}

func configSourceName(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "topic"
	case kmsg.ConfigSourceDynamicBrokerConfig:
		return "dynamic-broker"
	case kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "dynamic-default-broker"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "static-broker"
	case kmsg.ConfigSourceDefaultConfig:
		return "default"
	}
	return s.String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// intOrDash formats n, or "-" when it is negative (an offset or lag that is
// unknown or does not exist).
func intOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// errorText is a Kafka error plus the broker's message, if any.
func errorText(err error, msg string) string {
	if msg != "" && msg != err.Error() {
		return err.Error() + " (" + msg + ")"
	}
	return err.Error()
}

// withMessage adds the broker's error message to err, keeping errors.Is.
func withMessage(err error, msg string) error {
	if msg == "" || err == nil {
		return err
	}
	return fmt.Errorf("%w (%s)", err, msg)
}

// ---- topic delete ----

func topicDeleteFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("topic delete") }

type topicResult struct {
	Topic  string `json:"topic"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func runTopicDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := topicDeleteFlags()
	topics, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	resps, err := c.adm.DeleteTopics(rctx, topics...)
	if err != nil {
		return c.fail(fmt.Sprintf("delete topic %q", topics[0]), err)
	}
	var out []topicResult
	var errs []error
	for _, t := range topics {
		r, ok := resps[t]
		if !ok {
			r.Err = kerr.UnknownTopicOrPartition
		}
		row := topicResult{Topic: t, Status: "deleted"}
		if r.Err != nil {
			row.Status, row.Error = "failed", errorText(r.Err, r.ErrMessage)
			errs = append(errs, c.fail(fmt.Sprintf("delete topic %q", t), withMessage(r.Err, r.ErrMessage)))
		}
		out = append(out, row)
	}
	err = writeRows(stdout, cf, out, []string{"TOPIC", "STATUS"}, func(r topicResult) []any {
		return []any{r.Topic, cmpOr(r.Error, r.Status)}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// ---- topic alter-config ----

type topicAlterConfigOpts struct {
	client *clientFlags
	set    kvFlag
	delete listFlag
}

func topicAlterConfigFlags() (*flag.FlagSet, *topicAlterConfigOpts) {
	fs := newFlagSet("topic alter-config")
	o := &topicAlterConfigOpts{client: addClientFlags(fs)}
	fs.Var(&o.set, "set", "set config `key=value` (repeatable)")
	fs.Var(&o.delete, "delete", "reset config `key` to its default (repeatable)")
	return fs, o
}

type configAltered struct {
	Topic  string `json:"topic"`
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Action string `json:"action"`
}

func runTopicAlterConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := topicAlterConfigFlags()
	topics, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	if len(o.set.pairs) == 0 && len(o.delete) == 0 {
		return usageError("topic alter-config: give -set key=value or -delete key")
	}
	var alters []kadm.AlterConfig
	for _, kv := range o.set.pairs {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[0], Value: &kv[1]})
	}
	for _, k := range o.delete {
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	c, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	resps, err := c.adm.AlterTopicConfigs(rctx, alters, topics...)
	if err != nil {
		return c.fail(fmt.Sprintf("alter configs of topic %q", topics[0]), err)
	}
	var errs []error
	failed := map[string]bool{}
	for _, r := range resps {
		if r.Err != nil {
			failed[r.Name] = true
			errs = append(errs, c.fail(fmt.Sprintf("alter configs of topic %q", r.Name), withMessage(r.Err, r.ErrMessage)))
		}
	}
	var out []configAltered
	for _, t := range topics {
		if failed[t] {
			continue
		}
		for _, a := range alters {
			row := configAltered{Topic: t, Name: a.Name, Action: "set"}
			if a.Op == kadm.DeleteConfig {
				row.Action = "reset to default"
			} else {
				row.Value = *a.Value
			}
			out = append(out, row)
		}
	}
	// With nothing altered, JSON is [] and a table is not printed at all.
	if out == nil {
		out = []configAltered{}
	}
	if o.client.json() || len(out) > 0 {
		err = writeRows(stdout, o.client, out, []string{"TOPIC", "CONFIG", "VALUE", "ACTION"}, func(r configAltered) []any {
			return []any{r.Topic, r.Name, dash(r.Value), r.Action}
		})
		if err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// ---- topic add-partitions ----

type topicAddPartitionsOpts struct {
	client *clientFlags
	count  int
	add    int
}

func topicAddPartitionsFlags() (*flag.FlagSet, *topicAddPartitionsOpts) {
	fs := newFlagSet("topic add-partitions")
	o := &topicAddPartitionsOpts{client: addClientFlags(fs)}
	fs.IntVar(&o.count, "count", 0, "total number of partitions wanted")
	fs.IntVar(&o.add, "add", 0, "number of partitions to add")
	return fs, o
}

type partitionsAdded struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	Error      string `json:"error,omitempty"`
}

func runTopicAddPartitions(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := topicAddPartitionsFlags()
	topics, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	if (o.count > 0) == (o.add > 0) {
		return usageError("topic add-partitions: give exactly one of -count N (total) or -add N")
	}
	c, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	var resps kadm.CreatePartitionsResponses
	if o.count > 0 {
		resps, err = c.adm.UpdatePartitions(rctx, o.count, topics...)
	} else {
		resps, err = c.adm.CreatePartitions(rctx, o.add, topics...)
	}
	if err != nil {
		return c.fail(fmt.Sprintf("add partitions to topic %q", topics[0]), err)
	}
	var out []partitionsAdded
	var errs []error
	for _, t := range topics {
		r, ok := resps[t]
		if !ok {
			r.Err = kerr.UnknownTopicOrPartition
		}
		row := partitionsAdded{Topic: t, Partitions: o.count}
		if r.Err != nil {
			row.Error = errorText(r.Err, r.ErrMessage)
			errs = append(errs, c.fail(fmt.Sprintf("add partitions to topic %q", t), withMessage(r.Err, r.ErrMessage)))
		}
		out = append(out, row)
	}
	// Report the partition counts the brokers now have.
	if tds, err := c.adm.ListTopicsWithInternal(rctx, topics...); err == nil {
		for i := range out {
			if td, ok := tds[out[i].Topic]; ok && td.Err == nil {
				out[i].Partitions = len(td.Partitions)
			}
		}
	}
	err = writeRows(stdout, o.client, out, []string{"TOPIC", "PARTITIONS", "STATUS"}, func(r partitionsAdded) []any {
		return []any{r.Topic, r.Partitions, cmpOr(r.Error, "ok")}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[int32]V) []int32 {
	ks := make([]int32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
