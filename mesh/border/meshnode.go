package border

import (
	"fmt"
	"net"
	"strconv"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
)

// NewMeshNode builds the hub's mesh/meshnode node: the Mesh of a real
// border.
func NewMeshNode(c MeshConfig) (Mesh, error) {
	n, err := meshnode.New(meshnode.Config{
		Identity: c.Identity, Verifier: c.Verifier,
		Listen: c.Listen, Peers: c.Peers, Multicast: c.Multicast, MulticastGroup: c.MulticastGroup,
		Route: c.Route, StateDir: c.StateDir, Log: c.Log,
		OnMessage: c.OnMessage, KeyOf: c.KeyOf,
	})
	if err != nil {
		return nil, err
	}
	return nodeMesh{n}, nil
}

// nodeMesh adapts a meshnode.Node to Mesh.
type nodeMesh struct{ *meshnode.Node }

// Topology converts the node's snapshot to the border's.
func (m nodeMesh) Topology() Topology {
	return convertTopology(m.Node.Topology())
}

func convertTopology(nt meshnode.Topology) Topology {
	self := nt.Self.ID.String()
	t := Topology{Hub: self, Address: nt.Self.Addr, Nodes: []Node{}, Links: []Link{}, Routes: []Route{}}
	for _, nb := range nt.Neighbours {
		if nb.Dead {
			continue
		}
		t.Links = append(t.Links, Link{
			From: self, To: nb.ID.String(), Address: nb.Addr,
			Cost: int(nb.Cost), RxCost: int(nb.RxCost), TxCost: int(nb.TxCost), Quality: nb.Quality, UpSince: nb.UpSince,
		})
		t.Nodes = append(t.Nodes, Node{ID: nb.ID.String(), Role: nb.Role.String(), Reachable: true})
	}
	for _, r := range nt.Routes {
		t.Routes = append(t.Routes, Route{
			Destination: r.Dest.String(), NextHop: r.NextHop.String(),
			Metric: int(r.Metric), Seqno: int(r.Seqno), Feasible: r.Feasible, Hub: r.Hub,
		})
	}
	c := nt.Counters
	t.Counters = Counters{
		PacketsIn: c.DatagramsIn, PacketsOut: c.DatagramsOut, BytesIn: c.BytesIn, BytesOut: c.BytesOut,
		Dropped: map[string]uint64{}, Rejected: map[string]uint64{},
		E2EHandshakes: c.E2E.HandshakesCompleted,
	}
	add := func(m map[string]uint64, k string, v uint64) {
		if v > 0 {
			m[k] += v
		}
	}
	add(t.Counters.Dropped, "ttl_expired", c.Route.DataTTLExpired)
	add(t.Counters.Dropped, "no_route", c.Route.DataNoRoute)
	add(t.Counters.Dropped, "not_router", c.Route.DataNotRouter)
	for reason, n := range c.Rejected {
		add(t.Counters.Rejected, reason, n)
	}
	for prefix, lc := range map[string]link.Counters{"": c.Link, "e2e_": c.E2E} {
		add(t.Counters.Rejected, prefix+"replayed", lc.Replayed)
		add(t.Counters.Rejected, prefix+"forged", lc.Forged)
		add(t.Counters.Rejected, prefix+"bad_cert", lc.BadCert)
		add(t.Counters.Rejected, prefix+"foreign_home", lc.ForeignHome)
		add(t.Counters.Rejected, prefix+"revoked", lc.Revoked)
		add(t.Counters.Rejected, prefix+"peer_changed", lc.PeerChanged)
		add(t.Counters.Rejected, prefix+"unknown_key", lc.UnknownKey)
		add(t.Counters.Rejected, prefix+"malformed", lc.Malformed)
		add(t.Counters.Rejected, prefix+"stale_handshake", lc.StaleHandshake)
	}
	for i, n := range c.Route.Rejected {
		add(t.Counters.Rejected, "route_"+route.RejectReason(i).String(), n)
	}
	return t
}

// maxAdvertised bounds the addresses a hub registers with auth.
const maxAdvertised = 16

// resolveListen turns the configured listen address into one with a fixed
// port and the addresses agents can reach it on. The hub's certificate and
// its record in auth come before its socket, so port 0 is resolved by
// binding a free port and releasing it, and an unspecified host by the
// machine's interface addresses (loopback when it has no other).
func resolveListen(listen string, advertise []string) (string, []string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", nil, fmt.Errorf("%q is not host:port: %w", listen, err)
	}
	if port == "0" {
		c, err := net.ListenPacket("udp", listen)
		if err != nil {
			return "", nil, err
		}
		port = strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
		listen = net.JoinHostPort(host, port)
	}
	if len(advertise) > 0 {
		return listen, advertise, nil
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return listen, []string{listen}, nil
	}
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsMulticast() {
			continue
		}
		if len(out) < maxAdvertised {
			out = append(out, net.JoinHostPort(ipn.IP.String(), port))
		}
	}
	if len(out) == 0 {
		out = []string{net.JoinHostPort("127.0.0.1", port)}
	}
	return listen, out, nil
}
