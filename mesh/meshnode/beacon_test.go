package meshnode

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// multicastInterface returns an up, multicast-capable interface and its
// address of the family (link-local for IPv6), or skips the test.
func multicastInterface(t *testing.T, v4 bool) (*net.Interface, *net.UDPAddr) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Skipf("no interfaces: %v", err)
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		if a, err := interfaceAddr(&ifi, v4); err == nil {
			return &ifi, a
		}
	}
	t.Skip("no multicast-capable interface with an address of the family")
	return nil, nil
}

// freePort returns a UDP port that is free.
func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func TestBeaconsFindNeighbours(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v4    bool
		group string
	}{
		{"ipv4", true, "224.0.0.114"},
		{"ipv6", false, "ff02::114"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ifi, addr := multicastInterface(t, tc.v4)
			group := net.JoinHostPort(tc.group, fmt.Sprint(freePort(t)))
			home := newTestHome(t, "home")
			others := newTestHome(t, "others")
			beaconing := func(c *Config) {
				c.Listen = addr.String()
				c.Multicast = []string{ifi.Name}
				c.MulticastGroup = group
				c.BeaconInterval = 50 * time.Millisecond
			}
			a := newNode(t, home, link.RoleHub, beaconing)
			b := newNode(t, home, link.RoleRouter, beaconing)
			stranger := newNode(t, others, link.RoleRouter, beaconing)
			for _, n := range []*testNode{a, b, stranger} {
				n.start()
			}
			hmtest.WaitFor(t, waitLong, "a link found by beacons", func() bool {
				return a.hasNeighbour(b.ID()) && b.hasNeighbour(a.ID())
			})
			sendUntil(t, b, a, []byte("found you"))
			hmtest.WaitFor(t, waitLong, "the stranger's beacons ignored", func() bool {
				return a.Topology().Counters.Rejected[RejectBeaconForeign] > 0
			})
			if len(stranger.Topology().Neighbours) != 0 {
				t.Fatal("a stranger linked through beacons")
			}
		})
	}
}

func TestBeaconFormat(t *testing.T) {
	bc := beacon{ID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Port: 4790, Home: "home"}
	b := bc.append(nil)
	want := []byte{0xB1, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xB6, 4, 'h', 'o', 'm', 'e'}
	if string(b) != string(want) {
		t.Fatalf("beacon %x, want %x", b, want)
	}
	if got, err := parseBeacon(b); err != nil || got != bc {
		t.Fatalf("parse: %+v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"empty":      nil,
		"not beacon": {0xB2, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xB6, 4, 'h', 'o', 'm', 'e'},
		"short home": {0xB1, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xB6, 5, 'h', 'o', 'm', 'e'},
		"trailing":   append(append([]byte(nil), want...), 0),
		"port 0":     {0xB1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 4, 'h', 'o', 'm', 'e'},
		"zero id":    {0xB1, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0xB6, 4, 'h', 'o', 'm', 'e'},
		"bad home":   {0xB1, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xB6, 4, 'H', 'o', 'm', 'e'},
		"empty home": {0xB1, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xB6, 0},
	} {
		if _, err := parseBeacon(bad); err == nil {
			t.Errorf("%s: accepted %x", name, bad)
		}
	}
}

func TestForgedBeaconsBounded(t *testing.T) {
	ifi, addr := multicastInterface(t, true)
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 114), Port: freePort(t)}
	home := newTestHome(t, "home")
	n := startNode(t, home, link.RoleRouter, func(c *Config) {
		c.Listen = addr.String()
		c.Multicast = []string{ifi.Name}
		c.MulticastGroup = group.String()
		c.BeaconInterval = time.Hour // so the rate limit, not the interval, decides
	})
	sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: addr.IP})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	const forged = 200
	for i := range forged {
		// Every beacon names another node, and a port where nobody listens.
		bc := beacon{ID: route.NodeID{0xEE, byte(i >> 8), byte(i)}, Port: uint16(freePort(t)), Home: "home"}
		if _, err := sender.WriteToUDP(bc.append(nil), group); err != nil {
			t.Fatal(err)
		}
	}
	sender.WriteToUDP([]byte{beaconMagic, 1}, group)
	hmtest.WaitFor(t, waitLong, "the forged beacons rate limited", func() bool {
		r := n.Topology().Counters.Rejected
		return r[RejectBeaconRate] > 0 && r[RejectBeaconMalformed] > 0 && r[RejectBeaconRate]+uint64(n.linkCount()) >= forged/2
	})
	if held := n.linkCount(); held > beaconDialRate*3 {
		t.Fatalf("%d sessions dialled for forged beacons", held)
	}
}
