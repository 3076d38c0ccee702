package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/internal/peer"
)

// The brokers of a cluster talk to each other (followers' fetches,
// transaction markers and checks, share-group state, forwarded share-group
// requests) on one listener of each broker, chosen as Kafka chooses it:
//
//	inter.broker.listener.name=BROKER            a listener of listeners, or
//	security.inter.broker.protocol=SASL_SSL      the listener of that name
//	sasl.mechanism.inter.broker.protocol=PLAIN   PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
//	listener.name.broker.plain.sasl.jaas.config=... username="broker" password="..." user_broker="...";
//
// With neither of the first two set, Kafka's default
// (security.inter.broker.protocol=PLAINTEXT) picks the listener named
// PLAINTEXT; a node without one uses its first listener, as Ferry did
// before these configs (Kafka refuses to start). On an SSL or SASL_SSL
// listener a broker connects with TLS: it checks the other broker's
// certificate against its truststore (ssl.truststore.*, the listener's
// own if prefixed) and the host name it dials unless
// ssl.endpoint.identification.algorithm is empty, and presents its own
// keystore certificate (so ssl.client.auth=required works between
// brokers). On a SASL listener it authenticates with the mechanism and
// the username and password options of the listener's JAAS config for
// that mechanism, Kafka's place for a broker's own credentials. Every
// broker registers the address of each of its listeners; the others dial
// the inter-broker one.

// defaultInterBrokerMechanism is sasl.mechanism.inter.broker.protocol's
// default: Kafka's, GSSAPI, is not served by Ferry.
const defaultInterBrokerMechanism = auth.Plain

// interBrokerListener picks the listener the brokers of a cluster talk
// to each other on (see above).
func (s *Server) interBrokerListener() (*listener, error) {
	name := strings.ToUpper(strings.TrimSpace(s.cfg.Props["inter.broker.listener.name"]))
	proto := strings.ToUpper(strings.TrimSpace(s.cfg.Props["security.inter.broker.protocol"]))
	if name != "" && proto != "" {
		return nil, errors.New("inter.broker.listener.name and security.inter.broker.protocol are both set; set one")
	}
	if name == "" {
		name = proto
	}
	if name == "" {
		for _, l := range s.listeners {
			if l.Name == ProtocolPlaintext {
				return l, nil
			}
		}
		return s.listeners[0], nil
	}
	for _, l := range s.listeners {
		if l.Name == name {
			return l, nil
		}
	}
	if controllerListenerNames(s.cfg.Props)[name] {
		return nil, fmt.Errorf("inter.broker.listener.name %s is a controller listener (controller.listener.names); brokers talk on a Kafka listener", name)
	}
	names := make([]string, len(s.listeners))
	for i, l := range s.listeners {
		names[i] = l.Name
	}
	return nil, fmt.Errorf("inter-broker listener %s is not in listeners (%s)", name, strings.Join(names, ", "))
}

// interBrokerDialer returns how this broker connects to the others'
// inter-broker listener l, with clientID in its requests.
func (s *Server) interBrokerDialer(l *listener, clientID string) (peer.Dialer, error) {
	d := peer.Dialer{ClientID: clientID}
	if l.tls != nil {
		d.TLS = s.interBrokerTLS(l)
	}
	if l.sasl != nil {
		m, err := s.interBrokerSASL(l)
		if err != nil {
			return peer.Dialer{}, err
		}
		d.SASL = m
	}
	return d, nil
}

// interBrokerTLS returns the client side of l's TLS (clientTLS).
func (s *Server) interBrokerTLS(l *listener) func(host string) *tls.Config {
	return s.clientTLS(l.tls, l.Name)
}

// clientTLS returns the client side of a listener's TLS, for a broker
// dialing another's listener of that name: the truststore's CAs verify
// the other broker (and, unless ssl.endpoint.identification.algorithm is
// empty, the host name dialed), the keystore's certificate is presented
// to it. Both are read at each dial, so renewed files are used.
func (s *Server) clientTLS(tc *tlsConfig, name string) func(host string) *tls.Config {
	checkHost := true
	if v, ok := s.cfg.Props["listener.name."+strings.ToLower(name)+".ssl.endpoint.identification.algorithm"]; ok {
		checkHost = v != ""
	} else if v, ok := s.cfg.Props["ssl.endpoint.identification.algorithm"]; ok {
		checkHost = v != ""
	}
	return func(host string) *tls.Config {
		cur := tc.current()
		cfg := &tls.Config{
			RootCAs:      cur.ClientCAs, // nil: the system's roots
			Certificates: cur.Certificates,
			MinVersion:   cur.MinVersion,
			ServerName:   host,
		}
		if !checkHost {
			// The chain is still verified, against the truststore;
			// only the name in the certificate is not compared.
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("no certificate")
				}
				opts := x509.VerifyOptions{Roots: cur.ClientCAs, Intermediates: x509.NewCertPool()}
				for _, c := range cs.PeerCertificates[1:] {
					opts.Intermediates.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(opts)
				return err
			}
		}
		return cfg
	}
}

