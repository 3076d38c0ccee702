package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/auth"
)

// Listeners, as Kafka names them:
//
//	listeners=PLAINTEXT://localhost:9092,SASL_SSL://:9093
//	advertised.listeners=PLAINTEXT://localhost:9092,SASL_SSL://broker1.example.com:9093
//	listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
//
// Each listener has a name and a security protocol (the map's value for
// its name; the default map names each protocol after itself). A client
// is told the brokers' addresses of the listener it is connected to. A
// listener is advertised as advertised.listeners says, else by the host
// it is configured with (a host name stays a host name), else, for an
// empty host, by this machine's host name, as Kafka does; a wildcard
// address or a port of 0 is replaced by the address the listener is bound
// to.
//
// Settings of one listener may be given with Kafka's prefix,
// listener.name.<name in lower case>.<config>, and fall back to the
// unprefixed config: ssl.*, sasl.enabled.mechanisms, and the SASL
// mechanisms' sasl.jaas.config (listener.name.<name>.<mechanism in lower
// case>.sasl.jaas.config, as Kafka names it).

// Security protocols.
const (
	ProtocolPlaintext     = "PLAINTEXT"
	ProtocolSSL           = "SSL"
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	ProtocolSASLSSL       = "SASL_SSL"
)

// Listener is one entry of listeners, with its security protocol and
// where clients are told to connect.
type Listener struct {
	// Name is the listener's name (PLAINTEXT, SASL_SSL, CLIENT, ...).
	Name string
	// Protocol is its security protocol.
	Protocol string
	// Host and Port are where it listens; an empty host is every
	// interface, port 0 a free port.
	Host string
	Port int
	// AdvertisedHost and AdvertisedPort are what clients are told, from
	// advertised.listeners; empty and 0 when it does not name the
	// listener.
	AdvertisedHost string
	AdvertisedPort int
}

