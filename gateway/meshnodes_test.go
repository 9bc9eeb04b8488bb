package gateway_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// newMeshKey returns the base64 of a fresh X25519 public key, as an agent
// sends it to pair.
func newMeshKey(t testing.TB) string {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())
}

// pairMeshNode pairs a mesh node through the auth service directly, from
// the claim address source (claims are limited per address), and returns
// its node id.
func pairMeshNode(t testing.TB, conn *natsbus.Conn, token, name, source string) string {
	t.Helper()
	ctx := context.Background()
	c := auth.NewClient(conn)
	p, err := c.CreatePairing(ctx, token, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	claim, err := c.Claim(ctx, auth.ClaimRequest{Code: p.Code, MeshKey: newMeshKey(t), Source: source})
	if err != nil {
		t.Fatal(err)
	}
	return claim.NodeID
}

// TestMeshNodesAPI pairs a mesh node over HTTP, lists it, revokes it, and
// checks who may do which, what the event stream tells whom, that the key
// cannot pair again, and the audit log.
func TestMeshNodesAPI(t *testing.T) {
	h := newHome(t)
	owner := h.tokens[pOwner]
	sub, err := h.conn.NATS().SubscribeSync(bus.EventSubject(testHome, auth.EventMeshNodeRevoked))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := h.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	open := func(principal string) *websocket.Conn {
		c, _, err := dial(t, h.srv.URL, h.tokens[principal])
		if err != nil {
			t.Fatal(err)
		}
		if m := mustRead(t, c); m["type"] != "auth_ok" {
			t.Fatalf("first message = %v", m)
		}
		return c
	}
	ownerEvents, memberEvents := open(pOwner), open(pMember)

	p := decode[auth.Pairing](t, h.do(t, "POST", "/api/v1/pairings", owner, map[string]any{"name": "hall sensor"}), http.StatusCreated)
	key := newMeshKey(t)
	claim := decode[auth.PairingClaim](t, h.do(t, "POST", "/api/v1/pairings/claim", "",
		map[string]any{"code": p.Code, "mesh_key": key, "mesh_role": "leaf"}), http.StatusCreated)

	// Listed with every field, not revoked.
	r := h.do(t, "GET", "/api/v1/mesh/nodes", owner, nil)
	var raw struct {
		Nodes []map[string]json.RawMessage `json:"nodes"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &raw) != nil || len(raw.Nodes) != 1 {
		t.Fatalf("GET /mesh/nodes: %d %s", r.status, r.body)
	}
	for _, field := range []string{"node_id", "name", "role", "not_after", "created_at", "created_by"} {
		if _, ok := raw.Nodes[0][field]; !ok {
			t.Errorf("a listed node has no %s: %s", field, r.body)
		}
	}
	for _, field := range []string{"revoked_at", "revoked_by"} {
		if _, ok := raw.Nodes[0][field]; ok {
			t.Errorf("a node not revoked has %s: %s", field, r.body)
		}
	}
	nodes := decode[auth.MeshNodes](t, r, http.StatusOK)
	if n := nodes.Nodes[0]; n.NodeID != claim.NodeID || n.Name != "hall sensor" || n.Role != "leaf" || !n.NotAfter.Equal(claim.NotAfter) {
		t.Errorf("listed %+v, claimed %+v", n, claim)
	}

	// Who may do what, and bad ids.
	path := "/api/v1/mesh/nodes/" + claim.NodeID
	h.do(t, "GET", "/api/v1/mesh/nodes", "", nil).wantError(t, 401, "unauthenticated", "")
	h.do(t, "GET", "/api/v1/mesh/nodes", h.tokens[pMember], nil).wantError(t, 403, "permission", "")
	h.do(t, "DELETE", path, h.tokens[pMember], nil).wantError(t, 403, "permission", "")
	h.do(t, "DELETE", path, h.tokens[pGuest], nil).wantError(t, 403, "permission", "")
	for _, bad := range []string{"xyz", claim.NodeID[:15], claim.NodeID + "0", "mesh-" + claim.NodeID} {
		h.do(t, "DELETE", "/api/v1/mesh/nodes/"+bad, owner, nil).wantError(t, 400, "invalid", "id")
	}
	h.do(t, "DELETE", "/api/v1/mesh/nodes/0123456789abcdef", owner, nil).wantError(t, 404, "not_found", "")
	if nodes := decode[auth.MeshNodes](t, h.do(t, "GET", "/api/v1/mesh/nodes", owner, nil), 200); nodes.Nodes[0].RevokedAt != nil {
		t.Fatalf("revoked by a refused request: %+v", nodes)
	}

	// The owner revokes.
	if r := h.do(t, "DELETE", path, owner, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE %s: %d %s", path, r.status, r.body)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no event on the bus: %v", err)
	}
	var ev auth.MeshNodeRevokedEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.NodeID != claim.NodeID || ev.Type != auth.EventMeshNodeRevoked {
		t.Errorf("event %s (%v)", msg.Data, err)
	}
	nodes = decode[auth.MeshNodes](t, h.do(t, "GET", "/api/v1/mesh/nodes", h.tokens[pAdmin], nil), http.StatusOK)
	if n := nodes.Nodes[0]; n.RevokedAt == nil || time.Since(*n.RevokedAt) > time.Minute || n.RevokedBy == "" {
		t.Errorf("after the revocation: %+v", n)
	}
	h.wantAudit(t, auth.AuditMeshNodeRevoked, testOwner, "mesh-"+claim.NodeID)

	// The event stream tells the owner, not a member.
	if m := readUntil(t, ownerEvents, auth.EventMeshNodeRevoked); m["data"].(map[string]any)["node_id"] != claim.NodeID {
		t.Errorf("the owner's event: %v", m)
	}
	if err := h.registry.Report(homemesh.StateUpdate{DeviceID: "lamp", EntityID: "lamp_light", Value: "on", HasValue: true, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := h.registry.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		m := mustRead(t, memberEvents)
		if m["type"] == auth.EventMeshNodeRevoked {
			t.Fatal("a member received a mesh node revocation")
		}
		if m["type"] == "state_changed" && m["entity_id"] == "lamp_light" {
			break
		}
	}

	// Revoking again is fine; the key never pairs again, and the refused
	// claim leaves the code for a new key.
	if r := h.do(t, "DELETE", path, h.tokens[pAdmin], nil); r.status != http.StatusNoContent {
		t.Errorf("revoking again: %d %s", r.status, r.body)
	}
	p2 := decode[auth.Pairing](t, h.do(t, "POST", "/api/v1/pairings", owner, map[string]any{"name": "hall sensor again"}), http.StatusCreated)
	h.do(t, "POST", "/api/v1/pairings/claim", "", map[string]any{"code": p2.Code, "mesh_key": key, "mesh_role": "leaf"}).
		wantError(t, 400, "invalid", "mesh_key")
	fresh := decode[auth.PairingClaim](t, h.do(t, "POST", "/api/v1/pairings/claim", "",
		map[string]any{"code": p2.Code, "mesh_key": newMeshKey(t), "mesh_role": "leaf"}), http.StatusCreated)
	nodes = decode[auth.MeshNodes](t, h.do(t, "GET", "/api/v1/mesh/nodes", owner, nil), http.StatusOK)
	if len(nodes.Nodes) != 2 {
		t.Fatalf("after pairing a new key: %+v", nodes)
	}
	for _, n := range nodes.Nodes {
		if (n.NodeID == fresh.NodeID) == (n.RevokedAt != nil) {
			t.Errorf("listed %+v", n)
		}
	}
}
