package cluster

import (
	"slices"
	"strings"
	"testing"
)

// TestLeadershipChanges: a partition led again at a new leader epoch is
// stopped and started, so that its coordinator reloads it at that epoch
// (a transaction coordinator keeping the old one would write markers
// that partitions refuse as fenced).
func TestLeadershipChanges(t *testing.T) {
	before := map[partKey]int32{{"a", 0}: 3, {"a", 1}: 1, {"b", 0}: 0}
	now := map[partKey]int32{{"a", 0}: 5, {"a", 1}: 1, {"c", 0}: 2}
	started, stopped := leadershipChanges(before, now)
	names := func(ks []partKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.topic+"-"+string(rune('0'+k.partition)))
		}
		slices.Sort(out)
		return out
	}
	if got := strings.Join(names(started), ","); got != "a-0,c-0" {
		t.Errorf("started %s, want a-0,c-0", got)
	}
	if got := strings.Join(names(stopped), ","); got != "a-0,b-0" {
		t.Errorf("stopped %s, want a-0,b-0", got)
	}
}
