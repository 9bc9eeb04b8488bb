package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go/jetstream"
)

// tokenKID reads the kid header of a JWT.
func tokenKID(t testing.TB, token string) string {
	t.Helper()
	header, err := b64url(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ KID string }
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	return h.KID
}

// TestRotateSigningKey rotates on one process while a second process and a
// verifier elsewhere hold tokens: old tokens keep working everywhere, new
// ones carry the new kid, and the second process signs with the new key.
func TestRotateSigningKey(t *testing.T) {
	s, a, tok := onboarded(t)
	ctx := context.Background()
	oldKID := a.svc.signing().kid
	if tokenKID(t, tok.AccessToken) != oldKID {
		t.Fatalf("token kid %q, service kid %q", tokenKID(t, tok.AccessToken), oldKID)
	}
	b := startPeer(t, s, a)
	verifier := NewClient(bustest.Conn(t, s))
	if _, err := verifier.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}

	member := addUser(t, a, "bob", RoleMember, Scope{})
	_, err := a.client.RotateKeys(ctx, "", member.AccessToken)
	wantKind(t, err, homemesh.KindPermission)
	_, err = a.client.RotateKeys(ctx, "", "forged")
	wantKind(t, err, homemesh.KindUnauthenticated)

	rotated, err := a.client.RotateKeys(ctx, "192.0.2.1", tok.AccessToken)
	if err != nil {
		t.Fatalf("RotateKeys: %v", err)
	}
	if rotated.KID == oldKID || rotated.KID == "" {
		t.Fatalf("new kid %q, old %q", rotated.KID, oldKID)
	}
	hmtest.WaitFor(t, 5*time.Second, "the second process to load the new key", func() bool {
		return b.svc.signing().kid == rotated.KID
	})

	// Tokens signed before still verify: in a verifier that knew them, in
	// one that starts now, and in the service itself.
	for name, c := range map[string]*Client{"old verifier": verifier, "new verifier": NewClient(bustest.Conn(t, s))} {
		if _, err := c.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
			t.Errorf("%s: token from before the rotation: %v", name, err)
		}
	}
	if _, err := b.client.ListTokens(ctx, tok.AccessToken); err != nil {
		t.Errorf("the second process refuses a token from before the rotation: %v", err)
	}

	// New tokens carry the new kid, from either process, and verify at
	// once, also in the verifier that fetched keys before the rotation.
	for name, in := range map[string]*instance{"rotating process": a, "second process": b} {
		fresh, err := in.client.Login(ctx, testOwner, testPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := tokenKID(t, fresh.AccessToken); got != rotated.KID {
			t.Errorf("%s signs with kid %q, want %q", name, got, rotated.KID)
		}
		hmtest.WaitFor(t, 5*time.Second, "the old verifier to accept the new key", func() bool {
			_, err := verifier.VerifyAccessToken(ctx, fresh.AccessToken)
			return err == nil
		})
		if _, err := a.client.ListTokens(ctx, fresh.AccessToken); err != nil {
			t.Errorf("%s's new token refused by the other: %v", name, err)
		}
	}
}

// TestLegacySigningRecord starts on a keys bucket holding the single raw
// seed of homes from before key sets: that key keeps signing, and after a
// rotation keeps verifying.
func TestLegacySigningRecord(t *testing.T) {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	ctx := context.Background()
	secret := make([]byte, SecretKeySize)
	rand.Read(secret)
	sl, err := newSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kv, err := conn.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket(testHome, "keys"), History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, signingRecord, sl.seal(signingRecord, priv.Seed())); err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{DataDir: t.TempDir(), Home: testHome, SecretKey: secret}, Deps{Bus: conn, Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	legacyKID := keyID(pub)
	if svc.signing().kid != legacyKID {
		t.Fatalf("kid %q, want the legacy key's %q", svc.signing().kid, legacyKID)
	}
	newKID, err := svc.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := svc.signing()
	if st.kid != newKID {
		t.Errorf("signs with %q, want %q", st.kid, newKID)
	}
	if _, ok := st.lookup(legacyKID, time.Now()); !ok {
		t.Error("the legacy key no longer verifies right after the rotation")
	}
	if _, ok := st.lookup(legacyKID, time.Now().Add(DefaultAccessTokenTTL+clockSkew+time.Second)); ok {
		t.Error("the legacy key verifies after every token it signed has expired")
	}
}

// TestRotationDropsExpiredKeys: a retired key past its verification time
// is dropped by the next rotation; the one it retires is kept.
func TestRotationDropsExpiredKeys(t *testing.T) {
	srv := bustest.Server(t)
	in := start(t, srv, t.TempDir())
	ctx := context.Background()
	now := time.Now().UTC()
	current, _ := newSigningKey(now.Add(-time.Hour))
	expired, _ := newSigningKey(now.Add(-48 * time.Hour))
	expired.VerifyUntil = now.Add(-time.Minute)
	val, _ := json.Marshal(keySet{Keys: []signingKey{current, expired}})
	if _, err := in.svc.keysKV.Put(ctx, signingRecord, in.svc.seal.seal(signingRecord, val)); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the service to load the stored set", func() bool {
		return in.svc.signing().kid == current.KID
	})
	if _, ok := in.svc.signing().lookup(expired.KID, time.Now()); ok {
		t.Error("an expired retired key verifies")
	}
	newKID, err := in.svc.RotateSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := in.svc.keysKV.Get(ctx, signingRecord)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := in.svc.seal.open(signingRecord, e.Value())
	if err != nil {
		t.Fatal(err)
	}
	ks, err := parseKeySet(plain)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range ks.Keys {
		kids = append(kids, k.KID)
	}
	if len(kids) != 2 || kids[0] != newKID || kids[1] != current.KID {
		t.Errorf("stored kids %v, want [%s %s]", kids, newKID, current.KID)
	}
	if ks.Keys[1].VerifyUntil.IsZero() {
		t.Error("the retired key has no end")
	}
}

func TestParseKeySet(t *testing.T) {
	k, _ := newSigningKey(time.Now())
	good, _ := json.Marshal(keySet{Keys: []signingKey{k}})
	short, _ := json.Marshal(keySet{Keys: []signingKey{{KID: "x", Seed: []byte("short")}}})
	tests := []struct {
		name    string
		in      []byte
		wantKID string
		wantErr bool
	}{
		{"key set", good, k.KID, false},
		{"raw seed", k.Seed, k.KID, false},
		{"empty set", []byte(`{"keys":[]}`), "", true},
		{"short seed", short, "", true},
		{"not JSON", []byte("not a key set at all, and longer than a seed"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := parseKeySet(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", ks)
				}
				return
			}
			if err != nil || ks.Keys[0].KID != tt.wantKID {
				t.Errorf("parseKeySet = %+v, %v; want kid %s", ks, err, tt.wantKID)
			}
		})
	}
}

func FuzzParseKeySet(f *testing.F) {
	k, _ := newSigningKey(time.Now())
	good, _ := json.Marshal(keySet{Keys: []signingKey{k}})
	f.Add(good)
	f.Add(k.Seed)
	f.Add([]byte(`{"keys":[{"seed":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ks, err := parseKeySet(in)
		if err != nil {
			return
		}
		if len(ks.Keys) == 0 {
			t.Fatal("accepted a set without keys")
		}
		for _, k := range ks.Keys {
			if len(k.Seed) != ed25519.SeedSize || k.KID != keyID(ed25519.NewKeyFromSeed(k.Seed).Public().(ed25519.PublicKey)) {
				t.Fatalf("accepted key %+v", k)
			}
		}
	})
}
