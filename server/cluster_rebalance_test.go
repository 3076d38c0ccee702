package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// TestClusterAutoLeaderRebalance stops the preferred leader of a
// partition, lets another broker take over, and starts it again: with
// auto.leader.rebalance.enable the controller gives the leadership back
// to it once it is in sync again, with no ElectLeaders request; with the
// config false the leadership stays where it went.
func TestClusterAutoLeaderRebalance(t *testing.T) {
	for _, enable := range []bool{true, false} {
		t.Run(fmt.Sprint("enable=", enable), func(t *testing.T) {
			c := startCluster(t, 3, map[string]string{
				"auto.leader.rebalance.enable":            fmt.Sprint(enable),
				"leader.imbalance.check.interval.seconds": "1",
			})
			ctx := testCtx(t)
			c.waitRegistered()
			if err := c.request(ctx, kmsgCreateWithAssignment("bal", [][]int32{{0, 1, 2}})); err != nil {
				t.Fatal(err)
			}
			state := func() meta.PartitionState {
				if tp := c.nodes[1].srv.meta.Topic("bal"); tp != nil {
					return tp.State(0)
				}
				return meta.PartitionState{Leader: -1}
			}
			waitCluster(t, "broker 0 leading, the three in sync", 20*time.Second, func() bool {
				st := state()
				return st.Leader == 0 && len(st.ISR) == 3
			})
			c.stop(0)
			waitCluster(t, "another leader", 20*time.Second, func() bool {
				l := state().Leader
				return l >= 0 && l != 0
			})
			c.start(0)
			waitCluster(t, "broker 0 back in sync", 30*time.Second, func() bool { return slices.Contains(state().ISR, 0) })
			if enable {
				inSync := time.Now()
				waitCluster(t, "broker 0 leading again", 20*time.Second, func() bool { return state().Leader == 0 })
				t.Logf("broker 0 leads again %v after it was back in sync", time.Since(inSync).Round(time.Millisecond))
				return
			}
			// Three check intervals and more.
			time.Sleep(4 * time.Second)
			if st := state(); st.Leader == 0 || st.Leader < 0 {
				t.Fatalf("leader %d with auto.leader.rebalance.enable=false", st.Leader)
			}
		})
	}
}
