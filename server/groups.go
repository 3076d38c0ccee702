package server

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/group"
	"github.com/ferrymq/ferry/record"
)

// The consumer-group coordinator lives in package group; this file wires
// it to the broker: its Store is the __consumer_offsets topic, and the
// group APIs hand their requests to it. Every group call may block (a
// JoinGroup waits for the rebalance), so each runs in r.await and is
// cancelled when the connection goes away.

// startGroups creates the coordinator, which replays __consumer_offsets.
func (s *Server) startGroups() error {
	bs := s.settings()
	ms := func(name string) time.Duration { return time.Duration(bs.int64(name)) * time.Millisecond }
	delay := ms("group.initial.rebalance.delay.ms")
	if delay == 0 {
		delay = -1 // the coordinator reads 0 as "default"; Kafka's 0 means none
	}
	t := s.topics.get(offsetsTopic)
	c, err := group.New(group.Config{
		Store:                         &offsetsStore{s: s, t: t},
		Topics:                        s.groupTopics,
		Logger:                        s.logger,
		NodeID:                        s.cfg.NodeID,
		OffsetsTopicPartitions:        int32(len(t.partitions())),
		MinSessionTimeout:             ms("group.min.session.timeout.ms"),
		MaxSessionTimeout:             ms("group.max.session.timeout.ms"),
		InitialRebalanceDelay:         delay,
		OffsetsRetention:              time.Duration(bs.int64("offsets.retention.minutes")) * time.Minute,
		OffsetsRetentionCheckInterval: ms("offsets.retention.check.interval.ms"),
		ConsumerSessionTimeout:        ms("group.consumer.session.timeout.ms"),
		ConsumerHeartbeatInterval:     ms("group.consumer.heartbeat.interval.ms"),
	})
	if err != nil {
		return fmt.Errorf("server: start group coordinator: %w", err)
	}
	s.groups = c
	return nil
}

func (s *Server) stopGroups() error {
	if s.groups == nil {
		return nil
	}
	return s.groups.Close()
}

// topicsChanged tells the coordinator that topics were created, grown or
// deleted (KIP-848 regex subscriptions and assignments follow them).
func (s *Server) topicsChanged() {
	if s.groups != nil {
		s.groups.TopicsChanged()
	}
}

func (s *Server) groupTopics() map[string]group.TopicInfo {
	s.topics.mu.RLock()
	defer s.topics.mu.RUnlock()
	m := make(map[string]group.TopicInfo, len(s.topics.byName))
	for name, t := range s.topics.byName {
		m[name] = group.TopicInfo{ID: t.id, Partitions: int32(len(t.partitions()))}
	}
	return m
}

// offsetsStore keeps coordinator records in __consumer_offsets. Records
// are written as uncompressed batches, fsynced before Append returns.
type offsetsStore struct {
	s *Server
	t *topic
}

// Append writes recs as one batch (all or nothing, as the coordinator
// expects) and fsyncs it. __consumer_offsets takes batches up to 10 MiB.
func (o *offsetsStore) Append(p int32, recs []group.Record) (int64, error) {
	part := o.t.partition(p)
	if part == nil {
		return 0, fmt.Errorf("server: %s has no partition %d", offsetsTopic, p)
	}
	if len(recs) == 0 {
		return part.HighWatermark(), nil
	}
	res, err := part.Append(storeBatch(recs))
	if err != nil {
		return 0, err
	}
	return res.BaseOffset, part.Sync()
}

func storeBatch(recs []group.Record) []byte {
	rs := make([]record.Record, len(recs))
	for i, r := range recs {
		rs[i] = record.Record{Key: r.Key, Value: r.Value}
	}
	return record.AppendBatch(nil, record.Batch{
		BaseTimestamp: time.Now().UnixMilli(),
		ProducerID:    -1, ProducerEpoch: -1, BaseSequence: -1,
		Records: rs,
	})
}

