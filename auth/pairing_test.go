package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
)

// csrPEM makes a PEM certificate request for key.
func csrPEM(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func parsePEMCert(t testing.TB, text string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		t.Fatalf("no PEM in %q", text)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPairingCredential(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()

	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "hall sensor", nil)
	if err != nil {
		t.Fatalf("CreatePairing: %v", err)
	}
	if groups := strings.Split(p.Code, "-"); len(groups) != 4 || len(strings.Join(groups, "")) != 20 {
		t.Fatalf("code %q is not four groups of five characters", p.Code)
	}
	if d := time.Until(p.ExpiresAt); d < PairingTTL-time.Minute || d > PairingTTL {
		t.Errorf("expires in %v, want about %v", d, PairingTTL)
	}
	_, err = in.client.ClaimPairing(ctx, "AAAAA-AAAAA-AAAAA-AAAAA", "", "192.0.2.1")
	wantKind(t, err, homemesh.KindPermission)

	// Typed in lower case with spaces, as a person might.
	typed := strings.ToLower(strings.ReplaceAll(p.Code, "-", " "))
	claim, err := in.client.ClaimPairing(ctx, typed, "", "192.0.2.1")
	if err != nil {
		t.Fatalf("ClaimPairing: %v", err)
	}
	if claim.Username == "" || claim.Password == "" || claim.Identity != claim.Username || claim.Certificate != "" {
		t.Fatalf("claim = %+v, want a credential", claim)
	}
	if diff := cmp.Diff(DefaultAllow(claim.Identity), claim.Allow); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}
	g, err := in.client.AuthenticateMQTT(ctx, claim.Username, claim.Password, "sensor")
	if err != nil {
		t.Fatalf("AuthenticateMQTT with the paired credential: %v", err)
	}
	if diff := cmp.Diff(Grant{Username: claim.Username, Allow: DefaultAllow(claim.Username)}, g); diff != "" {
		t.Errorf("grant (-want +got):\n%s", diff)
	}
	// A code works once.
	_, err = in.client.ClaimPairing(ctx, p.Code, "", "192.0.2.1")
	wantKind(t, err, homemesh.KindPermission)

	// An explicit allow list is what the device gets.
	p2, err := in.client.CreatePairing(ctx, tok.AccessToken, "bridge", []string{"zigbee2mqtt/#", "homeassistant/#"})
	if err != nil {
		t.Fatal(err)
	}
	claim2, err := in.client.ClaimPairing(ctx, p2.Code, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"zigbee2mqtt/#", "homeassistant/#"}, claim2.Allow); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}
}

func TestPairingRequests(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, pname, field string
		allow              []string
	}{
		{"no name", "", "name", nil},
		{"empty allow", "x", "allow", []string{}},
		{"bad filter", "x", "allow[0]", []string{"a/#/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.CreatePairing(ctx, tok.AccessToken, tc.pname, tc.allow)
			wantKind(t, err, homemesh.KindInvalid)
			if got := homemesh.ErrorField(err); got != tc.field {
				t.Errorf("field = %q, want %q", got, tc.field)
			}
		})
	}
	_, err := in.client.CreatePairing(ctx, "forged", "x", nil)
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.ClaimPairing(ctx, "", "", "192.0.2.9")
	wantKind(t, err, homemesh.KindInvalid)
	if homemesh.ErrorField(err) != "code" {
		t.Errorf("empty code: field = %q, want code", homemesh.ErrorField(err))
	}
}

func TestPairingExpired(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Age the stored record rather than wait ten minutes.
	key := pairingKey(p.Code)
	e, err := in.svc.pairKV.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var rec pairingRecord
	json.Unmarshal(e.Value(), &rec)
	rec.ExpiresAt = time.Now().Add(-time.Second)
	data, _ := json.Marshal(rec)
	if _, err := in.svc.pairKV.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	_, err = in.client.ClaimPairing(ctx, p.Code, "", "192.0.2.2")
	wantKind(t, err, homemesh.KindPermission)
}

