package meshnode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// linkFrameTransport is the first byte of a link transport frame
// (mesh/link's wire format).
const linkFrameTransport = 0x14

func TestForeignNodesNeverLink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		home    string // the stranger's home name
		counted func(link.Counters) uint64
	}{
		{"another home", "other", func(c link.Counters) uint64 { return c.ForeignHome }},
		// A CA that calls its home by our home's name is still not our CA.
		{"another CA of the same name", "home", func(c link.Counters) uint64 { return c.BadCert }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := newTestHome(t, "home")
			strangers := newTestHome(t, tc.home)
			// The local node dials the stranger, whose certificate comes in
			// the handshake's second message.
			stranger := startNode(t, strangers, link.RoleRouter, nil)
			local := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(stranger) })
			hmtest.WaitFor(t, waitLong, "the stranger's certificate refused", func() bool {
				return tc.counted(local.Topology().Counters.Link) > 0
			})
			// The stranger dials the local node with IK, its certificate in
			// the first message.
			_, init, err := stranger.ep.Initiate(time.Now(), local.cfg.Identity.Key.PublicKey().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			raw, err := net.DialUDP("udp", nil, local.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			before := tc.counted(local.Topology().Counters.Link)
			raw.Write(init)
			hmtest.WaitFor(t, waitLong, "the stranger's handshake refused", func() bool {
				c := local.Topology().Counters
				return tc.counted(c.Link) > before && c.Rejected[RejectHandshake] > 0
			})
			top := local.Topology()
			if len(top.Neighbours) != 0 || top.Counters.LinksUp != 0 {
				t.Fatalf("a link with a stranger: %+v, links up %d", top.Neighbours, top.Counters.LinksUp)
			}
			if len(stranger.Topology().Neighbours) != 0 {
				t.Fatal("the stranger has a link")
			}
		})
	}
}

// proxy relays datagrams between a node that dials front and the node at
// back's target, keeping a copy of what goes towards the target, so tests
// can replay and tamper with frames as an attacker on the path would.
type proxy struct {
	front, back *net.UDPConn
	target      netip.AddrPort

	mu      sync.Mutex
	dialer  netip.AddrPort // the node that dialled front
	towards [][]byte       // datagrams relayed to target
}

func newProxy(t *testing.T, target *net.UDPAddr) *proxy {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	p := &proxy{front: listen(), back: listen(), target: target.AddrPort()}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := p.front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			d := bytes.Clone(buf[:n])
			p.mu.Lock()
			p.dialer = from
			p.towards = append(p.towards, d)
			p.mu.Unlock()
			p.back.WriteToUDPAddrPort(d, p.target)
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := p.back.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.dialer
			p.mu.Unlock()
			p.front.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	return p
}

// lastTransport returns the last transport frame relayed to the target.
func (p *proxy) lastTransport() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.towards) - 1; i >= 0; i-- {
		if d := p.towards[i]; len(d) > 0 && d[0] == linkFrameTransport {
			return bytes.Clone(d)
		}
	}
	return nil
}

// inject sends b to the target as if it came from the dialling node.
func (p *proxy) inject(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.back.WriteToUDPAddrPort(b, p.target); err != nil {
		t.Fatal(err)
	}
}

