package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymq/ferry/server"
)

// writeCerts makes a CA and a broker certificate for 127.0.0.1 and
// localhost in dir: ca.pem and broker.pem (key and certificate, a Kafka
// PEM keystore).
func writeCerts(t *testing.T, dir string) (caPath, keystorePath string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cli test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	caPath, keystorePath = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "broker.pem")
	os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(keystorePath, append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...), 0o600)
	return caPath, keystorePath
}

// serveSecure starts a broker with a SASL_SSL listener, the ACL
// authorizer and admin as a PLAIN super user, and returns the listener's
// address and the CA's file.
func serveSecure(t *testing.T) (addr, caPath string) {
	t.Helper()
	dir := t.TempDir()
	caPath, keystore := writeCerts(t, dir)
	props := map[string]string{
		"listeners":                        "SASL_SSL://127.0.0.1:0",
		"ssl.keystore.location":            keystore,
		"authorizer.class.name":            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"super.users":                      "User:admin",
		"sasl.jaas.config":                 `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";`,
		"offsets.topic.num.partitions":     "1",
		"group.initial.rebalance.delay.ms": "0",
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "data"), Logger: slog.New(slog.DiscardHandler), Props: props})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() { srv.Close(); <-served })
	return ln.Addr().String(), caPath
}

