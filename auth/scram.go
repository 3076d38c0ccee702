package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/ferrymq/ferry/meta"
)

// SCRAM mechanisms (RFC 5802, RFC 7677).
const (
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Iteration bounds Kafka accepts for a SCRAM credential.
const (
	MinScramIterations = 4096
	MaxScramIterations = 16384
)

// scramHash returns the hash of a SCRAM mechanism, or nil.
func scramHash(mechanism string) func() hash.Hash {
	switch mechanism {
	case ScramSHA256:
		return sha256.New
	case ScramSHA512:
		return sha512.New
	}
	return nil
}

// IsScram reports whether mechanism is a SCRAM mechanism Ferry serves.
func IsScram(mechanism string) bool { return scramHash(mechanism) != nil }

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// ScramFromSalted derives the credential kept by the server from a salted
// password (Hi(password, salt, iterations)), as AlterUserScramCredentials
// sends it.
func ScramFromSalted(mechanism string, salt, salted []byte, iterations int32) (meta.ScramCredential, error) {
	h := scramHash(mechanism)
	if h == nil {
		return meta.ScramCredential{}, fmt.Errorf("auth: unknown SCRAM mechanism %q", mechanism)
	}
	clientKey := hmacSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	return meta.ScramCredential{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  stored.Sum(nil),
		ServerKey:  hmacSum(h, salted, "Server Key"),
	}, nil
}

// SaltPassword computes Hi(password, salt, iterations) for a mechanism.
func SaltPassword(mechanism, password string, salt []byte, iterations int32) ([]byte, error) {
	h := scramHash(mechanism)
	if h == nil {
		return nil, fmt.Errorf("auth: unknown SCRAM mechanism %q", mechanism)
	}
	return pbkdf2.Key(h, password, salt, int(iterations), h().Size())
}

// NewScramCredential makes a credential for password with a random salt.
func NewScramCredential(mechanism, password string, iterations int32) (meta.ScramCredential, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := SaltPassword(mechanism, password, salt, iterations)
	if err != nil {
		return meta.ScramCredential{}, err
	}
	return ScramFromSalted(mechanism, salt, salted, iterations)
}

// checkScramPassword reports whether password matches the credential.
func checkScramPassword(mechanism, password string, c meta.ScramCredential) bool {
	salted, err := SaltPassword(mechanism, password, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	want, err := ScramFromSalted(mechanism, c.Salt, salted, c.Iterations)
	return err == nil && subtle.ConstantTimeCompare(want.StoredKey, c.StoredKey) == 1
}

// scramExchange is the server side of one SCRAM exchange: the client's
// first message, the server's challenge, the client's proof, the server's
// signature.
type scramExchange struct {
	a         *Authenticator
	mechanism string
	h         func() hash.Hash
	step      int
	user      string
	cred      meta.ScramCredential
	// firstBare and serverFirst are kept for the AuthMessage.
	firstBare, serverFirst, nonce string
}

func (e *scramExchange) Step(msg []byte) ([]byte, bool, error) {
	switch e.step {
	case 0:
		e.step = 1
		return e.first(string(msg))
	case 1:
		e.step = 2
		return e.final(string(msg))
	}
	return nil, false, fmt.Errorf("%w: unexpected SCRAM message", ErrAuthentication)
}

func (e *scramExchange) first(msg string) ([]byte, bool, error) {
	// gs2-header: n,[a=authzid], ; channel binding is not supported.
	gs2, rest, ok := cutN(msg, ',', 2)
	if !ok || !strings.HasPrefix(gs2, "n,") && !strings.HasPrefix(gs2, "y,") {
		return nil, false, fmt.Errorf("%w: malformed SCRAM client-first message", ErrAuthentication)
	}
	authzid := strings.TrimPrefix(strings.TrimSuffix(gs2[2:], ","), "a=")
	e.firstBare = rest
	attrs := scramAttrs(rest)
	user, ok := unescapeScram(attrs["n"])
	if !ok || user == "" || attrs["r"] == "" {
		return nil, false, fmt.Errorf("%w: malformed SCRAM client-first message", ErrAuthentication)
	}
	if attrs["tokenauth"] != "" {
		return nil, false, fmt.Errorf("%w: delegation tokens are not supported", ErrAuthentication)
	}
	if authzid != "" && authzid != user {
		return nil, false, fmt.Errorf("%w: authorization id %q differs from user %q", ErrAuthentication, authzid, user)
	}
	e.user = user
	cred, ok := e.a.scram(user, e.mechanism)
	if !ok {
		return nil, false, fmt.Errorf("%w: invalid credentials for user %q", ErrAuthentication, user)
	}
	e.cred = cred
	var nb [24]byte
	rand.Read(nb[:])
	e.nonce = attrs["r"] + base64.RawURLEncoding.EncodeToString(nb[:])
	e.serverFirst = "r=" + e.nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.Salt) + ",i=" + strconv.Itoa(int(cred.Iterations))
	return []byte(e.serverFirst), false, nil
}

func (e *scramExchange) final(msg string) ([]byte, bool, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, false, fmt.Errorf("%w: malformed SCRAM client-final message", ErrAuthentication)
	}
	withoutProof := msg[:i]
	attrs := scramAttrs(withoutProof)
	// The nonce must end with the one the server sent, as Kafka checks
	// it: librdkafka sends its own nonce in front of it again. The proof
	// covers the message as sent either way.
	if !strings.HasSuffix(attrs["r"], e.nonce) {
		return nil, false, fmt.Errorf("%w: SCRAM nonce mismatch", ErrAuthentication)
	}
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil || len(proof) != e.h().Size() {
		return nil, false, fmt.Errorf("%w: malformed SCRAM proof", ErrAuthentication)
	}
	authMessage := e.firstBare + "," + e.serverFirst + "," + withoutProof
	sig := hmacSum(e.h, e.cred.StoredKey, authMessage)
	for j := range proof {
		proof[j] ^= sig[j]
	}
	stored := e.h()
	stored.Write(proof)
	if subtle.ConstantTimeCompare(stored.Sum(nil), e.cred.StoredKey) != 1 {
		return nil, false, fmt.Errorf("%w: invalid credentials for user %q", ErrAuthentication, e.user)
	}
	serverSig := hmacSum(e.h, e.cred.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), true, nil
}

func (e *scramExchange) Result() Result { return Result{Principal: "User:" + e.user, User: e.user} }

// cutN cuts s after the n-th sep, returning both sides (the first with
// the separator).
func cutN(s string, sep byte, n int) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			if n--; n == 0 {
				return s[:i+1], s[i+1:], true
			}
		}
	}
	return "", "", false
}

// scramAttrs parses "k=v,k=v"; a later key wins.
func scramAttrs(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// unescapeScram decodes a SCRAM saslname (=2C for ',', =3D for '=').
func unescapeScram(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}
