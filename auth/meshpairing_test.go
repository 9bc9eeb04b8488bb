package auth

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

func newMeshKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemDER(t testing.TB, text string) []byte {
	t.Helper()
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("not one PEM certificate: %q", text)
	}
	return block.Bytes
}

// lowOrderPoint is a point of order 8 on Curve25519 (from the list of
// points every X25519 implementation must survive): with it, every shared
// secret is zero.
const lowOrderPoint = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"

func TestMeshPairing(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()

	hubKey := newMeshKey(t)
	hub, err := in.client.MeshHubCert(ctx, hubKey.PublicKey().Bytes(), []string{"192.0.2.10:4790", "[2001:db8::1]:4790", "Hub.Local:4790"})
	if err != nil {
		t.Fatalf("MeshHubCert: %v", err)
	}

	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "hall sensor", nil)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey := newMeshKey(t)
	goodKey := base64.StdEncoding.EncodeToString(nodeKey.PublicKey().Bytes())
	low, _ := hex.DecodeString(lowOrderPoint)

	// Bad requests are refused naming the field, without spending the code.
	for i, tc := range []struct {
		name, key, role, csr, field string
	}{
		{"not base64", "not base64!", "", "", "mesh_key"},
		{"short key", base64.StdEncoding.EncodeToString(make([]byte, 31)), "", "", "mesh_key"},
		{"unpadded base64", base64.RawStdEncoding.EncodeToString(nodeKey.PublicKey().Bytes()), "", "", "mesh_key"},
		{"all-zero key", base64.StdEncoding.EncodeToString(make([]byte, 32)), "", "", "mesh_key"},
		{"low-order key", base64.StdEncoding.EncodeToString(low), "", "", "mesh_key"},
		{"hub role", goodKey, "hub", "", "mesh_role"},
		{"unknown role", goodKey, "gateway", "", "mesh_role"},
		{"role without key", "", "leaf", "", "mesh_key"},
		{"key and csr", goodKey, "", "-----BEGIN CERTIFICATE REQUEST-----", "csr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.Claim(ctx, ClaimRequest{Code: p.Code, CSR: tc.csr, MeshKey: tc.key, MeshRole: tc.role, Source: fmt.Sprintf("192.0.2.%d", 100+i)})
			wantKind(t, err, homemesh.KindInvalid)
			if f := homemesh.ErrorField(err); f != tc.field {
				t.Errorf("error %v names %q, want %q", err, f, tc.field)
			}
		})
	}

	claim, err := in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: goodKey, MeshRole: "leaf", Source: "192.0.2.3"})
	if err != nil {
		t.Fatalf("Claim with a mesh key: %v", err)
	}
	id := route.IDFromKey(nodeKey.PublicKey().Bytes())
	if claim.NodeID != id.String() || claim.Identity != "mesh-"+id.String() || claim.Password != "" || claim.Certificate != "" || len(claim.Allow) != 0 {
		t.Errorf("claim = %+v", claim)
	}
	ca, err := x509.ParseCertificate(pemDER(t, claim.CACertificate))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := link.NewVerifier([]*x509.Certificate{ca}, testHome)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := verifier.Verify(pemDER(t, claim.MeshCertificate), time.Now())
	if err != nil {
		t.Fatalf("the node certificate does not verify for the home: %v", err)
	}
	if peer.ID != id || peer.Role != link.RoleLeaf || peer.Home != testHome || string(peer.Key) != string(nodeKey.PublicKey().Bytes()) {
		t.Errorf("certificate says %+v", peer)
	}
	if d := time.Until(claim.NotAfter); d < MeshCertValidity-time.Hour || d > MeshCertValidity || !claim.NotAfter.Equal(peer.NotAfter) {
		t.Errorf("not_after %v, certificate until %v", claim.NotAfter, peer.NotAfter)
	}
	other, err := link.NewVerifier([]*x509.Certificate{ca}, "home2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(pemDER(t, claim.MeshCertificate), time.Now()); !errors.Is(err, link.ErrForeignHome) {
		t.Errorf("another home's verifier: %v, want ErrForeignHome", err)
	}

	// The claim names the hub, and the hub's certificate says hub.
	want := []MeshHub{{NodeID: hub.NodeID, Key: hubKey.PublicKey().Bytes(),
		Addresses: []string{"192.0.2.10:4790", "[2001:db8::1]:4790", "hub.local:4790"}}}
	if diff := cmp.Diff(want, claim.MeshHubs); diff != "" {
		t.Errorf("mesh_hubs (-want +got):\n%s", diff)
	}
	hubPeer, err := verifier.Verify(hub.Certificate, time.Now())
	if err != nil || hubPeer.Role != link.RoleHub || hubPeer.ID.String() != hub.NodeID || string(hub.CACertificate) != string(ca.Raw) {
		t.Errorf("hub certificate: %+v, %v", hubPeer, err)
	}

	// A code works once.
	_, err = in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: goodKey, Source: "192.0.2.3"})
	wantKind(t, err, homemesh.KindPermission)

	// The default role is router.
	p2, err := in.client.CreatePairing(ctx, tok.AccessToken, "plug", nil)
	if err != nil {
		t.Fatal(err)
	}
	claim2, err := in.client.Claim(ctx, ClaimRequest{Code: p2.Code, MeshKey: base64.StdEncoding.EncodeToString(newMeshKey(t).PublicKey().Bytes()), Source: "192.0.2.4"})
	if err != nil {
		t.Fatal(err)
	}
	if peer, err := verifier.Verify(pemDER(t, claim2.MeshCertificate), time.Now()); err != nil || peer.Role != link.RoleRouter {
		t.Errorf("default role: %+v, %v", peer, err)
	}

	// Both claims and the hub certificate are in the audit log.
	page, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Action: AuditPairingClaimed})
	if err != nil {
		t.Fatal(err)
	}
	var meshClaims []string
	for _, r := range page.Records {
		if r.Outcome == OutcomeSuccess && r.Details["kind"] == KindMeshNode {
			meshClaims = append(meshClaims, r.Actor+" "+r.Details["role"])
		}
	}
	if diff := cmp.Diff([]string{claim.Identity + " leaf", claim2.Identity + " router"}, meshClaims); diff != "" {
		t.Errorf("audited mesh claims (-want +got):\n%s", diff)
	}
	issued, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Action: AuditCertificateIssued})
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, r := range issued.Records {
		roles[r.Target] = r.Details["role"]
	}
	if roles["mesh-"+hub.NodeID] != "hub" || roles[claim.Identity] != "leaf" {
		t.Errorf("certificates audited: %v", roles)
	}
}

