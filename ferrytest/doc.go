// Package ferrytest runs a real Ferry broker inside a Go test: the same
// server as `ferry serve`, persistent (segments on disk, fsynced as in
// production), listening on 127.0.0.1 on a free port, with its data in
// t.TempDir(), and stopped when the test ends. It is to Ferry what
// kfake.NewCluster (github.com/twmb/franz-go/pkg/kfake) is to an in-memory
// Kafka: any Kafka client talks to it.
//
//	func TestOrders(t *testing.T) {
//		b := ferrytest.Start(t)
//		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//		...
//	}
//
// Broker configs take Kafka's names (Props). The broker keeps Kafka's
// defaults except group.initial.rebalance.delay.ms, 0 here, so that a
// consumer group in a test starts at once. To restart a broker on the same
// data, as after a crash or a deploy, close it and start another on its
// directory and address:
//
//	b.Close()
//	b = ferrytest.Start(t, ferrytest.DataDir(b.DataDir()), ferrytest.ListenAddr(b.Addr()))
//
// Its logs are discarded unless Logger names a logger.
package ferrytest
