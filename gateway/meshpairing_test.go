package gateway_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"testing"
	"time"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// TestPairingMeshNode pairs a mesh node over HTTP: its X25519 key in, a
// node certificate of its role, the CA and the home's hubs out.
func TestPairingMeshNode(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	hubKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	hub, err := auth.NewClient(e.conn).MeshHubCert(context.Background(), hubKey.PublicKey().Bytes(), []string{"192.0.2.10:4790"})
	if err != nil {
		t.Fatal(err)
	}

	p := decode[auth.Pairing](t, e.do(t, "POST", "/api/v1/pairings", tok, map[string]any{"name": "door sensor"}), 201)
	key, _ := ecdh.X25519().GenerateKey(rand.Reader)
	b64 := base64.StdEncoding.EncodeToString(key.PublicKey().Bytes())
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "mesh_key": "AAAA"}).wantError(t, 400, "invalid", "mesh_key")
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "mesh_key": b64, "mesh_role": "hub"}).wantError(t, 400, "invalid", "mesh_role")
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "mesh_key": b64, "mesh_rol": "leaf"}).wantError(t, 400, "invalid", "mesh_rol")

	r := e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "mesh_key": b64, "mesh_role": "leaf"})
	claim := decode[auth.PairingClaim](t, r, 201)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"identity", "mesh_certificate", "ca_certificate", "node_id", "not_after", "mesh_hubs"} {
		if _, ok := raw[field]; !ok {
			t.Errorf("the claim has no %s: %s", field, r.body)
		}
	}
	block, _ := pem.Decode([]byte(claim.CACertificate))
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	v, err := link.NewVerifier([]*x509.Certificate{ca}, testHome)
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode([]byte(claim.MeshCertificate))
	peer, err := v.Verify(block.Bytes, time.Now())
	if err != nil || peer.Role != link.RoleLeaf || peer.ID != route.IDFromKey(key.PublicKey().Bytes()) || claim.NodeID != peer.ID.String() {
		t.Fatalf("node certificate: %+v, %v (claim %+v)", peer, err, claim)
	}
	if len(claim.MeshHubs) != 1 || claim.MeshHubs[0].NodeID != hub.NodeID || claim.MeshHubs[0].Addresses[0] != "192.0.2.10:4790" {
		t.Errorf("mesh_hubs = %+v", claim.MeshHubs)
	}
	e.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p.Code, "mesh_key": b64}).wantError(t, 403, "permission", "")
}
