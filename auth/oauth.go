package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// OAuthConfig configures an OAuthValidator with Kafka's broker configs of
// the OAUTHBEARER validator.
type OAuthConfig struct {
	// JWKSFile is the JSON Web Key Set the tokens are signed with
	// (sasl.oauthbearer.jwks.endpoint.url, a file: URL or a path). It is
	// read again when it changes, checked at most once a second.
	JWKSFile string
	// Audience, when set, must hold the token's aud
	// (sasl.oauthbearer.expected.audience).
	Audience []string
	// Issuer, when set, must equal the token's iss
	// (sasl.oauthbearer.expected.issuer).
	Issuer string
	// SubClaim names the claim holding the principal's name
	// (sasl.oauthbearer.sub.claim.name). Default "sub".
	SubClaim string
	// ClockSkew is allowed on exp, nbf and iat
	// (sasl.oauthbearer.clock.skew.seconds). Default 30s.
	ClockSkew time.Duration
	// Now returns the time; default time.Now.
	Now func() time.Time
}

// OAuthValidator validates OAUTHBEARER tokens: JWTs signed by a key of the
// configured set (RS256/384/512, PS256/384/512, ES256/384/512, EdDSA),
// unexpired, with the expected audience and issuer. Unsigned tokens
// ("alg":"none") are refused. It is safe for concurrent use.
type OAuthValidator struct {
	cfg OAuthConfig
	mu  struct {
		sync.Mutex
		keys    []jwk
		mod     time.Time
		size    int64
		checked time.Time
	}
}

// NewOAuthValidator reads the key set and returns a validator.
func NewOAuthValidator(cfg OAuthConfig) (*OAuthValidator, error) {
	cfg.JWKSFile = strings.TrimPrefix(cfg.JWKSFile, "file://")
	cfg.JWKSFile = strings.TrimPrefix(cfg.JWKSFile, "file:")
	if cfg.JWKSFile == "" {
		return nil, fmt.Errorf("auth: OAUTHBEARER needs a key set (sasl.oauthbearer.jwks.endpoint.url)")
	}
	if strings.Contains(cfg.JWKSFile, "://") {
		return nil, fmt.Errorf("auth: sasl.oauthbearer.jwks.endpoint.url %q: only file: URLs and paths are supported", cfg.JWKSFile)
	}
	if cfg.SubClaim == "" {
		cfg.SubClaim = "sub"
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &OAuthValidator{cfg: cfg}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.reloadLocked(true); err != nil {
		return nil, err
	}
	return v, nil
}

// reloadLocked reads the key set again if its file changed (or if force).
// A set that does not parse leaves the old keys in place.
func (v *OAuthValidator) reloadLocked(force bool) error {
	now := time.Now()
	if !force && now.Sub(v.mu.checked) < time.Second {
		return nil
	}
	v.mu.checked = now
	fi, err := os.Stat(v.cfg.JWKSFile)
	if err != nil {
		return fmt.Errorf("auth: JWKS: %w", err)
	}
	if !force && fi.ModTime().Equal(v.mu.mod) && fi.Size() == v.mu.size {
		return nil
	}
	b, err := os.ReadFile(v.cfg.JWKSFile)
	if err != nil {
		return fmt.Errorf("auth: JWKS: %w", err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("auth: JWKS %s: %w", v.cfg.JWKSFile, err)
	}
	v.mu.keys, v.mu.mod, v.mu.size = keys, fi.ModTime(), fi.Size()
	return nil
}

// keys returns the current key set, read again if its file changed.
func (v *OAuthValidator) keys() []jwk {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reloadLocked(false) // a bad new file keeps the keys in place
	return v.mu.keys
}

// jwk is one public key of a key set.
type jwk struct {
	kid string
	key crypto.PublicKey
}

// parseJWKS parses a JSON Web Key Set (RFC 7517) of RSA, EC (P-256,
// P-384, P-521) and Ed25519 public keys; keys of other types, or for
// encryption, are skipped.
func parseJWKS(b []byte) ([]jwk, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, err
	}
	var out []jwk
	dec := base64.RawURLEncoding.DecodeString
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		var pub crypto.PublicKey
		switch k.Kty {
		case "RSA":
			n, err1 := dec(k.N)
			e, err2 := dec(k.E)
			if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
				return nil, fmt.Errorf("key %d: bad RSA parameters", i)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				continue
			}
			x, err1 := dec(k.X)
			y, err2 := dec(k.Y)
			size := (curve.Params().BitSize + 7) / 8
			if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
				return nil, fmt.Errorf("key %d: bad EC parameters", i)
			}
			p, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			pub = p
		case "OKP":
			x, err := dec(k.X)
			if k.Crv != "Ed25519" {
				continue
			}
			if err != nil || len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("key %d: bad Ed25519 key", i)
			}
			pub = ed25519.PublicKey(x)
		default:
			continue
		}
		out = append(out, jwk{kid: k.Kid, key: pub})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no usable signing key")
	}
	return out, nil
}

