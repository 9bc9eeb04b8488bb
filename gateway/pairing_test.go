package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/auth"
)

func TestPairings(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken

	if r := e.do(t, "POST", "/api/v1/pairings", "", map[string]any{"name": "x"}); r.status != 401 {
		t.Fatalf("pairing without a token: status %d", r.status)
	}
	e.do(t, "POST", "/api/v1/pairings", tok, `{"name":"x","allow":[]}`).wantError(t, 400, "invalid", "allow")
	e.do(t, "POST", "/api/v1/pairings", tok, `{"allow":["a/#"]}`).wantError(t, 400, "invalid", "name")

	// A credential for a device without a key of its own.
	p := decode[auth.Pairing](t, e.do(t, "POST", "/api/v1/pairings", tok, map[string]any{"name": "hall sensor"}), 201)
	claim := decode[auth.PairingClaim](t, e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code}), 201)
	if claim.Username == "" || claim.Password == "" || claim.Allow[0] != "homemesh/"+claim.Identity+"/#" {
		t.Fatalf("claim = %+v", claim)
	}
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code}).wantError(t, 403, "permission", "")

	// A certificate for the device's own key.
	p = decode[auth.Pairing](t, e.do(t, "POST", "/api/v1/pairings", tok, map[string]any{"name": "plug"}), 201)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "csr": "junk"}).wantError(t, 400, "invalid", "csr")
	certClaim := decode[auth.PairingClaim](t, e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "csr": csr}), 201)
	if !strings.Contains(certClaim.Certificate, "BEGIN CERTIFICATE") || !strings.Contains(certClaim.CACertificate, "BEGIN CERTIFICATE") {
		t.Fatalf("claim = %+v", certClaim)
	}
	list := decode[[]auth.Credential](t, e.do(t, "GET", "/api/v1/credentials", tok, nil), 200)
	kinds := map[string]string{}
	for _, c := range list {
		kinds[c.Username] = c.Kind
	}
	if kinds[claim.Identity] != auth.KindPassword || kinds[certClaim.Identity] != auth.KindCertificate {
		t.Errorf("listed kinds = %v", kinds)
	}
	if r := e.do(t, "DELETE", "/api/v1/credentials/"+certClaim.Identity, tok, nil); r.status != 204 {
		t.Fatalf("revoke certificate identity: status %d, body %s", r.status, r.body)
	}
	if r := e.do(t, "DELETE", "/api/v1/credentials/"+certClaim.Identity, tok, nil); r.status != 404 {
		t.Errorf("second revoke: status %d", r.status)
	}

	// Guessing codes from one address is cut off with 429 and Retry-After.
	var last response
	for range 12 {
		last = e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": "AAAAA-AAAAA-AAAAA-AAAAA"})
		if last.status == 429 {
			break
		}
		last.wantError(t, 403, "permission", "")
	}
	last.wantError(t, 429, "rate_limited", "")
	if last.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}
