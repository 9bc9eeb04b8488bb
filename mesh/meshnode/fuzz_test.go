package meshnode

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

func FuzzParseBeacon(f *testing.F) {
	f.Add(beacon{ID: route.NodeID{1, 2, 3, 4, 5, 6, 7, 8}, Port: 4790, Home: "home"}.append(nil))
	f.Add([]byte{beaconMagic})
	f.Add([]byte{beaconMagic, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xb6, 200, 'h'})
	f.Add(append(beacon{ID: route.NodeID{9}, Port: 1, Home: "x"}.append(nil), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		bc, err := parseBeacon(b)
		if err != nil {
			return
		}
		if got := bc.append(nil); !bytes.Equal(got, b) {
			t.Fatalf("parse then append: %x, want %x", got, b)
		}
		if bc.Port == 0 || bc.ID == (route.NodeID{}) || bc.Home == "" {
			t.Fatalf("accepted %+v", bc)
		}
	})
}

func FuzzParseSeqno(f *testing.F) {
	for _, s := range []string{"0\n", "65535\n", "65536\n", "-1", " 7 ", "", "1e3", "0x10", "00042\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSeqno(b)
		if err != nil {
			return
		}
		again, err := parseSeqno([]byte(strconv.Itoa(int(s)) + "\n"))
		if err != nil || again != s {
			t.Fatalf("%q parsed as %d, which does not round-trip: %d, %v", b, s, again, err)
		}
	})
}

// FuzzNodeInput feeds arbitrary bytes to a node the way the network would:
// as a datagram on an established link's address, as a datagram from an
// address without a session, as a link payload (route control, data or
// link start), and as a beacon. Nothing may panic, and whatever is refused
// must leave the node able to carry a link payload afterwards.
func FuzzNodeInput(f *testing.F) {
	home := newTestHome(f, "home")
	a := newNode(f, home, link.RoleRouter, nil)
	b := newNode(f, home, link.RoleHub, nil)
	now := time.Now()
	// A handshake by hand, so that b holds an up link to a.
	sa, init, err := a.ep.Initiate(now, nil)
	if err != nil {
		f.Fatal(err)
	}
	sb, resp, err := b.ep.Accept(now, init)
	if err != nil {
		f.Fatal(err)
	}
	finish, _, err := sa.Handle(now, resp)
	if err != nil || len(finish) != 1 {
		f.Fatal(err)
	}
	confirm, _, err := sb.Handle(now, finish[0])
	if err != nil {
		f.Fatal(err)
	}
	if _, _, err := sa.Handle(now, confirm[0]); err != nil {
		f.Fatal(err)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	b.mu.Lock()
	l := b.addLink(addr, sb)
	if !b.bringUp(now, l) {
		f.Fatal("link not up")
	}
	b.mu.Unlock()
	frame, err := sa.Seal(now, []byte{0xC1})
	if err != nil {
		f.Fatal(err)
	}

	f.Add([]byte{0xC1, 1, 4, 0, 1, 0, 10})
	f.Add(route.AppendData(nil, route.DataHeader{Src: a.ID(), Dst: b.ID(), TTL: 3}, []byte{0x11, 1}))
	f.Add(route.AppendData(nil, route.DataHeader{Src: a.ID(), Dst: route.NodeID{7}, TTL: 3}, []byte{0x14}))
	f.Add([]byte{startMsg, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(appendAckRequest(nil, 7, route.AppendData(nil, route.DataHeader{Src: a.ID(), Dst: b.ID(), TTL: 3}, []byte{0x11, 1})))
	f.Add([]byte{dataAck, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{dataAck, 0, 0, 0})
	f.Add(frame[0])
	f.Add(init)
	f.Add(beacon{ID: a.ID(), Port: 9, Home: "home"}.append(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		b.mu.Lock()
		defer b.mu.Unlock()
		at := time.Now()
		b.onDatagram(at, datagram{addr: addr, b: bytes.Clone(in)})
		b.onDatagram(at, datagram{addr: netip.MustParseAddrPort("127.0.0.1:11"), b: bytes.Clone(in)})
		b.onDatagram(at, datagram{addr: addr, b: bytes.Clone(in), beacon: true})
		if l.up && b.links[l.id] == l {
			b.onLinkPayload(at, l, bytes.Clone(in))
		}
		b.afterEvent(at)
		b.out, b.delivered = nil, nil
	})
}