// clientConfig writes a Kafka client properties file.
func clientConfig(t *testing.T, lines ...string) string {
	p := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecureCLI drives users, ACLs and quotas with the CLI over SASL_SSL
// (a client properties file for the admin, flags for the user), and
// produces and consumes as the new user.
func TestSecureCLI(t *testing.T) {
	addr, ca := serveSecure(t)
	admin := clientConfig(t,
		"security.protocol=SASL_SSL",
		"ssl.truststore.type=PEM",
		"ssl.truststore.location="+ca,
		"sasl.mechanism=PLAIN",
		`sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret";`,
	)
	as := func(args ...string) []string {
		return append(args, "-brokers", addr, "-command-config", admin, "-timeout", "20s")
	}
	alice := func(args ...string) []string {
		return append(args, "-brokers", addr, "-tls", "-tls-ca", ca, "-sasl-mechanism", "SCRAM-SHA-512", "-sasl-user", "alice", "-sasl-password", "alice-secret", "-timeout", "10s")
	}

	mustFerry(t, "", as("topic", "create", "orders")...)
	mustFerry(t, "alice-secret\n", as("user", "create", "alice", "-mechanism", "SCRAM-SHA-512", "-iterations", "4096")...)
	contains(t, "user list", mustFerry(t, "", as("user", "list")...), "alice", "SCRAM-SHA-512", "4096")

	// Without ACLs alice may not write.
	if _, errOut, code := ferry(t, "x\n", alice("produce", "orders")...); code == 0 || !strings.Contains(errOut, "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("alice produced without an ACL: exit %d, %s", code, errOut)
	}
	mustFerry(t, "", as("acl", "create", "-principal", "alice", "-operation", "WRITE,READ", "-topic", "orders")...)
	mustFerry(t, "", as("acl", "create", "-principal", "alice", "-operation", "READ", "-group", "g-", "-prefixed")...)
	contains(t, "acl list", mustFerry(t, "", as("acl", "list", "-principal", "alice")...), "TOPIC", "orders", "User:alice", "WRITE", "READ", "GROUP", "g-", "PREFIXED")
	mustFerry(t, "a:1\nb:2\n", alice("produce", "orders", "-key-delimiter", ":")...)
	contains(t, "consume", mustFerry(t, "", alice("consume", "orders", "-group", "g-1", "-e")...), "1", "2")

	// A wrong password is refused.
	if _, errOut, code := ferry(t, "", "topic", "list", "-brokers", addr, "-tls", "-tls-ca", ca, "-sasl-mechanism", "SCRAM-SHA-512", "-sasl-user", "alice", "-sasl-password", "nope", "-timeout", "5s"); code == 0 || !strings.Contains(errOut, "SASL_AUTHENTICATION_FAILED") {
		t.Errorf("wrong password: exit %d, %s", code, errOut)
	}

	mustFerry(t, "", as("quota", "set", "-user", "alice", "-set", "producer_byte_rate=1048576", "-set", "consumer_byte_rate=2097152")...)
	mustFerry(t, "", as("quota", "set", "-default-client-id", "-set", "request_percentage=200")...)
	contains(t, "quota list", mustFerry(t, "", as("quota", "list")...), "alice", "producer_byte_rate=1.048576e+06", "<default>", "request_percentage=200")

	contains(t, "acl delete", mustFerry(t, "", as("acl", "delete", "-principal", "alice", "-topic", "orders")...), "orders", "WRITE")
	if out := mustFerry(t, "", as("acl", "list", "-topic", "orders")...); strings.Contains(out, "alice") {
		t.Errorf("ACLs left after delete:\n%s", out)
	}
	mustFerry(t, "", as("user", "delete", "alice")...)
	if out := mustFerry(t, "", as("user", "list")...); strings.Contains(out, "alice") {
		t.Errorf("user left after delete:\n%s", out)
	}
}

// TestKcatSASLSSL produces and consumes with kcat (librdkafka) over
// SASL_SSL with SCRAM-SHA-256, when kcat is installed.
func TestKcatSASLSSL(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (apt-get install kcat)")
	}
	addr, ca := serveSecure(t)
	admin := clientConfig(t, "security.protocol=SASL_SSL", "ssl.truststore.location="+ca, "sasl.mechanism=PLAIN",
		`sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret";`)
	as := func(args ...string) []string {
		return append(args, "-brokers", addr, "-command-config", admin, "-timeout", "20s")
	}
	mustFerry(t, "", as("topic", "create", "kcat-secure")...)
	mustFerry(t, "", as("user", "create", "bob", "-password", "bob-secret", "-mechanism", "SCRAM-SHA-256")...)
	mustFerry(t, "", as("acl", "create", "-principal", "bob", "-operation", "ALL", "-topic", "kcat-secure")...)
	common := []string{"-b", addr, "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + ca, "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=bob"}
	run := func(pass, input string, args ...string) (string, error) {
		cmd := exec.Command(kcat, append(append(common, "-X", "sasl.password="+pass), args...)...)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("bob-secret", "one\ntwo\n", "-P", "-t", "kcat-secure"); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	out, err := run("bob-secret", "", "-C", "-t", "kcat-secure", "-o", "beginning", "-e", "-q")
	if err != nil || !strings.Contains(out, "one\ntwo") {
		t.Fatalf("kcat consume: %v\n%s", err, out)
	}
	if out, err := run("wrong", "", "-L", "-m", "5"); err == nil || !strings.Contains(strings.ToLower(out), "authentication") {
		t.Errorf("kcat with a wrong password: %v\n%s", err, out)
	}
	// Denied: bob may not touch another topic.
	mustFerry(t, "", as("topic", "create", "other")...)
	if out, err := run("bob-secret", "x\n", "-P", "-t", "other"); err == nil && !strings.Contains(out, "authoriz") {
		t.Errorf("kcat produced to a topic bob has no ACL for:\n%s", out)
	}
}

// TestServeListeners: `ferry serve` with two listeners, one named by host
// name, serves both and advertises that one by its name.
func TestServeListeners(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FERRY_RUN_MAIN=serve -data-dir "+dir+" -log-level warn -c listeners=PLAINTEXT://localhost:0,INTERNAL://127.0.0.1:0 -c listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rd := bufio.NewReader(out)
	addrs := map[string]string{}
	for range 2 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("serve printed %d listeners: %v", len(addrs), err)
		}
		// "ferry listening on ADDR (NAME, PROTOCOL; data in DIR)"
		f := strings.Fields(line)
		addrs[strings.Trim(f[4], "(,")] = f[3]
	}
	for name, host := range map[string]string{"PLAINTEXT": "localhost", "INTERNAL": "127.0.0.1"} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs[name]))
		if err != nil {
			t.Fatal(err)
		}
		md, err := kmsg.NewPtrMetadataRequest().RequestWith(t.Context(), cl)
		cl.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := md.Brokers[0].Host; got != host || fmt.Sprint(md.Brokers[0].Port) != addrs[name][strings.LastIndex(addrs[name], ":")+1:] {
			t.Errorf("%s advertises %s:%d, want %s at %s", name, got, md.Brokers[0].Port, host, addrs[name])
		}
	}
}