// maxSnapshotBatch bounds each batch of a snapshot, which may hold every
// live offset of a partition and is written in as many batches as needed:
// the log start moves past the old records only once all are durable.
const maxSnapshotBatch = 1 << 20

func (o *offsetsStore) Replay(p int32, fn func(offset int64, r group.Record) error) error {
	part := o.t.partition(p)
	if part == nil {
		return fmt.Errorf("server: %s has no partition %d", offsetsTopic, p)
	}
	var ferr error
	err := part.Log().Walk(part.LogStartOffset(), func(batch []byte, h *record.Header) bool {
		ferr = record.ForEach(batch, func(r *record.Record) error {
			off := h.BaseOffset + int64(r.OffsetDelta)
			if off < part.LogStartOffset() {
				return nil
			}
			return fn(off, group.Record{Key: r.Key, Value: r.Value})
		})
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

func (o *offsetsStore) Snapshot(p int32, recs []group.Record) error {
	part := o.t.partition(p)
	if part == nil {
		return fmt.Errorf("server: %s has no partition %d", offsetsTopic, p)
	}
	start := int64(-1)
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size+len(recs[n].Key)+len(recs[n].Value)+32 < maxSnapshotBatch) {
			size += len(recs[n].Key) + len(recs[n].Value) + 32
			n++
		}
		res, err := part.Append(storeBatch(recs[:n]))
		if err != nil {
			return err
		}
		if start < 0 {
			start = res.BaseOffset
		}
		recs = recs[n:]
	}
	if err := part.Sync(); err != nil {
		return err
	}
	if start < 0 {
		start = part.HighWatermark()
	}
	_, err := part.DeleteRecords(start)
	return err
}

// groupCall runs a coordinator call off the reader goroutine.
func groupCall[Req kmsg.Request, Resp kmsg.Response](s *Server, r *request, fn func(context.Context, Req) Resp) kmsg.Response {
	req := r.kreq.(Req)
	ctx := group.WithClientInfo(r.c.ctx, group.ClientInfo{ClientID: r.clientID, Host: "/" + r.c.remoteIP()})
	r.await(func() kmsg.Response { return fn(ctx, req) })
	return nil
}

func init() {
	regKey(8, 0, 10, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.OffsetCommit) })
	regKey(9, 0, 10, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.OffsetFetch) })
	regKey(10, 0, 6, handleFindCoordinator)
	regKey(11, 0, 9, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.JoinGroup) })
	regKey(12, 0, 4, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.Heartbeat) })
	regKey(13, 0, 5, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.LeaveGroup) })
	regKey(14, 0, 5, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.SyncGroup) })
	regKey(15, 0, 6, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.DescribeGroups) })
	regKey(16, 0, 5, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.ListGroups) })
	regKey(42, 0, 3, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.DeleteGroups) })
	regKey(47, 0, 0, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.OffsetDelete) })
	regKey(68, 0, 1, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.ConsumerGroupHeartbeat) })
	regKey(69, 0, 1, func(s *Server, r *request) kmsg.Response { return groupCall(s, r, s.groups.ConsumerGroupDescribe) })
}

// FindCoordinator, v0-v6. This broker coordinates every group; v4+
// batches keys. Transaction coordinators (key type 1) do not exist yet:
// COORDINATOR_NOT_AVAILABLE.
func handleFindCoordinator(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := s.brokerHostPort()
	answer := func(key string) (int32, string, int32, int16, *string) {
		if req.CoordinatorType != 0 {
			msg := "transaction coordinators are not supported yet"
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, &msg
		}
		if key == "" && r.version < 4 {
			// Kafka answers an empty group id with INVALID_REQUEST.
			msg := "group id is empty"
			return -1, "", -1, kerr.InvalidRequest.Code, &msg
		}
		return s.cfg.NodeID, host, port, 0, nil
	}
	if r.version >= 4 {
		for _, k := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = k
			c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = answer(k)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
	return resp
}
