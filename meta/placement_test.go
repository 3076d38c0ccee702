package meta

import (
	"fmt"
	"testing"
)

// TestAssignByRack: with every broker in a rack, each partition's
// replicas span as many racks as they can, on distinct brokers, and the
// leaders spread evenly over the brokers.
func TestAssignByRack(t *testing.T) {
	for _, tc := range []struct {
		racks      []string // by broker id
		partitions int32
		rf         int16
		spans      int // racks each partition spans
	}{
		{[]string{"a", "a", "b", "b", "c", "c"}, 12, 3, 3},
		{[]string{"a", "b", "c", "a", "b", "c"}, 12, 2, 2},
		{[]string{"a", "a", "b"}, 9, 2, 2},
		{[]string{"a", "a", "b"}, 9, 3, 2},
		{[]string{"a", "a", "a", "a", "b"}, 10, 4, 2},
	} {
		t.Run(fmt.Sprint(tc.racks, tc.rf), func(t *testing.T) {
			l := &memLog{}
			s := openCluster(t, 0, l)
			for id, rack := range tc.racks {
				b := int32(id)
				if err := l.Propose([]Record{{Type: TypeBroker, Broker: &b, Host: "h", Port: 9092 + b, Rack: rack}}); err != nil {
					t.Fatal(err)
				}
			}
			for range 20 { // the start is random
				asg, err := s.assign(tc.partitions, tc.rf)
				if err != nil {
					t.Fatal(err)
				}
				leads := map[int32]int{}
				for i, reps := range asg {
					if len(reps) != int(tc.rf) {
						t.Fatalf("partition %d: replicas %v", i, reps)
					}
					brokers, racks := map[int32]bool{}, map[string]bool{}
					for _, b := range reps {
						brokers[b], racks[tc.racks[b]] = true, true
					}
					if len(brokers) != len(reps) || len(racks) != tc.spans {
						t.Fatalf("partition %d: replicas %v span racks %v, want %d racks", i, reps, racks, tc.spans)
					}
					leads[reps[0]]++
				}
				for id := range tc.racks {
					if want := int(tc.partitions) / len(tc.racks); leads[int32(id)] != want {
						t.Fatalf("broker %d leads %d partitions, want %d: %v", id, leads[int32(id)], want, asg)
					}
				}
			}
		})
	}
}

// TestAssignIgnoresRacksUnlessAll: a broker without a rack, or a single
// rack, gives the placement without racks (still valid).
func TestAssignIgnoresRacksUnlessAll(t *testing.T) {
	for _, racks := range [][]string{{"a", "", "b"}, {"a", "a", "a"}} {
		if order, _, _ := rackAlternated([]Broker{{ID: 0, Rack: racks[0]}, {ID: 1, Rack: racks[1]}, {ID: 2, Rack: racks[2]}}); order != nil {
			t.Errorf("racks %q: ordered by rack %v", racks, order)
		}
	}
	order, _, n := rackAlternated([]Broker{{ID: 0, Rack: "b"}, {ID: 1, Rack: "a"}, {ID: 2, Rack: "a"}, {ID: 3, Rack: "c"}})
	if fmt.Sprint(order) != "[1 0 3 2]" || n != 3 {
		t.Errorf("alternated %v over %d racks, want [1 0 3 2] over 3", order, n)
	}
}
