package txn

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the randomized tests (0: from the clock)")

// flakyMarkers fails a marker now and then, and records every marker
// written.
type flakyMarkers struct {
	mu      sync.Mutex
	rng     *rand.Rand
	written map[decision]map[TopicPartition]bool
	err     error // first conflict seen
}

func (f *flakyMarkers) WriteMarker(ctx context.Context, tp TopicPartition, m Marker) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rng.IntN(10) == 0 {
		return errMarkerInjected
	}
	d := decision{m.ProducerID, m.ProducerEpoch}
	if f.written[d] == nil {
		f.written[d] = make(map[TopicPartition]bool)
	}
	if prev, ok := f.written[d][tp]; ok && prev != m.Commit && f.err == nil {
		f.err = fmt.Errorf("commit and abort markers for %+v on %s", d, tp)
	}
	f.written[d][tp] = m.Commit
	return nil
}

// TestConcurrentProducers runs producers of several transactional ids at
// once (two instances per id, fencing each other), with snapshots and
// failing markers, under -race. Every transaction a producer saw commit has
// its commit marker on each of its partitions, no transaction has both
// kinds of markers, and a coordinator replayed from the store has the
// state the live one had.
func TestConcurrentProducers(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed)", seed)
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		fm := &flakyMarkers{rng: rand.New(rand.NewPCG(seed, 1)), written: make(map[decision]map[TopicPartition]bool)}
		var pidMu sync.Mutex
		var next int64
		cfg := Config{
			Store:   store,
			Markers: fm,
			ProducerIDs: func() (int64, error) {
				pidMu.Lock()
				defer pidMu.Unlock()
				next++
				return next, nil
			},
			GroupPartition:             func(g string) int32 { return partitionFor(g, 5) },
			PartitionCount:             func(string) int32 { return 6 },
			TransactionTopicPartitions: 3,
			compactSlack:               500,
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()

		type committed struct {
			d     decision
			parts []TopicPartition
		}
		var mu sync.Mutex
		var commits []committed
		var wg sync.WaitGroup
		for w := range 8 {
			rng := rand.New(rand.NewPCG(seed, uint64(w)+10))
			id := fmt.Sprintf("txn-%d", w/2)
			wg.Go(func() {
				ctx := context.Background()
				var pid int64 = -1
				var epoch int16 = -1
				var parts []TopicPartition
				for range 40 {
					if pid < 0 {
						req := kmsg.NewPtrInitProducerIDRequest()
						req.Version = 5
						req.TransactionalID = &id
						req.TransactionTimeoutMillis = 5000
						resp := c.InitProducerID(ctx, req)
						if resp.ErrorCode == 0 {
							pid, epoch, parts = resp.ProducerID, resp.ProducerEpoch, nil
						}
						time.Sleep(100 * time.Millisecond)
						continue
					}
					switch op := rng.IntN(10); {
					case op < 6:
						tp := TopicPartition{fmt.Sprintf("t%d", rng.IntN(3)), rng.Int32N(6)}
						if rng.IntN(4) == 0 {
							tp = TopicPartition{OffsetsTopic, cfg.GroupPartition(fmt.Sprintf("g%d", rng.IntN(3)))}
						}
						switch err := c.AddPartitionsImplicitly(ctx, id, pid, epoch, []TopicPartition{tp}); err {
						case nil:
							parts = append(parts, tp)
						case kerr.ConcurrentTransactions:
						default:
							pid = -1 // fenced: start over
						}
					default:
						req := kmsg.NewPtrEndTxnRequest()
						req.Version = 5
						req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
						req.Commit = op < 9
						resp := c.EndTxn(ctx, req)
						switch resp.ErrorCode {
						case 0:
							if req.Commit && len(parts) > 0 {
								// The markers carry the bumped epoch the
								// response returns, or the overflow epoch.
								mu.Lock()
								commits = append(commits, committed{decision{pid, epoch + 1}, sortedUnique(slices.Clone(parts))})
								mu.Unlock()
							}
							pid, epoch, parts = resp.ProducerID, resp.ProducerEpoch, nil
						case kerr.ConcurrentTransactions.Code, kerr.InvalidTxnState.Code:
						default:
							pid = -1
						}
					}
					time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				}
			})
		}
		wg.Wait()
		time.Sleep(time.Minute) // timeouts abort what was left open; retries finish
		synctest.Wait()

		fm.mu.Lock()
		if fm.err != nil {
			t.Error(fm.err)
		}
		for _, cm := range commits {
			for _, tp := range cm.parts {
				if commit, ok := fm.written[cm.d][tp]; !ok || !commit {
					t.Errorf("committed %+v has no commit marker on %s (have %v)", cm.d, tp, ok)
				}
			}
		}
		fm.mu.Unlock()
		if len(commits) == 0 {
			t.Error("nothing committed")
		}
		t.Logf("%d commits, %d transactions with markers", len(commits), len(fm.written))

		live := describeAll(c)
		c.Close()
		c2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		synctest.Wait()
		if replayed := describeAll(c2); !slices.Equal(live, replayed) {
			t.Errorf("state after replay differs:\nlive     %v\nreplayed %v", live, replayed)
		}
		store.mu.Lock()
		snaps := store.snapshots
		store.mu.Unlock()
		if snaps == 0 {
			t.Error("no snapshot taken")
		}
	})
}

// describeAll describes every transactional id of c.
func describeAll(c *Coordinator) []string {
	var out []string
	for _, e := range c.entries() {
		e.mu.Lock()
		m := e.m
		e.mu.Unlock()
		out = append(out, fmt.Sprintf("%s %s pid=%d epoch=%d parts=%v", e.id, m.state, m.producerID, m.epoch, m.partitions))
	}
	return out
}
