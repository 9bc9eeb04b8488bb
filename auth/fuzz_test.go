package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
)

func FuzzValidateAllow(f *testing.F) {
	for _, seed := range []string{"a/b", "a/#", "+/+/state", "#", "a\n\nb", "a/#/b", "a+", "\x00", "sp ace/é", "$SYS/#"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		allow := strings.Split(joined, "\n")
		err := ValidateAllow(allow)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) == "" {
				t.Fatalf("error without kind or field: %v", err)
			}
			return
		}
		if len(allow) > MaxAllow {
			t.Fatalf("accepted %d filters", len(allow))
		}
		for _, f := range allow {
			if f == "" || len(f) > MaxFilterLen {
				t.Fatalf("accepted filter %q", f)
			}
			if _, _, err := bus.MQTTFilterSubject(testHome, f); err != nil {
				t.Fatalf("accepted filter %q that does not map: %v", f, err)
			}
		}
	})
}

func FuzzNormalizeUsername(f *testing.F) {
	for _, seed := range []string{"alice", "Alice", "a.b-c_d", "", "a b", "ä", strings.Repeat("a", 65)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := normalizeUsername("username", name)
		if err != nil {
			return
		}
		if got == "" || len(got) > MaxUsernameLen || got != strings.ToLower(got) {
			t.Fatalf("accepted %q as %q", name, got)
		}
		again, err := normalizeUsername("username", got)
		if err != nil || again != got {
			t.Fatalf("normalising %q is not idempotent: %q, %v", got, again, err)
		}
	})
}

// FuzzParseAccess checks that no string but the token signed by the key
// verifies, and that parsing never panics.
func FuzzParseAccess(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	valid, _, err := signAccess(priv, "k1", testHome, user{ID: "u1", Username: "alice", Role: RoleOwner}, time.Now(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid + "x")
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	lookup := func(kid string) (ed25519.PublicKey, bool) { return pub, kid == "k1" }
	f.Fuzz(func(t *testing.T, token string) {
		c, err := parseAccess(token, testHome, lookup)
		if err == nil && token != valid {
			t.Fatalf("forged token verified: %q -> %+v", token, c)
		}
		if err != nil && homemesh.ErrorKind(err) != homemesh.KindUnauthenticated {
			t.Fatalf("kind = %q", homemesh.ErrorKind(err))
		}
	})
}

func BenchmarkAuthenticateMQTT(b *testing.B) {
	_, in, tok := onboarded(b)
	ctx := context.Background()
	cred, err := in.client.CreateCredential(ctx, tok.AccessToken, "bench", []string{"a/#"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := in.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "c"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyAccessToken measures the client path a gateway takes on
// every request: after the first call, a cache hit.
func BenchmarkVerifyAccessToken(b *testing.B) {
	_, in, tok := onboarded(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := in.client.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyAccessTokenUncached measures a full signature check.
func BenchmarkVerifyAccessTokenUncached(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	token, _, err := signAccess(priv, "k1", testHome, user{ID: "u1", Username: "alice", Role: RoleOwner}, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	lookup := func(kid string) (ed25519.PublicKey, bool) { return pub, kid == "k1" }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseAccess(token, testHome, lookup); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseOneTimeCode(f *testing.F) {
	for _, seed := range []string{"123456", "123 456", "12345", "1234567", "abcde-fghij-klmno-pqrst",
		"ABCDEFGHIJKLMNOPQRST", "abcde fghij klmno pqrs1", "", "-", "１２３４５６", "12345\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, entered string) {
		code, err := parseOneTimeCode("totp", entered)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "totp" {
				t.Fatalf("error without kind or field: %v", err)
			}
			return
		}
		if len(entered) > maxCodeLen {
			t.Fatalf("accepted %d bytes", len(entered))
		}
		switch {
		case code.totp != "" && code.recovery == "":
			if len(code.totp) != 6 || strings.Trim(code.totp, "0123456789") != "" {
				t.Fatalf("%q parsed as TOTP code %q", entered, code.totp)
			}
		case code.recovery != "" && code.totp == "":
			if len(code.recovery) != recoveryCodeLen || strings.Trim(code.recovery, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
				t.Fatalf("%q parsed as recovery code %q", entered, code.recovery)
			}
		default:
			t.Fatalf("%q parsed as %+v: want exactly one kind of code", entered, code)
		}
		// What a parsed code normalises to parses to itself.
		again, err := parseOneTimeCode("totp", code.totp+code.recovery)
		if err != nil || again != code {
			t.Fatalf("normalising %q is not idempotent: %+v, %v", entered, again, err)
		}
	})
}

// TestRecoveryCodesParse checks that every code enabling TOTP hands out is
// one that logging in accepts.
func TestRecoveryCodesParse(t *testing.T) {
	for range 100 {
		c := newRecoveryCode()
		if p, err := parseOneTimeCode("totp", c); err != nil || p.recovery == "" {
			t.Fatalf("recovery code %q does not parse: %+v, %v", c, p, err)
		}
	}
}

func FuzzParseBusCredential(f *testing.F) {
	key := make([]byte, SecretKeySize)
	keys, _ := NewBusKeys(key, "home1")
	c, _ := keys.Credential("edge")
	f.Add(c.Encode())
	f.Add("hmbus1.home1.edge.\n")
	f.Add("hmbus1...")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseBusCredential(text)
		if err != nil {
			if homemesh.ErrorField(err) != "nats-credential" {
				t.Fatalf("error without the field: %v", err)
			}
			return
		}
		again, err := ParseBusCredential(c.Encode())
		if err != nil || again != c {
			t.Fatalf("round trip of %q: %+v, %v", text, again, err)
		}
	})
}
