package metric

import (
	"sync"
	"testing"
)

func TestHistogram(t *testing.T) {
	h := NewHistogram([]int64{10, 100, 1000})
	for _, v := range []int64{-5, 0, 10, 11, 100, 101, 1000, 1001, 1 << 40} {
		h.Observe(v)
	}
	s := h.Snapshot()
	want := []uint64{3, 5, 7} // <=10: -5 0 10; <=100: +11 100; <=1000: +101 1000
	for i, w := range want {
		if s.Cumulative[i] != w {
			t.Errorf("bucket <= %d: %d, want %d", s.Bounds[i], s.Cumulative[i], w)
		}
	}
	if s.Count != 9 {
		t.Errorf("count %d, want 9", s.Count)
	}
	if wantSum := int64(-5 + 0 + 10 + 11 + 100 + 101 + 1000 + 1001 + 1<<40); s.Sum != wantSum {
		t.Errorf("sum %d, want %d", s.Sum, wantSum)
	}
}

func TestHistogramBoundsChecked(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewHistogram took bounds out of order")
		}
	}()
	NewHistogram([]int64{1, 1})
}

func TestHistogramConcurrent(t *testing.T) {
	h := NewHistogram(LatencyBounds)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.Observe(int64(g*1000+i) * 1e6)
			}
		}()
	}
	done, checked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(checked)
		// Snapshots taken meanwhile never go down.
		var last uint64
		for {
			select {
			case <-done:
				return
			default:
			}
			s := h.Snapshot()
			if s.Count < last {
				t.Errorf("count went down: %d after %d", s.Count, last)
				return
			}
			last = s.Count
		}
	}()
	wg.Wait()
	close(done)
	<-checked
	if s := h.Snapshot(); s.Count != 4000 {
		t.Fatalf("count %d, want 4000", s.Count)
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	h := NewHistogram(LatencyBounds)
	if n := testing.AllocsPerRun(100, func() { h.Observe(3e6) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	h := NewHistogram(LatencyBounds)
	b.ReportAllocs()
	v := int64(0)
	for b.Loop() {
		h.Observe(v)
		v += 1e5
	}
}
