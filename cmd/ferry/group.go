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
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ---- group list ----

func groupListFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("group list") }

type groupListed struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	Type         string `json:"type,omitempty"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

func runGroupList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := groupListFlags()
	_, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	groups, err := c.adm.ListGroups(rctx)
	if err != nil {
		return c.fail("list groups", err)
	}
	out := []groupListed{}
	for _, g := range groups.Sorted() {
		out = append(out, groupListed{Group: g.Group, State: g.State, Type: g.GroupType, ProtocolType: g.ProtocolType, Coordinator: g.Coordinator})
	}
	return writeRows(stdout, cf, out, []string{"GROUP", "STATE", "TYPE", "PROTOCOL-TYPE", "COORDINATOR"}, func(g groupListed) []any {
		return []any{g.Group, dash(g.State), dash(g.Type), dash(g.ProtocolType), g.Coordinator}
	})
}

// ---- group describe ----

func groupDescribeFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("group describe") }

type groupMember struct {
	MemberID   string   `json:"member_id"`
	InstanceID string   `json:"instance_id,omitempty"`
	ClientID   string   `json:"client_id"`
	Host       string   `json:"host"`
	Assigned   []string `json:"assigned"` // topic:p,p,p
}

type groupOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // -1: none
	LogEnd    int64  `json:"log_end"`
	Lag       int64  `json:"lag"` // -1: unknown
	Member    string `json:"member,omitempty"`
}

type groupDescribed struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	Type         string        `json:"type,omitempty"` // "share" for a share group
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Coordinator  int32         `json:"coordinator"`
	Members      []groupMember `json:"members"`
	Offsets      []groupOffset `json:"offsets"`
	TotalLag     int64         `json:"total_lag"`
	// ShareOffsets are a share group's partitions (instead of Offsets).
	ShareOffsets []shareOffset `json:"share_offsets,omitempty"`
}

func runGroupDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := groupDescribeFlags()
	groups, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	kip848 := c.consumerProtocolGroups(rctx)
	shared := c.shareGroups(rctx)
	var classic []string
	for _, g := range groups {
		if !kip848[g] && !shared[g] {
			classic = append(classic, g)
		}
	}
	lags := kadm.DescribedGroupLags{}
	if len(classic) > 0 {
		if lags, err = c.adm.Lag(rctx, classic...); err != nil {
			return c.fail(fmt.Sprintf("describe group %q", classic[0]), err)
		}
	}
	var out []groupDescribed
	for _, g := range groups {
		var d groupDescribed
		if shared[g] {
			d, err = c.describeShare(rctx, g)
		} else if kip848[g] {
			d, err = c.describeConsumerProtocol(rctx, g)
		} else if d, err = describeClassic(lags, g); errors.Is(err, kerr.GroupIDNotFound) {
			// DescribeGroups answers GROUP_ID_NOT_FOUND for a group of
			// the consumer protocol, as Kafka 4 does; ListGroups may
			// have missed it (created since, or no group types).
			if d848, err848 := c.describeConsumerProtocol(rctx, g); err848 == nil {
				d, err = d848, nil
			}
		}
		if err != nil {
			return c.fail(fmt.Sprintf("describe group %q", g), err)
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
		fmt.Fprintf(stdout, "GROUP %s  STATE %s  PROTOCOL %s/%s  COORDINATOR %d  MEMBERS %d  TOTAL-LAG %d\n",
			d.Group, d.State, dash(d.ProtocolType), dash(d.Protocol), d.Coordinator, len(d.Members), d.TotalLag)
		if len(d.Members) > 0 {
			err = writeTable(stdout, []string{"MEMBER", "CLIENT-ID", "HOST", "ASSIGNED"}, d.Members, func(m groupMember) []any {
				return []any{m.MemberID, m.ClientID, m.Host, dash(strings.Join(m.Assigned, " "))}
			})
			if err != nil {
				return err
			}
		}
		if len(d.ShareOffsets) > 0 {
			if err := writeShareOffsets(stdout, d.ShareOffsets); err != nil {
				return err
			}
		}
		if len(d.Offsets) > 0 {
			err = writeTable(stdout, []string{"TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER"}, d.Offsets, func(off groupOffset) []any {
				return []any{off.Topic, off.Partition, intOrDash(off.Committed), off.LogEnd, intOrDash(off.Lag), dash(off.Member)}
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// describeClassic turns the lag of a classic group, from kadm.Lag, into
// its description. A group that does not exist is kerr.GroupIDNotFound.
func describeClassic(lags kadm.DescribedGroupLags, g string) (groupDescribed, error) {
	l, ok := lags[g]
	if !ok {
		return groupDescribed{}, kerr.GroupIDNotFound
	}
	if err := l.Error(); err != nil {
		return groupDescribed{}, err
	}
	d := groupDescribed{
		Group: g, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Coordinator: l.Coordinator.NodeID, Members: []groupMember{}, Offsets: []groupOffset{},
	}
	for _, m := range l.Members {
		gm := groupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: []string{}}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		if ca, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range ca.Topics {
				ps := append([]int32(nil), t.Partitions...)
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
				gm.Assigned = append(gm.Assigned, t.Topic+":"+joinInt32(ps))
			}
		}
		d.Members = append(d.Members, gm)
	}
	for _, ml := range l.Lag.Sorted() {
		off := groupOffset{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, LogEnd: ml.End.Offset, Lag: ml.Lag}
		if ml.Member != nil {
			off.Member = ml.Member.MemberID
		}
		d.addOffset(off)
	}
	if l.State == "Dead" && len(d.Members) == 0 && len(d.Offsets) == 0 {
		return groupDescribed{}, kerr.GroupIDNotFound
	}
	return d, nil
}

// addOffset adds one partition's row and its lag to the total.
func (d *groupDescribed) addOffset(off groupOffset) {
	if off.Lag > 0 {
		d.TotalLag += off.Lag
	}
	d.Offsets = append(d.Offsets, off)
}

// consumerProtocolGroups returns the groups the brokers list as groups of
// the consumer protocol (KIP-848; ListGroups v5+, type "consumer"). It is
// a hint: brokers before Kafka 3.8 give no type, and a failed listing
// gives none, so callers also treat GROUP_ID_NOT_FOUND from DescribeGroups
// as "maybe a consumer-protocol group".
func (c *conn) consumerProtocolGroups(ctx context.Context) map[string]bool {
	listed, _ := c.adm.ListGroupsByType(ctx, []string{"consumer"})
	out := map[string]bool{}
	for _, g := range listed {
		if g.GroupType == "consumer" {
			out[g.Group] = true
		}
	}
	return out
}

// describeConsumerProtocol describes a group of the consumer protocol
// (KIP-848), which DescribeGroups does not: its members and assignments
// from ConsumerGroupDescribe, and the lag of every partition committed to,
// assigned, or of a topic a member subscribes to. A group that does not
// exist is kerr.GroupIDNotFound.
func (c *conn) describeConsumerProtocol(ctx context.Context, g string) (groupDescribed, error) {
	described, err := c.adm.DescribeConsumerGroups(ctx, g)
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
		Group: g, State: dg.State, ProtocolType: "consumer", Protocol: dg.AssignorName,
		Coordinator: dg.Coordinator.NodeID, Members: []groupMember{}, Offsets: []groupOffset{},
	}
	owners := map[string]map[int32]string{} // topic -> partition -> member id
	topics := kadm.TopicsSet{}
	for _, m := range dg.Members {
		gm := groupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: []string{}}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		for _, tp := range m.Assignment.Sorted() {
			gm.Assigned = append(gm.Assigned, tp.Topic+":"+joinInt32(tp.Partitions))
			if owners[tp.Topic] == nil {
				owners[tp.Topic] = map[int32]string{}
			}
			for _, p := range tp.Partitions {
				owners[tp.Topic][p] = m.MemberID
			}
		}
		topics.Merge(m.Assignment)
		topics.MergeTopics(m.SubscribedTopics)
		d.Members = append(d.Members, gm)
	}

	commits, err := c.adm.FetchOffsets(ctx, g)
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // nothing committed yet
	}
	if err != nil {
		return groupDescribed{}, err
	}
	topics.Merge(commits.Partitions())
	var starts, ends kadm.ListedOffsets
	if ts := topics.Topics(); len(ts) > 0 {
		// As kadm.Lag does: a broker that does not answer leaves its
		// partitions out, and they show with an unknown lag.
		if starts, err = c.adm.ListStartOffsets(ctx, ts...); err != nil && !isShardErr(err) {
			return groupDescribed{}, err
		}
		if ends, err = c.adm.ListEndOffsets(ctx, ts...); err != nil && !isShardErr(err) {
			return groupDescribed{}, err
		}
	}
	// kadm computes lag from a classic description; give it none, and
	// every topic a member is assigned or subscribes to as if committed to
	// with no partitions, which makes it list all their partitions, as
	// kadm.Lag does for the topics of a classic member.
	primed := make(kadm.OffsetResponses, len(topics))
	for t := range topics {
		primed[t] = commits[t]
		if primed[t] == nil {
			primed[t] = map[int32]kadm.OffsetResponse{}
		}
	}
	lag := kadm.CalculateGroupLagWithStartOffsets(kadm.DescribedGroup{Group: g, State: dg.State}, primed, starts, ends)
	for _, ml := range lag.Sorted() {
		if ml.Partition < 0 { // a topic that does not exist
			continue
		}
		d.addOffset(groupOffset{
			Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, LogEnd: ml.End.Offset, Lag: ml.Lag,
			Member: owners[ml.Topic][ml.Partition],
		})
	}
	return d, nil
}

// isShardErr reports whether err is kadm's *ShardErrors: some brokers of a
// request sent to several did not answer.
func isShardErr(err error) bool {
	var se *kadm.ShardErrors
	return errors.As(err, &se)
}

// groupActivity returns how many members group has and its state, from
// DescribeGroups or, for a group of the consumer protocol (KIP-848), from
// ConsumerGroupDescribe: DescribeGroups answers GROUP_ID_NOT_FOUND for
// those, as Kafka does. A group that exists in neither form has no
// members and no state.
func (c *conn) groupActivity(ctx context.Context, group string) (members int, state string, err error) {
	if !c.consumerProtocolGroups(ctx)[group] {
		described, err := c.adm.DescribeGroups(ctx, group)
		if err != nil {
			return 0, "", err
		}
		d, ok := described[group]
		switch {
		case ok && d.Err == nil:
			return len(d.Members), d.State, nil
		case ok && !errors.Is(d.Err, kerr.GroupIDNotFound):
			return 0, "", d.Err
		}
	}
	described, err := c.adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		return 0, "", err
	}
	d, ok := described[group]
	switch {
	case !ok || errors.Is(d.Err, kerr.GroupIDNotFound):
		return 0, "", nil
	case d.Err != nil:
		return 0, "", d.Err
	}
	return len(d.Members), d.State, nil
}

// ---- group delete ----

func groupDeleteFlags() (*flag.FlagSet, *clientFlags) { return clientFlagSet("group delete") }

type groupResult struct {
	Group  string `json:"group"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func runGroupDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cf := groupDeleteFlags()
	groups, c, rctx, err := startClient(ctx, fs, cf, args, stdout)
	if err != nil {
		return err
	}
	defer c.close()
	resps, err := c.adm.DeleteGroups(rctx, groups...)
	if err != nil {
		return c.fail(fmt.Sprintf("delete group %q", groups[0]), err)
	}
	var out []groupResult
	var errs []error
	for _, g := range groups {
		r, ok := resps[g]
		if !ok {
			r.Err = kerr.GroupIDNotFound
		}
		row := groupResult{Group: g, Status: "deleted"}
		if r.Err != nil {
			row.Status, row.Error = "failed", r.Err.Error()
			errs = append(errs, c.fail(fmt.Sprintf("delete group %q", g), r.Err))
		}
		out = append(out, row)
	}
	err = writeRows(stdout, cf, out, []string{"GROUP", "STATUS"}, func(r groupResult) []any {
		return []any{r.Group, cmpOr(r.Error, r.Status)}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// ---- group reset-offsets ----

type groupResetOpts struct {
	client     *clientFlags
	topics     listFlag
	toEarliest bool
	toLatest   bool
	toOffset   int64
	toDatetime string
	shiftBy    int64
	execute    bool
	set        map[string]bool // flags given on the command line

	datetime int64              // -to-datetime in unix ms
	chosen   map[string][]int32 // topic → partitions to reset (nil: all of them)
}

func groupResetFlags() (*flag.FlagSet, *groupResetOpts) {
	fs := newFlagSet("group reset-offsets")
	o := &groupResetOpts{client: addClientFlags(fs)}
	fs.Var(&o.topics, "topic", "`TOPIC` or TOPIC:P,P,... to reset (repeatable; default: every topic the group has committed offsets for)")
	fs.BoolVar(&o.toEarliest, "to-earliest", false, "reset to the log start")
	fs.BoolVar(&o.toLatest, "to-latest", false, "reset to the log end")
	fs.Int64Var(&o.toOffset, "to-offset", 0, "reset to offset `N` (clamped to the log)")
	fs.StringVar(&o.toDatetime, "to-datetime", "", "reset to the first record at or after `T` (RFC 3339 or unix ms)")
	fs.Int64Var(&o.shiftBy, "shift-by", 0, "move the committed offsets (a share group's start offsets) by `N` (negative: back); every partition needs one")
	fs.BoolVar(&o.execute, "execute", false, "commit the new offsets (default: dry run, print the plan)")
	return fs, o
}

type offsetReset struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   int64  `json:"current"` // -1: none committed
	New       int64  `json:"new"`
	Error     string `json:"error,omitempty"`
}

func runGroupResetOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	group, o, err := parseGroupReset(args, stdout)
	if err != nil {
		return err
	}
	c, rctx, err := o.client.open(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	if c.shareGroups(rctx)[group] {
		return c.resetShareOffsets(rctx, group, o, stdout, stderr)
	}
	what := fmt.Sprintf("reset offsets of group %q", group)

	committed, err := c.resetTargets(rctx, what, group, o)
	if err != nil {
		return err
	}
	topics := slices.Sorted(maps.Keys(o.chosen))
	bounds, err := c.resetBounds(rctx, o, topics)
	if err != nil {
		return c.fail(what, err)
	}
	plan, newOffsets, err := planResets(group, o, topics, committed, bounds)
	if err != nil {
		return c.fail(what, err)
	}

	var errs []error
	if o.execute {
		resps, err := c.adm.CommitOffsets(rctx, group, newOffsets)
		if err != nil {
			return c.fail(what, err)
		}
		for i := range plan {
			if r, ok := resps.Lookup(plan[i].Topic, plan[i].Partition); ok && r.Err != nil {
				plan[i].Error = r.Err.Error()
				errs = append(errs, c.fail(fmt.Sprintf("%s: topic %q partition %d", what, plan[i].Topic, plan[i].Partition), r.Err))
			}
		}
	}
	err = writeRows(stdout, o.client, plan, []string{"GROUP", "TOPIC", "PARTITION", "CURRENT", "NEW", "STATUS"}, func(r offsetReset) []any {
		status := "dry run"
		if o.execute {
			status = cmpOr(r.Error, "committed")
		}
		return []any{r.Group, r.Topic, r.Partition, intOrDash(r.Current), r.New, status}
	})
	if err != nil {
		return err
	}
	if !o.execute {
		fmt.Fprintln(stderr, "dry run: nothing committed; add -execute to commit these offsets")
	}
	return errors.Join(errs...)
}

// parseGroupReset reads the command line: the group, exactly one mode, and
// the -topic choices into o.chosen.
func parseGroupReset(args []string, stdout io.Writer) (string, *groupResetOpts, error) {
	fs, o := groupResetFlags()
	pos, err := parseClient(fs, o.client, args, stdout)
	if err != nil {
		return "", nil, err
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	var modes []string
	for _, m := range []string{"to-earliest", "to-latest", "to-offset", "to-datetime", "shift-by"} {
		if o.set[m] {
			modes = append(modes, m)
		}
	}
	if len(modes) != 1 {
		return "", nil, usageError("group reset-offsets: give exactly one of -to-earliest, -to-latest, -to-offset N, -to-datetime T, -shift-by N")
	}
	if o.set["to-datetime"] {
		if o.datetime, err = parseTime(o.toDatetime); err != nil {
			return "", nil, usageError("-to-datetime: %v", err)
		}
	}
	o.chosen = map[string][]int32{}
	for _, t := range o.topics {
		name, ps, hasParts := strings.Cut(t, ":")
		if !hasParts {
			o.chosen[name] = nil
			continue
		}
		for p := range strings.SplitSeq(ps, ",") {
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil {
				return "", nil, usageError("-topic %q: bad partition %q", t, p)
			}
			o.chosen[name] = append(o.chosen[name], int32(n))
		}
	}
	return pos[0], o, nil
}

// resetTargets checks that the group is inactive (Kafka's rule: only an
// inactive group's offsets can be reset), fetches its committed offsets and
// completes o.chosen: every committed topic when none was named, every
// partition of a topic named without partitions. Named partitions must
// exist. Its errors are ready to return (what names the command).
func (c *conn) resetTargets(ctx context.Context, what, group string, o *groupResetOpts) (kadm.OffsetResponses, error) {
	members, state, err := c.groupActivity(ctx, group)
	if err != nil {
		return nil, c.fail(what, err)
	}
	if members > 0 || (state != "" && state != "Empty" && state != "Dead") {
		return nil, c.fail(what, fmt.Errorf("the group has %d active member(s) and is %s; stop its consumers first (offsets can only be reset while the group is inactive): %w",
			members, state, kerr.NonEmptyGroup))
	}
	committed, err := c.adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		err = nil // nothing committed yet
	}
	if err != nil {
		return nil, c.fail(what, err)
	}
	if len(o.chosen) == 0 {
		for t := range committed {
			o.chosen[t] = nil
		}
	}
	if len(o.chosen) == 0 {
		return nil, usageError("group reset-offsets: group %q has no committed offsets; name the topics with -topic", group)
	}
	topics := slices.Sorted(maps.Keys(o.chosen))
	tds, err := c.adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return nil, c.fail(what, err)
	}
	for _, t := range topics {
		td, ok := tds[t]
		if !ok {
			return nil, c.fail(fmt.Sprintf("%s: topic %q", what, t), kerr.UnknownTopicOrPartition)
		}
		if td.Err != nil {
			return nil, c.fail(fmt.Sprintf("%s: topic %q", what, t), td.Err)
		}
		if o.chosen[t] == nil {
			o.chosen[t] = td.Partitions.Numbers()
		}
		for _, p := range o.chosen[t] {
			if _, ok := td.Partitions[p]; !ok {
				return nil, c.fail(fmt.Sprintf("%s: topic %q partition %d", what, t, p), kerr.UnknownTopicOrPartition)
			}
		}
	}
	return committed, nil
}

