package meta

import (
	"reflect"
	"sync/atomic"
	"testing"
)

// TestSecurityReplay records SCRAM credentials, ACLs and client quotas,
// changes and removes some, reopens the store and finds the same state.
func TestSecurityReplay(t *testing.T) {
	dir := t.TempDir()
	var changes atomic.Int32
	s, err := Open(Config{DataDir: dir, Logger: testLogger(), SecurityChanged: func() { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	cred := &ScramCredential{Salt: []byte("salt"), Iterations: 4096, StoredKey: []byte{1, 2}, ServerKey: []byte{3, 4}}
	if err := s.AlterScramCredentials([]ScramChange{
		{User: "alice", Mechanism: "SCRAM-SHA-256", Credential: cred},
		{User: "alice", Mechanism: "SCRAM-SHA-512", Credential: cred},
		{User: "bob", Mechanism: "SCRAM-SHA-256", Credential: cred},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterScramCredentials([]ScramChange{{User: "bob", Mechanism: "SCRAM-SHA-256"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterScramCredentials([]ScramChange{{User: "", Mechanism: "SCRAM-SHA-256", Credential: cred}}); err == nil {
		t.Fatal("empty user accepted")
	}
	a1 := ACL{ResourceType: 2, ResourceName: "orders", PatternType: 3, Principal: "User:alice", Host: "*", Operation: 4, Permission: 3}
	a2 := ACL{ResourceType: 3, ResourceName: "g", PatternType: 4, Principal: "User:bob", Host: "*", Operation: 3, Permission: 3}
	a3 := a1
	a3.Permission = 2
	if err := s.CreateACLs([]ACL{a1, a2, a3, a1}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteACLs([]ACL{a3, {ResourceType: 9}}); err != nil {
		t.Fatal(err)
	}
	alice := "alice"
	rate, pct := 1024.0, 50.0
	userAlice := QuotaEntity{{Type: "user", Name: &alice}}
	defClient := QuotaEntity{{Type: "client-id"}, {Type: "user", Name: &alice}}
	if err := s.AlterClientQuotas([]QuotaChange{
		{Entity: userAlice, Key: "producer_byte_rate", Value: &rate},
		{Entity: userAlice, Key: "request_percentage", Value: &pct},
		{Entity: defClient, Key: "consumer_byte_rate", Value: &rate},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterClientQuotas([]QuotaChange{{Entity: userAlice, Key: "request_percentage"}}); err != nil {
		t.Fatal(err)
	}
	if n := changes.Load(); n != 6 {
		t.Errorf("SecurityChanged called %d times, want 6", n)
	}
	check := func(s *Store) {
		t.Helper()
		wantUsers := []UserScram{{"alice", "SCRAM-SHA-256", 4096}, {"alice", "SCRAM-SHA-512", 4096}}
		if got := s.ScramUsers(); !reflect.DeepEqual(got, wantUsers) {
			t.Errorf("users %v, want %v", got, wantUsers)
		}
		if c, ok := s.ScramCredential("alice", "SCRAM-SHA-512"); !ok || !reflect.DeepEqual(c, *cred) {
			t.Errorf("credential %v %v", c, ok)
		}
		if _, ok := s.ScramCredential("bob", "SCRAM-SHA-256"); ok {
			t.Error("bob's credential survived its removal")
		}
		if got := s.ACLs(); !reflect.DeepEqual(got, []ACL{a1, a2}) {
			t.Errorf("ACLs %v", got)
		}
		q := s.ClientQuotas()
		if len(q) != 2 {
			t.Fatalf("quotas %v", q)
		}
		if got := q[userAlice.Key()].Values; !reflect.DeepEqual(got, map[string]float64{"producer_byte_rate": 1024}) {
			t.Errorf("alice's quotas %v", got)
		}
		reversed := QuotaEntity{defClient[1], defClient[0]}
		if got := q[reversed.Key()]; got.Values["consumer_byte_rate"] != 1024 || got.Entity[0].Type != "client-id" || got.Entity[0].Name != nil {
			t.Errorf("default client quota %+v", got)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, dir))
}
