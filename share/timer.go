package share

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// timerHeap orders the share-partitions by their next deadline (a lock
// expiry or a delay coming due), so one goroutine and one clock timer
// serve them all, at the exact deadline, without a timer per record.
type timerHeap struct {
	mu      sync.Mutex
	h       spHeap
	kick    chan struct{} // one-slot: the earliest deadline moved
	armedAt int64         // monotonic ns the clock timer is armed for; 0 if not armed
	timer   Timer
	stopped bool
	visits  atomic.Int64 // share-partitions visited, for tests
}

func (t *timerHeap) init() { t.kick = make(chan struct{}, 1) }

func (t *timerHeap) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}

func (t *timerHeap) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// spHeap is a min-heap of share-partitions by heapAt.
type spHeap []*sharePartition

func (h spHeap) Len() int           { return len(h) }
func (h spHeap) Less(i, j int) bool { return h[i].heapAt < h[j].heapAt }
func (h spHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}
func (h *spHeap) Push(x any) {
	sp := x.(*sharePartition)
	sp.heapIndex = len(*h)
	*h = append(*h, sp)
}
func (h *spHeap) Pop() any {
	old := *h
	sp := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	sp.heapIndex = -1
	return sp
}

// scheduleLocked makes sure the timer visits sp by its next deadline.
// sp.mu is held.
func (c *Coordinator) scheduleLocked(sp *sharePartition) {
	if sp.lockDeadline == 0 && sp.delayDeadline == 0 {
		return
	}
	mono, ms := c.now()
	at := sp.lockDeadline
	if sp.delayDeadline != 0 {
		d := mono + (sp.delayDeadline-ms)*1e6
		if at == 0 || d < at {
			at = d
		}
	}
	t := &c.timers
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	switch {
	case sp.heapIndex < 0:
		sp.heapAt = at
		heap.Push(&t.h, sp)
	case at < sp.heapAt:
		sp.heapAt = at
		heap.Fix(&t.h, sp.heapIndex)
	default:
		return // an earlier visit is already due; it reschedules
	}
	if t.armedAt == 0 || at < t.armedAt {
		t.wake()
	}
}

// timerLoop visits share-partitions when their deadlines come.
func (c *Coordinator) timerLoop() {
	defer c.wg.Done()
	t := &c.timers
	for {
		mono, _ := c.now()
		var due []*sharePartition
		t.mu.Lock()
		for len(t.h) > 0 && t.h[0].heapAt <= mono {
			due = append(due, heap.Pop(&t.h).(*sharePartition))
		}
		t.mu.Unlock()
		for _, sp := range due {
			t.visits.Add(1)
			c.expire(sp)
		}
		t.mu.Lock()
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		t.armedAt = 0
		if len(t.h) > 0 && !t.stopped {
			mono, _ = c.now()
			at := t.h[0].heapAt
			t.armedAt = at
			t.timer = c.clock.AfterFunc(time.Duration(max(at-mono, 0)), t.wake)
		}
		t.mu.Unlock()
		select {
		case <-c.quit:
			return
		case <-t.kick:
		}
	}
}

// expire releases what expired in sp and makes due what came due.
func (c *Coordinator) expire(sp *sharePartition) {
	g := c.findGroup(sp.key.group)
	if g == nil {
		return
	}
	gc := c.groupConfig(g)
	mono, ms := c.now()
	sp.mu.Lock()
	if sp.dead {
		sp.mu.Unlock()
		return
	}
	sbs, jobs, available := sp.expireLocked(mono, ms, gc.deliveryLimit, c.dlqEnabled(gc), gc, nil, nil)
	c.scheduleLocked(sp)
	sp.mu.Unlock()
	c.dlq.push(jobs...)
	if available && c.cfg.Available != nil {
		c.cfg.Available(sp.key.group, sp.key.tp)
	}
	if len(sbs) > 0 {
		c.writeBehind(sp, sbs)
	}
}
