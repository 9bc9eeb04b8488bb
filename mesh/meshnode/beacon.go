package meshnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// A beacon announces a node on a multicast link so that neighbours dial it:
//
//	0xB1 | node id [8] | port u16 | home length u8 | home
//
// It is not signed: it only makes the receiver start a handshake with the
// sender's address and the given port, and the handshake and the
// certificate decide whether a link comes up. A forged beacon costs the
// receiver one rate-limited handshake attempt.
const (
	beaconMagic     = 0xB1
	beaconHeaderLen = 1 + 8 + 2 + 1
	maxBeaconLen    = beaconHeaderLen + homemesh.MaxIDLen
	// maxBeaconTried bounds the per-node dial times remembered for rate
	// limiting beacons; the map is emptied when full.
	maxBeaconTried = 1024
	// beaconDialRate bounds the handshakes beacons start per second, so
	// that beacons forged with ever new node ids cannot make the node spray
	// handshakes.
	beaconDialRate = 10
)

// beacon is what a beacon says.
type beacon struct {
	ID   route.NodeID
	Port uint16
	Home string
}

func (b beacon) append(buf []byte) []byte {
	buf = append(buf, beaconMagic)
	buf = append(buf, b.ID[:]...)
	buf = binary.BigEndian.AppendUint16(buf, b.Port)
	buf = append(buf, byte(len(b.Home)))
	return append(buf, b.Home...)
}

var errNotBeacon = errors.New("not a beacon")

// parseBeacon parses a beacon strictly: the exact length, a non-zero port
// and node id, and a valid home id.
func parseBeacon(b []byte) (beacon, error) {
	var bc beacon
	if len(b) < beaconHeaderLen || b[0] != beaconMagic {
		return bc, errNotBeacon
	}
	copy(bc.ID[:], b[1:9])
	bc.Port = binary.BigEndian.Uint16(b[9:11])
	homeLen := int(b[11])
	if len(b) != beaconHeaderLen+homeLen {
		return bc, fmt.Errorf("beacon of %d bytes for a home of %d", len(b), homeLen)
	}
	bc.Home = string(b[beaconHeaderLen:])
	switch {
	case bc.ID == (route.NodeID{}):
		return bc, errors.New("beacon: zero node id")
	case bc.Port == 0:
		return bc, errors.New("beacon: port 0")
	case !homemesh.ValidID(bc.Home):
		return bc, errors.New("beacon: invalid home id")
	}
	return bc, nil
}

// beaconConn is one multicast interface: a socket that has joined the
// group there, and one bound to the interface's address to send from, so
// that beacons leave on that interface with its address as their source.
type beaconConn struct {
	iface *net.Interface
	conn  *net.UDPConn // receives the group's datagrams
	send  *net.UDPConn
}

func listenBeacons(name string, group *net.UDPAddr) (*beaconConn, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	local, err := interfaceAddr(ifi, group.IP.To4() != nil)
	if err != nil {
		return nil, err
	}
	network := "udp6"
	if group.IP.To4() != nil {
		network = "udp4"
	}
	conn, err := net.ListenMulticastUDP(network, ifi, group)
	if err != nil {
		return nil, err
	}
	send, err := net.ListenUDP(network, &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &beaconConn{iface: ifi, conn: conn, send: send}, nil
}

// interfaceAddr returns the interface's first address of the family (for
// IPv6 a link-local one, where multicast beacons stay).
func interfaceAddr(ifi *net.Interface, v4 bool) (*net.UDPAddr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		switch {
		case v4 && ipn.IP.To4() != nil:
			return &net.UDPAddr{IP: ipn.IP}, nil
		case !v4 && ipn.IP.To4() == nil && ipn.IP.IsLinkLocalUnicast():
			return &net.UDPAddr{IP: ipn.IP, Zone: ifi.Name}, nil
		}
	}
	return nil, fmt.Errorf("interface %s has no address for the multicast group's family", ifi.Name)
}

// readBeacons hands what arrives on a multicast socket to the node
// goroutine, marked as beacons.
func (n *Node) readBeacons(bc *beaconConn, rx chan<- datagram, done <-chan struct{}) {
	buf := make([]byte, 2048)
	for {
		size, from, err := bc.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
				continue
			}
		}
		if size > maxBeaconLen {
			size = maxBeaconLen + 1 // parseBeacon refuses it
		}
		b := append([]byte(nil), buf[:size]...)
		select {
		case rx <- datagram{addr: canonical(from), b: b, beacon: true}:
		case <-done:
			return
		}
	}
}

// beaconState is when beacons next go out and when each node was last
// dialled because of one.
type beaconState struct {
	next  time.Time
	tried map[route.NodeID]time.Time
	dials tokenBucket
}

// sendBeacons sends this node's beacon on every multicast interface when
// due. The node goroutine writes them itself: they are few and small.
func (n *Node) sendBeacons(now time.Time) {
	if len(n.mcast) == 0 || now.Before(n.beacons.next) {
		return
	}
	n.beacons.next = now.Add(n.cfg.BeaconInterval)
	msg := beacon{ID: n.self.ID, Port: uint16(n.addr.Port), Home: n.self.Home}.append(nil)
	for _, bc := range n.mcast {
		if _, err := bc.send.WriteToUDP(msg, n.cfg.group); err != nil {
			n.log.Debug("mesh beacon not sent", "interface", bc.iface.Name, "err", err)
		}
	}
}

// onBeacon dials the sender of a beacon of this home that is not a
// neighbour yet, at most once per BeaconInterval per node id.
func (n *Node) onBeacon(now time.Time, d datagram) {
	bc, err := parseBeacon(d.b)
	switch {
	case err != nil:
		n.c.reject(RejectBeaconMalformed, 1)
		return
	case bc.Home != n.self.Home:
		n.c.reject(RejectBeaconForeign, 1)
		return
	case bc.ID == n.self.ID:
		return // our own, looped back
	}
	for _, l := range n.links {
		if l.up && l.peer.ID == bc.ID {
			return
		}
	}
	addr := netip.AddrPortFrom(d.addr.Addr(), bc.Port)
	if n.byAddr[addr] != nil {
		return
	}
	if last, ok := n.beacons.tried[bc.ID]; ok && now.Sub(last) < n.cfg.BeaconInterval {
		n.c.reject(RejectBeaconRate, 1)
		return
	}
	if !n.beacons.dials.take(now, beaconDialRate, beaconDialRate) {
		n.c.reject(RejectBeaconRate, 1)
		return
	}
	if len(n.beacons.tried) >= maxBeaconTried {
		clear(n.beacons.tried)
	}
	n.beacons.tried[bc.ID] = now
	n.log.Debug("mesh beacon", "peer", bc.ID.String(), "addr", addr.String())
	n.dial(now, addr)
}
