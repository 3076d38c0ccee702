package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// groupType names a group's kind as ListGroups v5 does: "classic",
// "consumer" (KIP-848) or "share" (KIP-932). Brokers that give no type
// only have classic groups.
func groupType(listed string) string {
	if listed != "" {
		return strings.ToLower(listed)
	}
	return "classic"
}

// memberView is one member of a group.
type memberView struct {
	MemberID   string       `json:"member_id"`
	InstanceID string       `json:"instance_id,omitempty"`
	ClientID   string       `json:"client_id"`
	Host       string       `json:"host"`
	Assignment []topicParts `json:"assignment"`
	// Subscribed are the topics a consumer-protocol member subscribes to.
	Subscribed []string `json:"subscribed,omitempty"`
}

// topicParts is a topic and some of its partitions, as ranges ("0-3,7").
type topicParts struct {
	Topic      string `json:"topic"`
	Partitions string `json:"partitions"`
	Count      int    `json:"count"`
}

// groupInfo is a group as described, plus its offsets and lag.
type groupInfo struct {
	Group        string       `json:"group"`
	Type         string       `json:"type"`
	ProtocolType string       `json:"protocol_type"`
	Protocol     string       `json:"protocol"` // the assignor
	State        string       `json:"state"`
	Coordinator  int32        `json:"coordinator"`
	Members      []memberView `json:"members"`
	// Lag is the sum of the lag of every partition the group commits to
	// or is assigned (for a share group, has state for: the broker's
	// lag); LagKnown is false when some end offset (a share group's lag)
	// could not be had.
	Lag      int64    `json:"lag"`
	LagKnown bool     `json:"lag_known"`
	Topics   []string `json:"topics"`
	Error    string   `json:"error,omitempty"`

	owners     map[tp][]string // partition -> member ids (several in a share group)
	subscribed []string        // topics members subscribe to (consumer protocol)
	commits    kadm.OffsetResponses
	// shareOffsets are a share group's start offsets and lag, from
	// DescribeShareGroupOffsets: only partitions it has state for.
	shareOffsets kadm.ShareOffsets
}

// describeGroups describes listed groups: one DescribeGroups for the
// classic ones, one ConsumerGroupDescribe for the consumer-protocol ones
// and one ShareGroupDescribe for the share groups, each sent to the
// coordinators, whatever their number.
func (c *Console) describeGroups(ctx context.Context, listed []kadm.ListedGroup) (map[string]*groupInfo, error) {
	out := make(map[string]*groupInfo, len(listed))
	var classic, consumer, share []string
	for _, l := range listed {
		g := &groupInfo{
			Group: l.Group, Type: groupType(l.GroupType), ProtocolType: l.ProtocolType,
			State: l.State, Coordinator: l.Coordinator, Members: []memberView{}, owners: map[tp][]string{},
		}
		out[l.Group] = g
		switch g.Type {
		case "consumer":
			consumer = append(consumer, l.Group)
		case "classic":
			classic = append(classic, l.Group)
		case "share":
			share = append(share, l.Group)
		}
	}
	if len(classic) > 0 {
		described, err := c.adm.DescribeGroups(ctx, classic...)
		if err != nil && !isShardErr(err) {
			return nil, err
		}
		for _, d := range described {
			g := out[d.Group]
			if g == nil {
				continue
			}
			if d.Err != nil {
				g.Error = d.Err.Error()
				continue
			}
			g.State, g.ProtocolType, g.Protocol, g.Coordinator = d.State, d.ProtocolType, d.Protocol, d.Coordinator.NodeID
			for _, m := range d.Members {
				mv := memberView{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignment: []topicParts{}}
				if m.InstanceID != nil {
					mv.InstanceID = *m.InstanceID
				}
				if ca, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range ca.Topics {
						mv.Assignment = append(mv.Assignment, partsOf(t.Topic, t.Partitions))
						for _, p := range t.Partitions {
							g.owners[tp{t.Topic, p}] = []string{m.MemberID}
						}
					}
				}
				g.Members = append(g.Members, mv)
			}
		}
	}
	if len(consumer) > 0 {
		described, err := c.adm.DescribeConsumerGroups(ctx, consumer...)
		if err != nil && !isShardErr(err) {
			return nil, err
		}
		for _, d := range described {
			g := out[d.Group]
			if g == nil {
				continue
			}
			if d.Err != nil {
				g.Error = d.Err.Error()
				continue
			}
			g.State, g.ProtocolType, g.Protocol, g.Coordinator = d.State, "consumer", d.AssignorName, d.Coordinator.NodeID
			subscribed := map[string]bool{}
			for _, m := range d.Members {
				mv := memberView{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignment: []topicParts{}, Subscribed: m.SubscribedTopics}
				if m.InstanceID != nil {
					mv.InstanceID = *m.InstanceID
				}
				for _, t := range m.Assignment.Sorted() {
					mv.Assignment = append(mv.Assignment, partsOf(t.Topic, t.Partitions))
					for _, p := range t.Partitions {
						g.owners[tp{t.Topic, p}] = []string{m.MemberID}
					}
				}
				for _, t := range m.SubscribedTopics {
					subscribed[t] = true
				}
				g.Members = append(g.Members, mv)
			}
			for t := range subscribed {
				g.subscribed = append(g.subscribed, t)
			}
			sort.Strings(g.subscribed)
		}
	}
	if len(share) > 0 {
		if err := c.describeShareGroups(ctx, out, share); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// partsOf sorts ps and writes them as ranges.
func partsOf(topic string, ps []int32) topicParts {
	ps = append([]int32(nil), ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ps[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ps[j])))
		}
		i = j + 1
	}
	return topicParts{Topic: topic, Partitions: b.String(), Count: len(ps)}
}