// Addr is the address to listen on.
func (l Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// defaultProtocolMap is listener.security.protocol.map's default.
const defaultProtocolMap = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"

// ParseListeners reads listeners, advertised.listeners and
// listener.security.protocol.map from broker configs. It returns nil when
// listeners is not set. A listener named in controller.listener.names is
// the controller listener of a cluster (ControllerListenerAddr), not a
// Kafka listener, and is not returned.
func ParseListeners(props map[string]string) ([]Listener, error) {
	ls, err := parseListeners(props)
	if err != nil {
		return nil, err
	}
	ctrl := controllerListenerNames(props)
	if len(ctrl) == 0 || ls == nil {
		return ls, nil
	}
	out := []Listener{}
	for _, l := range ls {
		if !ctrl[l.Name] {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("listeners: every listener is a controller listener (controller.listener.names); a node needs a Kafka listener too")
	}
	return out, nil
}

// controllerListenerNames returns the names in controller.listener.names.
func controllerListenerNames(props map[string]string) map[string]bool {
	names := map[string]bool{}
	for n := range strings.SplitSeq(props["controller.listener.names"], ",") {
		if n = strings.ToUpper(strings.TrimSpace(n)); n != "" {
			names[n] = true
		}
	}
	return names
}

// ControllerListenerAddr returns the address of the first listener of
// listeners named in controller.listener.names, Kafka's way of naming the
// controller listener; "" if none is. It is plain TCP (PLAINTEXT in
// listener.security.protocol.map, or absent from it) or mutual TLS (SSL
// or SASL_SSL; see controllerTLS).
func ControllerListenerAddr(props map[string]string) (string, error) {
	ctrl := controllerListenerNames(props)
	if len(ctrl) == 0 {
		return "", nil
	}
	ls, err := parseListeners(props)
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		if ctrl[l.Name] {
			if l.Protocol == ProtocolSASLPlaintext {
				return "", fmt.Errorf("listeners: controller listener %s is SASL_PLAINTEXT; the controller listener is plain TCP (PLAINTEXT) or mutual TLS (SSL)", l.Name)
			}
			return l.Addr(), nil
		}
	}
	return "", nil
}

// controllerListenerName returns the first name of
// controller.listener.names and its security protocol (from
// listener.security.protocol.map; a name missing there is PLAINTEXT),
// which a broker-only node uses too, to dial the controllers, without
// having that listener. "" if none is named.
func controllerListenerName(props map[string]string) (name, protocol string) {
	for n := range strings.SplitSeq(props["controller.listener.names"], ",") {
		if n = strings.ToUpper(strings.TrimSpace(n)); n != "" {
			name = n
			break
		}
	}
	if name == "" {
		return "", ""
	}
	pmap := props["listener.security.protocol.map"]
	if pmap == "" {
		pmap = defaultProtocolMap
	}
	for item := range strings.SplitSeq(pmap, ",") {
		if n, proto, ok := strings.Cut(strings.TrimSpace(item), ":"); ok && strings.ToUpper(strings.TrimSpace(n)) == name {
			return name, strings.ToUpper(strings.TrimSpace(proto))
		}
	}
	return name, ProtocolPlaintext
}

func parseListeners(props map[string]string) ([]Listener, error) {
	spec := strings.TrimSpace(props["listeners"])
	if spec == "" {
		if props["advertised.listeners"] != "" {
			return nil, fmt.Errorf("advertised.listeners is set without listeners")
		}
		return nil, nil
	}
	pmap := props["listener.security.protocol.map"]
	if pmap == "" {
		pmap = defaultProtocolMap
	}
	protocols := map[string]string{}
	for item := range strings.SplitSeq(pmap, ",") {
		name, proto, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return nil, fmt.Errorf("listener.security.protocol.map: %q is not NAME:PROTOCOL", item)
		}
		proto = strings.ToUpper(strings.TrimSpace(proto))
		switch proto {
		case ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL:
		default:
			return nil, fmt.Errorf("listener.security.protocol.map: unknown security protocol %q", proto)
		}
		protocols[strings.ToUpper(strings.TrimSpace(name))] = proto
	}
	ls, err := parseEndpoints("listeners", spec)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range ls {
		l := &ls[i]
		if seen[l.Name] {
			return nil, fmt.Errorf("listeners: %s is named twice", l.Name)
		}
		seen[l.Name] = true
		if l.Protocol = protocols[l.Name]; l.Protocol == "" && controllerListenerNames(props)[l.Name] {
			l.Protocol = ProtocolPlaintext
		}
		if l.Protocol == "" {
			return nil, fmt.Errorf("listeners: %s has no security protocol in listener.security.protocol.map", l.Name)
		}
	}
	if adv := strings.TrimSpace(props["advertised.listeners"]); adv != "" {
		as, err := parseEndpoints("advertised.listeners", adv)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			found := false
			for i := range ls {
				if ls[i].Name == a.Name {
					ls[i].AdvertisedHost, ls[i].AdvertisedPort, found = a.Host, a.Port, true
				}
			}
			if !found {
				return nil, fmt.Errorf("advertised.listeners: %s is not in listeners", a.Name)
			}
			if ip := net.ParseIP(a.Host); ip != nil && ip.IsUnspecified() {
				return nil, fmt.Errorf("advertised.listeners: %s cannot advertise the wildcard address %s", a.Name, a.Host)
			}
		}
	}
	return ls, nil
}

// parseEndpoints parses "NAME://host:port,..." .
func parseEndpoints(what, spec string) ([]Listener, error) {
	var out []Listener
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, hp, ok := strings.Cut(item, "://")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q is not NAME://host:port", what, item)
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", what, item, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("%s: %q: bad port", what, item)
		}
		out = append(out, Listener{Name: strings.ToUpper(name), Host: host, Port: p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is empty", what)
	}
	return out, nil
}

// listener is a configured listener as the server runs it.
type listener struct {
	Listener
	// tls, for SSL and SASL_SSL, hands out the current certificates.
	tls *tlsConfig
	// sasl, for SASL_PLAINTEXT and SASL_SSL, starts SASL exchanges.
	sasl *auth.Authenticator
	// implicit marks the listener of a broker configured without
	// listeners: it takes whatever Serve is given.
	implicit bool
}

