package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func clusterInfoFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("cluster info") }

type brokerInfo struct {
	NodeID int32  `json:"node_id"`
	Host   string `json:"host"`
	Port   int32  `json:"port"`
	Rack   string `json:"rack,omitempty"`
}

type apiVersion struct {
	Key  int16  `json:"key"`
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

type clusterInfo struct {
	ClusterID   string                 `json:"cluster_id"`
	Controller  int32                  `json:"controller"`
	Brokers     []brokerInfo           `json:"brokers"`
	APIVersions map[int32][]apiVersion `json:"api_versions"`
}

func runClusterInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := clusterInfoFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	md, err := c.adm.BrokerMetadata(rctx)
	if err != nil {
		return c.fail("cluster info", err)
	}
	info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, APIVersions: map[int32][]apiVersion{}}
	for _, b := range md.Brokers {
		bi := brokerInfo{NodeID: b.NodeID, Host: b.Host, Port: b.Port}
		if b.Rack != nil {
			bi.Rack = *b.Rack
		}
		info.Brokers = append(info.Brokers, bi)
	}
	sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].NodeID < info.Brokers[j].NodeID })
	versions, err := c.adm.ApiVersions(rctx)
	if err != nil {
		return c.fail("cluster info: API versions", err)
	}
	for id, v := range versions {
		if v.Err != nil {
			return c.fail(fmt.Sprintf("cluster info: API versions of broker %d", id), v.Err)
		}
		list := []apiVersion{}
		v.EachKeySorted(func(key, min, max int16) {
			list = append(list, apiVersion{Key: key, Name: apiName(key), Min: min, Max: max})
		})
		info.APIVersions[id] = list
	}
	if cf.json() {
		return writeJSON(stdout, info)
	}
	fmt.Fprintf(stdout, "CLUSTER-ID %s  CONTROLLER %d\n\n", info.ClusterID, info.Controller)
	err = writeTable(stdout, []string{"BROKER", "HOST", "PORT", "RACK"}, info.Brokers, func(b brokerInfo) []any {
		return []any{b.NodeID, b.Host, b.Port, dash(b.Rack)}
	})
	if err != nil {
		return err
	}
	ids := make([]int32, 0, len(info.APIVersions))
	for id := range info.APIVersions {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		fmt.Fprintf(stdout, "\nAPI VERSIONS of broker %d\n", id)
		err = writeTable(stdout, []string{"KEY", "NAME", "MIN", "MAX"}, info.APIVersions[id], func(v apiVersion) []any {
			return []any{v.Key, v.Name, v.Min, v.Max}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "" {
		return n
	}
	return "unknown"
}

// ---- cluster quorum ----

func clusterQuorumFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("cluster quorum") }

// quorumMember is one voter or observer of the metadata quorum, as
// `kafka-metadata-quorum describe --replication` shows it.
type quorumMember struct {
	NodeID int32 `json:"node_id"`
	// Role is Leader, Follower (a voter) or Observer (a broker-only
	// node, a raft learner).
	Role         string `json:"role"`
	LogEndOffset int64  `json:"log_end_offset"`
	// Lag is how many entries its log is behind the leader's.
	Lag int64 `json:"lag"`
	// LastFetchMs and LastCaughtUpMs are the leader's Unix milliseconds
	// of its last contact with the member and of the last time its log
	// reached the leader's end; -1 unknown.
	LastFetchMs    int64 `json:"last_fetch_ms"`
	LastCaughtUpMs int64 `json:"last_caught_up_ms"`
}

// quorumStatus is the metadata quorum, as `kafka-metadata-quorum describe
// --status` shows it, with its members.
type quorumStatus struct {
	LeaderID      int32 `json:"leader_id"`
	LeaderEpoch   int32 `json:"leader_epoch"`
	HighWatermark int64 `json:"high_watermark"`
	// MaxFollowerLag is the largest lag of a voter; MaxFollowerLagMs how
	// long ago that voter was last caught up, by the leader's clock.
	MaxFollowerLag   int64          `json:"max_follower_lag"`
	MaxFollowerLagMs int64          `json:"max_follower_lag_ms"`
	Members          []quorumMember `json:"members"`
}

func runClusterQuorum(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := clusterQuorumFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = append(rt.Partitions, kmsg.NewDescribeQuorumRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(rctx, c.cl)
	if err != nil {
		return c.fail("cluster quorum", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return c.fail("cluster quorum", withMessage(err, deref(resp.ErrorMessage)))
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return c.fail("cluster quorum", errors.New("the answer does not describe the metadata log"))
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return c.fail("cluster quorum", withMessage(err, deref(p.ErrorMessage)))
	}
	st := describeQuorumStatus(p)
	if cf.json() {
		return writeJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "LEADER %d  EPOCH %d  HIGH-WATERMARK %d  MAX-FOLLOWER-LAG %d  MAX-FOLLOWER-LAG-MS %d\n\n",
		st.LeaderID, st.LeaderEpoch, st.HighWatermark, st.MaxFollowerLag, st.MaxFollowerLagMs)
	now := time.Now().UnixMilli()
	ago := func(ms int64) string {
		if ms < 0 {
			return "-"
		}
		return fmt.Sprintf("%d ms ago", max(now-ms, 0))
	}
	return writeTable(stdout, []string{"NODE", "ROLE", "LOG-END-OFFSET", "LAG", "LAST-FETCH", "LAST-CAUGHT-UP"}, st.Members, func(m quorumMember) []any {
		return []any{m.NodeID, m.Role, m.LogEndOffset, m.Lag, ago(m.LastFetchMs), ago(m.LastCaughtUpMs)}
	})
}

// describeQuorumStatus turns DescribeQuorum's answer into what `ferry
// cluster quorum` prints: the leader first, then the other voters, then
// the observers.
func describeQuorumStatus(p kmsg.DescribeQuorumResponseTopicPartition) quorumStatus {
	st := quorumStatus{LeaderID: p.LeaderID, LeaderEpoch: p.LeaderEpoch, HighWatermark: p.HighWatermark}
	leaderEnd, leaderCaughtUp := p.HighWatermark, int64(-1)
	for _, r := range p.CurrentVoters {
		if r.ReplicaID == p.LeaderID {
			leaderEnd, leaderCaughtUp = r.LogEndOffset, r.LastCaughtUpTimestamp
		}
	}
	add := func(r kmsg.DescribeQuorumResponseTopicPartitionReplicaState, role string) {
		st.Members = append(st.Members, quorumMember{NodeID: r.ReplicaID, Role: role, LogEndOffset: r.LogEndOffset, Lag: max(leaderEnd-r.LogEndOffset, 0),
			LastFetchMs: r.LastFetchTimestamp, LastCaughtUpMs: r.LastCaughtUpTimestamp})
	}
	for _, r := range p.CurrentVoters {
		if r.ReplicaID == p.LeaderID {
			add(r, "Leader")
		}
	}
	for _, r := range p.CurrentVoters {
		if r.ReplicaID == p.LeaderID {
			continue
		}
		add(r, "Follower")
		if lag := max(leaderEnd-r.LogEndOffset, 0); lag > st.MaxFollowerLag {
			st.MaxFollowerLag = lag
		}
		if leaderCaughtUp >= 0 && r.LastCaughtUpTimestamp >= 0 {
			st.MaxFollowerLagMs = max(st.MaxFollowerLagMs, leaderCaughtUp-r.LastCaughtUpTimestamp)
		}
	}
	for _, r := range p.Observers {
		add(r, "Observer")
	}
	return st
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ---- cluster unregister ----

func clusterUnregisterFlags() (*flag.FlagSet, *clientFlags) {
	return clientFlagSet("cluster unregister")
}

func runClusterUnregister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := clusterUnregisterFlags()
	pos, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	if len(pos) != 1 {
		return usageError("cluster unregister: give one broker id")
	}
	id, err := strconv.ParseInt(pos[0], 10, 32)
	if err != nil || id < 0 {
		return usageError("cluster unregister: %q is not a broker id", pos[0])
	}
	req := kmsg.NewPtrUnregisterBrokerRequest()
	req.BrokerID = int32(id)
	resp, err := req.RequestWith(rctx, c.cl)
	what := fmt.Sprintf("cluster unregister %d", id)
	if err != nil {
		return c.fail(what, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return c.fail(what, withMessage(err, deref(resp.ErrorMessage)))
	}
	if cf.json() {
		return writeJSON(stdout, map[string]any{"broker": id, "status": "unregistered"})
	}
	fmt.Fprintf(stdout, "broker %d unregistered\n", id)
	return nil
}

// ---- cluster add-voter / remove-voter ----

// addVoterOpts are the flags of cluster add-voter.
type addVoterOpts struct {
	client *clientFlags
	// controller is the new voter's controller listener, HOST:PORT.
	controller string
}

func clusterAddVoterFlags() (*flag.FlagSet, *addVoterOpts) {
	fs := newFlagSet("cluster add-voter")
	o := &addVoterOpts{client: addClientFlags(fs)}
	fs.StringVar(&o.controller, "controller", "", "the new voter's controller listener, HOST:PORT (required)")
	return fs, o
}

func clusterRemoveVoterFlags() (*flag.FlagSet, *clientFlags) {
	return clientFlagSet("cluster remove-voter")
}

// runClusterAddVoter makes a controller that joined the metadata log as
// a learner a voter (AddRaftVoter), with -controller, its controller
// listener, as its address.
func runClusterAddVoter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := clusterAddVoterFlags()
	pos, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	cf := o.client
	id, err := strconv.ParseInt(pos[0], 10, 32)
	if err != nil || id < 0 {
		return usageError("cluster add-voter: %q is not a node id", pos[0])
	}
	host, port, err := net.SplitHostPort(o.controller)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || host == "" || p == 0 {
		return usageError("cluster add-voter: -controller %q is not HOST:PORT", o.controller)
	}
	c, rctx, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	req := kmsg.NewPtrAddRaftVoterRequest()
	req.VoterID = int32(id)
	req.TimeoutMillis = int32(cf.timeout / time.Millisecond)
	l := kmsg.NewAddRaftVoterRequestListener()
	l.Name, l.Host, l.Port = "CONTROLLER", host, uint16(p)
	req.Listeners = append(req.Listeners, l)
	resp, err := req.RequestWith(rctx, c.cl)
	what := fmt.Sprintf("cluster add-voter %d", id)
	if err != nil {
		return c.fail(what, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return c.fail(what, withMessage(err, deref(resp.ErrorMessage)))
	}
	if cf.json() {
		return writeJSON(stdout, map[string]any{"node": id, "controller": o.controller, "status": "voter"})
	}
	fmt.Fprintf(stdout, "node %d is a voter (controller listener %s)\n", id, o.controller)
	return nil
}

// runClusterRemoveVoter takes a voter out of the metadata quorum
// (RemoveRaftVoter).
func runClusterRemoveVoter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := clusterRemoveVoterFlags()
	pos, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	if len(pos) != 1 {
		return usageError("cluster remove-voter: give one node id")
	}
	id, err := strconv.ParseInt(pos[0], 10, 32)
	if err != nil || id < 0 {
		return usageError("cluster remove-voter: %q is not a node id", pos[0])
	}
	req := kmsg.NewPtrRemoveRaftVoterRequest()
	req.VoterID = int32(id)
	resp, err := req.RequestWith(rctx, c.cl)
	what := fmt.Sprintf("cluster remove-voter %d", id)
	if err != nil {
		return c.fail(what, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return c.fail(what, withMessage(err, deref(resp.ErrorMessage)))
	}
	if cf.json() {
		return writeJSON(stdout, map[string]any{"node": id, "status": "removed"})
	}
	fmt.Fprintf(stdout, "node %d is no longer a voter\n", id)
	return nil
}
