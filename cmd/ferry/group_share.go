package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share groups (KIP-932) in `ferry group`: describe shows their members
// and assignments and, per partition, the start offset (below it every
// record is done with), the log end and the lag (records from the start
// offset to the log end not yet acknowledged); reset-offsets moves the
// start offset of an empty group; alter-config sets their configs.

// shareOffset is one partition of a share group.
type shareOffset struct {
	Topic       string   `json:"topic"`
	Partition   int32    `json:"partition"`
	StartOffset int64    `json:"start_offset"` // -1: not started
	LogEnd      int64    `json:"log_end"`
	Lag         int64    `json:"lag"` // -1: unknown
	Members     []string `json:"members,omitempty"`
}

// shareGroups returns the groups the brokers list as share groups.
func (c *conn) shareGroups(ctx context.Context) map[string]bool {
	listed, _ := c.adm.ListGroupsByType(ctx, []string{"share"})
	out := map[string]bool{}
	for _, g := range listed {
		if g.GroupType == "share" {
			out[g.Group] = true
		}
	}
	return out
}

// describeShare describes a share group: members and assignments from
// ShareGroupDescribe, start offsets and lag from DescribeShareGroupOffsets,
// log ends from ListOffsets. A group that does not exist is
// kerr.GroupIDNotFound.
func (c *conn) describeShare(ctx context.Context, g string) (groupDescribed, error) {
	described, err := c.adm.DescribeShareGroups(ctx, g)
	if err != nil {
		return groupDescribed{}, err
	}
	dg, ok := described[g]
	if !ok {
		return groupDescribed{}, kerr.GroupIDNotFound
	}
	if dg.Err != nil {
		return groupDescribed{}, dg.Err
	}
	d := groupDescribed{
		Group: g, State: dg.GroupState, Type: "share", ProtocolType: "share", Protocol: dg.Assignor,
		Coordinator: dg.Coordinator.NodeID, Members: []groupMember{}, Offsets: []groupOffset{}, ShareOffsets: []shareOffset{},
	}
	owners := map[string]map[int32][]string{}
	for _, m := range dg.Members {
		gm := groupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: []string{}}
		for _, tp := range m.Assignment.Sorted() {
			gm.Assigned = append(gm.Assigned, tp.Topic+":"+joinInt32(tp.Partitions))
			if owners[tp.Topic] == nil {
				owners[tp.Topic] = map[int32][]string{}
			}
			for _, p := range tp.Partitions {
				owners[tp.Topic][p] = append(owners[tp.Topic][p], m.MemberID)
			}
		}
		d.Members = append(d.Members, gm)
	}
	offs, err := c.adm.DescribeShareGroupOffsets(ctx, g)
	if err != nil {
		return groupDescribed{}, err
	}
	so := offs[g]
	if so.Err != nil && !errors.Is(so.Err, kerr.GroupIDNotFound) {
		return groupDescribed{}, so.Err
	}
	topics := kadm.TopicsSet{}
	for t, ps := range so.Offsets {
		for p := range ps {
			topics.Add(t, p)
		}
	}
	for t, ps := range owners {
		for p := range ps {
			topics.Add(t, p)
		}
	}
	var ends kadm.ListedOffsets
	if ts := topics.Topics(); len(ts) > 0 {
		if ends, err = c.adm.ListEndOffsets(ctx, ts...); err != nil && !isShardErr(err) {
			return groupDescribed{}, err
		}
	}
	for _, tp := range topics.Sorted() {
		for _, p := range tp.Partitions {
			row := shareOffset{Topic: tp.Topic, Partition: p, StartOffset: -1, LogEnd: -1, Lag: -1, Members: owners[tp.Topic][p]}
			if o, ok := so.Offsets.Lookup(tp.Topic, p); ok && o.Err == nil {
				row.StartOffset, row.Lag = o.StartOffset, o.Lag
			}
			if e, ok := ends.Lookup(tp.Topic, p); ok && e.Err == nil {
				row.LogEnd = e.Offset
			}
			if row.Lag > 0 {
				d.TotalLag += row.Lag
			}
			d.ShareOffsets = append(d.ShareOffsets, row)
		}
	}
	return d, nil
}

// writeShareOffsets prints the partitions of a share group.
func writeShareOffsets(w io.Writer, rows []shareOffset) error {
	return writeTable(w, []string{"TOPIC", "PARTITION", "START-OFFSET", "LOG-END", "LAG", "MEMBERS"}, rows, func(o shareOffset) []any {
		return []any{o.Topic, o.Partition, intOrDash(o.StartOffset), intOrDash(o.LogEnd), intOrDash(o.Lag), dash(strings.Join(o.Members, ","))}
	})
}

