package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkListenerThroughput produces and consumes 1 KiB records
// (acks=all, one partition) through a PLAINTEXT and an SSL listener of
// the same broker, to compare what TLS costs. Run the sub-benchmarks
// alternately (-count 1, several times) on a shared machine.
func BenchmarkListenerThroughput(b *testing.B) {
	ca := newTestCA(b, "bench")
	keystore, _ := ca.issue(b, "broker", true)
	br := startListeners(b, map[string]string{
		"listeners":             "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
		"ssl.keystore.location": ca.file(b, "broker.pem", keystore),
	})
	value := make([]byte, 1024)
	for i := range value {
		value[i] = byte(i * 7)
	}
	for _, listener := range []string{"PLAINTEXT", "SSL"} {
		var opts []kgo.Opt
		if listener == "SSL" {
			opts = append(opts, kgo.DialTLSConfig(ca.clientTLS()))
		}
		topic := "bench-" + listener
		b.Run(fmt.Sprintf("produce/%s", listener), func(b *testing.B) {
			cl := br.client(listener, append(opts, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			ctx := context.Background()
			for range b.N {
				cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
		b.Run(fmt.Sprintf("consume/%s", listener), func(b *testing.B) {
			fill := br.client(listener, append(opts, kgo.DefaultProduceTopic(topic+"-c"), kgo.ProducerBatchCompression(kgo.NoCompression()))...)
			ctx := context.Background()
			for range b.N {
				fill.Produce(ctx, &kgo.Record{Value: value}, nil)
			}
			if err := fill.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			cl := br.client(listener, append(opts, kgo.ConsumeTopics(topic+"-c"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for n := 0; n < b.N; {
				fs := cl.PollFetches(ctx)
				if err := fs.Err0(); err != nil {
					b.Fatal(err)
				}
				n += fs.NumRecords()
			}
		})
	}
}