// offsetRow is one partition of a group: committed offset, log bounds and
// lag (-1: unknown). For a share group Committed is the share-partition
// start offset (below it every record is done with), Lag the broker's
// (KIP-1226: records from the start offset to the high watermark whose
// delivery is not complete) and Member the members assigned it,
// comma-separated.
type offsetRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // -1: none
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
	Error     string `json:"error,omitempty"`
}

// groupOffsets fetches the committed offsets of groups (one batched
// OffsetFetch per coordinator) and the start offsets and lag of share
// groups (one batched DescribeShareGroupOffsets per coordinator), lists
// the bounds of every partition they commit to, have state for or are
// assigned, plus those of extra (one ListOffsets per broker and bound),
// and returns each group's rows, sorted.
func (c *Console) groupOffsets(ctx context.Context, groups map[string]*groupInfo, extra map[string][]int32) (map[string][]offsetRow, error) {
	names := make([]string, 0, len(groups))
	var shares []string
	for name, g := range groups {
		if g.Type == "share" {
			shares = append(shares, name)
		} else {
			names = append(names, name)
		}
	}
	if err := c.shareOffsets(ctx, groups, shares); err != nil {
		return nil, err
	}
	fetched := c.adm.FetchManyOffsets(ctx, names...)
	partSet := map[tp]bool{}
	for name, g := range groups {
		if r, ok := fetched[name]; ok {
			if r.Err != nil && !errors.Is(r.Err, kerr.GroupIDNotFound) && g.Error == "" {
				g.Error = r.Err.Error()
			}
			g.commits = r.Fetched
		}
		g.commits.Each(func(o kadm.OffsetResponse) { partSet[tp{o.Topic, o.Partition}] = true })
		g.shareOffsets.Each(func(o kadm.ShareOffset) { partSet[tp{o.Topic, o.Partition}] = true })
		for k := range g.owners {
			partSet[k] = true
		}
	}
	for t, ps := range extra {
		for _, p := range ps {
			partSet[tp{t, p}] = true
		}
	}
	parts := map[string][]int32{}
	for k := range partSet {
		parts[k.topic] = append(parts[k.topic], k.partition)
	}
	starts, err := c.listOffsets(ctx, parts, earliest)
	if err != nil {
		return nil, err
	}
	ends, err := c.listOffsets(ctx, parts, latest)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]offsetRow, len(groups))
	for name, g := range groups {
		rowsOf := map[tp]*offsetRow{}
		add := func(k tp) *offsetRow {
			if r := rowsOf[k]; r != nil {
				return r
			}
			r := &offsetRow{Topic: k.topic, Partition: k.partition, Committed: -1, Start: -1, End: -1, Lag: -1, Member: strings.Join(g.owners[k], ",")}
			rowsOf[k] = r
			return r
		}
		g.commits.Each(func(o kadm.OffsetResponse) {
			r := add(tp{o.Topic, o.Partition})
			if o.Err != nil {
				r.Error = o.Err.Error()
				return
			}
			r.Committed = o.At
		})
		shareRows := map[tp]kadm.ShareOffset{}
		g.shareOffsets.Each(func(o kadm.ShareOffset) {
			k := tp{o.Topic, o.Partition}
			r := add(k)
			shareRows[k] = o
			if o.Err != nil {
				r.Error = o.Err.Error()
				return
			}
			r.Committed = o.StartOffset
		})
		for k := range g.owners {
			add(k)
		}
		for _, t := range g.subscribed {
			for _, p := range extra[t] {
				add(tp{t, p})
			}
		}
		rows := make([]offsetRow, 0, len(rowsOf))
		g.LagKnown = true
		topics := map[string]bool{}
		for k, r := range rowsOf {
			topics[k.topic] = true
			s, okS := starts[k]
			e, okE := ends[k]
			if okS && s.err == nil {
				r.Start = s.offset
			}
			if okE && e.err == nil {
				r.End = e.offset
			} else if r.Error == "" {
				r.Error = errString(e.err)
			}
			so, isShare := shareRows[k]
			switch {
			case g.Type == "share":
				// The broker's lag, as Kafka's kafka-share-groups
				// shows it; a partition the group has no state for
				// yet (assigned, never fetched) has none.
				switch {
				case isShare && so.Err != nil:
					g.LagKnown = false
				case isShare && so.StartOffset >= 0 && so.Lag >= 0:
					r.Lag = so.Lag
				case isShare && so.StartOffset >= 0:
					g.LagKnown = false
				}
			case r.End < 0:
				g.LagKnown = false
			case r.Committed >= 0:
				r.Lag = max(0, r.End-max(r.Committed, r.Start))
			default:
				r.Lag = max(0, r.End-max(r.Start, 0))
			}
			if r.Lag > 0 {
				g.Lag += r.Lag
			}
			rows = append(rows, *r)
		}
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].Topic != rows[j].Topic {
				return rows[i].Topic < rows[j].Topic
			}
			return rows[i].Partition < rows[j].Partition
		})
		g.Topics = make([]string, 0, len(topics))
		for t := range topics {
			g.Topics = append(g.Topics, t)
		}
		sort.Strings(g.Topics)
		out[name] = rows
	}
	return out, nil
}

