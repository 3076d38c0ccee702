package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// TLS of the SSL and SASL_SSL listeners, with Kafka's PEM settings:
//
//	ssl.keystore.type=PEM
//	ssl.keystore.location=/etc/ferry/broker.pem   private key and certificate chain
//	  (or ssl.keystore.key and ssl.keystore.certificate.chain, the PEM text itself)
//	ssl.truststore.type=PEM
//	ssl.truststore.location=/etc/ferry/ca.pem     CAs that sign client certificates
//	  (or ssl.truststore.certificates, the PEM text)
//	ssl.client.auth=none|requested|required
//	ssl.enabled.protocols=TLSv1.2,TLSv1.3
//
// JKS and PKCS12 stores are not read; an encrypted private key
// (ssl.key.password) is refused. The files are checked for changes at
// most once a second, at a TLS handshake, and read again when they
// changed: replacing them renews the certificates without a restart (a
// file that does not parse leaves the previous certificates in place,
// with a log line). Connections already open keep their session.

// tlsConfig hands out the TLS settings of one listener, reading its files
// again when they change.
type tlsConfig struct {
	get    func(string) string
	logger *slog.Logger
	mu     struct {
		sync.Mutex
		cfg     *tls.Config
		stamps  map[string]fileStamp // of the files cfg was read from
		checked time.Time
	}
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func newTLSConfig(get func(string) string, logger *slog.Logger) (*tlsConfig, error) {
	t := &tlsConfig{get: get, logger: logger}
	cfg, stamps, err := t.load()
	if err != nil {
		return nil, err
	}
	t.mu.cfg, t.mu.stamps, t.mu.checked = cfg, stamps, time.Now()
	return t, nil
}

// serverConfig is the tls.Config a listener's connections are served
// with: it picks the current settings at each handshake.
func (t *tlsConfig) serverConfig() *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.current(), nil }}
}

// current returns the settings, read again if a file changed.
func (t *tlsConfig) current() *tls.Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.mu.checked) < time.Second {
		return t.mu.cfg
	}
	t.mu.checked = now
	changed := false
	for path, st := range t.mu.stamps {
		if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(st.mod) || fi.Size() != st.size {
			changed = true
		}
	}
	if !changed {
		return t.mu.cfg
	}
	cfg, stamps, err := t.load()
	if err != nil {
		t.logger.Error("TLS files changed but cannot be read; keeping the previous certificates", "err", err)
		// Retry once they change again.
		for path := range t.mu.stamps {
			if fi, err := os.Stat(path); err == nil {
				t.mu.stamps[path] = fileStamp{fi.ModTime(), fi.Size()}
			}
		}
		return t.mu.cfg
	}
	t.logger.Info("TLS certificates reloaded")
	t.mu.cfg, t.mu.stamps = cfg, stamps
	return cfg
}

// load reads the keystore and truststore.
func (t *tlsConfig) load() (*tls.Config, map[string]fileStamp, error) {
	stamps := map[string]fileStamp{}
	read := func(locKey, inlineKey string) ([]byte, error) {
		if v := t.get(inlineKey); inlineKey != "" && v != "" {
			return []byte(v), nil
		}
		path := t.get(locKey)
		if path == "" {
			return nil, nil
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		stamps[path] = fileStamp{fi.ModTime(), fi.Size()}
		return b, nil
	}
	for _, k := range []string{"ssl.keystore.type", "ssl.truststore.type"} {
		if v := strings.ToUpper(t.get(k)); v != "" && v != "PEM" {
			return nil, nil, fmt.Errorf("%s=%s: only PEM stores are read", k, v)
		}
	}
	if t.get("ssl.key.password") != "" {
		return nil, nil, errors.New("ssl.key.password: encrypted private keys are not supported; give the key unencrypted (file mode 0600)")
	}
	var keyPEM, chainPEM []byte
	if k, c := t.get("ssl.keystore.key"), t.get("ssl.keystore.certificate.chain"); k != "" || c != "" {
		keyPEM, chainPEM = []byte(k), []byte(c)
	} else {
		b, err := read("ssl.keystore.location", "")
		if err != nil {
			return nil, nil, fmt.Errorf("ssl.keystore.location: %w", err)
		}
		keyPEM, chainPEM = b, b
	}
	if len(keyPEM) == 0 {
		return nil, nil, errors.New("a TLS listener needs ssl.keystore.location (a PEM file with the private key and certificate chain)")
	}
	cert, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if protos := t.get("ssl.enabled.protocols"); protos != "" {
		cfg.MinVersion = 0
		for p := range strings.SplitSeq(protos, ",") {
			var v uint16
			switch strings.TrimSpace(p) {
			case "TLSv1.2":
				v = tls.VersionTLS12
			case "TLSv1.3":
				v = tls.VersionTLS13
			case "":
				continue
			default:
				return nil, nil, fmt.Errorf("ssl.enabled.protocols: %q is not TLSv1.2 or TLSv1.3", p)
			}
			if cfg.MinVersion == 0 || v < cfg.MinVersion {
				cfg.MinVersion = v
			}
		}
	}
	trust, err := read("ssl.truststore.location", "ssl.truststore.certificates")
	if err != nil {
		return nil, nil, fmt.Errorf("ssl.truststore.location: %w", err)
	}
	if len(trust) > 0 {
		pool := x509.NewCertPool()
		if !appendCerts(pool, trust) {
			return nil, nil, errors.New("truststore: no PEM certificate found")
		}
		cfg.ClientCAs = pool
	}
	switch ca := t.get("ssl.client.auth"); ca {
	case "", "none":
		cfg.ClientAuth = tls.NoClientCert
	case "requested":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "required":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, nil, fmt.Errorf("ssl.client.auth=%q: want none, requested or required", ca)
	}
	if cfg.ClientAuth != tls.NoClientCert && cfg.ClientCAs == nil {
		return nil, nil, errors.New("ssl.client.auth needs ssl.truststore.location to verify client certificates")
	}
	return cfg, stamps, nil
}

// appendCerts adds every CERTIFICATE block of pemData to pool.
func appendCerts(pool *x509.CertPool, pemData []byte) bool {
	ok := false
	for {
		var block *pem.Block
		block, pemData = pem.Decode(pemData)
		if block == nil {
			return ok
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		pool.AddCert(c)
		ok = true
	}
}

func secondsOrDefault(n int) time.Duration { return time.Duration(n) * time.Second }

// handshakeTimeout bounds a TLS handshake.
const handshakeTimeout = 10 * time.Second

// handshake completes the TLS handshake of a connection on a TLS
// listener; on SSL (not SASL_SSL), a client certificate makes the
// connection's principal User:<its subject>, as Kafka's default principal
// builder does ("User:CN=alice,OU=eng,O=example"). It returns false when
// the connection must close.
func (c *conn) handshake() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		if !c.draining.Load() {
			c.logger.Info("TLS handshake failed; closing connection", "err", err)
		}
		return false
	}
	tc.SetDeadline(time.Time{})
	if c.ep.l.sasl == nil {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			c.auth.user = certs[0].Subject.String()
			c.auth.principal = "User:" + c.auth.user
		}
	}
	return true
}
