//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBrokerOnlyKill runs three controller-only `ferry serve` processes
// and two broker-only ones on loopback, under an idempotent acks=all
// producer and a consumer, and SIGKILLs a broker-only node: the
// controllers (its raft learner gone, the quorum whole) fence it and move
// its leaderships to the other broker, produces go on; restarted, it
// recovers its metadata log from its own disk, catches up and rejoins the
// ISRs. The history check finds every acknowledged record once, in order,
// and nothing read that was not committed.
func TestBrokerOnlyKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes")
	}
	c := &procCluster{t: t, bin: buildFerry(t)}
	port := freePorts(8)
	var voters []string
	for i := range 5 {
		nd := &procNode{id: i, ip: "127.0.0.1", dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", port+i)}
		roles := "broker"
		if i < 3 {
			roles = "controller"
			voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i, port+5+i))
		}
		f, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("node-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		nd.log = f
		nd.args = []string{"serve", "-node-id", strconv.Itoa(i), "-listen", nd.addr, "-data-dir", filepath.Join(nd.dir, "data"),
			"-c", "process.roles=" + roles, "-c", "group.initial.rebalance.delay.ms=0"}
		for _, p := range faultTimeouts {
			nd.args = append(nd.args, "-c", p)
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.args = append(nd.args, "-c", "controller.quorum.voters="+strings.Join(voters, ","))
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.kill(nd)
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.log.Name())
				lines := strings.Split(string(b), "\n")
				t.Logf("node %d log (last lines):\n%s", nd.id, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	adm := kadm.NewClient(c.client(t))
	const topic = "brokers"
	waitFor(t, "the topic created on the two brokers", 30*time.Second, func() bool {
		resp, err := adm.CreateTopics(ctx, 2, 2, map[string]*string{"min.insync.replicas": ptr("1")}, topic)
		return err == nil && (resp.Error() == nil || strings.Contains(resp.Error().Error(), "TOPIC_ALREADY_EXISTS"))
	})
	leaders := func() []int32 {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return nil
		}
		var out []int32
		for p := range int32(2) {
			pd := td[topic].Partitions[p]
			for _, r := range append(append([]int32{pd.Leader}, pd.Replicas...), pd.ISR...) {
				if r < 3 && r >= 0 {
					t.Fatalf("partition %d: leader %d replicas %v isr %v: on a controller", p, pd.Leader, pd.Replicas, pd.ISR)
				}
			}
			if !slices.Contains(pd.ISR, 3) || !slices.Contains(pd.ISR, 4) {
				out = append(out, -1)
				continue
			}
			out = append(out, pd.Leader)
		}
		return out
	}
	waitFor(t, "both partitions led, in sync on both brokers", 20*time.Second, func() bool {
		l := leaders()
		return len(l) == 2 && l[0] >= 0 && l[1] >= 0
	})

	h := &history{acked: map[string]ack{}, reads: map[partOff]string{}}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		h.produce(wctx, c.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner())), topic, 2, 0)
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		h.consume(wctx, c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), false)
	}()
	stopLoad := func() {
		wcancel()
		<-done
		<-done
	}
	defer func() {
		if wctx.Err() == nil {
			stopLoad()
		}
	}()
	waitFor(t, "acknowledged records", 20*time.Second, func() bool { return h.ackCount() >= 200 })

	victim := c.nodes[3]
	c.kill(victim)
	killed := time.Now()
	waitFor(t, "broker 4 leading both partitions", 20*time.Second, func() bool {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return false
		}
		for p := range int32(2) {
			if td[topic].Partitions[p].Leader != 4 {
				return false
			}
		}
		return true
	})
	t.Logf("broker 4 led both partitions %v after the kill (broker.session.timeout.ms=1500)", time.Since(killed).Round(10*time.Millisecond))
	before := h.ackCount()
	waitFor(t, "produces acknowledged through broker 4 alone", 30*time.Second, func() bool { return h.ackCount() >= before+200 })
	c.start(victim)
	waitFor(t, "broker 3 back in both ISRs", 30*time.Second, func() bool {
		l := leaders()
		return len(l) == 2 && l[0] >= 0 && l[1] >= 0
	})
	stopLoad()
	if h.ackCount() == 0 {
		t.Fatal("nothing was acknowledged")
	}

	final := &history{reads: map[partOff]string{}, writers: map[partOff]string{}}
	end := map[int32]int64{}
	waitFor(t, "the end offsets", 20*time.Second, func() bool {
		lo, err := adm.ListEndOffsets(ctx, topic)
		if err != nil || lo.Error() != nil {
			return false
		}
		lo.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
		return len(end) == 2
	})
	final.consumeUntil(ctx, t, c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), end)
	h.check(t, final)
}
