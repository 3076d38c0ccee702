package server

import (
	"errors"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/meta"
)

// DescribeLogDirs, v0-v5: the data directory with the size of each
// partition this broker holds a replica of (null topics: every topic),
// and (v4+) the file system's total and usable bytes.

func init() { regKey(35, 0, 5, handleDescribeLogDirs) }

func handleDescribeLogDirs(s *Server, r *request) kmsg.Response {
	req := r.kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	if !r.allowedCluster(auth.OpDescribe) {
		// v3+ says why; before, the answer is empty, as Kafka's.
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	dir := kmsg.NewDescribeLogDirsResponseDir()
	abs, err := filepath.Abs(s.cfg.DataDir)
	if err != nil {
		abs = s.cfg.DataDir
	}
	dir.Dir = abs
	dir.TotalBytes, dir.UsableBytes = diskSpace(s.cfg.DataDir)
	add := func(t *meta.Topic, parts []int32) {
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = t.Name()
		for _, pi := range parts {
			p, err := t.Partition(pi)
			if errors.Is(err, meta.ErrUnknownTopicOrPartition) || errors.Is(err, meta.ErrNotReplica) {
				continue
			}
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition = pi
			dp.Size = -1 // offline: its size is not known
			if err == nil {
				dp.Size = p.Size()
			}
			dt.Partitions = append(dt.Partitions, dp)
		}
		dir.Topics = append(dir.Topics, dt)
	}
	if req.Topics == nil {
		for _, t := range s.meta.Topics() {
			ps := make([]int32, t.NumPartitions())
			for i := range ps {
				ps[i] = int32(i)
			}
			add(t, ps)
		}
	} else {
		for _, rt := range req.Topics {
			if t := s.meta.Topic(rt.Topic); t != nil {
				add(t, rt.Partitions)
			}
		}
	}
	resp.Dirs = []kmsg.DescribeLogDirsResponseDir{dir}
	return resp
}
