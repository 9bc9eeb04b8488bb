package meshnode

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// DefaultPort is the UDP port a node listens on when Config.Listen names
// none, and the port of DefaultMulticastGroup.
const DefaultPort = 4790

// DefaultMulticastGroup is where beacons go when Config.MulticastGroup is
// empty: the IPv4 link-local scope, so beacons never leave the link.
const DefaultMulticastGroup = "224.0.0.114:4790"

// Config configures a Node. Identity and Verifier are required; everything
// else has a default.
type Config struct {
	// Identity is the node's static X25519 key and its DER node
	// certificate from the home CA; the certificate's role (hub, router,
	// leaf) decides what the node does in the mesh.
	Identity link.Identity
	// Verifier holds the home CA(s): only this home's nodes get a link
	// or an end-to-end channel.
	Verifier *link.Verifier
	// Listen is the UDP address of the node's one socket ("127.0.0.1:0" in
	// tests); empty means every address, port DefaultPort.
	Listen string
	// Peers are neighbour addresses (host:port) to link with, redialled
	// with backoff whenever the link is lost. Names are resolved once, by
	// New.
	Peers []string
	// Multicast names the network interfaces on which the node sends and
	// listens for beacons to find neighbours; empty: none.
	Multicast []string
	// MulticastGroup is the UDP group address of beacons
	// (DefaultMulticastGroup when empty); tests pass their own port.
	MulticastGroup string
	// BeaconInterval is how often a beacon goes out on each multicast
	// interface. Default 5 s.
	BeaconInterval time.Duration
	// Route tunes the routing core (HelloInterval …); ID, Hub and Leaf are
	// filled from Identity and Seqno from StateDir.
	Route route.Config
	// Link tunes the link layer (MTU, rekeying, handshake timers …);
	// Identity and Verifier are filled from this Config, and MaxE2EQueue
	// (payloads held per destination while its end-to-end handshake runs)
	// defaults to 256 rather than link's 16.
	Link link.Config
	// StateDir is the directory where the routing seqno is persisted, so a
	// restarted node's routes win at once; "" means not persisted.
	StateDir string
	// MaxLinks bounds the link sessions held at once, established or not.
	// Default 64.
	MaxLinks int
	// Hubs are the hubs this node was told of at pairing. A leaf holds no
	// routes, so it cannot find a hub itself: NearestHub reports its parent
	// if that is a hub, else the first of Hubs once it has a parent to
	// reach it through. Routers find hubs in their routes and ignore Hubs.
	Hubs []route.NodeID
	// Log receives the node's log lines; nil discards them.
	Log *slog.Logger
	// OnMessage receives each end-to-end payload delivered to this node,
	// with the verified certificate identity of its source (home, node id,
	// role). It is called on the node goroutine without the node's lock
	// held, so it may call Send, Topology and NearestHub, but it must not
	// block: hand longer work to another goroutine. The payload is the
	// callee's to keep.
	OnMessage func(from link.Peer, payload []byte)
	// KeyOf returns the static X25519 public key of a destination this node
	// wants to reach end to end (learned at pairing, or from the registry);
	// ok=false: unknown. Keys of neighbours and of nodes that opened an
	// end-to-end channel to this one are learned without it. It is called
	// on the node goroutine with the node's lock held: it must be quick and
	// must not call the Node.
	KeyOf func(id route.NodeID) (key []byte, ok bool)
}