func TestMeshHubCertReplacesAndValidates(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	key := newMeshKey(t).PublicKey().Bytes()
	if _, err := in.client.MeshHubCert(ctx, key, []string{"192.0.2.10:4790"}); err != nil {
		t.Fatal(err)
	}
	hub, err := in.client.MeshHubCert(ctx, key, []string{"192.0.2.11:4790", "192.0.2.11:4790"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "node", nil)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: base64.StdEncoding.EncodeToString(newMeshKey(t).PublicKey().Bytes()), Source: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []MeshHub{{NodeID: hub.NodeID, Key: key, Addresses: []string{"192.0.2.11:4790"}}}
	if diff := cmp.Diff(want, claim.MeshHubs); diff != "" {
		t.Errorf("after re-registration (-want +got):\n%s", diff)
	}

	low, _ := hex.DecodeString(lowOrderPoint)
	for _, tc := range []struct {
		name  string
		key   []byte
		addrs []string
		field string
	}{
		{"no key", nil, []string{"192.0.2.1:1"}, "key"},
		{"short key", key[:31], []string{"192.0.2.1:1"}, "key"},
		{"low-order key", low, []string{"192.0.2.1:1"}, "key"},
		{"no addresses", key, nil, "addresses"},
		{"no port", key, []string{"192.0.2.1"}, "addresses[0]"},
		{"port 0", key, []string{"192.0.2.1:4790", "192.0.2.1:0"}, "addresses[1]"},
		{"unspecified", key, []string{"0.0.0.0:4790"}, "addresses[0]"},
		{"bad host", key, []string{"hub_1:4790"}, "addresses[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.MeshHubCert(ctx, tc.key, tc.addrs)
			wantKind(t, err, homemesh.KindInvalid)
			if f := homemesh.ErrorField(err); f != tc.field {
				t.Errorf("error %v names %q, want %q", err, f, tc.field)
			}
		})
	}
}

