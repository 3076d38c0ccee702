package cluster

import (
	"slices"
	"testing"
)

// TestImbalanced checks the choice of Kafka's controller: a broker's
// preferred partitions go back to it only when more than the percentage
// of them are led elsewhere, and only those it may lead.
func TestImbalanced(t *testing.T) {
	part := func(i, pref, leader int32, eligible bool) preferredPart {
		return preferredPart{partition: i, preferred: pref, leader: leader, eligible: eligible}
	}
	// Broker 0 is preferred for ten partitions and leads nine; broker 1
	// for two and leads one; broker 2's one partition has no leader.
	var parts []preferredPart
	for i := range int32(9) {
		parts = append(parts, part(i, 0, 0, true))
	}
	parts = append(parts,
		part(9, 0, 1, true),   // 0: 1 of 10 elsewhere
		part(10, 1, 1, true),  //
		part(11, 1, 2, true),  // 1: 1 of 2 elsewhere
		part(12, 2, -1, true), // 2: 1 of 1 elsewhere
		part(13, 3, 2, false), // 3: not in sync
	)
	for _, tc := range []struct {
		pct  int
		want []int32
	}{
		{10, []int32{11, 12}}, // 10% is not above 10%
		{9, []int32{9, 11, 12}},
		{0, []int32{9, 11, 12}},
		{50, []int32{12}},
		{100, nil},
	} {
		var got []int32
		for _, p := range imbalanced(parts, tc.pct) {
			got = append(got, p.partition)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d%%: %v, want %v", tc.pct, got, tc.want)
		}
	}
}
