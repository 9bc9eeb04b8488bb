package link

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/homemesh/homemesh/mesh/route"
)

// e2eNet is a few nodes of one home with their E2E layers, and a relay
// between them that records every data packet it forwards.
type e2eNet struct {
	t     *testing.T
	nodes map[route.NodeID]*E2E
	seen  [][]byte
}

func newE2ENet(t *testing.T, home *testHome, n int, tweak func(*Config)) (*e2eNet, []*Endpoint) {
	keys := map[route.NodeID][]byte{}
	lookup := func(id route.NodeID) ([]byte, bool) { k, ok := keys[id]; return k, ok }
	net := &e2eNet{t: t, nodes: map[route.NodeID]*E2E{}}
	var eps []*Endpoint
	for range n {
		ep := home.node(t, RoleRouter, tweak)
		keys[ep.ID()] = ep.static.Public
		net.nodes[ep.ID()] = ep.NewE2E(lookup)
		eps = append(eps, ep)
	}
	return net, eps
}

// carry relays msgs from src to dst and every answer back, until quiet,
// and returns the plaintexts each end received.
func (n *e2eNet) carry(now time.Time, src, dst route.NodeID, msgs [][]byte) map[route.NodeID][][]byte {
	n.t.Helper()
	got := map[route.NodeID][][]byte{}
	for round := 0; len(msgs) > 0; round++ {
		if round > 20 {
			n.t.Fatal("ends keep talking")
		}
		var back [][]byte
		for _, m := range msgs {
			// The relay gets a route data packet and sees its header.
			packet := route.AppendData(nil, route.DataHeader{Src: src, Dst: dst, TTL: 16, Flow: 7}, m)
			n.seen = append(n.seen, packet)
			h, payload, err := route.ParseData(packet)
			if err != nil {
				n.t.Fatal(err)
			}
			send, plain, err := n.nodes[h.Dst].Open(now, h.Src, payload)
			if err != nil {
				n.t.Fatalf("%s opens a message from %s: %v", dst, src, err)
			}
			if plain != nil {
				got[dst] = append(got[dst], plain)
			}
			back = append(back, send...)
		}
		msgs, src, dst = back, dst, src
	}
	return got
}

