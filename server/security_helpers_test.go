package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	dir  string
}

var serial = big.NewInt(time.Now().UnixNano())

func nextSerial() *big.Int {
	serial = new(big.Int).Add(serial, big.NewInt(1))
	return serial
}

// newTestCA makes a CA; its PEM is written to dir/<name>-ca.pem.
func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name + " CA", Organization: []string{"Ferry tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), dir: t.TempDir()}
	return ca
}

// file writes b to a file in the CA's directory and returns its path.
func (ca *testCA) file(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate for cn signed by the CA: a server certificate
// for 127.0.0.1 and localhost (good for client authentication too), or a
// client certificate. It returns the
// PEM of the private key followed by the certificate (a Kafka PEM
// keystore) and the tls.Certificate.
func (ca *testCA) issue(t testing.TB, cn string, server bool) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{"eng"}, Organization: []string{"Ferry tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		// A broker's certificate serves both ends of inter-broker TLS.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	tc, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return append(keyPEM, certPEM...), tc
}

// clientTLS is a client TLS config trusting the CA, with certs as client
// certificates.
func (ca *testCA) clientTLS(certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{RootCAs: pool, Certificates: certs, ServerName: "127.0.0.1"}
}

// multiBroker is a broker serving the listeners of its props.
type multiBroker struct {
	t     testing.TB
	srv   *Server
	addrs map[string]string // listener name to bound address
	done  chan error
	n     int
}

// startListeners starts a broker on a fresh data directory serving every
// listener of props (ports 0 bound to free ports), stopped when the test
// ends.
func startListeners(t testing.TB, props map[string]string) *multiBroker {
	t.Helper()
	if _, ok := props["group.initial.rebalance.delay.ms"]; !ok {
		props["group.initial.rebalance.delay.ms"] = "0"
	}
	ls, err := ParseListeners(props)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("FERRY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	srv, err := New(Config{DataDir: t.TempDir(), Props: props, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	b := &multiBroker{t: t, srv: srv, addrs: map[string]string{}, done: make(chan error, len(ls))}
	for _, l := range ls {
		ln, err := net.Listen("tcp", l.Addr())
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		b.addrs[l.Name] = ln.Addr().String()
		b.n++
		go func() { b.done <- srv.ServeListener(l.Name, ln) }()
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
		for range b.n {
			select {
			case err := <-b.done:
				if err != ErrServerClosed {
					t.Errorf("ServeListener returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("ServeListener did not return after Close")
			}
		}
	})
	waitListening(t, srv, len(ls))
	return b
}

// waitListening waits until the server serves n listeners.
func waitListening(t testing.TB, srv *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv.mu.Lock()
		got := len(srv.mu.listeners)
		srv.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d listeners served", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client opens a kgo client to one listener, closed when the test ends.
func (b *multiBroker) client(listener string, opts ...kgo.Opt) *kgo.Client {
	b.t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(b.addrs[listener]), kgo.AllowAutoTopicCreation()}, opts...)
	c, err := kgo.NewClient(opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(c.Close)
	return c
}

func (b *multiBroker) admin(listener string, opts ...kgo.Opt) *kadm.Client {
	return kadm.NewClient(b.client(listener, opts...))
}
