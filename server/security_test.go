package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// produceConsume produces one record to topic through cl and reads it
// back, failing the test on any error.
func produceConsume(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cl.AddConsumeTopics(topic)
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatalf("consume: %v", err)
	}
	if fs.NumRecords() == 0 {
		t.Fatal("consumed nothing")
	}
}

// pingErr returns the error of a Metadata request through cl, bounded.
func pingErr(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && len(resp.Brokers) == 0 {
		err = errors.New("no brokers")
	}
	return err
}

func TestTLSListeners(t *testing.T) {
	ca := newTestCA(t, "main")
	keystore, _ := ca.issue(t, "broker", true)
	b := startListeners(t, map[string]string{
		"listeners":                          "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,MTLS://127.0.0.1:0",
		"listener.security.protocol.map":     "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
		"ssl.keystore.type":                  "PEM",
		"ssl.keystore.location":              ca.file(t, "broker.pem", keystore),
		"ssl.truststore.location":            ca.file(t, "ca.pem", ca.pem),
		"listener.name.mtls.ssl.client.auth": "required",
	})

	t.Run("ssl", func(t *testing.T) {
		cl := b.client("SSL", kgo.DialTLSConfig(ca.clientTLS()))
		produceConsume(t, cl, "tls-topic")
		// Metadata names the SSL listener's address to SSL clients.
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		if got := net.JoinHostPort(resp.Brokers[0].Host, itoa(resp.Brokers[0].Port)); got != b.addrs["SSL"] {
			t.Errorf("SSL clients are told %s, want %s", got, b.addrs["SSL"])
		}
	})
	t.Run("plaintext client on the TLS port", func(t *testing.T) {
		if err := pingErr(b.client("SSL")); err == nil {
			t.Fatal("a plaintext client was served on the TLS listener")
		}
	})
	t.Run("TLS client on the plaintext port", func(t *testing.T) {
		if err := pingErr(b.client("PLAINTEXT", kgo.DialTLSConfig(ca.clientTLS()))); err == nil {
			t.Fatal("a TLS client was served on the plaintext listener")
		}
	})
	t.Run("client certificate required", func(t *testing.T) {
		_, good := ca.issue(t, "alice", false)
		produceConsume(t, b.client("MTLS", kgo.DialTLSConfig(ca.clientTLS(good))), "mtls-topic")
		if err := pingErr(b.client("MTLS", kgo.DialTLSConfig(ca.clientTLS()))); err == nil {
			t.Error("a client without a certificate was served")
		}
		_, foreign := newTestCA(t, "unknown").issue(t, "mallory", false)
		if err := pingErr(b.client("MTLS", kgo.DialTLSConfig(ca.clientTLS(foreign)))); err == nil {
			t.Error("a client certificate from an unknown CA was accepted")
		}
	})
	t.Run("certificate reload", func(t *testing.T) {
		old, err := tls.Dial("tcp", b.addrs["SSL"], ca.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		roundTrip(t, old, kmsg.NewPtrMetadataRequest(), 1)
		ca2 := newTestCA(t, "renewed")
		keystore2, _ := ca2.issue(t, "broker", true)
		path := ca.file(t, "broker.pem.new", keystore2)
		if err := os.Rename(path, strings.TrimSuffix(path, ".new")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for pingErr(b.client("SSL", kgo.DialTLSConfig(ca2.clientTLS()))) != nil {
			if time.Now().After(deadline) {
				t.Fatal("the renewed certificate is not served")
			}
			time.Sleep(300 * time.Millisecond)
		}
		if err := pingErr(b.client("SSL", kgo.DialTLSConfig(ca.clientTLS()))); err == nil {
			t.Error("the replaced certificate is still served to new connections")
		}
		roundTrip(t, old, kmsg.NewPtrMetadataRequest(), 2) // a connection made before the reload goes on
	})
}

func itoa(n int32) string { return fmtInt(int64(n)) }

func fmtInt(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}

// countingMech counts the authentications a mechanism starts (franz-go
// starts one per connection and per re-authentication).
type countingMech struct {
	sasl.Mechanism
	n *atomic.Int32
}

func (m countingMech) Authenticate(ctx context.Context, host string) (sasl.Session, []byte, error) {
	m.n.Add(1)
	return m.Mechanism.Authenticate(ctx, host)
}

// jwtSigner signs test tokens with an EC key whose key set is in a file.
type jwtSigner struct {
	key  *ecdsa.PrivateKey
	path string
}

func newJWTSigner(t *testing.T, dir string) *jwtSigner {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := key.PublicKey.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(pub[1:33]), "y": b64(pub[33:])}}})
	s := &jwtSigner{key: key, path: dir + "/jwks.json"}
	if err := os.WriteFile(s.path, set, 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *jwtSigner) token(t *testing.T, sub string, exp time.Time) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "ES256", "kid": "k1"}) + "." + enc(map[string]any{"sub": sub, "exp": exp.Unix(), "aud": "ferry"})
	d := sha256.Sum256([]byte(signed))
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	_ = crypto.SHA256
	return signed + "." + base64.RawURLEncoding.EncodeToString(append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...))
}

