package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/ferrymq/ferry/meta"
)

// exchange runs a franz-go client mechanism against a server exchange and
// returns the server's result or the first error.
func exchange(t *testing.T, a *Authenticator, m sasl.Mechanism) (Result, error) {
	t.Helper()
	sess, msg, err := m.Authenticate(context.Background(), "broker:9092")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := a.Start(m.Name())
	if err != nil {
		return Result{}, err
	}
	for range 5 {
		answer, done, err := ex.Step(msg)
		if err != nil {
			return Result{}, err
		}
		clientDone, next, cerr := sess.Challenge(answer)
		if cerr != nil {
			t.Fatalf("client rejects the server's answer: %v", cerr)
		}
		if done {
			if !clientDone {
				t.Fatal("server done, client not")
			}
			return ex.Result(), nil
		}
		msg = next
	}
	t.Fatal("exchange did not end")
	return Result{}, nil
}

func scramStore(t *testing.T, creds map[[2]string]string) func(user, mech string) (meta.ScramCredential, bool) {
	m := map[[2]string]meta.ScramCredential{}
	for k, pass := range creds {
		c, err := NewScramCredential(k[1], pass, MinScramIterations)
		if err != nil {
			t.Fatal(err)
		}
		m[k] = c
	}
	return func(user, mech string) (meta.ScramCredential, bool) {
		c, ok := m[[2]string{user, mech}]
		return c, ok
	}
}

func TestScramAndPlain(t *testing.T) {
	a, err := New(Config{
		Mechanisms: []string{Plain, ScramSHA256, ScramSHA512},
		Scram:      scramStore(t, map[[2]string]string{{"alice", ScramSHA256}: "wonder,land=", {"bob", ScramSHA512}: "builder"}),
		PlainUsers: map[string]string{"admin": "admin-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    sasl.Mechanism
		user string // "" for a failure
	}{
		{"scram-256", scram.Auth{User: "alice", Pass: "wonder,land="}.AsSha256Mechanism(), "alice"},
		{"scram-512", scram.Auth{User: "bob", Pass: "builder"}.AsSha512Mechanism(), "bob"},
		{"scram wrong password", scram.Auth{User: "alice", Pass: "nope"}.AsSha256Mechanism(), ""},
		{"scram other mechanism", scram.Auth{User: "alice", Pass: "wonder,land="}.AsSha512Mechanism(), ""},
		{"scram unknown user", scram.Auth{User: "carol", Pass: "x"}.AsSha256Mechanism(), ""},
		{"plain jaas user", plainMech{"", "admin", "admin-secret"}, "admin"},
		{"plain jaas wrong", plainMech{"", "admin", "admin"}, ""},
		{"plain via scram", plainMech{"", "bob", "builder"}, "bob"},
		{"plain via scram wrong", plainMech{"", "bob", "build"}, ""},
		{"plain other authzid", plainMech{"root", "admin", "admin-secret"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := exchange(t, a, tc.m)
			if tc.user == "" {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("got %v, %v; want an authentication failure", res, err)
				}
				return
			}
			if err != nil || res.Principal != "User:"+tc.user || res.User != tc.user {
				t.Fatalf("got %+v, %v", res, err)
			}
		})
	}
	if _, err := a.Start(OAuthBearer); !errors.Is(err, ErrUnsupportedMechanism) {
		t.Errorf("OAUTHBEARER not enabled: %v", err)
	}
}

// plainMech is a PLAIN client with an authorization id (franz-go's sends
// its Zid the same way).
type plainMech struct{ zid, user, pass string }

func (plainMech) Name() string { return Plain }
func (p plainMech) Authenticate(context.Context, string) (sasl.Session, []byte, error) {
	return plainSession{}, []byte(p.zid + "\x00" + p.user + "\x00" + p.pass), nil
}

type plainSession struct{}

func (plainSession) Challenge([]byte) (bool, []byte, error) { return true, nil, nil }

// signJWT signs claims with key (RS256 for RSA, ES256 for P-256).
func signJWT(t *testing.T, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	alg := "RS256"
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = "ES256"
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"}) + "." + enc(claims)
	d := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := key.(type) {
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func jwksJSON(keys map[string]crypto.Signer) []byte {
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PrivateKey:
			pub, _ := k.PublicKey.Bytes()
			set.Keys = append(set.Keys, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])})
		}
	}
	b, _ := json.Marshal(set)
	return b
}