func TestE2E(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 3, nil)
	a, b, c := eps[0].ID(), eps[1].ID(), eps[2].ID()
	ea, eb, ec := net.nodes[a], net.nodes[b], net.nodes[c]
	secret := []byte("the front door code is 4711")

	msgs, err := ea.Seal(t0, b, secret)
	if err != nil {
		t.Fatal(err)
	}
	got := net.carry(t0, a, b, msgs)
	if len(got[b]) != 1 || !bytes.Equal(got[b][0], secret) {
		t.Fatalf("b got %q", got[b])
	}
	if p, ok := eb.Peer(a); !ok || p.ID != a {
		t.Fatalf("b's peer %+v, %v", p, ok)
	}
	now := t0.Add(time.Second)
	msgs, err = eb.Seal(now, a, []byte("ack"))
	if err != nil {
		t.Fatal(err)
	}
	if got := net.carry(now, b, a, msgs); len(got[a]) != 1 || string(got[a][0]) != "ack" {
		t.Fatalf("a got %q", got[a])
	}

	t.Run("relay cannot read", func(t *testing.T) {
		for _, m := range net.seen {
			if bytes.Contains(m, secret) || bytes.Contains(m, []byte("ack")) {
				t.Fatalf("plaintext visible to the relay in %x", m)
			}
		}
	})

	msg, err := ea.Seal(now, b, secret)
	if err != nil || len(msg) != 1 {
		t.Fatalf("Seal: %v, %d messages", err, len(msg))
	}
	t.Run("relay cannot alter", func(t *testing.T) {
		before := eb.Counters()
		for i := range msg[0] {
			forged := bytes.Clone(msg[0])
			forged[i] ^= 0x04
			if _, plain, err := eb.Open(now, a, forged); err == nil || plain != nil {
				t.Fatalf("byte %d altered: accepted (%v)", i, err)
			}
		}
		// Cut short or lengthened.
		for _, forged := range [][]byte{msg[0][:len(msg[0])-1], append(bytes.Clone(msg[0]), 0)} {
			if _, plain, err := eb.Open(now, a, forged); err == nil || plain != nil {
				t.Fatal("resized message accepted")
			}
		}
		after := eb.Counters()
		if after.Forged-before.Forged < uint64(len(msg[0])-transportHeaderLen) || after.PayloadsDelivered != before.PayloadsDelivered {
			t.Fatalf("counters before %+v after %+v", before, after)
		}
	})
	t.Run("relay cannot re-attribute or redirect", func(t *testing.T) {
		// Claimed to come from c: b has no channel with c.
		if _, _, err := eb.Open(now, c, msg[0]); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("re-attributed: %v", err)
		}
		// Delivered to c instead of b.
		if _, _, err := ec.Open(now, a, msg[0]); err == nil {
			t.Fatal("redirected message accepted")
		}
		// A handshake from a, claimed to come from c.
		init, err := ea.Seal(now, c, []byte("hello c"))
		if err != nil {
			t.Fatal(err)
		}
		// Delivered to b: it is encrypted to c's key.
		if _, _, err := eb.Open(now, c, init[0]); !errors.Is(err, ErrForged) {
			t.Fatalf("handshake for c delivered to b: %v", err)
		}
		if _, _, err := ec.Open(now, b, init[0]); !errors.Is(err, ErrPeerChanged) {
			t.Fatalf("handshake of a as b: %v", err)
		}
	})
	t.Run("genuine message still accepted once", func(t *testing.T) {
		if _, plain, err := eb.Open(now, a, msg[0]); err != nil || !bytes.Equal(plain, secret) {
			t.Fatalf("genuine: %q, %v", plain, err)
		}
		if _, _, err := eb.Open(now, a, msg[0]); !errors.Is(err, ErrReplayed) {
			t.Fatalf("replay: %v", err)
		}
		if eb.Counters().Replayed != 1 {
			t.Fatalf("counters %+v", eb.Counters())
		}
	})
}

func TestE2EForeignHomeRefused(t *testing.T) {
	home, other := newHome(t, "home"), newHome(t, "other")
	net, eps := newE2ENet(t, home, 1, nil)
	b := eps[0]
	stranger, err := New(Config{Identity: other.identity(t, RoleRouter), Verifier: other.verifier}, t0)
	if err != nil {
		t.Fatal(err)
	}
	es := stranger.NewE2E(func(route.NodeID) ([]byte, bool) { return b.static.Public, true })
	init, err := es.Seal(t0, b.ID(), []byte("let me in"))
	if err != nil {
		t.Fatal(err)
	}
	eb := net.nodes[b.ID()]
	if _, _, err := eb.Open(t0, stranger.ID(), init[0]); !errors.Is(err, ErrForeignHome) {
		t.Fatalf("foreign handshake: %v", err)
	}
	if eb.Counters().ForeignHome != 1 || eb.Len() != 0 {
		t.Fatalf("counters %+v, %d channels", eb.Counters(), eb.Len())
	}
}

func TestE2EUnknownDestination(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 1, nil)
	if _, err := net.nodes[eps[0].ID()].Seal(t0, route.NodeID{1}, []byte("x")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Seal to an unknown node: %v", err)
	}
}

func TestE2ERekeyAndExpiry(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 2, nil)
	a, b := eps[0].ID(), eps[1].ID()
	ea, eb := net.nodes[a], net.nodes[b]
	now := t0
	delivered := 0
	// Traffic every 10 s for 10 minutes: several rekeys, nothing lost.
	for i := range 60 {
		now = now.Add(10 * time.Second)
		for _, m := range ea.Tick(now) {
			net.carry(now, a, m.Peer, [][]byte{m.Payload})
		}
		for _, m := range eb.Tick(now) {
			net.carry(now, b, m.Peer, [][]byte{m.Payload})
		}
		msgs, err := ea.Seal(now, b, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		delivered += len(net.carry(now, a, b, msgs)[b])
	}
	if delivered != 60 {
		t.Fatalf("delivered %d of 60", delivered)
	}
	if r := ea.Counters().Rekeys; r < 3 {
		t.Fatalf("%d rekeys in 10 minutes", r)
	}
	// Idle past RejectAfter: both ends forget the channel.
	now = now.Add(4 * time.Minute)
	ea.Tick(now)
	eb.Tick(now)
	if ea.Len()+eb.Len() != 0 {
		t.Fatalf("channels kept: %d, %d", ea.Len(), eb.Len())
	}
}