func TestSASL(t *testing.T) {
	ca := newTestCA(t, "sasl")
	keystore, _ := ca.issue(t, "broker", true)
	signer := newJWTSigner(t, ca.dir)
	b := startListeners(t, map[string]string{
		"listeners":               "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
		"ssl.keystore.location":   ca.file(t, "broker.pem", keystore),
		"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
		"listener.name.sasl_plaintext.plain.sasl.jaas.config": `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";`,
		"listener.name.sasl_ssl.plain.sasl.jaas.config":       `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";`,
		"sasl.oauthbearer.jwks.endpoint.url":                  "file://" + signer.path,
		"sasl.oauthbearer.expected.audience":                  "ferry",
		"connection.failed.authentication.delay.ms":           "100",
	})
	ctx := testCtx(t)
	adm := b.admin("PLAINTEXT")
	if _, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "alice-secret"},
		{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 8192, Password: "bob-secret"},
	}); err != nil {
		t.Fatal(err)
	}
	described, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil || len(described) != 2 || described["bob"].CredInfos[0].Iterations != 8192 {
		t.Fatalf("described %v, %v", described, err)
	}

	for _, tc := range []struct {
		name     string
		listener string
		mech     sasl.Mechanism
		ok       bool
	}{
		{"plain", "SASL_PLAINTEXT", plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism(), true},
		{"plain wrong password", "SASL_PLAINTEXT", plain.Auth{User: "admin", Pass: "guess"}.AsMechanism(), false},
		{"plain with a SCRAM user's password", "SASL_PLAINTEXT", plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism(), true},
		{"scram-sha-256", "SASL_PLAINTEXT", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), true},
		{"scram-sha-512", "SASL_PLAINTEXT", scram.Auth{User: "bob", Pass: "bob-secret"}.AsSha512Mechanism(), true},
		{"scram wrong password", "SASL_PLAINTEXT", scram.Auth{User: "bob", Pass: "alice-secret"}.AsSha512Mechanism(), false},
		{"scram unknown user", "SASL_PLAINTEXT", scram.Auth{User: "carol", Pass: "x"}.AsSha256Mechanism(), false},
		{"oauthbearer", "SASL_PLAINTEXT", oauth.Auth{Token: signer.token(t, "svc", time.Now().Add(time.Hour))}.AsMechanism(), true},
		{"oauthbearer expired token", "SASL_PLAINTEXT", oauth.Auth{Token: signer.token(t, "svc", time.Now().Add(-time.Hour))}.AsMechanism(), false},
		{"scram over TLS", "SASL_SSL", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), true},
		{"plain over TLS", "SASL_SSL", plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []kgo.Opt{kgo.SASL(tc.mech)}
			if tc.listener == "SASL_SSL" {
				opts = append(opts, kgo.DialTLSConfig(ca.clientTLS()))
			}
			cl := b.client(tc.listener, opts...)
			if tc.ok {
				produceConsume(t, cl, "sasl-"+strings.NewReplacer(" ", "-", "'", "").Replace(tc.name))
				return
			}
			err := pingErr(cl)
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Fatalf("got %v, want SASL_AUTHENTICATION_FAILED", err)
			}
		})
	}

	t.Run("no SASL client on a SASL listener", func(t *testing.T) {
		if err := pingErr(b.client("SASL_PLAINTEXT")); err == nil {
			t.Fatal("served without authentication")
		}
		// A raw client that skips authentication is closed.
		nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
		writeAll(t, nc, requestFrame(kmsg.NewPtrMetadataRequest(), 1))
		expectClosed(t, nc)
	})

	t.Run("handshake v0 with bare tokens", func(t *testing.T) {
		nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, "PLAIN"
		if resp := roundTrip(t, nc, hs, 1).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
			t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
		}
		token := []byte("\x00admin\x00admin-secret")
		writeAll(t, nc, binary.BigEndian.AppendUint32(nil, uint32(len(token))))
		writeAll(t, nc, token)
		var size [4]byte
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, size[:]); err != nil || binary.BigEndian.Uint32(size[:]) != 0 {
			t.Fatalf("bare answer: %v %x", err, size)
		}
		md := kmsg.NewPtrMetadataRequest()
		md.Version = 9
		if resp := roundTrip(t, nc, md, 2).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
			t.Fatalf("metadata after bare authentication: %+v", resp)
		}
	})

	t.Run("token expiry bounds the session", func(t *testing.T) {
		nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "OAUTHBEARER"
		roundTrip(t, nc, hs, 1)
		au := kmsg.NewPtrSASLAuthenticateRequest()
		au.Version = 1
		au.SASLAuthBytes = []byte("n,,\x01auth=Bearer " + signer.token(t, "svc", time.Now().Add(3*time.Second)) + "\x01\x01")
		resp := roundTrip(t, nc, au, 2).(*kmsg.SASLAuthenticateResponse)
		if resp.ErrorCode != 0 || resp.SessionLifetimeMillis <= 0 || resp.SessionLifetimeMillis > 3000 {
			t.Fatalf("session of a token expiring in 3s: %+v", resp)
		}
	})

	t.Run("unsupported mechanism", func(t *testing.T) {
		nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "GSSAPI"
		resp := roundTrip(t, nc, hs, 1).(*kmsg.SASLHandshakeResponse)
		if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(resp.SupportedMechanisms) != 4 {
			t.Fatalf("got %+v", resp)
		}
		expectClosed(t, nc)
	})

	t.Run("failures slow down per address", func(t *testing.T) {
		var took []time.Duration
		for range 3 {
			nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 1, "PLAIN"
			roundTrip(t, nc, hs, 1)
			start := time.Now()
			au := kmsg.NewPtrSASLAuthenticateRequest()
			au.Version, au.SASLAuthBytes = 2, []byte("\x00admin\x00wrong")
			resp := roundTrip(t, nc, au, 2).(*kmsg.SASLAuthenticateResponse)
			took = append(took, time.Since(start))
			if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
				t.Fatalf("got %v", kerr.ErrorForCode(resp.ErrorCode))
			}
			expectClosed(t, nc)
		}
		// Earlier tests failed from this address too: each delay is at
		// least the configured 20 ms and the third at least four times
		// that.
		if took[0] < 20*time.Millisecond || took[2] < 80*time.Millisecond {
			t.Errorf("failed authentications answered after %v", took)
		}
	})
}

