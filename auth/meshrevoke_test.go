package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
)

// pairMeshNode pairs a mesh node with a fresh key through a setup code,
// as an agent does, and returns its key (base64) and its id.
func pairMeshNode(t *testing.T, c *Client, token, name, role, source string) (string, route.NodeID) {
	t.Helper()
	ctx := context.Background()
	p, err := c.CreatePairing(ctx, token, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(newMeshKey(t).PublicKey().Bytes())
	claim, err := c.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: key, MeshRole: role, Source: source})
	if err != nil {
		t.Fatalf("claim for %s: %v", name, err)
	}
	id, err := route.ParseNodeID(claim.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

// nextMeshRevokedEvent reads the next event from sub and checks it is a
// mesh node revocation of this home, in both of its spellings.
func nextMeshRevokedEvent(t *testing.T, sub *nats.Subscription) string {
	t.Helper()
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no mesh_node_revoked event: %v", err)
	}
	var ev MeshNodeRevokedEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	var payload struct {
		NodeID string `json:"node_id"`
	}
	if err := json.Unmarshal(ev.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventMeshNodeRevoked || ev.Home != testHome || ev.Source != ServiceName || payload.NodeID != ev.NodeID {
		t.Errorf("event = %s", msg.Data)
	}
	return ev.NodeID
}

func TestMeshNodeRevocation(t *testing.T) {
	s, in, tok := onboarded(t)
	ctx := context.Background()
	events := subscribe(t, s, EventMeshNodeRevoked)
	owner, err := in.client.VerifyAccessToken(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	member := addUser(t, in, "mia", RoleMember, Scope{})
	admin := addUser(t, in, "adam", RoleAdmin, Scope{})

	stolenKey, stolen := pairMeshNode(t, in.client, tok.AccessToken, "hall sensor", "leaf", "192.0.2.1")
	plugKey, plug := pairMeshNode(t, in.client, tok.AccessToken, "plug", "", "192.0.2.2")

	// Listed in node id order, nothing revoked yet.
	nodes, err := in.client.MeshNodes(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes.Nodes {
		got = append(got, n.NodeID+" "+n.Name+" "+n.Role)
		if n.RevokedAt != nil || n.RevokedBy != "" || n.CreatedBy != owner.UserID || n.CreatedAt.IsZero() ||
			time.Until(n.NotAfter) < MeshCertValidity-time.Hour {
			t.Errorf("listed %+v", n)
		}
	}
	want := []string{stolen.String() + " hall sensor leaf", plug.String() + " plug router"}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mesh nodes (-want +got):\n%s", diff)
	}
	if revoked, err := in.client.MeshRevoked(ctx); err != nil || len(revoked) != 0 {
		t.Errorf("MeshRevoked before any revocation = %v, %v", revoked, err)
	}

	// Members may neither list nor revoke; bad and unknown ids are refused.
	_, err = in.client.MeshNodes(ctx, member.AccessToken)
	wantKind(t, err, homemesh.KindPermission)
	wantKind(t, in.client.RevokeMeshNode(ctx, member.AccessToken, stolen.String()), homemesh.KindPermission)
	for _, bad := range []string{"", "xyz", stolen.String()[:15], stolen.String() + "0", "mesh-" + stolen.String(), strings.Repeat("g", 16)} {
		err := in.client.RevokeMeshNode(ctx, tok.AccessToken, bad)
		if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "node_id" {
			t.Errorf("RevokeMeshNode(%q) = %v, want invalid naming node_id", bad, err)
		}
	}
	wantKind(t, in.client.RevokeMeshNode(ctx, tok.AccessToken, "0123456789abcdef"), homemesh.KindNotFound)
	if _, err := events.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatal("an event before any revocation")
	}

	// The owner revokes: listed as revoked, announced, on the list.
	if err := in.client.RevokeMeshNode(ctx, tok.AccessToken, stolen.String()); err != nil {
		t.Fatalf("RevokeMeshNode: %v", err)
	}
	if id := nextMeshRevokedEvent(t, events); id != stolen.String() {
		t.Errorf("event names %s, want %s", id, stolen)
	}
	nodes, err = in.client.MeshNodes(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Nodes {
		revoked := n.NodeID == stolen.String()
		if (n.RevokedAt != nil) != revoked || (n.RevokedBy == owner.UserID) != revoked {
			t.Errorf("after revoking %s: %+v", stolen, n)
		}
		if revoked && time.Since(*n.RevokedAt) > time.Minute {
			t.Errorf("revoked_at %v", n.RevokedAt)
		}
	}
	list, err := in.client.MeshRevoked(ctx)
	if err != nil || !slices.Equal(list, []route.NodeID{stolen}) {
		t.Errorf("MeshRevoked = %v, %v; want [%s]", list, err, stolen)
	}

	// Again, in capitals: still fine, announced again, audited once.
	if err := in.client.RevokeMeshNode(ctx, tok.AccessToken, strings.ToUpper(stolen.String())); err != nil {
		t.Errorf("revoking a revoked node: %v", err)
	}
	if id := nextMeshRevokedEvent(t, events); id != stolen.String() {
		t.Errorf("repeated event names %s", id)
	}

	// The stolen key cannot pair again, and the code stays good for a
	// new key; the plug's key, not revoked, may pair again.
	p, err := in.client.CreatePairing(ctx, tok.AccessToken, "hall sensor again", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: stolenKey, MeshRole: "leaf", Source: "192.0.2.3"})
	wantKind(t, err, homemesh.KindInvalid)
	if f := homemesh.ErrorField(err); f != "mesh_key" || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("claim with a revoked key: %v (field %q)", err, f)
	}
	fresh := base64.StdEncoding.EncodeToString(newMeshKey(t).PublicKey().Bytes())
	if _, err := in.client.Claim(ctx, ClaimRequest{Code: p.Code, MeshKey: fresh, MeshRole: "leaf", Source: "192.0.2.3"}); err != nil {
		t.Errorf("the code after a refused claim: %v", err)
	}
	p2, err := in.client.CreatePairing(ctx, tok.AccessToken, "plug again", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.client.Claim(ctx, ClaimRequest{Code: p2.Code, MeshKey: plugKey, Source: "192.0.2.4"}); err != nil {
		t.Errorf("a key that was not revoked pairs again: %v", err)
	}

	// An admin may revoke too.
	if err := in.client.RevokeMeshNode(ctx, admin.AccessToken, plug.String()); err != nil {
		t.Fatalf("an admin revokes: %v", err)
	}
	if id := nextMeshRevokedEvent(t, events); id != plug.String() {
		t.Errorf("event names %s, want %s", id, plug)
	}
	want = []string{stolen.String(), plug.String()}
	slices.Sort(want)
	if list, err := in.client.MeshRevoked(ctx); err != nil || len(list) != 2 || list[0].String() != want[0] || list[1].String() != want[1] {
		t.Errorf("MeshRevoked = %v, %v; want %v", list, err, want)
	}

	// Audited: each revocation once, and the refused claim with its reason.
	page, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Action: AuditMeshNodeRevoked})
	if err != nil {
		t.Fatal(err)
	}
	var revocations []string
	for _, r := range page.Records {
		revocations = append(revocations, r.Actor+" "+r.Target+" "+r.Outcome+" "+r.Details["role"]+" "+r.Details["name"])
	}
	wantAudit := []string{testOwner + " mesh-" + stolen.String() + " success leaf hall sensor", "adam mesh-" + plug.String() + " success router plug again"}
	if diff := cmp.Diff(wantAudit, revocations); diff != "" {
		t.Errorf("audited revocations (-want +got):\n%s", diff)
	}
	claims, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Action: AuditPairingClaimed})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(claims.Records, func(r AuditRecord) bool {
		return r.Outcome == OutcomeFailure && r.Details["reason"] == "mesh key of a revoked node"
	}) {
		t.Errorf("the refused claim is not audited: %+v", claims.Records)
	}
}

