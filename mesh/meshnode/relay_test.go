package meshnode

import (
	"testing"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// TestRelayHoldsPacketWithoutRoute: a relay that has no route for a packet
// (as for a moment after a failure, while it waits for a feasible route)
// queues it and sends it on once a route appears, without spending
// another hop of its TTL; what waits longer than maxRelayWait is dropped
// and counted as relay_no_route. The node runs by hand here: its router
// talks to a second router over a link the test carries.
func TestRelayHoldsPacketWithoutRoute(t *testing.T) {
	home := newTestHome(t, "home-relay")
	n := newNode(t, home, link.RoleRouter, nil)
	now := time.Now()
	const nbLink = route.LinkID(7)
	peer, err := route.New(route.Config{ID: route.IDFromKey(home.identity(t, link.RoleRouter).Key.PublicKey().Bytes()), HelloInterval: testHello}, now)
	if err != nil {
		t.Fatal(err)
	}
	src := route.IDFromKey(home.identity(t, link.RoleRouter).Key.PublicKey().Bytes())
	packet := route.AppendData(nil, route.DataHeader{Src: src, Dst: peer.ID(), TTL: 9, Flow: 3}, []byte("reading"))

	n.onData(now, &peerLink{id: 99}, packet)
	if n.relaying.packets != 1 {
		t.Fatalf("the relay queued %d packets without a route, want 1", n.relaying.packets)
	}
	// The queue holds its own copy: the receive buffer is reused.
	clear(packet)
	h, payload, err := route.ParseData(n.relaying.byDst[peer.ID()].packets[0])
	if err != nil || h.TTL != 8 || h.Src != src || string(payload) != "reading" {
		t.Fatalf("the queued packet is %+v %q, %v", h, payload, err)
	}

	// Bring the link up and let the two routers talk until the node has a
	// route to its neighbour.
	toPeer := n.router.LinkUp(now, nbLink, peer.ID(), false)
	toNode := peer.LinkUp(now, 1, n.router.ID(), false)
	for i := 0; i < 50; i++ {
		if _, ok := n.router.NextHop(peer.ID()); ok {
			break
		}
		var next []route.Send
		for _, s := range toPeer {
			out, err := peer.Receive(now, 1, s.Packet)
			if err != nil {
				t.Fatal(err)
			}
			next = append(next, out...)
		}
		toPeer = nil
		for _, s := range append(toNode, next...) {
			out, err := n.router.Receive(now, nbLink, s.Packet)
			if err != nil {
				t.Fatal(err)
			}
			toPeer = append(toPeer, out...)
		}
		now = now.Add(testHello)
		toNode = peer.Tick(now)
		toPeer = append(toPeer, n.router.Tick(now)...)
	}
	if _, ok := n.router.NextHop(peer.ID()); !ok {
		t.Fatal("the node never got a route to its neighbour")
	}
	before := n.router.Counters().DataForwarded
	n.retryRouteQueues(now)
	if n.relaying.packets != 0 {
		t.Errorf("%d packets still queued after the route appeared", n.relaying.packets)
	}
	if got := n.router.Counters().DataForwarded - before; got != 1 {
		t.Errorf("the router forwarded %d held packets, want 1", got)
	}

	// A packet for a destination nobody announces waits maxRelayWait,
	// then is dropped and counted.
	nowhere := route.AppendData(nil, route.DataHeader{Src: src, Dst: route.NodeID{1, 2, 3}, TTL: 9}, nil)
	n.onData(now, &peerLink{id: 99}, nowhere)
	n.expireRouteQueues(now.Add(maxRelayWait - time.Millisecond))
	if n.relaying.packets != 1 {
		t.Fatalf("the packet was dropped before maxRelayWait")
	}
	n.expireRouteQueues(now.Add(maxRelayWait))
	if n.relaying.packets != 0 || n.c.rejected[RejectRelayNoRoute] != 1 {
		t.Errorf("after maxRelayWait: %d queued, %d counted as %s", n.relaying.packets, n.c.rejected[RejectRelayNoRoute], RejectRelayNoRoute)
	}
}
