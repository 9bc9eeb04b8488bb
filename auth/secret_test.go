package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/homemesh/homemesh"
	"golang.org/x/crypto/chacha20poly1305"
)

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, SecretKeySize)
	rand.Read(k)
	return k
}

func mustSealer(t testing.TB, current []byte, previous ...[]byte) sealer {
	t.Helper()
	s, err := newSealer(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sealV0 seals as the service did before secret keys could be rotated, so
// the tests read records exactly as they lie in existing homes.
func sealV0(t testing.TB, key []byte, purpose string, plain []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(purpose))
}

func TestSealerOpens(t *testing.T) {
	keyA, keyB := randomKey(t), randomKey(t)
	plain := []byte("the CA key")
	onlyA, onlyB, both := mustSealer(t, keyA), mustSealer(t, keyB), mustSealer(t, keyB, keyA)
	tests := []struct {
		name      string
		sealed    []byte
		opener    sealer
		wantStale bool
	}{
		{"version 0 with its key", sealV0(t, keyA, "ca", plain), onlyA, true},
		{"version 0 with its key as the previous one", sealV0(t, keyA, "ca", plain), both, true},
		{"version 1 with the current key", onlyB.seal("ca", plain), both, false},
		{"version 1 with a previous key", onlyA.seal("ca", plain), both, true},
		{"version 1 alone", onlyA.seal("ca", plain), onlyA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, stale, err := tt.opener.openStale("ca", tt.sealed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) || stale != tt.wantStale {
				t.Fatalf("opened %q stale %v, want %q stale %v", got, stale, plain, tt.wantStale)
			}
		})
	}
}

func TestSealerRefuses(t *testing.T) {
	keyA, keyB := randomKey(t), randomKey(t)
	plain := []byte("the signing key")
	onlyA, onlyB := mustSealer(t, keyA), mustSealer(t, keyB)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	sealedA := onlyA.seal("signing", plain)
	otherID := onlyB.seal("signing", plain)[:sealHeaderLen]
	tests := []struct {
		name   string
		sealed []byte
		opener sealer
		kind   homemesh.Kind
		want   string
	}{
		{"version 1, another key", sealedA, onlyB, homemesh.KindInvalid, SecretKeyID(keyA)},
		{"version 0, another key", sealV0(t, keyA, "signing", plain), onlyB, homemesh.KindInvalid, "another secret key"},
		{"tampered ciphertext", flip(sealedA, len(sealedA)-1), onlyA, homemesh.KindInternal, "altered"},
		{"tampered nonce", flip(sealedA, sealHeaderLen), onlyA, homemesh.KindInternal, "altered"},
		{"key ID swapped", append(bytes.Clone(otherID), sealedA[sealHeaderLen:]...), mustSealer(t, keyA, keyB), homemesh.KindInternal, "altered"},
		{"version changed", flip(sealedA, len(sealMagic)), onlyA, homemesh.KindInvalid, "another secret key"},
		{"tampered version 0", flip(sealV0(t, keyA, "signing", plain), 30), onlyA, homemesh.KindInvalid, "another secret key"},
		{"too short", []byte("hms\x01"), onlyA, homemesh.KindInternal, "damaged"},
		{"empty", nil, onlyA, homemesh.KindInternal, "damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opener.open("signing", tt.sealed)
			if err == nil {
				t.Fatalf("opened %q", got)
			}
			if homemesh.ErrorKind(err) != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v (kind %s), want kind %s mentioning %q", err, homemesh.ErrorKind(err), tt.kind, tt.want)
			}
			for _, key := range [][]byte{keyA, keyB} {
				if strings.Contains(err.Error(), string(key)) || strings.Contains(strings.ToLower(err.Error()), hex.EncodeToString(key)) {
					t.Fatal("the error quotes a secret key")
				}
			}
		})
	}
}

// The purpose is bound to the ciphertext: a record moved to another name
// does not open.
func TestSealerBindsThePurpose(t *testing.T) {
	s := mustSealer(t, randomKey(t))
	if _, err := s.open("ca", s.seal("signing", []byte("k"))); err == nil {
		t.Fatal("a signing record opened as the CA record")
	}
}

// A version 0 record whose random nonce begins like a version 1 header
// still opens.
func TestSealerVersion0LookingLikeVersion1(t *testing.T) {
	key := randomKey(t)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, sealNonceLen)
	rand.Read(nonce)
	copy(nonce, sealMagic+"\x01")
	plain := []byte("a plain text longer than a key ID")
	sealed := aead.Seal(bytes.Clone(nonce), nonce, plain, []byte("ca"))
	if r, err := parseSealed(sealed); err != nil || r.version != sealVersion1 {
		t.Fatalf("the record does not look like version 1 (%v, %v): the test proves nothing", r.version, err)
	}
	got, stale, err := mustSealer(t, key).openStale("ca", sealed)
	if err != nil || !bytes.Equal(got, plain) || !stale {
		t.Fatalf("opened %q stale %v: %v", got, stale, err)
	}
}

func TestSecretKeyID(t *testing.T) {
	a, b := randomKey(t), randomKey(t)
	if SecretKeyID(a) != SecretKeyID(bytes.Clone(a)) || SecretKeyID(a) == SecretKeyID(b) || len(SecretKeyID(a)) != 2*keyIDSize {
		t.Fatalf("key IDs %s, %s", SecretKeyID(a), SecretKeyID(b))
	}
	if _, err := newSealer(a, []byte("short")); homemesh.ErrorField(err) != "previous_secret_key" {
		t.Fatalf("short previous key: %v", err)
	}
	if _, err := newSealer([]byte("short")); homemesh.ErrorField(err) != "secret_key" {
		t.Fatalf("short key: %v", err)
	}
}

// FuzzParseSealed feeds the stored-record parser, and open behind it,
// arbitrary bytes: no panic, a parsed record serialises back to its input,
// and nothing that was not sealed with a key held opens.
func FuzzParseSealed(f *testing.F) {
	key := bytes.Repeat([]byte{7}, SecretKeySize)
	s, err := newSealer(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.seal("ca", []byte("plain")))
	f.Add(sealV0(f, key, "ca", []byte("plain")))
	f.Add([]byte("hms\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseSealed(data)
		if err != nil {
			if len(data) >= sealNonceLen+sealTagLen {
				t.Fatalf("refused %d bytes, enough for version 0", len(data))
			}
			return
		}
		if !bytes.Equal(r.bytes(), data) {
			t.Fatalf("parse and serialise changed the record: %x → %x", data, r.bytes())
		}
		if r.version != 0 && r.version != sealVersion1 {
			t.Fatalf("version %d", r.version)
		}
		plain, err := s.open("ca", data)
		if err == nil && !bytes.Equal(plain, []byte("plain")) {
			t.Fatalf("opened a forged record: %q", plain)
		}
	})
}