// TestMeshHubCertIsTheBorders checks, through the bus callout, that only
// the border may have hub certificates issued.
func TestMeshHubCertIsTheBorders(t *testing.T) {
	b := newCalloutBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := newMeshKey(t).PublicKey().Bytes()
	req := meshHubCertRequest{Key: key, Addresses: []string{"192.0.2.10:4790"}}
	for _, s := range BusServices {
		if s == ServiceName {
			continue
		}
		t.Run(s, func(t *testing.T) {
			var reply MeshHubCert
			err := b.connectService(t, s).Request(ctx, bus.ServiceSubject(ServiceName, VerbMeshHubCert), req, &reply)
			if s == "border" {
				if err != nil || reply.NodeID != route.IDFromKey(key).String() {
					t.Fatalf("the border asks for its certificate: %+v, %v", reply, err)
				}
				return
			}
			if homemesh.ErrorKind(err) != homemesh.KindPermission {
				t.Errorf("%s asks for a hub certificate: %v, want a permission error", s, err)
			}
		})
	}
}

func TestParseMeshKey(t *testing.T) {
	k := newMeshKey(t).PublicKey()
	got, err := ParseMeshKey("mesh_key", base64.StdEncoding.EncodeToString(k.Bytes()))
	if err != nil || !got.Equal(k) {
		t.Fatalf("ParseMeshKey(good) = %v, %v", got, err)
	}
	// Every low-order point of Curve25519, and their non-canonical
	// encodings, as listed by the "May the Fourth" paper and libsodium.
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		lowOrderPoint,
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		raw, _ := hex.DecodeString(h)
		if _, err := ParseMeshKey("mesh_key", base64.StdEncoding.EncodeToString(raw)); homemesh.ErrorField(err) != "mesh_key" {
			t.Errorf("%s: %v, want refused naming mesh_key", h, err)
		}
	}
}

// FuzzParseMeshKey checks that a key is accepted only when it is the
// padded base64 of 32 bytes that make a usable X25519 key.
func FuzzParseMeshKey(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(newMeshKey(f).PublicKey().Bytes()))
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseMeshKey("mesh_key", s)
		if err != nil {
			if homemesh.ErrorField(err) != "mesh_key" {
				t.Fatalf("%q: error %v does not name mesh_key", s, err)
			}
			return
		}
		if base64.StdEncoding.EncodeToString(k.Bytes()) != s {
			t.Fatalf("%q accepted as %x", s, k.Bytes())
		}
	})
}

// FuzzCheckHubAddresses checks that accepted addresses are host:port with
// a usable port, and that every refusal names the field.
func FuzzCheckHubAddresses(f *testing.F) {
	f.Add("192.0.2.1:4790", "[::1]:1")
	f.Add("hub.local:65535", "0.0.0.0:1")
	f.Fuzz(func(t *testing.T, a, b string) {
		out, err := checkHubAddresses([]string{a, b})
		if err != nil {
			if f := homemesh.ErrorField(err); f != "addresses[0]" && f != "addresses[1]" {
				t.Fatalf("%q, %q: error %v names %q", a, b, err, f)
			}
			return
		}
		for _, addr := range out {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host == "" || port == "0" {
				t.Fatalf("%q, %q: accepted %q", a, b, addr)
			}
		}
	})
}

func TestParseMeshKeyRefusesNonCanonical(t *testing.T) {
	k := newMeshKey(t).PublicKey().Bytes()
	high := append([]byte(nil), k...)
	high[31] |= 0x80 // the same point for X25519, another node id
	for name, s := range map[string]string{
		"top bit set":        base64.StdEncoding.EncodeToString(high),
		"p+1":                base64.StdEncoding.EncodeToString(append([]byte{0xee}, append(bytesOf(0xff, 30), 0x7f)...)),
		"non-zero pad bits":  "0000000000000000000000000000000000000000001=",
		"line break in text": base64.StdEncoding.EncodeToString(k)[:20] + "\n" + base64.StdEncoding.EncodeToString(k)[20:],
	} {
		if _, err := ParseMeshKey("mesh_key", s); homemesh.ErrorField(err) != "mesh_key" {
			t.Errorf("%s: %v, want refused naming mesh_key", name, err)
		}
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestMeshPairingWithoutHubs(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "first node", nil)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: base64.StdEncoding.EncodeToString(newMeshKey(t).PublicKey().Bytes()), Source: "192.0.2.1"})
	if err != nil {
		t.Fatalf("a claim before any hub registered: %v", err)
	}
	if len(claim.MeshHubs) != 0 || claim.MeshCertificate == "" {
		t.Errorf("claim = %+v", claim)
	}
}