// Limits that are not worth a Config field: what a peer or a LAN attacker
// can make a node hold or do is bounded by them.
const (
	defaultMaxLinks = 64
	// maxPendingAccepts bounds sessions accepted from a handshake that have
	// not completed: an attacker on the LAN can spray first messages from
	// many addresses, and each costs a Noise state.
	maxPendingAccepts = 16
	// acceptRate and acceptBurst bound how many first handshake messages
	// from addresses without a session are answered per second: each costs
	// Diffie-Hellman operations and perhaps a certificate check.
	acceptRate  = 50
	acceptBurst = 50
	// defaultE2EQueue is link.Config.MaxE2EQueue unless Config.Link sets
	// it.
	defaultE2EQueue = 256
	// maxSendQueue bounds Send calls waiting for the node goroutine.
	maxSendQueue = 4096
	// maxRouteQueue bounds data packets originated here that wait for a
	// route, per destination and in total; maxRouteWait is how long they
	// wait before they are dropped.
	maxRouteQueuePerDst = 64
	maxRouteQueue       = 1024
	maxRouteQueueBytes  = 4 << 20
	maxRouteWait        = 10 * time.Second
	// maxRelayQueue bounds the packets this node relays that wait for a
	// route: for a moment after a failure a relay may have no feasible
	// route while it asks for a new seqno. Smaller than the queue of its
	// own packets and apart from it, so that other nodes' traffic cannot
	// crowd this node's own out.
	maxRelayQueuePerDst = 32
	maxRelayQueue       = 256
	maxRelayQueueBytes  = 1 << 20
	maxRelayWait        = 5 * time.Second
	// maxLearnedKeys bounds the static keys learned from verified
	// certificates; the cache is emptied when full.
	maxLearnedKeys = 4096
	// minRedial and maxRedial bound the wait before a lost configured peer
	// is dialled again; it doubles on every failed attempt.
	minRedial = 100 * time.Millisecond
	maxRedial = 30 * time.Second
	// rxQueue is the depth of the channel from the socket reader to the
	// node goroutine; beyond it the kernel's socket buffer holds datagrams.
	rxQueue = 256
	// socketBuffer is the socket buffer size asked for, so bursts (a
	// fragmented 64 KiB payload is 55 datagrams) are not lost to a small
	// default.
	socketBuffer = 4 << 20
)

// settings is a checked Config with its defaults applied and its addresses
// resolved.
type settings struct {
	Config
	listen *net.UDPAddr
	peers  []netip.AddrPort
	group  *net.UDPAddr
	role   link.Role
}

func (cfg Config) check() (settings, error) {
	s := settings{Config: cfg}
	if cfg.Verifier == nil {
		return s, homemesh.Invalid("verifier", "is required")
	}
	if cfg.Identity.Key == nil {
		return s, homemesh.Invalid("identity.key", "is required")
	}
	if len(cfg.Identity.Cert) == 0 {
		return s, homemesh.Invalid("identity.cert", "is required")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = fmt.Sprintf(":%d", DefaultPort)
	}
	var err error
	if s.listen, err = net.ResolveUDPAddr("udp", listen); err != nil {
		return s, homemesh.Invalid("listen", "%q is not a UDP address: %v", cfg.Listen, err)
	}
	for i, p := range cfg.Peers {
		a, err := net.ResolveUDPAddr("udp", p)
		if err != nil || a.Port == 0 || a.IP == nil {
			return s, homemesh.Invalid(fmt.Sprintf("peers[%d]", i), "%q is not a host:port UDP address", p)
		}
		ap := canonical(a.AddrPort())
		if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return s, homemesh.Invalid(fmt.Sprintf("peers[%d]", i), "%q is not a unicast address", p)
		}
		s.peers = append(s.peers, ap)
	}
	group := cfg.MulticastGroup
	if group == "" {
		group = DefaultMulticastGroup
	}
	if len(cfg.Multicast) > 0 {
		g, err := net.ResolveUDPAddr("udp", group)
		if err != nil || g.IP == nil || !g.IP.IsMulticast() || g.Port == 0 {
			return s, homemesh.Invalid("multicast_group", "%q is not a multicast group address with a port", group)
		}
		s.group = g
		for i, name := range cfg.Multicast {
			if _, err := net.InterfaceByName(name); err != nil {
				return s, homemesh.Invalid(fmt.Sprintf("multicast[%d]", i), "no interface %q: %v", name, err)
			}
		}
	}
	if s.BeaconInterval == 0 {
		s.BeaconInterval = 5 * time.Second
	}
	if s.BeaconInterval < 10*time.Millisecond {
		return s, homemesh.Invalid("beacon_interval", "must be at least 10ms")
	}
	if s.MaxLinks == 0 {
		s.MaxLinks = defaultMaxLinks
	}
	if s.MaxLinks < 1 || s.MaxLinks > 1<<16 {
		return s, homemesh.Invalid("max_links", "must be 1 to 65536")
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// canonical returns ap with an IPv4-mapped IPv6 address unmapped, so that a
// peer has one key in the node's maps whatever socket family it came on.
func canonical(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
