package raftlog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// TestBarrier: once Barrier returns on a node, voter or learner, the node
// has applied every entry committed before it was called, wherever it
// was proposed; without a quorum it waits until its context ends.
func TestBarrier(t *testing.T) {
	c := newLearnerCluster(t, 3, 1)
	waitFor(t, "a leader", func() bool { return c.logs[0].LeaderID() >= 0 })
	waitFor(t, "the learner to join", func() bool { return c.logs[3].LeaderID() >= 0 })
	n := 0
	for round := range 8 {
		for i := range 3 {
			if err := c.logs[(round+i)%3].Propose([]meta.Record{{Type: meta.TypeTopic, Topic: fmt.Sprint("t", n)}}); err != nil {
				t.Fatal(err)
			}
			n++
		}
		// Proposed at one node, committed; the barrier is at another.
		at := (round + 1) % 4
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.logs[at].Barrier(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Barrier on node %d: %v", round, at, err)
		}
		if got := c.ms[at].len(); got < n {
			t.Fatalf("round %d: node %d past its barrier with %d of the %d entries committed", round, at, got, n)
		}
	}

	// Without a quorum no leader can confirm that it leads.
	c.stop(1)
	c.stop(2)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.logs[0].Barrier(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Barrier without a quorum: %v, want the context's deadline", err)
	}
	l := c.logs[0]
	c.stop(0)
	if err := l.Barrier(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Barrier after Close: %v, want ErrClosed", err)
	}
}