// TestReauthentication: with connections.max.reauth.ms a client
// re-authenticates on its connection (KIP-368) and keeps working; a
// client that does not is closed at its next request after the session
// ends.
func TestReauthentication(t *testing.T) {
	b := startListeners(t, map[string]string{
		"listeners":                 "SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms":   "PLAIN",
		"sasl.jaas.config":          `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";`,
		"connections.max.reauth.ms": "1500",
	})
	var auths atomic.Int32
	var dials atomic.Int32
	cl := b.client("SASL_PLAINTEXT", kgo.SASL(countingMech{plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism(), &auths}),
		kgo.WithHooks(dialCounter{&dials}))
	ctx := testCtx(t)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "reauth", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce during re-authentication: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, d := auths.Load(), dials.Load(); n < int32(d)+2 {
		t.Errorf("%d authentications over %d connections in 5s with sessions of 1.5s: no re-authentication", n, d)
	}

	nc := dialRaw(t, b.addrs["SASL_PLAINTEXT"])
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	roundTrip(t, nc, hs, 1)
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 1, []byte("\x00admin\x00admin-secret")
	resp := roundTrip(t, nc, au, 2).(*kmsg.SASLAuthenticateResponse)
	if resp.ErrorCode != 0 || resp.SessionLifetimeMillis <= 0 || resp.SessionLifetimeMillis > 1500 {
		t.Fatalf("authenticate: %+v", resp)
	}
	roundTrip(t, nc, kmsg.NewPtrMetadataRequest(), 3)
	time.Sleep(1600 * time.Millisecond)
	writeAll(t, nc, requestFrame(kmsg.NewPtrMetadataRequest(), 4))
	expectClosed(t, nc)
}

type dialCounter struct{ n *atomic.Int32 }

func (d dialCounter) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		d.n.Add(1)
	}
}

// TestAdvertisedHostName: a listener configured by host name is
// advertised by that name, not by the address it resolved to.
func TestAdvertisedHostName(t *testing.T) {
	b := startListeners(t, map[string]string{"listeners": "PLAINTEXT://localhost:0,OTHER://127.0.0.1:0", "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT", "advertised.listeners": "OTHER://broker.example:9999"})
	for name, want := range map[string]string{"PLAINTEXT": "localhost:" + strings.Split(b.addrs["PLAINTEXT"], ":")[1], "OTHER": "broker.example:9999"} {
		nc := dialRaw(t, b.addrs[name])
		resp := roundTrip(t, nc, kmsg.NewPtrMetadataRequest(), 1).(*kmsg.MetadataResponse)
		if got := net.JoinHostPort(resp.Brokers[0].Host, fmtInt(int64(resp.Brokers[0].Port))); got != want {
			t.Errorf("%s is advertised as %s, want %s", name, got, want)
		}
	}
}
