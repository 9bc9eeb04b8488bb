package meshnode

import (
	"fmt"
	"testing"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
)

// line starts n nodes, the first a hub, each linked (by configuration)
// only to the next.
func line(t *testing.T, home *testHome, n int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := n - 1; i >= 0; i-- {
		role := link.RoleRouter
		if i == 0 {
			role = link.RoleHub
		}
		var peers []string
		if i < n-1 {
			peers = peersOf(nodes[i+1])
		}
		nodes[i] = startNode(t, home, role, func(c *Config) { c.Peers = peers })
	}
	return nodes
}

func TestLineOfFourThreeHops(t *testing.T) {
	home := newTestHome(t, "home")
	nodes := line(t, home, 4)
	hub, far := nodes[0], nodes[3]
	hmtest.WaitFor(t, waitLong, "the far node's route to the hub", func() bool {
		id, ok := far.NearestHub()
		return ok && id == hub.ID()
	})
	sendUntil(t, far, hub, []byte("three hops up"))
	sendUntil(t, hub, far, []byte("three hops down"))

	top := far.Topology()
	var metric uint16
	for _, r := range top.Routes {
		if r.Dest == hub.ID() {
			metric = r.Metric
			if r.NextHop != nodes[2].ID() || !r.Hub {
				t.Errorf("far node's route to the hub: %+v", r)
			}
		}
	}
	if metric < 3*256 {
		t.Errorf("route metric %d over three hops, want at least %d", metric, 3*256)
	}
	for i, relay := range nodes[1:3] {
		if c := relay.Topology().Counters; c.Route.DataForwarded == 0 || c.MessagesDelivered != 0 {
			t.Errorf("relay %d: forwarded %d, delivered %d", i+1, c.Route.DataForwarded, c.MessagesDelivered)
		}
	}
}

// TestRerouteAroundKilledNode runs a ladder
//
//	src ─ a1 ─ a2 ─ dst
//	  └── b1 ─ b2 ──┘
//
// and stops the relays of whichever side carries src's route to dst: the
// messages must arrive over the other side without anyone intervening.
func TestRerouteAroundKilledNode(t *testing.T) {
	home := newTestHome(t, "home")
	dst := startNode(t, home, link.RoleHub, nil)
	a2 := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(dst) })
	b2 := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(dst) })
	a1 := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(a2) })
	b1 := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(b2) })
	src := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(a1, b1) })

	sendUntil(t, src, dst, []byte("before"))
	sendUntil(t, dst, src, []byte("reply before"))
	via, ok := src.routeVia(dst.ID())
	if !ok {
		t.Fatal("no route after delivery")
	}
	victim, other := a1, b1
	if via == b1.ID() {
		victim, other = b1, a1
	}
	victim.stop()

	hmtest.WaitFor(t, waitLong, "src to route around the stopped node", func() bool {
		via, ok := src.routeVia(dst.ID())
		return ok && via == other.ID()
	})
	for i := range 3 {
		sendUntil(t, src, dst, fmt.Appendf(nil, "after %d", i))
		sendUntil(t, dst, src, fmt.Appendf(nil, "reply after %d", i))
	}
	if c := src.Topology().Counters; c.LinksDown == 0 {
		t.Errorf("src never took the stopped node's link down: %+v", c)
	}
}

func TestLargePayloadOverThreeHops(t *testing.T) {
	home := newTestHome(t, "home")
	nodes := line(t, home, 4)
	big := make([]byte, MaxPayload)
	for i := range big {
		big[i] = byte(i * 7)
	}
	sendUntil(t, nodes[3], nodes[0], big)
	sendUntil(t, nodes[0], nodes[3], big[:40000])
}
