package txn

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// testClient drives a Coordinator the way a transactional producer does.
type testClient struct {
	t     *testing.T
	c     *Coordinator
	id    string
	pid   int64
	epoch int16
}

func (tc *testClient) init() {
	tc.t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = 5
	req.TransactionalID = &tc.id
	req.TransactionTimeoutMillis = 60000
	resp := tc.c.InitProducerID(context.Background(), req)
	if resp.ErrorCode != 0 {
		tc.t.Fatalf("%s: InitProducerID: %s", tc.id, errName(resp.ErrorCode))
	}
	tc.pid, tc.epoch = resp.ProducerID, resp.ProducerEpoch
}

func (tc *testClient) add(tps ...TopicPartition) {
	tc.t.Helper()
	if err := tc.c.AddPartitionsImplicitly(context.Background(), tc.id, tc.pid, tc.epoch, tps); err != nil {
		tc.t.Fatalf("%s: adding %v: %v", tc.id, tps, err)
	}
}

func (tc *testClient) end(commit bool) {
	tc.t.Helper()
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = 5
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = tc.id, tc.pid, tc.epoch, commit
	resp := tc.c.EndTxn(context.Background(), req)
	if resp.ErrorCode != 0 {
		tc.t.Fatalf("%s: EndTxn: %s", tc.id, errName(resp.ErrorCode))
	}
	tc.pid, tc.epoch = resp.ProducerID, resp.ProducerEpoch
}

// decision identifies the end of one transaction on the partitions: the
// producer id and epoch its markers carry.
type decision struct {
	pid   int64
	epoch int16
}

// TestCrashAtEveryStep runs transactions, then restarts a coordinator from
// the store as it was after each of its appends, as if the broker had been
// killed right there. Every transaction found prepared is completed with
// the decision the first run made, on every one of its partitions, then
// recorded complete; nothing else gets a marker; and the state of every
// other transactional id is the one stored.
func TestCrashAtEveryStep(t *testing.T) {
	store := newMemStore()
	var cfg Config
	decided := make(map[decision]bool)
	synctest.Test(t, func(t *testing.T) {
		markers := newFakeMarkers()
		var next int64 = 100
		cfg = Config{
			Store:   store,
			Markers: markers,
			ProducerIDs: func() (int64, error) {
				next++
				return next, nil
			},
			GroupPartition:             func(string) int32 { return 7 },
			PartitionCount:             func(string) int32 { return 4 },
			TransactionTopicPartitions: 3,
			compactSlack:               1 << 40,
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tp := func(topic string, p int32) TopicPartition { return TopicPartition{topic, p} }
		a := &testClient{t: t, c: c, id: "alpha"}
		b := &testClient{t: t, c: c, id: "beta"}
		a.init()
		b.init()
		a.add(tp("t1", 0), tp("t2", 1))
		a.add(tp(OffsetsTopic, 7))
		b.add(tp("t1", 0))
		a.end(true)
		b.end(false)
		a.add(tp("t1", 1), tp("t1", 2), tp("t2", 0))
		a.end(false)
		b.add(tp("t2", 3))
		b.end(true)
		// A new instance of alpha while it has a transaction open: the
		// coordinator aborts it first.
		a.add(tp("t1", 3))
		a2 := &testClient{t: t, c: c, id: "alpha"}
		a2.init()
		a2.add(tp("t2", 2))
		a2.end(true)
		// A transaction left open to time out.
		b.add(tp("t1", 1))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		c.Close()

		// The decisions of the first run, by the markers it wrote.
		for _, w := range markers.take() {
			d := decision{w.m.ProducerID, w.m.ProducerEpoch}
			if commit, ok := decided[d]; ok && commit != w.m.Commit {
				t.Fatalf("first run: commit and abort markers for %+v", d)
			}
			decided[d] = w.m.Commit
		}
		if len(decided) != 7 {
			t.Errorf("first run decided %d transactions, want 7: %v", len(decided), decided)
		}
	})

	store.mu.Lock()
	n := len(store.appends)
	store.mu.Unlock()
	for k := 0; k <= n; k++ {
		t.Run(fmt.Sprintf("after%d", k), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				checkRecovery(t, cfg, store.prefix(k), decided)
			})
		})
	}
}

// checkRecovery starts a coordinator over s and checks what it does.
func checkRecovery(t *testing.T, cfg Config, s *memStore, decided map[decision]bool) {
	// What the store says: the last value of every id.
	last := make(map[string]meta)
	for _, a := range s.appends {
		id, err := decodeKey(a.r.Key)
		if err != nil {
			t.Fatal(err)
		}
		if a.r.Value == nil {
			delete(last, id)
			continue
		}
		m, err := decodeValue(a.r.Value)
		if err != nil {
			t.Fatal(err)
		}
		last[id] = m
	}
	before := len(s.appends)
	markers := newFakeMarkers()
	cfg.Store, cfg.Markers = s, markers
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	c.Close()

	written := make(map[decision]map[TopicPartition]bool)
	for _, w := range markers.take() {
		d := decision{w.m.ProducerID, w.m.ProducerEpoch}
		if written[d] == nil {
			written[d] = make(map[TopicPartition]bool)
		}
		written[d][w.tp] = w.m.Commit
	}
	completed := make(map[string]meta)
	for _, a := range s.appends[before:] {
		id, _ := decodeKey(a.r.Key)
		m, err := decodeValue(a.r.Value)
		if err != nil {
			t.Fatal(err)
		}
		completed[id] = m
	}
	wantMarkers := 0
	for id, m := range last {
		d := decision{m.producerID, m.epoch}
		if !m.state.prepared() {
			if _, ok := completed[id]; ok {
				t.Errorf("%s: %s state rewritten at start", id, m.state)
			}
			continue
		}
		commit := m.state == statePrepareCommit
		if first, ok := decided[d]; !ok || first != commit {
			t.Errorf("%s: prepared %s as %+v, the first run decided %v (known %v)", id, m.state, d, first, ok)
		}
		for _, tp := range m.partitions {
			got, ok := written[d][tp]
			switch {
			case !ok:
				t.Errorf("%s: no marker on %s", id, tp)
			case got != commit:
				t.Errorf("%s: marker on %s commit=%v, want %v", id, tp, got, commit)
			}
			wantMarkers++
		}
		cm, ok := completed[id]
		want := stateCompleteAbort
		if commit {
			want = stateCompleteCommit
		}
		if !ok || cm.state != want {
			t.Errorf("%s: recorded %v after the markers, want %s", id, cm.state, want)
		}
	}
	got := 0
	for _, tps := range written {
		got += len(tps)
	}
	if got != wantMarkers {
		t.Errorf("%d markers written, want %d", got, wantMarkers)
	}

	// A second start finds everything complete and writes nothing.
	c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	c.Close()
	if w := markers.take(); len(w) != 0 {
		t.Errorf("second start wrote %d markers", len(w))
	}
}