func TestPairingCertificate(t *testing.T) {
	s, in, tok := onboarded(t)
	ctx := context.Background()
	revoked := subscribe(t, s, EventCredentialRevoked)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa p-256", ecKey}, {"ed25519", edKey}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := in.client.CreatePairing(ctx, tok.AccessToken, "plug "+tc.name, nil)
			if err != nil {
				t.Fatal(err)
			}
			// A bad request is refused without spending the code.
			_, err = in.client.ClaimPairing(ctx, p.Code, "not a request", "192.0.2.3")
			wantKind(t, err, homemesh.KindInvalid)
			if homemesh.ErrorField(err) != "csr" {
				t.Errorf("field = %q, want csr", homemesh.ErrorField(err))
			}
			claim, err := in.client.ClaimPairing(ctx, p.Code, csrPEM(t, tc.key), "192.0.2.3")
			if err != nil {
				t.Fatalf("ClaimPairing with a CSR: %v", err)
			}
			if claim.Password != "" || !strings.HasPrefix(claim.Identity, "dev-") {
				t.Fatalf("claim = %+v", claim)
			}
			cert := parsePEMCert(t, claim.Certificate)
			ca := parsePEMCert(t, claim.CACertificate)
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("device certificate does not verify for client auth: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("a device certificate is good for servers too")
			}
			if cert.Subject.CommonName != claim.Identity || len(cert.URIs) != 1 || cert.URIs[0].String() != "homemesh://"+testHome+"/devices/"+claim.Identity {
				t.Errorf("subject %q, URIs %v", cert.Subject.CommonName, cert.URIs)
			}
			if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.key.Public()) {
				t.Error("certificate is not for the requested key")
			}
			if d := time.Until(cert.NotAfter); d < DeviceCertValidity-time.Hour || d > DeviceCertValidity {
				t.Errorf("certificate lives %v", d)
			}
			g, err := in.client.AuthenticateCert(ctx, cert.Raw)
			if err != nil {
				t.Fatalf("AuthenticateCert: %v", err)
			}
			if diff := cmp.Diff(Grant{Username: claim.Identity, Allow: DefaultAllow(claim.Identity)}, g); diff != "" {
				t.Errorf("grant (-want +got):\n%s", diff)
			}
			list, err := in.client.ListCredentials(ctx, tok.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, c := range list {
				found = found || c.Username == claim.Identity && c.Kind == KindCertificate
			}
			if !found {
				t.Errorf("certificate identity not listed as a certificate: %+v", list)
			}

			// Revoking the identity refuses its certificate and tells the edges.
			if err := in.client.DeleteCredential(ctx, tok.AccessToken, claim.Identity); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			msg, err := revoked.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no revoked event: %v", err)
			}
			var ev RevokedEvent
			json.Unmarshal(msg.Data, &ev)
			if ev.Username != claim.Identity {
				t.Errorf("revoked event for %q, want %q", ev.Username, claim.Identity)
			}
			_, err = in.client.AuthenticateCert(ctx, cert.Raw)
			wantKind(t, err, homemesh.KindUnauthenticated)
		})
	}
}

