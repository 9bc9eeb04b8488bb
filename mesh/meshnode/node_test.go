package meshnode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/homemesh/homemesh"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
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

func TestBurstBeforeHandshakeKept(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	dev := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	// Sent at once, before the route and the end-to-end channel exist:
	// the first (an agent's announcement) must not be dropped for the
	// later ones.
	const burst = 100
	for i := range burst {
		if err := dev.Send(hub.ID(), fmt.Appendf(nil, "message %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	hmtest.WaitFor(t, waitLong, "the whole burst", func() bool { return hub.count() == burst })
	if !hub.got(dev.ID(), []byte("message 0")) {
		t.Fatal("the first message was lost")
	}
}

func TestSendRefusesBadInput(t *testing.T) {
	home := newTestHome(t, "home")
	n := newNode(t, home, link.RoleRouter, nil)
	other := home.identity(t, link.RoleRouter)
	dst := route.IDFromKey(other.Key.PublicKey().Bytes())
	for name, tc := range map[string]struct {
		dst     route.NodeID
		payload []byte
	}{
		"zero id":   {route.NodeID{}, []byte("x")},
		"self":      {n.ID(), []byte("x")},
		"empty":     {dst, nil},
		"too large": {dst, make([]byte, MaxPayload+1)},
	} {
		if err := n.Send(tc.dst, tc.payload); homemesh.ErrorKind(err) != homemesh.KindInvalid {
			t.Errorf("%s: %v, want an invalid-input error", name, err)
		}
	}
	if err := n.Send(dst, make([]byte, MaxPayload)); err != nil {
		t.Errorf("the largest payload: %v", err)
	}
	n.start()
	n.stop()
	if err := n.Send(dst, []byte("x")); !errors.Is(err, ErrStopped) {
		t.Errorf("Send after Run: %v, want ErrStopped", err)
	}
	if err := n.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	home := newTestHome(t, "home")
	id := home.identity(t, link.RoleRouter)
	for _, tc := range []struct {
		field string
		cfg   Config
	}{
		{"verifier", Config{Identity: id}},
		{"identity.key", Config{Verifier: home.Verifier}},
		{"listen", Config{Identity: id, Verifier: home.Verifier, Listen: "nowhere"}},
		{"peers[1]", Config{Identity: id, Verifier: home.Verifier, Listen: "127.0.0.1:0", Peers: []string{"127.0.0.1:1", "127.0.0.1"}}},
		{"multicast[0]", Config{Identity: id, Verifier: home.Verifier, Listen: "127.0.0.1:0", Multicast: []string{"no-such-if0"}}},
		{"multicast_group", Config{Identity: id, Verifier: home.Verifier, Listen: "127.0.0.1:0", Multicast: []string{"lo"}, MulticastGroup: "127.0.0.1:5"}},
		{"max_links", Config{Identity: id, Verifier: home.Verifier, Listen: "127.0.0.1:0", MaxLinks: -1}},
	} {
		_, err := New(tc.cfg)
		var he *homemesh.Error
		if !errors.As(err, &he) || he.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	other := newTestHome(t, "other")
	if _, err := New(Config{Identity: id, Verifier: other.Verifier, Listen: "127.0.0.1:0"}); err == nil {
		t.Error("a node with a certificate its own verifier refuses")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	home := newTestHome(t, "home")
	n := newNode(t, home, link.RoleRouter, nil)
	addr := n.Addr().String()
	n.Close()
	// The port is free again.
	again := newNode(t, home, link.RoleRouter, func(c *Config) { c.Listen = addr })
	if err := n.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
	again.Close()
}
