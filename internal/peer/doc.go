// Package peer is the Kafka-protocol client one broker of a cluster uses
// to talk to another: a follower fetching from its leader (package
// cluster), a transaction coordinator writing markers to partition
// leaders (WriteTxnMarkers), a partition leader asking a transaction
// coordinator about a producer's transaction (AddPartitionsToTxn v4+).
// It lives apart from both users so that cluster and server share it
// without importing each other; it is not a general client (kgo is).
//
// A Dialer opens Conns to the other brokers' inter-broker listener as it
// needs: plain TCP, TLS (the broker's truststore verifies the other, its
// keystore's certificate is presented), and SASL on either (PLAIN or
// SCRAM through franz-go's mechanisms: SaslHandshake v1, then
// SaslAuthenticate until the mechanism is done), before any request.
// A refused authentication is ErrAuthentication, a failed handshake a
// *TLSError, so that callers can tell wrong credentials from a broker
// that is down.
//
// A Conn is one connection carrying one request at a time, encoded
// with kmsg:
//
//	request  [int32 size][int16 key][int16 version][int32 correlation id]
//	         [int16 client id length][client id][tags if flexible][body]
//	response [int32 size][int32 correlation id][tags if flexible][body]
//
// A Pool keeps idle Conns per address for requests from many goroutines:
// each request takes a connection of its own (dialing one when none is
// idle), and gives it back when the answer came, or closes it after any
// error, so a connection never carries a half-read answer.
//
// # Concurrency
//
// A Conn is used by one goroutine at a time, except Interrupt, which any
// goroutine may call. A Pool is safe for concurrent use; Close closes
// its idle connections and those in use as they come back, and makes
// later requests fail with ErrClosed.
//
// # Usage
//
//	d := peer.Dialer{ClientID: "ferry-broker-0", TLS: tlsFor, SASL: plain.Auth{User: "broker", Pass: pw}.AsMechanism()}
//	pool := peer.NewPool(d, 5*time.Second)
//	defer pool.Close()
//	resp, err := pool.Request(ctx, "10.0.0.2:9092", kmsg.NewPtrWriteTxnMarkersRequest())
package peer