func TestReplayedAndForgedFramesRefused(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	px := newProxy(t, hub.Addr())
	dev := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = []string{px.front.LocalAddr().String()} })
	sendUntil(t, dev, hub, []byte("through the proxy"))

	frame := px.lastTransport()
	if frame == nil {
		t.Fatal("no transport frame went through the proxy")
	}
	before := hub.Topology().Counters
	px.inject(t, frame)
	hmtest.WaitFor(t, waitLong, "the replayed frame refused", func() bool {
		return hub.Topology().Counters.Link.Replayed > before.Link.Replayed
	})

	// A forged frame needs a counter the window has not seen, or it is
	// refused as a replay before its authentication is checked.
	for i, tamper := range []func([]byte){
		func(b []byte) {},                      // a new counter alone: the nonce and associated data differ
		func(b []byte) { b[len(b)-1] ^= 0x01 }, // and the tag
		func(b []byte) { b[len(b)/2] ^= 0x80 }, // and the ciphertext
		func(b []byte) { b[1] ^= 0x01 },        // and the key id
	} {
		forged := bytes.Clone(frame)
		counter := binary.BigEndian.Uint64(forged[2:10])
		binary.BigEndian.PutUint64(forged[2:10], counter+1000+uint64(i))
		tamper(forged)
		c := hub.Topology().Counters.Link
		px.inject(t, forged)
		hmtest.WaitFor(t, waitLong, "a forged frame refused", func() bool {
			now := hub.Topology().Counters.Link
			return now.Forged+now.UnknownKey > c.Forged+c.UnknownKey
		})
	}
	// Garbage that is not a frame, on the session's address and from an
	// address without a session.
	malformed := hub.Topology().Counters.Link.Malformed
	px.inject(t, []byte{0x7f, 1, 2, 3})
	hmtest.WaitFor(t, waitLong, "a malformed frame refused", func() bool {
		return hub.Topology().Counters.Link.Malformed > malformed
	})
	raw, err := net.DialUDP("udp", nil, hub.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write(frame)
	raw.Write(nil)
	hmtest.WaitFor(t, waitLong, "datagrams without a session refused", func() bool {
		r := hub.Topology().Counters.Rejected
		return r[RejectNoSession] > 0 && r[RejectEmptyDatagram] > 0
	})

	// None of it took the link down.
	sendUntil(t, dev, hub, []byte("still linked"))
	if c := hub.Topology().Counters; c.LinksDown != 0 {
		t.Errorf("injected frames took the link down: %+v", c)
	}
}

// linkCount returns the number of link sessions n holds.
func (n *Node) linkCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.links)
}

// setForwardHook sets the hook that sees every packet n relays.
func (n *Node) setForwardHook(hook func([]byte)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.forwardHook = hook
}

func TestRelayCannotReadOrAlter(t *testing.T) {
	home := newTestHome(t, "home")
	nodes := line(t, home, 3)
	dst, relay, src := nodes[0], nodes[1], nodes[2]

	var mu sync.Mutex
	var relayed [][]byte
	tamper := false
	relay.setForwardHook(func(p []byte) {
		mu.Lock()
		defer mu.Unlock()
		relayed = append(relayed, bytes.Clone(p))
		if tamper {
			p[len(p)-1] ^= 0x01
		}
	})
	secret := []byte("the door code is 4711, do not tell the relay")
	sendUntil(t, src, dst, secret)
	sendUntil(t, dst, src, []byte("reply: "+string(secret)))
	mu.Lock()
	if len(relayed) == 0 {
		t.Fatal("the relay forwarded nothing")
	}
	for _, p := range relayed {
		if bytes.Contains(p, secret[:16]) || bytes.Contains(p, []byte("4711")) {
			t.Fatalf("the relay saw the plaintext in %x", p)
		}
		h, _, err := route.ParseData(p)
		if err != nil || !(h.Src == src.ID() && h.Dst == dst.ID() || h.Src == dst.ID() && h.Dst == src.ID()) {
			t.Fatalf("relayed %+v, %v", h, err)
		}
	}
	tamper = true
	mu.Unlock()

	before := dst.Topology().Counters
	altered := []byte("open the door")
	if err := src.Send(dst.ID(), altered); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, waitLong, "the altered message refused", func() bool {
		c := dst.Topology().Counters
		return c.E2E.Forged > before.E2E.Forged && c.Rejected[RejectE2E] > before.Rejected[RejectE2E]
	})
	if dst.got(src.ID(), altered) {
		t.Fatal("an altered message was delivered")
	}
	mu.Lock()
	tamper = false
	mu.Unlock()
	sendUntil(t, src, dst, []byte("unaltered again"))

	// A relay that re-attributes a message to itself: the source id is
	// bound into the end-to-end authentication.
	relay.setForwardHook(func(p []byte) {
		if h, _, err := route.ParseData(p); err == nil && h.Dst == dst.ID() {
			id := relay.ID()
			copy(p[1:9], id[:])
		}
	})
	before = dst.Topology().Counters
	reattributed := []byte("from someone else")
	if err := src.Send(dst.ID(), reattributed); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, waitLong, "the re-attributed message refused", func() bool {
		return dst.Topology().Counters.Rejected[RejectE2E] > before.Rejected[RejectE2E]
	})
	if dst.got(src.ID(), reattributed) || dst.got(relay.ID(), reattributed) {
		t.Fatal("a re-attributed message was delivered")
	}
}