// newListeners builds the listeners of cfg: those of the listeners config,
// or one implicit PLAINTEXT listener.
func (s *Server) newListeners() ([]*listener, error) {
	ls, err := ParseListeners(s.cfg.Props)
	if err != nil {
		return nil, err
	}
	if ls == nil {
		return []*listener{{Listener: Listener{Name: ProtocolPlaintext, Protocol: ProtocolPlaintext}, implicit: true}}, nil
	}
	out := make([]*listener, 0, len(ls))
	for _, l := range ls {
		sl := &listener{Listener: l}
		if l.Protocol == ProtocolSSL || l.Protocol == ProtocolSASLSSL {
			if sl.tls, err = newTLSConfig(s.listenerProps(l.Name), s.logger.With("listener", l.Name)); err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.Name, err)
			}
		}
		if l.Protocol == ProtocolSASLPlaintext || l.Protocol == ProtocolSASLSSL {
			if sl.sasl, err = s.newAuthenticator(l.Name); err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.Name, err)
			}
		}
		out = append(out, sl)
	}
	return out, nil
}

// listenerProps returns a lookup of broker configs for one listener:
// listener.name.<name>.<key>, else <key>.
func (s *Server) listenerProps(name string) func(key string) string {
	prefix := "listener.name." + strings.ToLower(name) + "."
	return func(key string) string {
		if v, ok := s.cfg.Props[prefix+key]; ok {
			return v
		}
		v, _ := s.meta.Settings().Get(key)
		return v
	}
}

// newAuthenticator configures the SASL mechanisms of a listener.
func (s *Server) newAuthenticator(name string) (*auth.Authenticator, error) {
	get := s.listenerProps(name)
	var mechs []string
	for m := range strings.SplitSeq(get("sasl.enabled.mechanisms"), ",") {
		if m = strings.ToUpper(strings.TrimSpace(m)); m != "" {
			mechs = append(mechs, m)
		}
	}
	jwks := get("sasl.oauthbearer.jwks.endpoint.url")
	if _, set := s.cfg.Props["sasl.enabled.mechanisms"]; !set && jwks != "" {
		if _, set := s.cfg.Props["listener.name."+strings.ToLower(name)+".sasl.enabled.mechanisms"]; !set {
			mechs = append(mechs, auth.OAuthBearer)
		}
	}
	cfg := auth.Config{Mechanisms: mechs, Scram: s.meta.ScramCredential}
	jaas := get("plain.sasl.jaas.config")
	if jaas == "" {
		jaas = get("sasl.jaas.config")
	}
	if jaas != "" {
		users, err := auth.PlainUsersFromJAAS(jaas)
		if err != nil {
			return nil, err
		}
		cfg.PlainUsers = users
	}
	if jwks != "" {
		var audience []string
		for a := range strings.SplitSeq(get("sasl.oauthbearer.expected.audience"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				audience = append(audience, a)
			}
		}
		skew, _ := strconv.Atoi(get("sasl.oauthbearer.clock.skew.seconds"))
		v, err := auth.NewOAuthValidator(auth.OAuthConfig{
			JWKSFile:  jwks,
			Audience:  audience,
			Issuer:    get("sasl.oauthbearer.expected.issuer"),
			SubClaim:  get("sasl.oauthbearer.sub.claim.name"),
			ClockSkew: secondsOrDefault(skew),
		})
		if err != nil {
			return nil, err
		}
		cfg.OAuth = v
	}
	return auth.New(cfg)
}

// advertised returns the host and port clients of l are told, for a
// listener bound to bound.
func (l *listener) advertised(bound net.Addr, override string) (string, int32) {
	bhost, bport := "", 0
	if bound != nil {
		h, p, err := net.SplitHostPort(bound.String())
		if err == nil {
			bhost = h
			bport, _ = strconv.Atoi(p)
		}
	}
	if override != "" && (l.implicit || l.AdvertisedHost == "") {
		if h, p, err := net.SplitHostPort(override); err == nil {
			n, _ := strconv.Atoi(p)
			return h, int32(n)
		}
	}
	host, port := l.AdvertisedHost, l.AdvertisedPort
	if host == "" && port == 0 {
		host, port = l.Host, l.Port
		if l.implicit {
			host = bhost
		} else if host == "" {
			if name, err := os.Hostname(); err == nil {
				host = name
			} else {
				host = bhost
			}
		}
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = bhost
	}
	if port == 0 {
		port = bport
	}
	return host, int32(port)
}
