// Package auth authenticates clients and authorizes what they do, over the
// SCRAM credentials and ACLs of the metadata image (package meta). It
// knows no wire protocol: package server runs the SASL exchanges it
// starts, asks its Authorizer before each operation and turns its errors
// into Kafka codes.
//
// # Authentication
//
// An Authenticator (one per listener) starts the server side of a SASL
// exchange for an enabled mechanism:
//
//   - PLAIN (RFC 4616): the user's password from the listener's
//     PlainLoginModule users (user_NAME="password" in sasl.jaas.config),
//     else checked against the user's SCRAM credential, so users created
//     with AlterUserScramCredentials may use PLAIN too (over TLS only, as
//     the password travels in the clear).
//   - SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): two round
//     trips; the server keeps only salt, iterations, StoredKey and
//     ServerKey. Channel binding and delegation tokens are refused.
//   - OAUTHBEARER (RFC 7628): the client's bearer token must be a JWT
//     signed by a key of the configured JSON Web Key Set (RSA, RSA-PSS,
//     ECDSA, Ed25519; never "alg":"none"), unexpired (exp, with clock
//     skew), valid already (nbf, iat), of the expected audience and
//     issuer when those are set; its subject claim names the principal,
//     its exp bounds the session. The key set is a file, read again when
//     it changes (checked at most once a second), so keys rotate without
//     a restart.
//
// A Result names the principal as Kafka does, "User:name"; a connection
// that does not authenticate is User:ANONYMOUS, and one authenticated by
// a TLS client certificate is User: followed by the certificate's subject
// (package server decides those two).
//
// # Authorization
//
// Authorizer decides with Kafka's rules (see its doc): super users, DENY
// before ALLOW, literal, wildcard and prefixed resource patterns, hosts,
// the operations READ/WRITE/DELETE/ALTER implying DESCRIBE and
// ALTER_CONFIGS implying DESCRIBE_CONFIGS, and allow.everyone.if.no.acl.found
// for resources no ACL names. Resource types, operations, pattern types
// and permissions are numbered as on the wire, which is how meta stores
// them.
//
// # Concurrency
//
// Authenticator, OAuthValidator and Authorizer are safe for concurrent
// use; an Exchange belongs to one connection. Authorize takes no lock and
// allocates nothing: Update builds a new index from the image's ACLs and
// swaps it in atomically.
//
// # Usage
//
//	a, err := auth.New(auth.Config{Mechanisms: []string{auth.ScramSHA256}, Scram: store.ScramCredential})
//	ex, err := a.Start("SCRAM-SHA-256")
//	answer, done, err := ex.Step(clientMessage) // until done
//	principal := ex.Result().Principal
//
//	az := auth.NewAuthorizer(auth.AuthorizerConfig{SuperUsers: []string{"User:admin"}})
//	az.Update(store.ACLs())
//	ok := az.Authorize("User:alice", "10.0.0.7", auth.ResourceTopic, "orders", auth.OpWrite)
package auth
