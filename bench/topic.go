package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// adminClient opens a kgo client for admin requests against cfg.Brokers.
func adminClient(cfg Config) (*kgo.Client, *kadm.Client, error) {
	opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: client for %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	return cl, kadm.NewClient(cl), nil
}

// topicSetup is the topic of a run: created by it or found.
type topicSetup struct {
	cl         *kgo.Client
	adm        *kadm.Client
	cfg        Config
	created    bool
	partitions int
}

// setupTopic makes sure cfg.Topic exists, creating it with cfg.Partitions
// partitions when it does not.
func setupTopic(ctx context.Context, cfg Config) (*topicSetup, error) {
	cl, adm, err := adminClient(cfg)
	if err != nil {
		return nil, err
	}
	ts := &topicSetup{cl: cl, adm: adm, cfg: cfg}
	where := fmt.Sprintf("topic %q on %s", cfg.Topic, strings.Join(cfg.Brokers, ","))
	n, err := topicPartitions(ctx, cl, cfg.Topic)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("bench: metadata for %s: %w", where, err)
	}
	if n > 0 {
		ts.partitions = n
		return ts, nil
	}
	resp, err := adm.CreateTopic(ctx, int32(cfg.Partitions), -1, nil, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		ts.created = true
		cfg.Logger.Info("created topic", "topic", cfg.Topic, "partitions", cfg.Partitions)
	case errors.Is(err, kerr.TopicAlreadyExists):
	default:
		cl.Close()
		return nil, fmt.Errorf("bench: create %s: %w", where, err)
	}
	ts.partitions = cfg.Partitions
	// Wait until the topic shows in metadata with its leaders.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := topicPartitions(ctx, cl, cfg.Topic)
		if err == nil && n > 0 {
			ts.partitions = n
			return ts, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			ts.close(context.Background())
			return nil, fmt.Errorf("bench: %s created but not ready: %v", where, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// topicPartitions asks a broker (bypassing kgo's metadata cache) how many
// partitions topic has. It returns 0 while the topic is missing or any
// partition has no leader yet.
func topicPartitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable) {
				return 0, nil
			}
			return 0, err
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || p.ErrorCode != 0 {
				return 0, nil
			}
		}
		return len(t.Partitions), nil
	}
	return 0, nil
}

// require fails with ErrUnsupported unless the broker serves every one of
// keys (API keys: 1 Fetch, 10 FindCoordinator, 11 JoinGroup, ...).
func (ts *topicSetup) require(ctx context.Context, what string, keys ...int16) error {
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, ts.cl)
	if err != nil {
		return fmt.Errorf("bench: ApiVersions from %s: %w", strings.Join(ts.cfg.Brokers, ","), err)
	}
	have := map[int16]bool{}
	for _, k := range resp.ApiKeys {
		have[k.ApiKey] = true
	}
	for _, k := range keys {
		if !have[k] {
			return fmt.Errorf("%w: %s needs %s, which %s does not serve", ErrUnsupported, what, kmsg.NameForKey(k), strings.Join(ts.cfg.Brokers, ","))
		}
	}
	return nil
}

// close deletes the topic when this run created it (unless Keep) and closes
// the admin client.
func (ts *topicSetup) close(ctx context.Context) error {
	defer ts.cl.Close()
	if !ts.created || ts.cfg.Keep {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	resp, err := ts.adm.DeleteTopic(ctx, ts.cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("bench: delete topic %q: %w", ts.cfg.Topic, err)
	}
	return nil
}

// offsets lists the start and end offset of every partition.
func (ts *topicSetup) offsets(ctx context.Context) (start, end map[int32]int64, err error) {
	so, err := ts.adm.ListStartOffsets(ctx, ts.cfg.Topic)
	if err == nil {
		err = so.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bench: start offsets of %q: %w", ts.cfg.Topic, err)
	}
	eo, err := ts.adm.ListEndOffsets(ctx, ts.cfg.Topic)
	if err == nil {
		err = eo.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bench: end offsets of %q: %w", ts.cfg.Topic, err)
	}
	start, end = map[int32]int64{}, map[int32]int64{}
	so.Each(func(o kadm.ListedOffset) { start[o.Partition] = o.Offset })
	eo.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return start, end, nil
}

// deleteGroup removes a consumer group this run made up, best effort.
func (ts *topicSetup) deleteGroup(ctx context.Context, group string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := ts.adm.DeleteGroup(ctx, group); err != nil {
		ts.cfg.Logger.Debug("delete bench group", "group", group, "err", err)
	}
}
