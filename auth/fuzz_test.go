package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrymq/ferry/meta"
)

// FuzzSASL feeds client bytes to every mechanism's exchange, two steps:
// they never panic, and every refusal is an authentication failure.
func FuzzSASL(f *testing.F) {
	f.Add(uint8(0), []byte("\x00admin\x00secret"), []byte(""))
	f.Add(uint8(1), []byte("n,,n=alice,r=abc"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add(uint8(2), []byte("n,a=x,n=a=2Cb,r=1"), []byte("c=biws,r=,p="))
	f.Add(uint8(3), []byte("n,,\x01auth=Bearer a.b.c\x01\x01"), []byte("\x01"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(map[string]crypto.Signer{"k": key}), 0o644); err != nil {
		f.Fatal(err)
	}
	v, err := NewOAuthValidator(OAuthConfig{JWKSFile: path})
	if err != nil {
		f.Fatal(err)
	}
	cred, err := NewScramCredential(ScramSHA256, "secret", MinScramIterations)
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(Config{
		Mechanisms: Mechanisms,
		Scram: func(user, mech string) (meta.ScramCredential, bool) {
			return cred, user == "alice" && mech == ScramSHA256
		},
		PlainUsers: map[string]string{"admin": "secret"},
		OAuth:      v,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mech uint8, first, second []byte) {
		ex, err := a.Start(Mechanisms[int(mech)%len(Mechanisms)])
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for _, msg := range [][]byte{first, second} {
			_, done, err := ex.Step(msg)
			if err != nil {
				if !errors.Is(err, ErrAuthentication) {
					t.Fatalf("refusal %v is not an authentication failure", err)
				}
				return
			}
			if done || time.Now().After(deadline) {
				return
			}
		}
	})
}