// Validate checks a token and returns who it names and when it expires.
func (v *OAuthValidator) Validate(token string) (Result, error) {
	fail := func(format string, args ...any) (Result, error) {
		return Result{}, fmt.Errorf("%w: invalid token: "+format, append([]any{ErrAuthentication}, args...)...)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fail("not a signed JWT")
	}
	dec := base64.RawURLEncoding.DecodeString
	hb, err1 := dec(parts[0])
	pb, err2 := dec(parts[1])
	sig, err3 := dec(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return fail("bad base64url")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return fail("bad header: %v", err)
	}
	signed := []byte(parts[0] + "." + parts[1])
	verified := false
	for _, k := range v.keys() {
		if header.Kid != "" && k.kid != "" && k.kid != header.Kid {
			continue
		}
		if verifyJWS(header.Alg, k.key, signed, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return fail("signature does not verify with any key (alg %q, kid %q)", header.Alg, header.Kid)
	}
	var claims map[string]any
	d := json.NewDecoder(bytes.NewReader(pb))
	d.UseNumber()
	if err := d.Decode(&claims); err != nil {
		return fail("bad claims: %v", err)
	}
	now := v.cfg.Now()
	skew := v.cfg.ClockSkew
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return fail("no exp claim")
	}
	if now.After(exp.Add(skew)) {
		return fail("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok := numericDate(claims["nbf"]); ok && now.Add(skew).Before(nbf) {
		return fail("not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	if iat, ok := numericDate(claims["iat"]); ok && now.Add(skew).Before(iat) {
		return fail("issued in the future")
	}
	if v.cfg.Issuer != "" {
		if iss, _ := claims["iss"].(string); iss != v.cfg.Issuer {
			return fail("issuer %q is not %q", iss, v.cfg.Issuer)
		}
	}
	if len(v.cfg.Audience) > 0 {
		var auds []string
		switch a := claims["aud"].(type) {
		case string:
			auds = []string{a}
		case []any:
			for _, x := range a {
				if s, ok := x.(string); ok {
					auds = append(auds, s)
				}
			}
		}
		if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(v.cfg.Audience, a) }) {
			return fail("audience %v is not among %v", auds, v.cfg.Audience)
		}
	}
	sub, _ := claims[v.cfg.SubClaim].(string)
	if sub == "" {
		return fail("no %s claim", v.cfg.SubClaim)
	}
	return Result{Principal: "User:" + sub, User: sub, Expiry: exp}, nil
}

func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// verifyJWS checks a JWS signature of signed by key under alg.
func verifyJWS(alg string, key crypto.PublicKey, signed, sig []byte) bool {
	var h crypto.Hash
	switch alg[min(2, len(alg)):] {
	case "256":
		h = crypto.SHA256
	case "384":
		h = crypto.SHA384
	case "512":
		h = crypto.SHA512
	}
	if alg == "EdDSA" {
		pub, ok := key.(ed25519.PublicKey)
		return ok && ed25519.Verify(pub, signed, sig)
	}
	if h == 0 {
		return false
	}
	hh := h.New()
	hh.Write(signed)
	digest := hh.Sum(nil)
	switch alg[:2] {
	case "RS":
		pub, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	case "PS":
		pub, ok := key.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case "ES":
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok || len(sig)%2 != 0 {
			return false
		}
		half := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:half]), new(big.Int).SetBytes(sig[half:])
		return ecdsa.Verify(pub, digest, r, s)
	}
	return false
}

// oauthExchange checks the client's initial response of RFC 7628:
// gs2-header, then ^A-separated key=value pairs, among them
// "auth=Bearer <token>".
type oauthExchange struct {
	v   *OAuthValidator
	res Result
}

func (e *oauthExchange) Step(msg []byte) ([]byte, bool, error) {
	gs2, rest, ok := bytes.Cut(msg, []byte{1})
	if !ok || !bytes.HasPrefix(gs2, []byte("n,")) && !bytes.HasPrefix(gs2, []byte("y,")) {
		return nil, false, fmt.Errorf("%w: malformed OAUTHBEARER message", ErrAuthentication)
	}
	var token string
	for _, kv := range bytes.Split(rest, []byte{1}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && string(k) == "auth" {
			scheme, t, _ := strings.Cut(string(v), " ")
			if !strings.EqualFold(scheme, "Bearer") {
				return nil, false, fmt.Errorf("%w: auth scheme %q is not Bearer", ErrAuthentication, scheme)
			}
			token = strings.TrimSpace(t)
		}
	}
	if token == "" {
		return nil, false, fmt.Errorf("%w: no bearer token", ErrAuthentication)
	}
	res, err := e.v.Validate(token)
	if err != nil {
		return nil, false, err
	}
	authzid := strings.TrimPrefix(strings.TrimSuffix(string(gs2[2:]), ","), "a=")
	if authzid != "" && authzid != res.User {
		return nil, false, fmt.Errorf("%w: authorization id %q differs from the token's subject %q", ErrAuthentication, authzid, res.User)
	}
	e.res = res
	return nil, true, nil
}

func (e *oauthExchange) Result() Result { return e.res }
