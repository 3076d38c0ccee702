// Package server is a Ferry broker's wire protocol and nothing else: the
// listeners and accept loop (listener.go, accept.go), TLS (tls.go), one
// connection's reader and writer goroutines with framing and ordered
// responses (conn.go), SASL authentication (sasl.go), kmsg decoding
// and dispatch by API key, one file per API named by its key
// (00_produce.go, 01_fetch.go, ...) that registers the versions it serves
// (handlers.go; ApiVersions advertises exactly those), authorization
// (authorize.go, security.go: each handler states the resource and
// operation it needs), client quotas and throttling (quota.go), fetch
// sessions (fetch_session.go), the broker's background schedulers
// (schedule.go), the one mapping from errors to Kafka codes (errors.go),
// and the broker's metrics: request, error-code and connection counters
// kept with atomic adds and slow-request log lines (stats.go), and the
// Prometheus collector that reads them, with the partitions', fsyncs' and
// groups' own counters, at scrape time (metrics.go, Server.Collector).
// Authentication and the ACL decisions themselves are in package auth.
//
// With controller.quorum.voters the broker is a node of a cluster
// (cluster.go): its metadata log is package raftlog's, package cluster
// runs its replicas, fetchers and (on the quorum's leader) the
// controller, and the handlers answer as Kafka's do in a cluster:
// NOT_LEADER_OR_FOLLOWER from a replica that does not lead, followers'
// fetches (ReplicaID) read up to the log end and advance the leader's
// high watermark, acks=all waits for the in-sync replicas, Metadata and
// FindCoordinator name the leaders; the group and transaction
// coordinators load the partitions of their internal topics this broker
// leads, and the transaction coordinator reaches the other brokers
// (markers, transaction checks) through package internal/peer
// (txn_cluster.go); the share engine serves the share-partitions of the
// data partitions this broker leads, stores them through the leaders of
// __share_group_state's partitions (ReadShareGroupState and
// WriteShareGroupState through the same pool), and forwards share-group
// heartbeats to the leader of the group's partition (shares_cluster.go).
// The brokers talk to each other on the inter-broker listener, with its
// TLS and SASL, and register every listener's address, so that each
// client is told the brokers' addresses on its own listener; an SSL
// controller listener makes the raft transport mutual TLS
// (interbroker.go).
// process.roles picks the node's kind: broker and controller (a voter),
// controller only (a voter never registered as a broker, left out of
// Metadata) or broker only (a raft learner, not in the voters).
//
// What the handlers act on lives below: topics, partitions, configs,
// producer ids and the metadata log in package meta; each partition's data
// in package partition (server never reaches log or segment); the
// consumer-group coordinator in package group, whose state is kept in
// __consumer_offsets by package coordstate (groups.go wires them); the
// transaction coordinator in package txn, whose state is kept in
// __transaction_state the same way and whose markers txn.go writes to the
// partitions and hands to the group coordinator for __consumer_offsets;
// the share-group engine in package share, whose state is kept in
// __share_group_state the same way, created with the first share group,
// and which reads partitions and writes dead letters through package
// shareio (shares.go wires them and keeps the share sessions of ShareFetch
// and ShareAcknowledge and the ShareFetch requests waiting for records)
// (groups_authz.go, txn_authz.go and shares_authz.go authorize the
// coordinators' APIs, which know no principals).
//
// # Requests
//
// The reader goroutine decodes each request and calls its handler in
// request order. A handler must not block: work that waits (an fsync, a
// long poll, a rebalance, a metadata change) goes into r.await, and the
// responses still leave in request order, through the writer goroutine.
// Up to 64 requests per connection are in flight.
//
// # Lock order
//
// Server.mu guards the listeners and connections; it is held only for
// those fields, never across a call into another package. A connection's
// identity and SASL state belong to its reader goroutine (handlers run
// there); each request carries a copy of the identity. A tlsConfig's mu,
// the authentication-failure counts' mu and the quota sensors' mus are
// leaves, held for their own fields only.
// fetchSessions.mu guards the session cache and is held only for it; a
// fetchSession's own mu is held for the whole of one fetch, which takes
// partition locks inside it. Below the server, in order: meta's adminMu
// (topic and config changes; it replaces the server's former topics and
// broker-config mutexes) or its pids mutex (producer-id blocks), then the
// metadata log's lock, then meta's image lock; a partition's mutex before
// its log's locks (package partition and log document theirs). The group
// coordinator's locks are its own and are never held while calling back
// into the server. The transaction coordinator calls the server's markers
// (txn.go) with none of its locks held; they take a partition's mutex or
// a group's, and the produce and TxnOffsetCommit paths call the
// coordinator with no partition or group lock held (a partition's
// verification guard, or the group's TxnGuard, covers the gap). A share
// session's mu is held for the whole of one ShareFetch or ShareAcknowledge
// (a second request of the session meanwhile finds it taken: TryLock),
// which calls the share engine and reads partitions inside it;
// shareSessions.mu and shareWaiters.mu are leaves, held for their maps
// only (the engine's MemberGone and Available callbacks take them and
// nothing else, and never block). shareState.mu serializes creating
// __share_group_state and is held across that meta call. Apart from a
// fetch session's, a share session's and shareState.mu, no lock of this
// package is held while a handler calls meta, partition, group, txn or
// share.
//
// # Usage
//
//	srv, err := server.New(server.Config{DataDir: dir, Logger: logger})
//	ln, err := net.Listen("tcp", "127.0.0.1:9092")
//	go srv.Serve(ln)  // returns ErrServerClosed after Close
//	// with Props["listeners"] = "PLAINTEXT://...,SASL_SSL://...":
//	// go srv.ServeListener("SASL_SSL", ln2) for each (ParseListeners)
//	defer srv.Close() // drains requests in flight, closes every log cleanly
package server