// TestAuthenticateCertRefusesForeign checks certificates that must never
// pass: of another CA, for servers, and garbage.
func TestAuthenticateCertRefusesForeign(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	otherDER, otherKeyDER, err := newCA("other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := loadCA(otherDER, otherKeyDER)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "dev-foreign"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, other.cert, &key.PublicKey, other.key)
	if err != nil {
		t.Fatal(err)
	}
	server, _, err := in.svc.ca.sign(&key.PublicKey, []string{"localhost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"other CA": foreign, "server certificate": server, "garbage": []byte("x")} {
		t.Run(name, func(t *testing.T) {
			_, err := in.client.AuthenticateCert(ctx, der)
			wantKind(t, err, homemesh.KindUnauthenticated)
		})
	}
}

func TestPairingClaimRateLimit(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	for range claimLimit {
		_, err := in.client.ClaimPairing(ctx, "AAAAA-AAAAA-AAAAA-AAAAA", "", "198.51.100.7")
		wantKind(t, err, homemesh.KindPermission)
	}
	_, err := in.client.ClaimPairing(ctx, "AAAAA-AAAAA-AAAAA-AAAAA", "", "198.51.100.7")
	wantKind(t, err, homemesh.KindRateLimited)
	if d := homemesh.ErrorRetryAfter(err); d <= 0 || d > claimWindow {
		t.Errorf("RetryAfter = %v", d)
	}
	// Another address is not affected.
	_, err = in.client.ClaimPairing(ctx, "AAAAA-AAAAA-AAAAA-AAAAA", "", "198.51.100.8")
	wantKind(t, err, homemesh.KindPermission)
}

func TestPairingNeedsAdmin(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	tok := addUser(t, in, "bob", RoleMember, Scope{})
	_, err := in.client.CreatePairing(ctx, tok.AccessToken, "x", nil)
	wantKind(t, err, homemesh.KindPermission)
}

func TestPairingLogsHoldNoSecrets(t *testing.T) {
	in, tok, logs := onboardedLogged(t)
	ctx := context.Background()
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := in.client.ClaimPairing(ctx, p.Code, "", "192.0.2.4")
	if err != nil {
		t.Fatal(err)
	}
	in.client.ClaimPairing(ctx, p.Code, "", "192.0.2.4")
	checkLogs(t, in, logs, []string{"pairing claimed", "pairing claim refused"}, map[string]string{
		"code": p.Code, "code without dashes": strings.ReplaceAll(p.Code, "-", ""), "password": claim.Password})
}

func TestParseDeviceCSR(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good := csrPEM(t, mustP256(t))
	tampered := []byte(good)
	block, _ := pem.Decode(tampered)
	block.Bytes[len(block.Bytes)-5] ^= 0xff
	for name, text := range map[string]string{
		"empty":        "",
		"not PEM":      "hello",
		"wrong type":   strings.Replace(good, "CERTIFICATE REQUEST", "CERTIFICATE", 2),
		"two blocks":   good + good,
		"rsa key":      csrPEM(t, rsaKey),
		"p-384 key":    csrPEM(t, p384),
		"bad sig":      string(pem.EncodeToMemory(block)),
		"garbage body": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
		"too long":     strings.Repeat("a", maxCSR+1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDeviceCSR(text)
			wantKind(t, err, homemesh.KindInvalid)
			if homemesh.ErrorField(err) != "csr" {
				t.Errorf("field = %q", homemesh.ErrorField(err))
			}
		})
	}
	if _, err := ParseDeviceCSR(good); err != nil {
		t.Errorf("good request refused: %v", err)
	}
}

func mustP256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzParseDeviceCSR checks that the request parser never panics, fails
// only with an invalid "csr" error, and accepts only signed requests for
// the allowed key types.
func FuzzParseDeviceCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	good := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		csr, err := ParseDeviceCSR(text)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "csr" {
				t.Fatalf("error %v is not invalid csr", err)
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a request whose signature does not verify")
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				t.Fatal("accepted a curve other than P-256")
			}
		case ed25519.PublicKey:
		default:
			t.Fatalf("accepted a %T key", k)
		}
	})
}

// TestPairingClaimRace spends one code from many goroutines at once:
// exactly one gets a credential.
func TestPairingClaimRace(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "raced", nil)
	if err != nil {
		t.Fatal(err)
	}
	won, lost := race(8, func(i int) error {
		_, err := in.client.ClaimPairing(ctx, p.Code, "", fmt.Sprintf("192.0.2.%d", 10+i))
		return err
	})
	for _, err := range lost {
		if homemesh.ErrorKind(err) != homemesh.KindPermission {
			t.Errorf("losing claim: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d claims won, want exactly 1", won)
	}
}