// listGroups: one ListGroups per broker (filtered by type when one is
// asked), then for the page's groups only one describe per kind, one
// batched OffsetFetch, one batched DescribeShareGroupOffsets and two
// ListOffsets per broker.
func (c *Console) listGroups(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePage(r)
	if err != nil {
		return err
	}
	q, kind := r.URL.Query().Get("q"), r.URL.Query().Get("type")
	var types []string
	if kind != "" {
		types = []string{kind} // ListGroups v5's type filter
	}
	listed, err := c.adm.ListGroupsByType(r.Context(), types)
	if err != nil && !isShardErr(err) {
		return err
	}
	var rows []kadm.ListedGroup
	for _, l := range listed.Sorted() {
		if matches(l.Group, q) && (kind == "" || groupType(l.GroupType) == kind) {
			rows = append(rows, l)
		}
	}
	lo, hi := pg.window(len(rows))
	rows = rows[lo:hi]
	groups, err := c.describeGroups(r.Context(), rows)
	if err != nil {
		return err
	}
	if _, err := c.groupOffsets(r.Context(), groups, nil); err != nil {
		return err
	}
	out := make([]*groupInfo, 0, len(rows))
	for _, l := range rows {
		out = append(out, groups[l.Group])
	}
	writeJSON(w, http.StatusOK, struct {
		page
		Groups []*groupInfo `json:"groups"`
	}{pg, out})
	return nil
}

// topicLag is one topic's share of a group's lag.
type topicLag struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	Lag        int64  `json:"lag"`
}

