package group

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func testParts(topics map[string]int32) []topicPartition {
	var parts []topicPartition
	for _, t := range slices.Sorted(func(yield func(string) bool) {
		for t := range topics {
			if !yield(t) {
				return
			}
		}
	}) {
		for p := range topics[t] {
			parts = append(parts, topicPartition{topic: t, id: topicID(t), p: p})
		}
	}
	return parts
}

func subsOf(topics ...string) map[string]bool {
	m := make(map[string]bool)
	for _, t := range topics {
		m[t] = true
	}
	return m
}

// checkAssignment verifies every subscribed partition has exactly one
// owner, a subscriber.
func checkAssignment(t *testing.T, in assignInput, out map[string]assignment) {
	t.Helper()
	owner := make(map[tpKey]string)
	for _, m := range in.members {
		for id, ps := range out[m] {
			for _, p := range ps {
				k := tpKey{id, p}
				if o, ok := owner[k]; ok {
					t.Fatalf("partition %v owned by %s and %s", k, o, m)
				}
				owner[k] = m
			}
		}
	}
	for _, tp := range in.parts {
		k := tpKey{tp.id, tp.p}
		o, ok := owner[k]
		anySub := false
		for _, m := range in.members {
			anySub = anySub || in.subs[m][tp.topic]
		}
		switch {
		case !ok && anySub:
			t.Fatalf("%s/%d unassigned", tp.topic, tp.p)
		case ok && !in.subs[o][tp.topic]:
			t.Fatalf("%s/%d given to %s, which does not subscribe", tp.topic, tp.p, o)
		}
	}
}

func TestAssignRange(t *testing.T) {
	for _, tt := range []struct {
		name    string
		topics  map[string]int32
		members map[string][]string
		want    map[string]string
	}{
		{
			"even", map[string]int32{"t1": 4}, map[string][]string{"a": {"t1"}, "b": {"t1"}},
			map[string]string{"a": "t1/0,1", "b": "t1/2,3"},
		},
		{
			"co-partitioned, extra to the first", map[string]int32{"t1": 3, "t2": 3}, map[string][]string{"a": {"t1", "t2"}, "b": {"t1", "t2"}},
			map[string]string{"a": "t1/0,1;t2/0,1", "b": "t1/2;t2/2"},
		},
		{
			"more members than partitions", map[string]int32{"t1": 2}, map[string][]string{"a": {"t1"}, "b": {"t1"}, "c": {"t1"}},
			map[string]string{"a": "t1/0", "b": "t1/1", "c": "-"},
		},
		{
			"mixed subscriptions", map[string]int32{"t1": 2, "t2": 4}, map[string][]string{"a": {"t1"}, "b": {"t1", "t2"}, "c": {"t2"}},
			map[string]string{"a": "t1/0", "b": "t1/1;t2/0,1", "c": "t2/2,3"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := assignInput{parts: testParts(tt.topics), subs: map[string]map[string]bool{}}
			for m, ts := range tt.members {
				in.members = append(in.members, m)
				in.subs[m] = subsOf(ts...)
			}
			slices.Sort(in.members)
			out := assignRange(in)
			checkAssignment(t, in, out)
			for m, want := range tt.want {
				if got := formatTestAssignment(out[m]); got != want {
					t.Errorf("%s: %s, want %s", m, got, want)
				}
			}
		})
	}
}

func formatTestAssignment(a assignment) string {
	byTopic := make(map[string][]int32)
	for id, ps := range a {
		byTopic[string(id[:2])] = ps
	}
	return formatParts(byTopic)
}

// TestAssignUniform checks, over random inputs with a fixed seed, that the
// uniform assignor assigns everything once, balances homogeneous groups to
// within one partition, and moves nothing when nothing changed.
func TestAssignUniform(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		topics := map[string]int32{}
		names := []string{"t1", "t2", "t3", "t4"}
		for _, n := range names[:1+rng.IntN(4)] {
			topics[n] = int32(1 + rng.IntN(12))
		}
		homogeneous := rng.IntN(2) == 0
		in := assignInput{parts: testParts(topics), subs: map[string]map[string]bool{}, prev: map[string]assignment{}}
		nm := 1 + rng.IntN(7)
		for j := range nm {
			m := fmt.Sprintf("m%d", j)
			in.members = append(in.members, m)
			var ts []string
			for t := range topics {
				if homogeneous || rng.IntN(2) == 0 {
					ts = append(ts, t)
				}
			}
			in.subs[m] = subsOf(ts...)
		}
		out := assignUniform(in)
		checkAssignment(t, in, out)
		if homogeneous {
			lo, hi := len(in.parts), 0
			for _, m := range in.members {
				lo, hi = min(lo, out[m].count()), max(hi, out[m].count())
			}
			if hi-lo > 1 {
				t.Fatalf("case %d: unbalanced: counts between %d and %d", i, lo, hi)
			}
		}
		// Sticky: the same input with this output as the previous target
		// gives the same output.
		in.prev = out
		again := assignUniform(in)
		for _, m := range in.members {
			if !again[m].equal(out[m]) {
				t.Fatalf("case %d: %s moved from %v to %v", i, m, out[m], again[m])
			}
		}
		// A member joining (homogeneous case) takes partitions only from
		// others; nobody else gains.
		if homogeneous {
			in.members = append(in.members, "new")
			in.subs["new"] = subsOf(slices.Collect(func(yield func(string) bool) {
				for t := range topics {
					if !yield(t) {
						return
					}
				}
			})...)
			grown := assignUniform(in)
			checkAssignment(t, in, grown)
			for _, m := range in.members[:len(in.members)-1] {
				for id, ps := range grown[m] {
					for _, p := range ps {
						if !out[m].has(id, p) {
							t.Fatalf("case %d: %s gained %v/%d when a member joined", i, m, id, p)
						}
					}
				}
			}
		}
	}
}