// TestE2EHandshakeLossAndQueue: payloads sealed before the channel is up
// wait, within MaxE2EQueue, and go out in order once the handshake,
// repeated after its first message was lost, completes.
func TestE2EHandshakeLossAndQueue(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 2, nil)
	a, b := eps[0].ID(), eps[1].ID()
	ea := net.nodes[a]
	var lost [][]byte
	for i := range 20 {
		msgs, err := ea.Seal(t0, b, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, msgs...)
	}
	if len(lost) != 1 || ea.Counters().QueueDropped != 4 {
		t.Fatalf("%d messages before the handshake, counters %+v", len(lost), ea.Counters())
	}
	now := ea.Deadline()
	if now != t0.Add(time.Second) {
		t.Fatalf("retry at %v", now)
	}
	var retry [][]byte
	for _, m := range ea.Tick(now) {
		retry = append(retry, m.Payload)
	}
	got := net.carry(now, a, b, retry)[b]
	if len(got) != 16 {
		t.Fatalf("delivered %d of 16", len(got))
	}
	for i, p := range got {
		if p[0] != byte(i+4) {
			t.Fatalf("payload %d is %d", i, p[0])
		}
	}
}

// TestE2ECrossed: both ends start a channel to each other at once.
func TestE2ECrossed(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 2, nil)
	a, b := eps[0].ID(), eps[1].ID()
	ea, eb := net.nodes[a], net.nodes[b]
	ma, err := ea.Seal(t0, b, []byte("from a"))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := eb.Seal(t0, a, []byte("from b"))
	if err != nil {
		t.Fatal(err)
	}
	// Both first messages cross on the way; then the answers flow.
	var toA, toB [][]byte
	var atA, atB [][]byte
	for _, m := range ma {
		s, p, err := eb.Open(t0, a, m)
		if err != nil {
			t.Fatal(err)
		}
		toA = append(toA, s...)
		if p != nil {
			atB = append(atB, p)
		}
	}
	for _, m := range mb {
		s, p, err := ea.Open(t0, b, m)
		if err != nil {
			t.Fatal(err)
		}
		toB = append(toB, s...)
		if p != nil {
			atA = append(atA, p)
		}
	}
	gotA := net.carry(t0, b, a, toA)
	gotB := net.carry(t0, a, b, toB)
	all := func(ps ...[][]byte) (n int) {
		for _, p := range ps {
			n += len(p)
		}
		return n
	}
	if all(atA, gotA[a], gotB[a]) != 1 || all(atB, gotA[b], gotB[b]) != 1 {
		t.Fatalf("a got %q %q %q, b got %q %q %q", atA, gotA[a], gotB[a], atB, gotA[b], gotB[b])
	}
}

// TestE2ELargestPayload: the largest end-to-end payload, sealed and put in
// a route data packet, is a payload a link carries.
func TestE2ELargestPayload(t *testing.T) {
	home := newHome(t, "home")
	net, eps := newE2ENet(t, home, 2, nil)
	a, b := eps[0].ID(), eps[1].ID()
	if got := net.carry(t0, a, b, must(net.nodes[a].Seal(t0, b, []byte("open"))))[b]; len(got) != 1 {
		t.Fatal("no channel")
	}
	msgs, err := net.nodes[a].Seal(t0, b, make([]byte, MaxE2EPayload))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Seal: %v, %d messages", err, len(msgs))
	}
	if n := len(route.AppendData(nil, route.DataHeader{Src: a, Dst: b}, msgs[0])); n != MaxPayload {
		t.Fatalf("data packet of %d bytes, link payloads up to %d", n, MaxPayload)
	}
	if _, err := net.nodes[a].Seal(t0, b, make([]byte, MaxE2EPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Seal over the limit: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