// controllerTLS returns the raft transport's TLS when the controller
// listener (the first of controller.listener.names) is SSL or SASL_SSL:
// mutual TLS, whatever ssl.client.auth says, each controller and broker
// presenting its keystore's certificate and verifying the other's
// against its truststore (listener.name.<controller listener>.ssl.*, else
// ssl.*). SASL is not spoken there: the certificates authenticate the
// nodes. nil, nil on plain TCP.
func (s *Server) controllerTLS() (*tls.Config, func(host string) *tls.Config, error) {
	name, proto := controllerListenerName(s.cfg.Props)
	switch proto {
	case "", ProtocolPlaintext:
		return nil, nil, nil
	case ProtocolSSL, ProtocolSASLSSL:
	default:
		return nil, nil, fmt.Errorf("controller listener %s is %s; the controller listener is plain TCP (PLAINTEXT) or mutual TLS (SSL)", name, proto)
	}
	prefix := "listener.name." + strings.ToLower(name) + "."
	get := func(key string) string {
		if v, ok := s.cfg.Props[prefix+key]; ok {
			return v
		}
		return s.cfg.Props[key]
	}
	tc, err := newTLSConfig(get, s.logger.With("listener", name))
	if err != nil {
		return nil, nil, fmt.Errorf("controller listener %s: %w", name, err)
	}
	if tc.current().ClientCAs == nil {
		return nil, nil, fmt.Errorf("controller listener %s is %s: the controllers verify each other's certificates and need ssl.truststore.location", name, proto)
	}
	server := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cfg := tc.current().Clone()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		return cfg, nil
	}}
	return server, s.clientTLS(tc, name), nil
}

// interBrokerSASL returns the mechanism this broker authenticates with on
// the SASL listener l: sasl.mechanism.inter.broker.protocol, with the
// username and password of l's JAAS config for it
// (listener.name.<l>.<mechanism>.sasl.jaas.config, else sasl.jaas.config).
func (s *Server) interBrokerSASL(l *listener) (sasl.Mechanism, error) {
	mech := strings.ToUpper(strings.TrimSpace(s.cfg.Props["sasl.mechanism.inter.broker.protocol"]))
	if mech == "" {
		mech = defaultInterBrokerMechanism
	}
	switch mech {
	case auth.Plain, auth.ScramSHA256, auth.ScramSHA512:
	default:
		return nil, fmt.Errorf("sasl.mechanism.inter.broker.protocol=%s: brokers authenticate to each other with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mech)
	}
	get := s.listenerProps(l.Name)
	var enabled []string
	for m := range strings.SplitSeq(get("sasl.enabled.mechanisms"), ",") {
		enabled = append(enabled, strings.ToUpper(strings.TrimSpace(m)))
	}
	if !slices.Contains(enabled, mech) {
		return nil, fmt.Errorf("sasl.mechanism.inter.broker.protocol=%s is not in sasl.enabled.mechanisms of listener %s (%s)", mech, l.Name, get("sasl.enabled.mechanisms"))
	}
	key := "listener.name." + strings.ToLower(l.Name) + "." + strings.ToLower(mech) + ".sasl.jaas.config"
	jaas := get(strings.ToLower(mech) + ".sasl.jaas.config")
	if jaas == "" {
		jaas = get("sasl.jaas.config")
	}
	if jaas == "" {
		return nil, fmt.Errorf("inter-broker SASL on listener %s: no JAAS config with this broker's username and password (%s)", l.Name, key)
	}
	_, opts, err := auth.ParseJAAS(jaas)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	user, pass := opts["username"], opts["password"]
	if user == "" || pass == "" {
		return nil, fmt.Errorf("%s: the username and password options are this broker's inter-broker credentials, and are missing", key)
	}
	switch mech {
	case auth.ScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case auth.ScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
}
