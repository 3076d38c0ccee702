package partition

import (
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/faultfile"
	"github.com/ferrymq/ferry/log"
)

// TestOnlyDurableVisible: a batch is not read, nor counted in the high
// watermark, nor does it wake a waiter, until the fdatasync that covers
// it returns; then all three happen. Without a Sync (acks 0 or 1), the
// background flush makes it visible.
func TestOnlyDurableVisible(t *testing.T) {
	gate := faultfile.NewGate()
	p := openP(t, t.TempDir(), Config{Log: log.Config{WrapFile: gate.Wrap}})
	t.Cleanup(gate.Open) // before Close, which syncs
	ch := make(chan struct{}, 1)
	p.Watch(ch)
	defer p.Unwatch(ch)
	visible := func() int {
		v, err := p.Read(0, 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Release()
		return len(v.Data)
	}
	woken := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	gate.Close()
	res, err := p.Append(batch(bopt{n: 3}))
	if err != nil || res.BaseOffset != 0 {
		t.Fatalf("append: %+v %v", res, err)
	}
	synced := make(chan error, 1)
	go func() { synced <- p.Sync() }() // acks=all
	select {
	case <-gate.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("no fdatasync reached the file")
	}
	if hw, leo := p.HighWatermark(), p.LogEndOffset(); hw != 0 || leo != 3 {
		t.Fatalf("while the fdatasync is held: high watermark %d, log end %d; want 0, 3", hw, leo)
	}
	if n := visible(); n != 0 {
		t.Fatalf("read %d bytes not yet durable", n)
	}
	if woken() {
		t.Fatal("a waiter was woken before the batch was durable")
	}
	select {
	case err := <-synced:
		t.Fatalf("Sync returned %v while the fdatasync is held", err)
	default:
	}

	gate.Open()
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if p.HighWatermark() != 3 || visible() == 0 {
		t.Fatalf("after the fdatasync: high watermark %d, %d bytes read", p.HighWatermark(), visible())
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("the fdatasync did not wake the waiter")
	}

	// acks=1: nobody calls Sync; the background flush wakes the waiter.
	if _, err := p.Append(batch(bopt{n: 2})); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for p.HighWatermark() != 5 {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no background flush: high watermark %d, log end %d", p.HighWatermark(), p.LogEndOffset())
		}
	}
}

// TestHighWatermarkNotBelowLogStart: retention may delete segments that
// no fdatasync covered yet; the high watermark is then the new log start,
// never below it.
func TestHighWatermarkNotBelowLogStart(t *testing.T) {
	p := openP(t, t.TempDir(), Config{Log: log.Config{RetentionMs: 1000, FlushMaxDelayMs: 1 << 40}})
	for range 3 {
		if _, err := p.Append(batch(bopt{ts: 1, n: 2})); err != nil { // timestamps long expired
			t.Fatal(err)
		}
	}
	if n, err := p.EnforceRetention(time.Now()); err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments: %v", n, err)
	}
	if start, hw := p.LogStartOffset(), p.HighWatermark(); start != 6 || hw != 6 {
		t.Fatalf("after retention: log start %d, high watermark %d; want 6, 6", start, hw)
	}
}
