// Package console is Ferry's web console: a JSON API and a single-page UI,
// embedded in the binary, served by `ferry serve -admin-listen` beside the
// metrics and health checks.
//
// It is its own package because it is a Kafka client, not part of the
// broker: its backend talks to the broker's own Kafka listener with
// franz-go (kgo, kadm, raw kmsg requests), exactly as any tool would. It
// imports nothing of Ferry, so it knows none of the broker's internals and
// exercises the same protocol paths as every other client, and it would
// work unchanged against any Kafka-protocol broker.
//
// The UI (web/) is plain HTML, CSS and JavaScript with one vendored
// library, uPlot (MIT, web/vendor), for the throughput charts; nothing is
// built at run time. Pages: the cluster overview with live throughput,
// topics (partitions, offsets, sizes, configs), a record browser (from an
// offset or a time; keys and values as text, JSON or hex; headers),
// consumer groups (members, assignments, lag), share groups (KIP-932:
// members, subscriptions, assignments, start offsets, the broker's lag),
// and the actions that change things, each behind a confirmation: create
// a topic, delete a topic, reset a group's offsets (a share group's start
// offsets), delete a group.
//
// API (JSON; lists are paged with offset and limit):
//
//	GET    /api/cluster                      brokers, counts, totals, throughput history
//	GET    /api/throughput?since=MS          throughput samples newer than MS
//	GET    /api/topics?q=&internal=&offset=&limit=
//	POST   /api/topics                       {"name","partitions","replication_factor","configs"}
//	GET    /api/topics/{topic}               totals and configs
//	DELETE /api/topics/{topic}?confirm=NAME  NAME must repeat the topic
//	GET    /api/topics/{topic}/partitions?offset=&limit=
//	GET    /api/topics/{topic}/records?partition=&offset=|time=|from=oldest|newest&limit=
//	GET    /api/groups?q=&type=classic|consumer|share&offset=&limit=
//	GET    /api/groups/{group}?offset=&limit=
//	DELETE /api/groups/{group}?confirm=NAME  NAME must repeat the group
//	POST   /api/groups/{group}/reset-offsets {"to","topics","offset","time","shift","execute"}
//
// Scale: every page costs a bounded number of Kafka requests whatever the
// number of partitions (one Metadata, one ListOffsets per broker and
// timestamp, one DescribeLogDirs per broker, one batched OffsetFetch and
// DescribeShareGroupOffsets per coordinator...),
// never one per partition; a topic of 10,000 partitions is shown a page
// of partitions at a time. The throughput sampler lists end offsets and
// log sizes every SampleInterval, only while someone uses the console.
//
// Changes (POST, DELETE) are refused from other origins (net/http's
// CrossOriginProtection), so a page elsewhere cannot drive the console of
// a broker on localhost.
//
// Concurrency: New starts the sampler goroutine; Close stops it, waits for
// it and closes the Kafka client. The handler is safe for concurrent use.
//
//	c, err := console.New(console.Config{Brokers: []string{"127.0.0.1:9092"}})
//	...
//	http.Handle("/", c)
//	defer c.Close()
package console
