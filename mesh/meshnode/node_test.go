package meshnode

import (
	"testing"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
)

func TestTwoNodesExchangeMessages(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	// Only the router knows the hub's address, as an agent does.
	dev := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })

	hmtest.WaitFor(t, waitLong, "the link up on both sides", func() bool {
		return hub.hasNeighbour(dev.ID()) && dev.hasNeighbour(hub.ID())
	})
	hmtest.WaitFor(t, waitLong, "the device to find the hub", func() bool {
		id, ok := dev.NearestHub()
		return ok && id == hub.ID()
	})
	sendUntil(t, dev, hub, []byte("state: on"))
	sendUntil(t, hub, dev, []byte("command: off"))

	hub.mu.Lock()
	from := hub.msgs[0].From
	hub.mu.Unlock()
	if from.ID != dev.ID() || from.Role != link.RoleRouter || from.Home != "home" {
		t.Errorf("hub got a message from %+v, want router %s of home", from, dev.ID())
	}
	top := dev.Topology()
	if top.Self.ID != dev.ID() || top.Self.Role != link.RoleRouter || top.Self.Addr != dev.Addr().String() {
		t.Errorf("self = %+v", top.Self)
	}
	if len(top.Neighbours) != 1 || top.Neighbours[0].ID != hub.ID() || top.Neighbours[0].Role != link.RoleHub {
		t.Fatalf("neighbours = %+v", top.Neighbours)
	}
	if nb := top.Neighbours[0]; nb.Addr != hub.Addr().String() || nb.Quality <= 0 || nb.UpSince.IsZero() {
		t.Errorf("neighbour = %+v", nb)
	}
	if c := top.Counters; c.MessagesDelivered == 0 || c.MessagesSent == 0 || c.DatagramsIn == 0 || c.LinksUp != 1 {
		t.Errorf("counters = %+v", c)
	}
	for _, n := range []*testNode{hub, dev} {
		c := n.Topology().Counters
		if c.Link.Forged+c.Link.Replayed+c.Link.BadCert+c.Link.ForeignHome+c.E2E.Forged+c.E2E.Replayed != 0 {
			t.Errorf("%s: refusals on a clean link: link %+v e2e %+v", n.ID(), c.Link, c.E2E)
		}
	}
}