func TestOAuthBearer(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(map[string]crypto.Signer{"r1": rsaKey, "e1": ecKey}), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_900_000_000, 0)
	v, err := NewOAuthValidator(OAuthConfig{JWKSFile: "file://" + path, Audience: []string{"ferry"}, Issuer: "https://idp", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Mechanisms: []string{OAuthBearer}, OAuth: v})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"sub": "svc", "aud": []string{"x", "ferry"}, "iss": "https://idp", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
		zid   string
	}{
		{"rsa", signJWT(t, rsaKey, "r1", claims(nil)), true, ""},
		{"ec", signJWT(t, ecKey, "e1", claims(nil)), true, "svc"},
		{"ec without kid", signJWT(t, ecKey, "", claims(nil)), true, ""},
		{"expired", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), false, ""},
		{"within skew", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() })), true, ""},
		{"no exp", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { delete(c, "exp") })), false, ""},
		{"not yet", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() })), false, ""},
		{"unknown key", signJWT(t, otherKey, "e1", claims(nil)), false, ""},
		{"wrong audience", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { c["aud"] = "kafka" })), false, ""},
		{"wrong issuer", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { c["iss"] = "evil" })), false, ""},
		{"no subject", signJWT(t, rsaKey, "r1", claims(func(c map[string]any) { delete(c, "sub") })), false, ""},
		{"other authzid", signJWT(t, rsaKey, "r1", claims(nil)), false, "root"},
		{"unsigned", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","exp":1999999999}`)) + ".", false, ""},
		{"garbage", "a.b", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := exchange(t, a, oauth.Auth{Token: tc.token, Zid: tc.zid}.AsMechanism())
			if !tc.ok {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("got %+v, %v; want a failure", res, err)
				}
				return
			}
			if err != nil || res.Principal != "User:svc" || !res.Expiry.Equal(time.Unix(now.Add(time.Hour).Unix(), 0)) && tc.name != "within skew" {
				t.Fatalf("got %+v, %v", res, err)
			}
		})
	}

	// A new key set is picked up without a restart.
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	token := signJWT(t, newKey, "e2", claims(nil))
	if _, err := v.Validate(token); err == nil {
		t.Fatal("token of an unknown key accepted")
	}
	if err := os.WriteFile(path, jwksJSON(map[string]crypto.Signer{"e2": newKey}), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := v.Validate(token); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the new key set was not read: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestParseJAAS(t *testing.T) {
	module, opts, err := ParseJAAS(`org.apache.kafka.common.security.plain.PlainLoginModule required
		username="admin" password="a \"quoted\" secret" user_admin="admin-secret" user_bob=bare;`)
	if err != nil {
		t.Fatal(err)
	}
	if module != "org.apache.kafka.common.security.plain.PlainLoginModule" || opts["username"] != "admin" || opts["password"] != `a "quoted" secret` || opts["user_bob"] != "bare" {
		t.Fatalf("%s %v", module, opts)
	}
	users, err := PlainUsersFromJAAS(`x.PlainLoginModule required user_admin="s1" user_bob="s2";`)
	if err != nil || len(users) != 2 || users["bob"] != "s2" {
		t.Fatalf("%v %v", users, err)
	}
	if _, _, err := ParseJAAS(`x.Module required password="unterminated;`); err == nil || !strings.Contains(err.Error(), "unterminated") {
		t.Fatalf("unterminated quote: %v", err)
	}
}
