package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/server"
)

// envClientConfig names the environment variable giving the default
// -command-config.
const envClientConfig = "FERRY_CLIENT_CONFIG"

// clientSecurity is how a client command connects: TLS and SASL, from
// flags or a Kafka client properties file (flags win).
type clientSecurity struct {
	configFile string
	tls        bool
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	insecure   bool
	mechanism  string
	user       string
	password   string
	tokenFile  string
}

// addSecurityFlags defines the TLS and SASL flags on fs.
func addSecurityFlags(fs *flag.FlagSet) *clientSecurity {
	s := &clientSecurity{}
	fs.StringVar(&s.configFile, "command-config", os.Getenv(envClientConfig), "Kafka client properties `file` (security.protocol, ssl.*, sasl.mechanism, sasl.jaas.config) (env "+envClientConfig+")")
	fs.BoolVar(&s.tls, "tls", false, "connect with TLS")
	fs.StringVar(&s.caFile, "tls-ca", "", "PEM `file` of the CAs to trust (default: the system's)")
	fs.StringVar(&s.certFile, "tls-cert", "", "PEM `file` of the client certificate (may hold the key too)")
	fs.StringVar(&s.keyFile, "tls-key", "", "PEM `file` of the client certificate's key")
	fs.StringVar(&s.serverName, "tls-server-name", "", "name to verify the broker's certificate against (default: the host dialled)")
	fs.BoolVar(&s.insecure, "tls-insecure", false, "do not verify the broker's certificate")
	fs.StringVar(&s.mechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER")
	fs.StringVar(&s.user, "sasl-user", "", "SASL user name")
	fs.StringVar(&s.password, "sasl-password", os.Getenv("FERRY_SASL_PASSWORD"), "SASL password (env FERRY_SASL_PASSWORD)")
	fs.StringVar(&s.tokenFile, "sasl-token-file", "", "`file` holding the OAUTHBEARER token (read at each authentication)")
	return s
}

// opts returns the kgo options for the settings.
func (s *clientSecurity) opts() ([]kgo.Opt, error) {
	props := map[string]string{}
	if s.configFile != "" {
		b, err := os.ReadFile(s.configFile)
		if err != nil {
			return nil, fmt.Errorf("-command-config: %w", err)
		}
		props = server.ParseProperties(string(b))
	}
	proto := strings.ToUpper(props["security.protocol"])
	switch proto {
	case "", server.ProtocolPlaintext, server.ProtocolSSL, server.ProtocolSASLPlaintext, server.ProtocolSASLSSL:
	default:
		return nil, usageError("security.protocol %q: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", proto)
	}
	useTLS := s.tls || proto == server.ProtocolSSL || proto == server.ProtocolSASLSSL
	mechanism := strings.ToUpper(first(s.mechanism, props["sasl.mechanism"]))
	if mechanism == "" && (proto == server.ProtocolSASLPlaintext || proto == server.ProtocolSASLSSL) {
		mechanism = "GSSAPI" // Kafka's default; refused below
	}
	var opts []kgo.Opt
	if useTLS || s.caFile != "" || s.certFile != "" {
		cfg, err := s.tlsConfig(props)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if mechanism != "" {
		m, err := s.saslMechanism(mechanism, props)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// tlsConfig builds the client's TLS settings from the flags, else from
// the properties (PEM stores only, as the broker's).
func (s *clientSecurity) tlsConfig(props map[string]string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: s.serverName, InsecureSkipVerify: s.insecure}
	for _, k := range []string{"ssl.truststore.type", "ssl.keystore.type"} {
		if v := strings.ToUpper(props[k]); v != "" && v != "PEM" {
			return nil, fmt.Errorf("%s=%s: only PEM stores are read", k, v)
		}
	}
	ca := first(s.caFile, props["ssl.truststore.location"])
	var caPEM []byte
	if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		caPEM = b
	} else if v := props["ssl.truststore.certificates"]; v != "" {
		caPEM = []byte(v)
	}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("TLS CA: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	certFile := first(s.certFile, props["ssl.keystore.location"])
	keyFile := first(s.keyFile, certFile)
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if v, set := props["ssl.endpoint.identification.algorithm"]; set && v == "" && !s.insecure {
		// Kafka's empty value: no host name check; the chain is still
		// verified.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = verifyChainOnly(cfg.RootCAs)
	}
	return cfg, nil
}

// verifyChainOnly checks the broker's certificate chain without its name.
func verifyChainOnly(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("broker sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}

// saslMechanism builds the client side of mechanism, with the user and
// password of the flags, else of sasl.jaas.config.
func (s *clientSecurity) saslMechanism(mechanism string, props map[string]string) (sasl.Mechanism, error) {
	user, pass := s.user, s.password
	if jaas := props["sasl.jaas.config"]; jaas != "" {
		_, opts, err := auth.ParseJAAS(jaas)
		if err != nil {
			return nil, err
		}
		user, pass = first(user, opts["username"]), first(pass, opts["password"])
	}
	switch mechanism {
	case auth.Plain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case auth.ScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case auth.ScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	case auth.OAuthBearer:
		file := first(s.tokenFile, props["sasl.oauthbearer.token.file"])
		if file == "" {
			return nil, usageError("OAUTHBEARER needs -sasl-token-file")
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return oauth.Auth{}, err
			}
			return oauth.Auth{Token: strings.TrimSpace(string(b))}, nil
		}), nil
	}
	return nil, usageError("SASL mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", mechanism)
}