// resetBounds holds what a reset needs to know of the topics: their start
// and end offsets, and for -to-datetime the first offset at or after it.
type resetBounds struct {
	starts, ends, after kadm.ListedOffsets
}

func (c *conn) resetBounds(ctx context.Context, o *groupResetOpts, topics []string) (resetBounds, error) {
	var b resetBounds
	var err error
	if b.starts, err = c.adm.ListStartOffsets(ctx, topics...); err == nil {
		err = b.starts.Error()
	}
	if err != nil {
		return b, err
	}
	if b.ends, err = c.adm.ListEndOffsets(ctx, topics...); err == nil {
		err = b.ends.Error()
	}
	if err != nil {
		return b, err
	}
	if o.set["to-datetime"] {
		if b.after, err = c.adm.ListOffsetsAfterMilli(ctx, o.datetime, topics...); err == nil {
			err = b.after.Error()
		}
	}
	return b, err
}

// planResets computes the new offset of every chosen partition, clamped to
// the log.
func planResets(group string, o *groupResetOpts, topics []string, committed kadm.OffsetResponses, b resetBounds) ([]offsetReset, kadm.Offsets, error) {
	var plan []offsetReset
	newOffsets := kadm.Offsets{}
	for _, t := range topics {
		ps := slices.Sorted(slices.Values(o.chosen[t]))
		for _, p := range ps {
			so, _ := b.starts.Lookup(t, p)
			eo, _ := b.ends.Lookup(t, p)
			lo, hi := so.Offset, eo.Offset
			cur := int64(-1)
			if co, ok := committed.Lookup(t, p); ok && co.Err == nil {
				cur = co.At
			}
			var n int64
			switch {
			case o.toEarliest:
				n = lo
			case o.toLatest:
				n = hi
			case o.set["to-offset"]:
				n = o.toOffset
			case o.set["to-datetime"]:
				n = hi
				if ao, ok := b.after.Lookup(t, p); ok && ao.Offset >= 0 {
					n = ao.Offset
				}
			case o.set["shift-by"]:
				if cur < 0 {
					// As Kafka: there is nothing to shift from.
					return nil, nil, fmt.Errorf("cannot shift offset for partition %s-%d since there is no current committed offset", t, p)
				}
				n = cur + o.shiftBy
			}
			n = min(max(n, lo), hi)
			plan = append(plan, offsetReset{Group: group, Topic: t, Partition: p, Current: cur, New: n})
			newOffsets.Add(kadm.Offset{Topic: t, Partition: p, At: n, LeaderEpoch: -1})
		}
	}
	return plan, newOffsets, nil
}
