package txn

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func testConfig(store Store, markers Markers) Config {
	var next int64
	return Config{
		Store:   store,
		Markers: markers,
		ProducerIDs: func() (int64, error) {
			next++
			return next, nil
		},
		GroupPartition: func(string) int32 { return 0 },
		PartitionCount: func(string) int32 { return 2 },
	}
}

func TestConfigErrors(t *testing.T) {
	ok := testConfig(newMemStore(), newFakeMarkers())
	for name, mut := range map[string]func(*Config){
		"no store":         func(c *Config) { c.Store = nil },
		"no markers":       func(c *Config) { c.Markers = nil },
		"no producer ids":  func(c *Config) { c.ProducerIDs = nil },
		"no group mapping": func(c *Config) { c.GroupPartition = nil },
		"no topics":        func(c *Config) { c.PartitionCount = nil },
		"negative parts":   func(c *Config) { c.TransactionTopicPartitions = -1 },
		"transaction v3":   func(c *Config) { c.TransactionVersion = 3 },
		"transaction v-1":  func(c *Config) { c.TransactionVersion = -1 },
	} {
		cfg := ok
		mut(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func TestPartitionFor(t *testing.T) {
	for _, tc := range []struct {
		id   string
		n    int32
		want int32
	}{
		{"g", 50, 3},                  // "g".hashCode() = 103
		{"my-txn", 50, 45},            // negative hashCode
		{"polygenelubricants", 50, 0}, // hashCode is math.MinInt32
		{"é", 50, 33},                 // 233
		{"\U0001F600", 50, 49},        // a surrogate pair: 55357*31+56832 = 1772899
	} {
		if got := partitionFor(tc.id, tc.n); got != tc.want {
			t.Errorf("partitionFor(%q, %d) = %d, want %d", tc.id, tc.n, got, tc.want)
		}
	}
}

// TestEveryVersion sends every version kmsg knows of each API through the
// wire encoding and checks the answer is built for that version.
func TestEveryVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(testConfig(newMemStore(), newFakeMarkers()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := &scriptRunner{t: t}
		ctx := context.Background()
		id := "v"
		for v := int16(0); v <= (*kmsg.InitProducerIDRequest)(nil).MaxVersion(); v++ {
			req := kmsg.NewPtrInitProducerIDRequest()
			req.Version, req.TransactionalID, req.TransactionTimeoutMillis = v, &id, 1000
			req = wire(r, req)
			resp := wireResp(r, c.InitProducerID(ctx, req), v)
			if resp.ErrorCode != 0 || resp.ProducerEpoch != v {
				t.Fatalf("InitProducerID v%d: %s epoch %d", v, errName(resp.ErrorCode), resp.ProducerEpoch)
			}
		}
		pid, epoch := int64(1), int16(5)
		for v := int16(0); v <= (*kmsg.AddPartitionsToTxnRequest)(nil).MaxVersion(); v++ {
			req := kmsg.NewPtrAddPartitionsToTxnRequest()
			req.Version = v
			if v < 4 {
				req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
				req.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "t", Partitions: []int32{int32(v % 2)}}}
			} else {
				req.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{{
					TransactionalID: id, ProducerID: pid, ProducerEpoch: epoch, VerifyOnly: v == 4,
					Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0}}},
				}}
			}
			req = wire(r, req)
			resp := wireResp(r, c.AddPartitionsToTxn(ctx, req), v)
			var codes []int16
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					codes = append(codes, p.ErrorCode)
				}
			}
			for _, txn := range resp.Transactions {
				for _, t := range txn.Topics {
					for _, p := range t.Partitions {
						codes = append(codes, p.ErrorCode)
					}
				}
			}
			if len(codes) != 1 || codes[0] != 0 {
				t.Fatalf("AddPartitionsToTxn v%d: %v", v, codes)
			}
		}
		for v := int16(0); v <= (*kmsg.AddOffsetsToTxnRequest)(nil).MaxVersion(); v++ {
			req := kmsg.NewPtrAddOffsetsToTxnRequest()
			req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = v, id, pid, epoch, "g"
			req = wire(r, req)
			if resp := wireResp(r, c.AddOffsetsToTxn(ctx, req), v); resp.ErrorCode != 0 {
				t.Fatalf("AddOffsetsToTxn v%d: %s", v, errName(resp.ErrorCode))
			}
		}
		for v := int16(0); v <= (*kmsg.EndTxnRequest)(nil).MaxVersion(); v++ {
			if v > 0 {
				if err := c.AddPartitionsImplicitly(ctx, id, pid, epoch, []TopicPartition{{"t", 1}}); err != nil {
					t.Fatalf("before EndTxn v%d: %v", v, err)
				}
			}
			req := kmsg.NewPtrEndTxnRequest()
			req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = v, id, pid, epoch, v%2 == 0
			req = wire(r, req)
			resp := wireResp(r, c.EndTxn(ctx, req), v)
			if resp.ErrorCode != 0 {
				t.Fatalf("EndTxn v%d: %s", v, errName(resp.ErrorCode))
			}
			if v >= 5 && (resp.ProducerID != pid || resp.ProducerEpoch != epoch+1) {
				t.Fatalf("EndTxn v%d: producer %d epoch %d", v, resp.ProducerID, resp.ProducerEpoch)
			}
		}
		dreq := kmsg.NewPtrDescribeTransactionsRequest()
		dreq.TransactionalIDs = []string{id}
		dreq = wire(r, dreq)
		if resp := wireResp(r, c.DescribeTransactions(ctx, dreq), 0); resp.TransactionStates[0].State != "CompleteAbort" { // v5 aborted
			t.Fatalf("DescribeTransactions: %+v", resp.TransactionStates)
		}
		for v := int16(0); v <= (*kmsg.ListTransactionsRequest)(nil).MaxVersion(); v++ {
			req := kmsg.NewPtrListTransactionsRequest()
			req.Version = v
			req = wire(r, req)
			if resp := wireResp(r, c.ListTransactions(ctx, req), v); len(resp.TransactionStates) != 1 {
				t.Fatalf("ListTransactions v%d: %+v", v, resp.TransactionStates)
			}
		}
	})
}