// resetShareOffsets is `ferry group reset-offsets` for a share group: the
// start offset of each chosen partition moves (AlterShareGroupOffsets),
// dropping what is in flight; the group must have no members.
func (c *conn) resetShareOffsets(ctx context.Context, group string, o *groupResetOpts, stdout, stderr io.Writer) error {
	what := fmt.Sprintf("reset offsets of share group %q", group)
	described, err := c.adm.DescribeShareGroups(ctx, group)
	if err != nil {
		return c.fail(what, err)
	}
	if dg, ok := described[group]; ok && dg.Err == nil && len(dg.Members) > 0 {
		return c.fail(what, fmt.Errorf("the group has %d active member(s); stop its consumers first (offsets can only be reset while the group is inactive): %w",
			len(dg.Members), kerr.NonEmptyGroup))
	}
	offs, err := c.adm.DescribeShareGroupOffsets(ctx, group)
	if err != nil {
		return c.fail(what, err)
	}
	current := kadm.OffsetResponses{}
	for t, ps := range offs[group].Offsets {
		for p, so := range ps {
			if so.Err == nil && so.StartOffset >= 0 {
				if current[t] == nil {
					current[t] = map[int32]kadm.OffsetResponse{}
				}
				current[t][p] = kadm.OffsetResponse{Offset: kadm.Offset{Topic: t, Partition: p, At: so.StartOffset}}
			}
		}
	}
	if len(o.chosen) == 0 {
		for t := range current {
			o.chosen[t] = nil
		}
	}
	if len(o.chosen) == 0 {
		return usageError("group reset-offsets: share group %q has no start offsets yet; name the topics with -topic", group)
	}
	topics := slices.Sorted(maps.Keys(o.chosen))
	tds, err := c.adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return c.fail(what, err)
	}
	for _, t := range topics {
		td, ok := tds[t]
		if !ok {
			return c.fail(fmt.Sprintf("%s: topic %q", what, t), kerr.UnknownTopicOrPartition)
		}
		if td.Err != nil {
			return c.fail(fmt.Sprintf("%s: topic %q", what, t), td.Err)
		}
		if o.chosen[t] == nil {
			o.chosen[t] = td.Partitions.Numbers()
		}
		for _, p := range o.chosen[t] {
			if _, ok := td.Partitions[p]; !ok {
				return c.fail(fmt.Sprintf("%s: topic %q partition %d", what, t, p), kerr.UnknownTopicOrPartition)
			}
		}
	}
	bounds, err := c.resetBounds(ctx, o, topics)
	if err != nil {
		return c.fail(what, err)
	}
	plan, newOffsets, err := planResets(group, o, topics, current, bounds)
	if err != nil {
		return c.fail(what, err)
	}
	var errs []error
	if o.execute {
		resps, err := c.adm.AlterShareGroupOffsets(ctx, group, newOffsets)
		if err != nil {
			return c.fail(what, err)
		}
		for i := range plan {
			if err, ok := resps.Lookup(plan[i].Topic, plan[i].Partition); ok && err != nil {
				plan[i].Error = err.Error()
				errs = append(errs, c.fail(fmt.Sprintf("%s: topic %q partition %d", what, plan[i].Topic, plan[i].Partition), err))
			}
		}
	}
	err = writeRows(stdout, o.client, plan, []string{"GROUP", "TOPIC", "PARTITION", "CURRENT", "NEW", "STATUS"}, func(r offsetReset) []any {
		status := "dry run"
		if o.execute {
			status = cmpOr(r.Error, "reset")
		}
		return []any{r.Group, r.Topic, r.Partition, intOrDash(r.Current), r.New, status}
	})
	if err != nil {
		return err
	}
	if !o.execute {
		fmt.Fprintln(stderr, "dry run: nothing changed; add -execute to move these start offsets")
	}
	return errors.Join(errs...)
}

// ---- group alter-config ----

type groupAlterConfigOpts struct {
	client *clientFlags
	set    kvFlag
	delete listFlag
}

func groupAlterConfigFlags() (*flag.FlagSet, *groupAlterConfigOpts) {
	fs := newFlagSet("group alter-config")
	o := &groupAlterConfigOpts{client: addClientFlags(fs)}
	fs.Var(&o.set, "set", "set config `key=value` (repeatable): share.auto.offset.reset, share.record.lock.duration.ms, errors.deadletterqueue.topic.name, ...")
	fs.Var(&o.delete, "delete", "reset config `key` to its default (repeatable)")
	return fs, o
}

type groupConfigAltered struct {
	Group  string `json:"group"`
	Name   string `json:"name"`
	Value  string `json:"value,omitempty"`
	Action string `json:"action"`
}

func runGroupAlterConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := groupAlterConfigFlags()
	groups, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return err
	}
	if len(o.set.pairs) == 0 && len(o.delete) == 0 {
		return usageError("group alter-config: give -set key=value or -delete key")
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	var rows []groupConfigAltered
	for _, g := range groups {
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
		res.ResourceName = g
		for _, kv := range o.set.pairs {
			cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			cfg.Name, cfg.Op, cfg.Value = kv[0], kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(kv[1])
			res.Configs = append(res.Configs, cfg)
			rows = append(rows, groupConfigAltered{Group: g, Name: kv[0], Value: kv[1], Action: "set"})
		}
		for _, k := range o.delete {
			cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
			cfg.Name, cfg.Op = k, kmsg.IncrementalAlterConfigOpDelete
			res.Configs = append(res.Configs, cfg)
			rows = append(rows, groupConfigAltered{Group: g, Name: k, Action: "reset to default"})
		}
		req.Resources = append(req.Resources, res)
	}
	c, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	resp, err := req.RequestWith(rctx, c.cl)
	if err != nil {
		return c.fail(fmt.Sprintf("alter configs of group %q", groups[0]), err)
	}
	var errs []error
	failed := map[string]bool{}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			failed[r.ResourceName] = true
			msg := ""
			if r.ErrorMessage != nil {
				msg = *r.ErrorMessage
			}
			errs = append(errs, c.fail(fmt.Sprintf("alter configs of group %q", r.ResourceName), withMessage(err, msg)))
		}
	}
	out := []groupConfigAltered{}
	for _, r := range rows {
		if !failed[r.Group] {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	if o.client.json() || len(out) > 0 {
		err = writeRows(stdout, o.client, out, []string{"GROUP", "CONFIG", "VALUE", "ACTION"}, func(r groupConfigAltered) []any {
			return []any{r.Group, r.Name, dash(r.Value), r.Action}
		})
		if err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
