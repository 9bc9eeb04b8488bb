package agent

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/route"
)

// fakeHub answers claims as the gateway does, issuing node certificates
// from its home CA, over HTTPS with a server certificate of that CA.
type fakeHub struct {
	home   *linktest.Home
	srv    *httptest.Server
	code   string
	claims atomic.Int32 // requests that reached the handler
	hubKey []byte
	tamper func(reply map[string]any)
}

func caPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func newFakeHub(t *testing.T, name string, seed uint64) *fakeHub {
	t.Helper()
	home, err := linktest.NewHome(name, seed, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	h := &fakeHub{home: home, code: "ABCDE-FGHIJ-KLMNO-PQRST", hubKey: hk.PublicKey().Bytes()}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, home.CA, &leafKey.PublicKey, home.Key)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, home.CA.Raw}, PrivateKey: leafKey}}}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.claims.Add(1)
	fail := func(status int, kind, field, msg string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"kind": kind, "field": field, "message": msg}})
	}
	var req struct {
		Code     string `json:"code"`
		MeshKey  string `json:"mesh_key"`
		MeshRole string `json:"mesh_role"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if r.URL.Path != ClaimPath || r.Method != http.MethodPost || dec.Decode(&req) != nil {
		fail(400, "invalid", "body", "bad request")
		return
	}
	if req.Code != h.code {
		fail(403, "permission", "", "unknown, spent or expired setup code")
		return
	}
	h.code = "" // spent
	raw, _ := base64.StdEncoding.DecodeString(req.MeshKey)
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		fail(400, "invalid", "mesh_key", "bad key")
		return
	}
	role, err := link.ParseRole(req.MeshRole)
	if err != nil {
		fail(400, "invalid", "mesh_role", "bad role")
		return
	}
	der, err := link.IssueNodeCert(h.home.CA, h.home.Key, h.home.Name, role, pub, time.Now(), 24*time.Hour)
	if err != nil {
		fail(500, "internal", "", err.Error())
		return
	}
	reply := map[string]any{
		"identity":         "mesh-" + route.IDFromKey(raw).String(),
		"mesh_certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"ca_certificate":   string(caPEM(h.home.CA)),
		"node_id":          route.IDFromKey(raw).String(),
		"not_after":        time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second),
		"mesh_hubs":        []Hub{{NodeID: route.IDFromKey(h.hubKey).String(), Key: h.hubKey, Addresses: []string{"127.0.0.1:4790"}}},
		"allow":            []string{},
	}
	if h.tamper != nil {
		h.tamper(reply)
	}
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(reply)
}

func TestPairWithTheHubsCA(t *testing.T) {
	h := newFakeHub(t, "home1", 1)
	dir := filepath.Join(t.TempDir(), "state")
	p, err := Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: h.code, Role: link.RoleLeaf, CA: caPEM(h.home.CA), StateDir: dir})
	if err != nil {
		t.Fatalf("Pair: %v", err)
	}
	if p.Home != "home1" || p.Role != link.RoleLeaf || len(p.Hubs) != 1 || p.NodeID != route.IDFromKey(p.Key.PublicKey().Bytes()) {
		t.Errorf("pairing = %+v", p)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v", fi, err)
	}
	loaded, err := LoadPairing(dir)
	if err != nil {
		t.Fatalf("LoadPairing: %v", err)
	}
	if loaded.NodeID != p.NodeID || loaded.Role != p.Role || !loaded.Key.Equal(p.Key) || !bytes.Equal(loaded.Cert, p.Cert) || len(loaded.Hubs) != 1 {
		t.Errorf("loaded %+v, paired %+v", loaded, p)
	}
	if k, ok := loaded.KeyOf(route.IDFromKey(h.hubKey)); !ok || !bytes.Equal(k, h.hubKey) {
		t.Error("KeyOf does not know the hub")
	}
	// A paired directory is not paired over.
	_, err = Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: "x", CA: caPEM(h.home.CA), StateDir: dir})
	if homemesh.ErrorField(err) != "state" {
		t.Errorf("pairing a paired directory: %v", err)
	}
}

func TestPairTrust(t *testing.T) {
	h := newFakeHub(t, "home1", 1)
	other, err := linktest.NewHome("home1", 99, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(h.home.CA)
	for _, tc := range []struct {
		name    string
		cfg     PairConfig
		field   string // of the refusal before anything was sent; "" for a TLS refusal
		reached bool
	}{
		{"no trust", PairConfig{HubURL: h.srv.URL}, "ca", false},
		{"another CA", PairConfig{HubURL: h.srv.URL, CA: caPEM(other.CA)}, "", false},
		{"another fingerprint", PairConfig{HubURL: h.srv.URL, CAFingerprint: Fingerprint(other.CA)}, "", false},
		{"bad fingerprint", PairConfig{HubURL: h.srv.URL, CAFingerprint: "abc"}, "ca_fingerprint", false},
		{"CA and fingerprint", PairConfig{HubURL: h.srv.URL, CA: caPEM(h.home.CA), CAFingerprint: fp}, "ca_fingerprint", false},
		{"not a CA file", PairConfig{HubURL: h.srv.URL, CA: []byte("hello")}, "ca", false},
		{"plain http elsewhere", PairConfig{HubURL: "http://192.0.2.1:8080"}, "hub", false},
		{"no scheme", PairConfig{HubURL: "hub.local:8080"}, "hub", false},
		{"hub role", PairConfig{HubURL: h.srv.URL, CA: caPEM(h.home.CA), Role: link.RoleHub}, "role", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.claims.Load()
			tc.cfg.Code = h.code
			tc.cfg.StateDir = t.TempDir()
			_, err := Pair(context.Background(), tc.cfg)
			if err == nil {
				t.Fatal("paired")
			}
			if tc.field != "" && homemesh.ErrorField(err) != tc.field {
				t.Errorf("error %v names %q, want %q", err, homemesh.ErrorField(err), tc.field)
			}
			if h.claims.Load() != before {
				t.Error("the setup code was sent")
			}
			if _, err := os.Stat(filepath.Join(tc.cfg.StateDir, PairingFile)); err == nil {
				t.Error("a pairing was stored")
			}
		})
	}

	// The fingerprint alone is enough, and so is trust on first use,
	// which prints the fingerprint.
	if _, err := Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: h.code, CAFingerprint: strings.ToLower(fp), StateDir: t.TempDir()}); err != nil {
		t.Fatalf("with the fingerprint: %v", err)
	}
	h.code = "NEW-CODE"
	var out bytes.Buffer
	if _, err := Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: h.code, TrustOnFirstUse: true, StateDir: t.TempDir(), Out: &out}); err != nil {
		t.Fatalf("trust on first use: %v", err)
	}
	if !strings.Contains(out.String(), fp) {
		t.Errorf("trust on first use printed %q, not the fingerprint %s", out.String(), fp)
	}
}

func TestPairChecksTheReply(t *testing.T) {
	other, _ := linktest.NewHome("home1", 99, time.Now())
	otherKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name   string
		tamper func(h *fakeHub, reply map[string]any)
		want   string
	}{
		{"another CA in the reply", func(h *fakeHub, r map[string]any) { r["ca_certificate"] = string(caPEM(other.CA)) }, "not the CA the connection was trusted with"},
		{"a certificate for another key", func(h *fakeHub, r map[string]any) {
			der, _ := link.IssueNodeCert(h.home.CA, h.home.Key, "home1", link.RoleRouter, otherKey.PublicKey(), time.Now(), time.Hour)
			r["mesh_certificate"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		}, "for another key"},
		{"another node id", func(h *fakeHub, r map[string]any) { r["node_id"] = "0000000000000000" }, "names node"},
		{"a hub whose id is not its key's", func(h *fakeHub, r map[string]any) {
			r["mesh_hubs"] = []Hub{{NodeID: "0000000000000000", Key: h.hubKey}}
		}, "mesh_hubs[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHub(t, "home1", 1)
			h.tamper = func(r map[string]any) { tc.tamper(h, r) }
			dir := t.TempDir()
			_, err := Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: h.code, CA: caPEM(h.home.CA), StateDir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
			if _, err := LoadPairing(dir); !errors.Is(err, ErrNotPaired) {
				t.Errorf("after a bad reply: %v", err)
			}
		})
	}
}

func TestPairReportsTheHubsRefusal(t *testing.T) {
	h := newFakeHub(t, "home1", 1)
	_, err := Pair(context.Background(), PairConfig{HubURL: h.srv.URL, Code: "WRONG", CA: caPEM(h.home.CA), StateDir: t.TempDir()})
	if homemesh.ErrorKind(err) != homemesh.KindPermission || !strings.Contains(err.Error(), "new setup code") {
		t.Errorf("wrong code: %v", err)
	}
}

func TestLoadPairingNotPaired(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadPairing(dir)
	if !errors.Is(err, ErrNotPaired) || !strings.Contains(err.Error(), "homemesh agent pair") {
		t.Errorf("LoadPairing of an empty directory: %v", err)
	}
}
