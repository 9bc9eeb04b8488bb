package meshnode

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/link"
)

// multicastInterface returns an up, multicast-capable interface with an
// IPv4 address, or skips the test.
func multicastInterface(t *testing.T) (*net.Interface, net.IP) {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Skipf("no interfaces: %v", err)
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return &ifi, ipn.IP
			}
		}
	}
	t.Skip("no multicast-capable interface with an IPv4 address")
	return nil, nil
}

// freeGroup returns a multicast group address on a UDP port that is free.
func freeGroup(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return fmt.Sprintf("224.0.0.114:%d", c.LocalAddr().(*net.UDPAddr).Port)
}

func TestBeaconsFindNeighbours(t *testing.T) {
	ifi, ip := multicastInterface(t)
	group := freeGroup(t)
	home := newTestHome(t, "home")
	others := newTestHome(t, "others")
	beaconing := func(c *Config) {
		c.Listen = net.JoinHostPort(ip.String(), "0")
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