// injectOnLink seals payload onto n's up link to peer, as a node that
// crafts its own control packets would.
func (n *Node) injectOnLink(peer route.NodeID, payload []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.links {
		if l.up && l.peer.ID == peer {
			n.sealOn(time.Now(), l, payload)
			select {
			case n.wake <- struct{}{}: // the node goroutine flushes
			default:
			}
			return nil
		}
	}
	return errors.New("no link to peer")
}

// updatePacket is a route control packet with one batch of one update
// (mesh/route's wire format): Serial, then Update.
func updatePacket(serial uint32, seqno, metric uint16, dest route.NodeID) []byte {
	b := []byte{0xC1, 3, 4}
	b = binary.BigEndian.AppendUint32(b, serial)
	b = append(b, 4, 13, 0)
	b = binary.BigEndian.AppendUint16(b, seqno)
	b = binary.BigEndian.AppendUint16(b, metric)
	return append(b, dest[:]...)
}

func TestHijackOfAnotherNodesID(t *testing.T) {
	home := newTestHome(t, "home")
	hub := startNode(t, home, link.RoleHub, nil)
	victim := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	attacker := startNode(t, home, link.RoleRouter, func(c *Config) { c.Peers = peersOf(hub) })
	hmtest.WaitFor(t, waitLong, "the hub's routes to both", func() bool {
		_, v := hub.routeVia(victim.ID())
		_, a := hub.routeVia(attacker.ID())
		return v && a
	})
	routes := hub.Topology().Routes

	before := hub.Topology().Counters.Route.Rejected[route.RejectForeignOrigin]
	// The attacker claims to be the victim: the victim's id at metric 0
	// with a seqno far ahead of the victim's.
	for i := range 3 {
		pkt := updatePacket(uint32(1000+i), victim.Topology().Self.Seqno+100, 0, victim.ID())
		if err := attacker.injectOnLink(hub.ID(), pkt); err != nil {
			t.Fatal(err)
		}
	}
	hmtest.WaitFor(t, waitLong, "the hijack refused", func() bool {
		return hub.Topology().Counters.Route.Rejected[route.RejectForeignOrigin] >= before+3
	})
	if via, ok := hub.routeVia(victim.ID()); !ok || via != victim.ID() {
		t.Fatalf("the hub's route to the victim goes via %s, %v", via, ok)
	}
	after := hub.Topology().Routes
	if !slices.EqualFunc(routes, after, func(a, b RouteInfo) bool {
		return a.Dest == b.Dest && a.NextHop == b.NextHop && a.Seqno == b.Seqno
	}) {
		t.Fatalf("routes changed:\nbefore %+v\nafter  %+v", routes, after)
	}
	sendUntil(t, hub, victim, []byte("still the victim"))
}

func TestHandshakeSprayBounded(t *testing.T) {
	home := newTestHome(t, "home")
	target := startNode(t, home, link.RoleHub, nil)
	spray := newNode(t, home, link.RoleRouter, nil) // only its endpoint is used
	var socks []*net.UDPConn
	for range 3 * maxPendingAccepts {
		c, err := net.DialUDP("udp", nil, target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		socks = append(socks, c)
		_, init, err := spray.ep.Initiate(time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(init)
	}
	hmtest.WaitFor(t, waitLong, "the handshakes over the bound refused", func() bool {
		return target.Topology().Counters.Rejected[RejectHandshakeRate] >= uint64(len(socks)-maxPendingAccepts)
	})
	if held := target.linkCount(); held > maxPendingAccepts {
		t.Fatalf("%d sessions held for unanswered handshakes, bound %d", held, maxPendingAccepts)
	}
}
