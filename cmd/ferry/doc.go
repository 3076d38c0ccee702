// Command ferry is the Ferry broker and its command line: one binary that
// serves the Kafka protocol (`ferry serve`), measures any Kafka-protocol
// broker (`ferry bench`), administers topics, records, consumer groups and
// transactions (`ferry topic|produce|consume|group|txn|producers|cluster`),
// SCRAM users, ACLs and client quotas (`ferry user|acl|quota`), and checks
// a broker's health through its admin listener (`ferry health`).
//
//	ferry serve -listen 127.0.0.1:9092 -data-dir ./data -admin-listen localhost:9644
//	ferry health -admin localhost:9644
//	ferry topic create orders -partitions 3 -c retention.ms=86400000
//	printf 'k1:hello\nk2:world\n' | ferry produce orders -key-delimiter : -v
//	ferry consume orders -group billing -e -f '%p/%o %k=%v\n'
//	ferry group describe billing
//	ferry group reset-offsets billing -to-earliest -execute
//	ferry txn list -state Ongoing
//	ferry txn describe billing-etl
//	ferry producers describe orders -partition 0
//	ferry user create alice -mechanism SCRAM-SHA-512 -command-config admin.properties
//	ferry acl create -principal alice -operation READ -topic orders -command-config admin.properties
//	ferry bench produce -embedded -duration 10s
//	ferry bench compare -target ferry=localhost:9092 -target kafka=kafka:9092 -report ./report
//	source <(ferry completion bash)
//
// Flags use the standard library's flag package (-x and --x both work) and
// may follow positional arguments. Every client command takes -brokers
// (default $FERRY_BROKERS, else localhost:9092), -o table|json, -timeout,
// and TLS and SASL flags or -command-config, a Kafka client properties
// file (clientsec.go).
// Errors name the broker, topic or group and Kafka's error name, and exit 1;
// a bad command line exits 2.
//
// Flags and environment variables are read only in this package. Every
// subcommand is a function
//
//	func(ctx context.Context, args []string, stdout, stderr io.Writer) error
//
// so the tests run them in-process against a broker on 127.0.0.1:0 and
// check what they print.
package main