// getGroup describes one group, with its lag per topic and a page of its
// partitions: one ListGroups per broker, one describe, one OffsetFetch (a
// DescribeShareGroupOffsets and a DescribeConfigs for a share group), one
// Metadata for the topics members subscribe to, two ListOffsets per
// broker.
func (c *Console) getGroup(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePage(r)
	if err != nil {
		return err
	}
	name := r.PathValue("group")
	g, rows, err := c.group(r.Context(), name)
	if err != nil {
		return err
	}
	byTopic := map[string]*topicLag{}
	var topics []topicLag
	for _, row := range rows {
		tl := byTopic[row.Topic]
		if tl == nil {
			topics = append(topics, topicLag{Topic: row.Topic})
			tl = &topics[len(topics)-1]
			byTopic[row.Topic] = tl
		}
		tl.Partitions++
		if row.Lag > 0 {
			tl.Lag += row.Lag
		}
	}
	if topics == nil {
		topics = []topicLag{}
	}
	// A share group's configs say where it starts, how long a member
	// holds a record and how often it is delivered.
	var configs []configRow
	configsErr := ""
	if g.Type == "share" {
		if configs, err = c.groupConfigs(r.Context(), name); err != nil {
			configsErr = err.Error()
		}
	}
	lo, hi := pg.window(len(rows))
	writeJSON(w, http.StatusOK, struct {
		*groupInfo
		TopicLag []topicLag `json:"topic_lag"`
		page
		Offsets      []offsetRow `json:"offsets"`
		Configs      []configRow `json:"configs,omitempty"`
		ConfigsError string      `json:"configs_error,omitempty"`
	}{g, topics, pg, rows[lo:hi], configs, configsErr})
	return nil
}

// group describes one group and its offsets. A group no broker lists and
// with nothing committed does not exist.
func (c *Console) group(ctx context.Context, name string) (*groupInfo, []offsetRow, error) {
	listed, err := c.adm.ListGroups(ctx)
	if err != nil && !isShardErr(err) {
		return nil, nil, err
	}
	l, ok := listed[name]
	if !ok {
		l = kadm.ListedGroup{Group: name}
	}
	groups, err := c.describeGroups(ctx, []kadm.ListedGroup{l})
	if err != nil {
		return nil, nil, err
	}
	g := groups[name]
	var extra map[string][]int32
	if len(g.subscribed) > 0 {
		m, err := c.metadata(ctx, g.subscribed...)
		if err != nil {
			return nil, nil, err
		}
		extra = map[string][]int32{}
		for _, t := range m.topics {
			if t.err == nil {
				extra[t.name] = t.numbers()
			}
		}
	}
	all, err := c.groupOffsets(ctx, groups, extra)
	if err != nil {
		return nil, nil, err
	}
	rows := all[name]
	if !ok && len(rows) == 0 && len(g.Members) == 0 {
		return nil, nil, fmt.Errorf("group %q: %w", name, kerr.GroupIDNotFound)
	}
	return g, rows, nil
}

// resetRequest is the body of POST /api/groups/{group}/reset-offsets.
type resetRequest struct {
	// To is earliest, latest, offset, time or shift.
	To string `json:"to"`
	// Topics to reset; default every topic the group has committed to.
	Topics []string `json:"topics"`
	Offset int64    `json:"offset"` // for "offset"
	Time   string   `json:"time"`   // for "time": unix ms or RFC 3339
	Shift  int64    `json:"shift"`  // for "shift": added to the committed offset
	// Execute commits the plan; without it the answer is the plan only.
	Execute bool `json:"execute"`
}

// resetRow is one partition of a reset plan.
type resetRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   int64  `json:"current"` // -1: none committed
	New       int64  `json:"new"`
	Error     string `json:"error,omitempty"`
}

// maxPlanRows is how many rows of a reset plan the answer holds.
const maxPlanRows = 1000

