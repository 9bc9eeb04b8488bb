package meshnode

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// silentProxy carries the datagrams between a node and one neighbour
// until it is told to go silent: then it drops everything, as a
// neighbour that lost power does, and nothing (no ICMP) says so.
type silentProxy struct {
	front *net.UDPConn // the node talks to this
	back  *net.UDPConn // connected to the neighbour
	quiet atomic.Bool
	mu    sync.Mutex
	node  *net.UDPAddr // where the node's datagrams come from
}

func newSilentProxy(t *testing.T, to *net.UDPAddr) *silentProxy {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{front: front, back: back}
	t.Cleanup(func() { front.Close(); back.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.node = from
			p.mu.Unlock()
			if !p.quiet.Load() {
				back.Write(buf[:k])
			}
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := back.Read(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.node
			p.mu.Unlock()
			if to != nil && !p.quiet.Load() {
				front.WriteToUDP(buf[:k], to)
			}
		}
	}()
	return p
}

// TestSilentRelayLosesNothing: a relay on the active path goes silent
// (no ICMP, its Hellos simply stop). The source's data packets to it go
// unacknowledged, are sent twice more, and then the router hears of the
// failed delivery, probes the relay and declares it dead within an eighth
// of a Hello interval; the packets the relay never acknowledged are taken
// back and go the other way. With 1 s Hellos, a node that waited for the
// Hellos to stop would lose what it sent for 2.5 s; this one loses nothing.
func TestSilentRelayLosesNothing(t *testing.T) {
	home := newTestHome(t, "home")
	slow := func(peers ...*testNode) func(*Config) {
		return func(c *Config) {
			c.Route = route.Config{HelloInterval: time.Second}
			c.Peers = peersOf(peers...)
		}
	}
	hub := startNode(t, home, link.RoleHub, slow())
	relay := startNode(t, home, link.RoleRouter, slow(hub))
	e := startNode(t, home, link.RoleRouter, slow(hub))
	c := startNode(t, home, link.RoleRouter, slow(e))
	proxy := newSilentProxy(t, relay.Addr())
	src := startNode(t, home, link.RoleRouter, func(cfg *Config) {
		slow(c)(cfg)
		cfg.Peers = append(cfg.Peers, proxy.front.LocalAddr().String())
	})
	// src reaches the hub in two hops through the relay, or three
	// through c and e.
	hmtest.WaitFor(t, waitLong, "src's route to the hub through the relay", func() bool {
		next, ok := src.routeVia(hub.ID())
		return ok && next == relay.ID()
	})
	sendUntil(t, src, hub, []byte("hello"))

	const total = 150
	for i := range total {
		if i == 20 {
			proxy.quiet.Store(true)
		}
		if err := src.Send(hub.ID(), fmt.Appendf(nil, "reading %d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hmtest.WaitFor(t, waitLong, "every reading at the hub", func() bool {
		for i := range total {
			if !hub.got(src.ID(), fmt.Appendf(nil, "reading %d", i)) {
				return false
			}
		}
		return true
	})
	cnt := src.Topology().Counters
	if cnt.HopFailures == 0 || cnt.HopRetransmits == 0 || cnt.Route.DeliveryFailures == 0 {
		t.Errorf("hop failures %d, retransmits %d, delivery failures %d: the silence went unnoticed",
			cnt.HopFailures, cnt.HopRetransmits, cnt.Route.DeliveryFailures)
	}
	if next, ok := src.routeVia(hub.ID()); !ok || next != c.ID() {
		t.Errorf("src's route to the hub goes through %s, want c", next)
	}
}
