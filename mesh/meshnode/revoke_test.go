package meshnode

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// ownVerifier gives a node a Verifier of its own, so that what it revokes
// the test's other nodes do not.
func ownVerifier(t testing.TB, home *testHome) func(*Config) {
	return func(c *Config) {
		v, err := link.NewVerifier([]*x509.Certificate{home.CA}, home.Name)
		if err != nil {
			t.Fatal(err)
		}
		c.Verifier = v
	}
}

// TestRevokedNodeIsCutOff runs a line a ─ b ─ c and revokes c at a and b:
// the link b─c drops at once, c cannot link again, a cannot reach c, and
// a and b go on as before.
func TestRevokedNodeIsCutOff(t *testing.T) {
	home := newTestHome(t, "home")
	c := startNode(t, home, link.RoleRouter, ownVerifier(t, home))
	b := startNode(t, home, link.RoleRouter, func(cfg *Config) {
		ownVerifier(t, home)(cfg)
		cfg.Peers = peersOf(c)
	})
	a := startNode(t, home, link.RoleHub, func(cfg *Config) {
		ownVerifier(t, home)(cfg)
		cfg.Peers = peersOf(b)
	})
	sendUntil(t, a, c, []byte("hello c"))
	sendUntil(t, c, a, []byte("hello a"))

	revoked := []route.NodeID{c.ID()}
	a.Revoke(revoked)
	b.Revoke(revoked)
	hmtest.WaitFor(t, waitLong, "the link b─c down", func() bool {
		return !b.hasNeighbour(c.ID()) && b.Topology().Counters.Rejected[RejectRevoked] == 1
	})
	ups := b.Topology().Counters.LinksUp
	if err := a.Send(c.ID(), []byte("still there?")); !errors.Is(err, link.ErrRevoked) {
		t.Fatalf("Send to a revoked node: %v, want link.ErrRevoked", err)
	}

	// c was not told: it holds its side of the link until b's Hellos
	// stop coming.
	hmtest.WaitFor(t, waitLong, "c's side of the link down", func() bool { return !c.hasNeighbour(b.ID()) })
	// b keeps redialling c's address, as a configured peer, and every
	// handshake is refused for c's certificate.
	before := b.Topology().Counters.Link.Revoked
	hmtest.WaitFor(t, waitLong, "c's handshakes refused", func() bool {
		return b.Topology().Counters.Link.Revoked >= before+2
	})
	if b.hasNeighbour(c.ID()) || c.hasNeighbour(b.ID()) {
		t.Fatal("c linked again")
	}
	if n := b.Topology().Counters.LinksUp; n != ups {
		t.Errorf("b brought up %d links since the revocation", n-ups)
	}
	hmtest.WaitFor(t, waitLong, "a's route to c gone", func() bool {
		_, ok := a.routeVia(c.ID())
		return !ok
	})

	// a and b go on as before.
	sendUntil(t, a, b, []byte("a to b after"))
	sendUntil(t, b, a, []byte("b to a after"))
}

func TestRevokeIgnoresOwnID(t *testing.T) {
	home := newTestHome(t, "home")
	n := newNode(t, home, link.RoleRouter, ownVerifier(t, home))
	n.Revoke([]route.NodeID{n.ID()})
	if n.cfg.Verifier.Revoked(n.ID()) {
		t.Fatal("the node revoked itself")
	}
}