// TestMeshNodesArePaged lists more nodes than one reply holds.
func TestMeshNodesArePaged(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	n := meshNodePage + 3
	var want []string
	for i := range n {
		id := route.IDFromKey([]byte{byte(i), byte(i >> 8)})
		rec, _ := json.Marshal(meshNodeRecord{Name: "node", Role: "router", NotAfter: time.Now().Add(time.Hour), CreatedAt: time.Now()})
		if _, err := in.svc.meshKV.Put(ctx, meshNodePrefix+id.String(), rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, id.String())
	}
	slices.Sort(want)
	nodes, err := in.client.MeshNodes(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes.Nodes {
		got = append(got, n.NodeID)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged list (-want +got):\n%s", diff)
	}
}

// TestMeshRevocationsOverTheBus checks, through the bus callout, who may
// use the revocation verbs and event: the gateway lists and revokes for a
// person, the border reads the list and hears of each revocation, and
// nobody else does either.
func TestMeshRevocationsOverTheBus(t *testing.T) {
	b := newCalloutBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The border listens before the revocation, as it does from its start.
	borderCred, _ := b.keys.Credential("border")
	borderNC, borderViolations, err := b.connect(t, borderCred)
	if err != nil {
		t.Fatal(err)
	}
	heard, err := borderNC.SubscribeSync(bus.EventSubject(testHome, EventMeshNodeRevoked))
	if err != nil {
		t.Fatal(err)
	}
	if err := borderNC.Flush(); err != nil {
		t.Fatal(err)
	}

	gw := NewClient(b.connectService(t, "gateway"))
	if err := gw.Onboard(ctx, b.in.svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := gw.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	_, id := pairMeshNode(t, gw, tok.AccessToken, "node", "", "192.0.2.1")
	if err := gw.RevokeMeshNode(ctx, tok.AccessToken, id.String()); err != nil {
		t.Fatalf("the gateway revokes for the owner: %v", err)
	}
	if got := nextMeshRevokedEvent(t, heard); got != id.String() {
		t.Errorf("the border heard of %s, want %s", got, id)
	}
	if list, err := NewClient(b.connectService(t, "border")).MeshRevoked(ctx); err != nil || !slices.Equal(list, []route.NodeID{id}) {
		t.Errorf("the border reads the list: %v, %v", list, err)
	}

	for _, s := range BusServices {
		if s == ServiceName {
			continue
		}
		t.Run(s, func(t *testing.T) {
			c := NewClient(b.connectService(t, s))
			_, err := c.MeshRevoked(ctx)
			if s == "border" {
				if err != nil {
					t.Errorf("the border reads the list: %v", err)
				}
			} else if homemesh.ErrorKind(err) != homemesh.KindPermission {
				t.Errorf("%s reads the revocation list: %v, want a permission error", s, err)
			}
			// Past the bus, a forged token is auth's to refuse; before
			// it, every caller but the gateway is refused by the bus.
			wantList, wantRevoke := homemesh.KindPermission, homemesh.KindPermission
			if s == "gateway" {
				wantList, wantRevoke = homemesh.KindUnauthenticated, homemesh.KindUnauthenticated
			}
			if _, err := c.MeshNodes(ctx, "forged"); homemesh.ErrorKind(err) != wantList {
				t.Errorf("%s lists mesh nodes: %v, want kind %s", s, err, wantList)
			}
			if err := c.RevokeMeshNode(ctx, "forged", id.String()); homemesh.ErrorKind(err) != wantRevoke {
				t.Errorf("%s revokes a mesh node: %v, want kind %s", s, err, wantRevoke)
			}
		})
	}

	// Only the border and the gateway (which forwards it to admins) may
	// subscribe to the event.
	subj := bus.EventSubject(testHome, EventMeshNodeRevoked)
	for _, s := range []string{"registry", "edge", "history"} {
		cred, _ := b.keys.Credential(s)
		nc, v, err := b.connect(t, cred)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		v.has(t, "subscription", subj)
	}
	borderViolations.mu.Lock()
	defer borderViolations.mu.Unlock()
	if len(borderViolations.errs) != 0 {
		t.Errorf("the border's subscription was refused: %v", borderViolations.errs)
	}
}

func TestBorderMayHearOfRevokedMeshNodes(t *testing.T) {
	subj := bus.EventSubject(testHome, EventMeshNodeRevoked)
	for _, s := range BusServices {
		p, err := ServiceBusPermissions(testHome, s)
		if err != nil {
			t.Fatal(err)
		}
		// auth publishes every event; the gateway sees them all, to send
		// each kind to the roles that may see it.
		may := s == "border" || s == "gateway"
		if got := slices.Contains(p.Subscribe, subj) || slices.Contains(p.Subscribe, bus.EventWildcard(testHome)); got != may && s != ServiceName {
			t.Errorf("%s may subscribe to %s: %v, want %v", s, subj, got, may)
		}
		callsRevoked := slices.Contains(p.Publish, bus.ServiceSubject(ServiceName, VerbMeshRevoked))
		if callsRevoked != (s == "border") {
			t.Errorf("%s may call %s: %v", s, VerbMeshRevoked, callsRevoked)
		}
	}
}

// FuzzParseMeshNodeID checks that an accepted node id is 16 hex digits
// and every refusal names the field.
func FuzzParseMeshNodeID(f *testing.F) {
	f.Add("0123456789abcdef")
	f.Add("0123456789ABCDEF")
	f.Add("mesh-0123456789abcdef")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseMeshNodeID("id", s)
		if err != nil {
			if homemesh.ErrorField(err) != "id" || homemesh.ErrorKind(err) != homemesh.KindInvalid {
				t.Fatalf("%q: error %v", s, err)
			}
			return
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("%q accepted as %s", s, id)
		}
	})
}
