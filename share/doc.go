// Package share is Ferry's share-group engine (KIP-932 queues): membership
// of share groups, the delivery state of every share-partition, durable in
// the internal __share_group_state topic, dead-letter topics (KIP-1191),
// and delayed delivery with backoff.
package share
