package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Share groups (KIP-932) in the console: ShareGroupDescribe gives their
// state and members, DescribeShareGroupOffsets (v1, KIP-1226) each
// partition's start offset and lag, AlterShareGroupOffsets resets the
// start offsets of an empty group (resetOffsets) and DeleteGroups deletes
// one (deleteGroup, for every kind of group). Each is one request per
// coordinator for every group of a page, never one per partition.

// describeShareGroups fills in the share groups named from one
// ShareGroupDescribe per coordinator: state, assignor, members with their
// subscriptions and assignments. Several members of a share group may be
// assigned the same partition.
func (c *Console) describeShareGroups(ctx context.Context, out map[string]*groupInfo, names []string) error {
	described, err := c.adm.DescribeShareGroups(ctx, names...)
	if err != nil && !isShardErr(err) {
		return err
	}
	for _, d := range described {
		g := out[d.GroupID]
		if g == nil {
			continue
		}
		if d.Err != nil {
			g.Error = d.Err.Error()
			continue
		}
		g.State, g.ProtocolType, g.Protocol, g.Coordinator = d.GroupState, "share", d.Assignor, d.Coordinator.NodeID
		for _, m := range d.Members {
			subscribed := append([]string{}, m.SubscribedTopicNames...)
			sort.Strings(subscribed)
			mv := memberView{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignment: []topicParts{}, Subscribed: subscribed}
			for _, t := range m.Assignment.Sorted() {
				mv.Assignment = append(mv.Assignment, partsOf(t.Topic, t.Partitions))
				for _, p := range t.Partitions {
					k := tp{t.Topic, p}
					g.owners[k] = append(g.owners[k], m.MemberID)
				}
			}
			g.Members = append(g.Members, mv)
		}
	}
	return nil
}

// shareOffsets fetches the start offsets and lag of the share groups
// named, every partition they have state for: one batched
// DescribeShareGroupOffsets per coordinator.
func (c *Console) shareOffsets(ctx context.Context, groups map[string]*groupInfo, names []string) error {
	if len(names) == 0 {
		return nil
	}
	described, err := c.adm.DescribeShareGroupOffsets(ctx, names...)
	if err != nil && !isShardErr(err) {
		return err
	}
	for _, d := range described {
		g := groups[d.Group]
		if g == nil {
			continue
		}
		if d.Err != nil && !errors.Is(d.Err, kerr.GroupIDNotFound) && g.Error == "" {
			g.Error = d.Err.Error()
		}
		g.shareOffsets = d.Offsets
	}
	return nil
}

// deleteGroup deletes a group of any kind (DeleteGroups), as
// kafka-consumer-groups --delete and kafka-share-groups --delete do: its
// committed offsets, or a share group's start offsets and in-flight
// state, go with it. The broker refuses while the group has members
// (NON_EMPTY_GROUP: 409). confirm must repeat the group's name.
func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("group")
	if name == "" {
		return badRequest("empty group name")
	}
	if r.URL.Query().Get("confirm") != name {
		return badRequest("to delete group %q, repeat its name in confirm", name)
	}
	resps, err := c.adm.DeleteGroups(r.Context(), name)
	if err != nil {
		return fmt.Errorf("delete group %q: %w", name, err)
	}
	resp, ok := resps[name]
	if !ok {
		return fmt.Errorf("delete group %q: no answer for it: %w", name, kerr.UnknownServerError)
	}
	if resp.Err != nil {
		if errors.Is(resp.Err, kerr.NonEmptyGroup) {
			return fmt.Errorf("group %q has active members; stop its consumers first (a group can only be deleted while it has none): %w", name, resp.Err)
		}
		if resp.ErrMessage != "" {
			return fmt.Errorf("delete group %q: %s: %w", name, resp.ErrMessage, resp.Err)
		}
		return fmt.Errorf("delete group %q: %w", name, resp.Err)
	}
	c.logger.Info("group deleted from the console", "group", name)
	writeJSON(w, http.StatusOK, struct {
		Group   string `json:"group"`
		Deleted bool   `json:"deleted"`
	}{name, true})
	return nil
}

// groupConfigs returns the configs of a group (DescribeConfigs of the
// GROUP resource, KIP-848 and KIP-932): share.auto.offset.reset,
// share.record.lock.duration.ms and the rest, with their sources.
func (c *Console) groupConfigs(ctx context.Context, group string) ([]configRow, error) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return nil, err
	}
	out := []configRow{}
	for _, rr := range resp.Resources {
		if err := kerr.ErrorForCode(rr.ErrorCode); err != nil {
			if rr.ErrorMessage != nil && *rr.ErrorMessage != "" {
				return nil, fmt.Errorf("configs of group %q: %s: %w", group, *rr.ErrorMessage, err)
			}
			return nil, fmt.Errorf("configs of group %q: %w", group, err)
		}
		for _, cfg := range rr.Configs {
			out = append(out, configRow{
				Name: cfg.Name, Value: cfg.Value, Sensitive: cfg.IsSensitive,
				Source:  strings.TrimSuffix(cfg.Source.String(), "_CONFIG"),
				Default: cfg.Source != kmsg.ConfigSourceGroupConfig,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