// resetOffsets moves an inactive group's committed offsets, as Kafka's
// kafka-consumer-groups --reset-offsets does: a dry run returns the plan,
// execute commits it. New offsets are clamped to each partition's log.
// For a share group it moves the start offsets, as kafka-share-groups
// --reset-offsets does (AlterShareGroupOffsets, which drops what is in
// flight); Kafka allows that only while the group has no members.
func (c *Console) resetOffsets(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := r.PathValue("group")
	var req resetRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	var ts int64
	switch req.To {
	case "earliest", "latest", "offset", "shift":
	case "time":
		var err error
		if ts, err = parseTime(req.Time); err != nil {
			return badRequest("time: %v", err)
		}
	default:
		return badRequest("to %q: want earliest, latest, offset, time or shift", req.To)
	}
	g, _, err := c.group(ctx, name)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return err
	}
	if g == nil {
		g = &groupInfo{Group: name}
	}
	if len(g.Members) > 0 || (g.State != "" && g.State != "Empty" && g.State != "Dead") {
		return fmt.Errorf("group %q has %d active member(s) and is %s; stop its consumers first (offsets can only be reset while the group is inactive): %w",
			name, len(g.Members), g.State, kerr.NonEmptyGroup)
	}
	share := g.Type == "share"
	// current is the committed offset (for a share group, the start
	// offset) of a partition, -1 when there is none.
	current := func(t string, p int32) int64 {
		if share {
			if o, ok := g.shareOffsets.Lookup(t, p); ok && o.Err == nil && o.StartOffset >= 0 {
				return o.StartOffset
			}
			return -1
		}
		if o, ok := g.commits.Lookup(t, p); ok && o.Err == nil {
			return o.At
		}
		return -1
	}
	topics := req.Topics
	if len(topics) == 0 {
		for t := range g.commits {
			topics = append(topics, t)
		}
		for t := range g.shareOffsets {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		if share {
			return badRequest("share group %q has no start offsets yet; name the topics to reset", name)
		}
		return badRequest("group %q has no committed offsets; name the topics to reset", name)
	}
	sort.Strings(topics)
	m, err := c.metadata(ctx, topics...)
	if err != nil {
		return err
	}
	parts := map[string][]int32{}
	for _, t := range topics {
		tm := m.topics[t]
		if tm == nil || tm.err != nil {
			return fmt.Errorf("topic %q: %w", t, kerr.UnknownTopicOrPartition)
		}
		parts[t] = tm.numbers()
	}
	starts, err := c.listOffsets(ctx, parts, earliest)
	if err != nil {
		return err
	}
	ends, err := c.listOffsets(ctx, parts, latest)
	if err != nil {
		return err
	}
	var at map[tp]offsetAt
	if req.To == "time" {
		if at, err = c.listOffsets(ctx, parts, ts); err != nil {
			return err
		}
	}
	var plan []resetRow
	commit := kadm.Offsets{}
	for _, t := range topics {
		for _, p := range parts[t] {
			k := tp{t, p}
			s, e := starts[k], ends[k]
			if s.err != nil || e.err != nil {
				return fmt.Errorf("offsets of %s-%d: %w", t, p, errors.Join(s.err, e.err))
			}
			lo, hi := s.offset, e.offset
			cur := current(t, p)
			var n int64
			switch req.To {
			case "earliest":
				n = lo
			case "latest":
				n = hi
			case "offset":
				n = req.Offset
			case "time":
				n = hi
				if a := at[k]; a.err == nil && a.offset >= 0 {
					n = a.offset
				}
			case "shift":
				if cur < 0 {
					return badRequest("cannot shift the offset of %s-%d: the group has committed none", t, p)
				}
				n = cur + req.Shift
			}
			n = min(max(n, lo), hi)
			plan = append(plan, resetRow{Topic: t, Partition: p, Current: cur, New: n})
			commit.Add(kadm.Offset{Topic: t, Partition: p, At: n, LeaderEpoch: -1})
		}
	}
	failed := 0
	switch {
	case req.Execute && share:
		resps, err := c.adm.AlterShareGroupOffsets(ctx, name, commit)
		if err != nil {
			return fmt.Errorf("alter start offsets of share group %q: %w", name, err)
		}
		for i := range plan {
			if err, ok := resps.Lookup(plan[i].Topic, plan[i].Partition); ok && err != nil {
				plan[i].Error = err.Error()
				failed++
			}
		}
		c.logger.Info("share group start offsets reset from the console", "group", name, "to", req.To, "partitions", len(plan), "failed", failed)
	case req.Execute:
		resps, err := c.adm.CommitOffsets(ctx, name, commit)
		if err != nil {
			return fmt.Errorf("commit offsets of group %q: %w", name, err)
		}
		for i := range plan {
			if o, ok := resps.Lookup(plan[i].Topic, plan[i].Partition); ok && o.Err != nil {
				plan[i].Error = o.Err.Error()
				failed++
			}
		}
		c.logger.Info("group offsets reset from the console", "group", name, "to", req.To, "partitions", len(plan), "failed", failed)
	}
	total := len(plan)
	writeJSON(w, http.StatusOK, struct {
		Group    string     `json:"group"`
		To       string     `json:"to"`
		Executed bool       `json:"executed"`
		Total    int        `json:"total"`
		Failed   int        `json:"failed"`
		Plan     []resetRow `json:"plan"` // the first maxPlanRows
	}{name, req.To, req.Execute, total, failed, plan[:min(total, maxPlanRows)]})
	return nil
}