// TestClose checks that Close returns while a marker write is blocked,
// that the EndTxn waiting for it answers success (the decision was
// stored), that calls after Close answer COORDINATOR_NOT_AVAILABLE, and
// that the next New writes the marker.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, markers := newMemStore(), newFakeMarkers()
		cfg := testConfig(store, markers)
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		tc := &testClient{t: t, c: c, id: "x"}
		tc.init()
		tc.add(TopicPartition{"t", 0})
		markers.gates[TopicPartition{"t", 0}] = make(chan struct{})
		answered := make(chan int16, 1)
		go func() {
			req := kmsg.NewPtrEndTxnRequest()
			req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = 5, tc.id, tc.pid, tc.epoch, true
			answered <- c.EndTxn(context.Background(), req).ErrorCode
		}()
		synctest.Wait()
		select {
		case code := <-answered:
			t.Fatalf("EndTxn answered %s before its marker was tried", errName(code))
		default:
		}
		c.Close()
		if code := <-answered; code != 0 {
			t.Errorf("EndTxn answered %s", errName(code))
		}
		if len(markers.take()) != 0 {
			t.Error("a held marker was written")
		}
		ctx := context.Background()
		if resp := c.InitProducerID(ctx, kmsg.NewPtrInitProducerIDRequest()); resp.ErrorCode != kerr.CoordinatorNotAvailable.Code {
			t.Errorf("InitProducerID after Close: %s", errName(resp.ErrorCode))
		}
		if err := c.AddPartitionsImplicitly(ctx, "x", 1, 1, nil); err != kerr.CoordinatorNotAvailable {
			t.Errorf("AddPartitionsImplicitly after Close: %v", err)
		}
		if errs := c.VerifyPartitions(ctx, "x", 1, 1, []TopicPartition{{"t", 0}}); errs[0] != kerr.CoordinatorNotAvailable {
			t.Errorf("VerifyPartitions after Close: %v", errs)
		}
		dreq := kmsg.NewPtrDescribeTransactionsRequest()
		dreq.TransactionalIDs = []string{"x"}
		if resp := c.DescribeTransactions(ctx, dreq); resp.TransactionStates[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
			t.Errorf("DescribeTransactions after Close: %s", errName(resp.TransactionStates[0].ErrorCode))
		}

		delete(markers.gates, TopicPartition{"t", 0})
		c2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		synctest.Wait()
		if w := markers.take(); len(w) != 1 || !w[0].m.Commit || w[0].m.ProducerEpoch != tc.epoch+1 {
			t.Errorf("after restart: %v", w)
		}
	})
}
