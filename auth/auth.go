package auth

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// Errors of authentication. Package server answers both with Kafka's
// codes (SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM).
var (
	// ErrAuthentication: the credentials are wrong, unknown, expired or
	// malformed. The wrapping message says which, for the broker's log
	// and the client.
	ErrAuthentication = errors.New("auth: authentication failed")
	// ErrUnsupportedMechanism: the mechanism is not enabled here.
	ErrUnsupportedMechanism = errors.New("auth: unsupported SASL mechanism")
)

// SASL mechanism names besides SCRAM's.
const (
	Plain       = "PLAIN"
	OAuthBearer = "OAUTHBEARER"
)

// Mechanisms lists every SASL mechanism Ferry serves.
var Mechanisms = []string{Plain, ScramSHA256, ScramSHA512, OAuthBearer}

// Config configures an Authenticator (one per listener).
type Config struct {
	// Mechanisms are the enabled mechanisms (sasl.enabled.mechanisms).
	Mechanisms []string
	// Scram looks up a user's SCRAM credential in the metadata image.
	Scram func(user, mechanism string) (meta.ScramCredential, bool)
	// PlainUsers maps user names to PLAIN passwords (the user_NAME
	// options of the PlainLoginModule's sasl.jaas.config). A PLAIN user
	// not named here is checked against its SCRAM credentials.
	PlainUsers map[string]string
	// OAuth validates OAUTHBEARER tokens; nil refuses them.
	OAuth *OAuthValidator
}

// Authenticator starts the SASL exchanges of one listener. It is safe for
// concurrent use; an Exchange is not.
type Authenticator struct {
	cfg Config
}

// New returns an Authenticator. Mechanisms not in Mechanisms are an error.
func New(cfg Config) (*Authenticator, error) {
	for _, m := range cfg.Mechanisms {
		if !slices.Contains(Mechanisms, m) {
			return nil, fmt.Errorf("auth: SASL mechanism %s is not supported (Ferry serves %s)", m, strings.Join(Mechanisms, ", "))
		}
		if m == OAuthBearer && cfg.OAuth == nil {
			return nil, fmt.Errorf("auth: OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url")
		}
	}
	if cfg.Scram == nil {
		cfg.Scram = func(string, string) (meta.ScramCredential, bool) { return meta.ScramCredential{}, false }
	}
	return &Authenticator{cfg: cfg}, nil
}

// Enabled lists the enabled mechanisms.
func (a *Authenticator) Enabled() []string { return a.cfg.Mechanisms }

// Exchange is the server side of one SASL exchange.
type Exchange interface {
	// Step takes the client's next message and returns the answer to
	// send. done reports that the client is authenticated; an error wraps
	// ErrAuthentication.
	Step(msg []byte) (answer []byte, done bool, err error)
	// Result is who authenticated, once Step said done.
	Result() Result
}

// Result is an authenticated identity.
type Result struct {
	// Principal is "User:name".
	Principal string
	// User is the name alone (what client quotas are set for).
	User string
	// Expiry is when the credential stops being valid (an OAUTHBEARER
	// token's exp); zero for none.
	Expiry time.Time
}

// Start begins an exchange of mechanism.
func (a *Authenticator) Start(mechanism string) (Exchange, error) {
	if !slices.Contains(a.cfg.Mechanisms, mechanism) {
		return nil, fmt.Errorf("%w: %s (enabled: %s)", ErrUnsupportedMechanism, mechanism, strings.Join(a.cfg.Mechanisms, ", "))
	}
	switch mechanism {
	case Plain:
		return &plainExchange{a: a}, nil
	case OAuthBearer:
		return &oauthExchange{v: a.cfg.OAuth}, nil
	}
	return &scramExchange{a: a, mechanism: mechanism, h: scramHash(mechanism)}, nil
}

func (a *Authenticator) scram(user, mechanism string) (meta.ScramCredential, bool) {
	return a.cfg.Scram(user, mechanism)
}

// plainExchange checks "authzid NUL user NUL password" (RFC 4616).
type plainExchange struct {
	a    *Authenticator
	user string
}

func (e *plainExchange) Step(msg []byte) ([]byte, bool, error) {
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 {
		return nil, false, fmt.Errorf("%w: malformed PLAIN message", ErrAuthentication)
	}
	authzid, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	if user == "" {
		return nil, false, fmt.Errorf("%w: empty user name", ErrAuthentication)
	}
	if authzid != "" && authzid != user {
		return nil, false, fmt.Errorf("%w: authorization id %q differs from user %q", ErrAuthentication, authzid, user)
	}
	ok := false
	if want, known := e.a.cfg.PlainUsers[user]; known {
		ok = subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
	} else {
		for _, m := range []string{ScramSHA512, ScramSHA256} {
			if c, found := e.a.scram(user, m); found {
				ok = checkScramPassword(m, password, c)
				break
			}
		}
	}
	if !ok {
		return nil, false, fmt.Errorf("%w: invalid username or password for user %q", ErrAuthentication, user)
	}
	e.user = user
	return nil, true, nil
}

func (e *plainExchange) Result() Result { return Result{Principal: "User:" + e.user, User: e.user} }

// ParseJAAS parses a sasl.jaas.config value such as
//
//	org.apache.kafka.common.security.plain.PlainLoginModule required
//	    username="admin" password="secret" user_alice="alice-secret";
//
// into its login module's class name and options. Values may be quoted
// (with backslash escapes) or bare.
func ParseJAAS(s string) (module string, opts map[string]string, err error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ";")
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return "", nil, fmt.Errorf("auth: sasl.jaas.config %q: want \"LoginModule flag key=value ...;\"", s)
	}
	module = fields[0]
	rest := strings.TrimSpace(s[len(module):])
	if i := strings.IndexAny(rest, " \t\r\n"); i > 0 {
		switch rest[:i] {
		case "required", "requisite", "sufficient", "optional":
			rest = rest[i:]
		}
	} else if rest == "required" || rest == "requisite" || rest == "sufficient" || rest == "optional" {
		rest = ""
	}
	opts = map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			return "", nil, fmt.Errorf("auth: sasl.jaas.config: %q is not key=value", rest)
		}
		k = strings.TrimSpace(k)
		v = strings.TrimLeft(v, " \t\r\n")
		if strings.HasPrefix(v, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				b.WriteByte(v[i])
			}
			if i >= len(v) {
				return "", nil, fmt.Errorf("auth: sasl.jaas.config: unterminated quote after %s=", k)
			}
			opts[k] = b.String()
			rest = v[i+1:]
		} else {
			end := strings.IndexAny(v, " \t\r\n")
			if end < 0 {
				end = len(v)
			}
			opts[k] = v[:end]
			rest = v[end:]
		}
	}
	return module, opts, nil
}

// PlainUsersFromJAAS returns the user_NAME="password" options of a
// PlainLoginModule sasl.jaas.config.
func PlainUsersFromJAAS(s string) (map[string]string, error) {
	_, opts, err := ParseJAAS(s)
	if err != nil {
		return nil, err
	}
	users := map[string]string{}
	for k, v := range opts {
		if name, ok := strings.CutPrefix(k, "user_"); ok && name != "" {
			users[name] = v
		}
	}
	return users, nil
}
