package txn

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// nopMarkers writes nothing.
type nopMarkers struct{}

func (nopMarkers) WriteMarker(context.Context, TopicPartition, Marker) error { return nil }

// nopStore stores nothing.
type nopStore struct{}

func (nopStore) Append(int32, []Record) (int64, error)         { return 0, nil }
func (nopStore) Replay(int32, func(int64, Record) error) error { return nil }
func (nopStore) Snapshot(int32, []Record) error                { return nil }

func benchCoordinator(b *testing.B) (*Coordinator, *testClientB) {
	b.Helper()
	c, err := New(testConfig(nopStore{}, nopMarkers{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	tc := &testClientB{c: c, id: "bench"}
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version, req.TransactionalID, req.TransactionTimeoutMillis = 5, &tc.id, 60000
	resp := c.InitProducerID(context.Background(), req)
	if resp.ErrorCode != 0 {
		b.Fatal(errName(resp.ErrorCode))
	}
	tc.pid, tc.epoch = resp.ProducerID, resp.ProducerEpoch
	return c, tc
}

type testClientB struct {
	c     *Coordinator
	id    string
	pid   int64
	epoch int16
}

// BenchmarkTransaction measures the coordinator's own work for one
// transaction of one partition (implicit add, EndTxn with its marker and
// Complete record), over a store and markers that do nothing.
func BenchmarkTransaction(b *testing.B) {
	c, tc := benchCoordinator(b)
	ctx := context.Background()
	parts := []TopicPartition{{"t", 0}}
	req := kmsg.NewPtrEndTxnRequest()
	req.Version, req.TransactionalID, req.Commit = 5, tc.id, true
	b.ReportAllocs()
	for b.Loop() {
		if err := c.AddPartitionsImplicitly(ctx, tc.id, tc.pid, tc.epoch, parts); err != nil {
			b.Fatal(err)
		}
		req.ProducerID, req.ProducerEpoch = tc.pid, tc.epoch
		resp := c.EndTxn(ctx, req)
		if resp.ErrorCode != 0 {
			b.Fatal(errName(resp.ErrorCode))
		}
		tc.pid, tc.epoch = resp.ProducerID, resp.ProducerEpoch
	}
}

// BenchmarkAddPartitionsKnown measures what every transactional batch of
// Produce v12+ may cost the produce path: an implicit add of a partition
// already in the transaction, and a verification.
func BenchmarkAddPartitionsKnown(b *testing.B) {
	c, tc := benchCoordinator(b)
	ctx := context.Background()
	parts := []TopicPartition{{"t", 0}}
	if err := c.AddPartitionsImplicitly(ctx, tc.id, tc.pid, tc.epoch, parts); err != nil {
		b.Fatal(err)
	}
	b.Run("implicit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.AddPartitionsImplicitly(ctx, tc.id, tc.pid, tc.epoch, parts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if errs := c.VerifyPartitions(ctx, tc.id, tc.pid, tc.epoch, parts); errs[0] != nil {
				b.Fatal(errs[0])
			}
		}
	})
}
