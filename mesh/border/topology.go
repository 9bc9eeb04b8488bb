package border

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/meshapp"
)

// Topology is the mesh as one hub sees it: the nodes it knows, its own
// links, its routes and its counters. A distance-vector hub knows the
// first hop and the cost of the route to every node, not the links
// between other nodes, so Links are the hub's own.
type Topology struct {
	// Hub is this hub's node id.
	Hub string `json:"hub"`
	// Address is the hub's UDP address.
	Address string `json:"address"`
	Nodes   []Node `json:"nodes"`
	Links   []Link `json:"links"`
	// Routes are the hub's routes to every node it can reach: the route to
	// the hub as each node's traffic takes it in reverse.
	Routes   []Route  `json:"routes"`
	Counters Counters `json:"counters"`
}

// Node is one node of the mesh.
type Node struct {
	ID string `json:"id"`
	// Role is hub, router or leaf, when known (from a link, an agent's
	// certificate or the routes).
	Role string `json:"role,omitempty"`
	// DeviceID is the registry device of an agent that announced itself.
	DeviceID string `json:"device_id,omitempty"`
	// Reachable says the hub has a route to the node (always true of the
	// hub itself).
	Reachable bool `json:"reachable"`
}

// Link is one of the hub's links to a neighbour.
type Link struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Address string `json:"address,omitempty"`
	// Cost is the link's ETX cost in route metric units (256 for a
	// perfect link); RxCost and TxCost are its two directions.
	Cost   int `json:"cost"`
	RxCost int `json:"rx_cost"`
	TxCost int `json:"tx_cost"`
	// Quality is the share of Hellos that get through both ways, 0 to 1.
	Quality float64   `json:"quality"`
	UpSince time.Time `json:"up_since,omitzero"`
}

// Route is the hub's route to one node.
type Route struct {
	Destination string `json:"destination"`
	NextHop     string `json:"next_hop"`
	Metric      int    `json:"metric"`
	Seqno       int    `json:"seqno"`
	// Feasible is false for a route held while waiting for a new seqno,
	// which carries no traffic.
	Feasible bool `json:"feasible"`
	// Hub says the destination is a hub.
	Hub bool `json:"hub,omitempty"`
}

// Counters are the hub node's totals since it started.
type Counters struct {
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	// Dropped counts data packets dropped, by reason (ttl_expired,
	// no_route, …).
	Dropped map[string]uint64 `json:"dropped"`
	// Rejected counts frames refused by the link and routing layers, by
	// reason (replayed, forged, foreign_home, bad_cert, malformed, …).
	Rejected map[string]uint64 `json:"rejected"`
	// E2EHandshakes counts the end-to-end channels set up (each
	// completed handshake, rekeys included).
	E2EHandshakes uint64 `json:"e2e_handshakes"`
}

// Topology returns the mesh as this hub sees it, with the agents it
// knows.
func (b *Border) Topology() Topology {
	t := b.mesh.Topology()
	if t.Counters.Dropped == nil {
		t.Counters.Dropped = map[string]uint64{}
	}
	if t.Counters.Rejected == nil {
		t.Counters.Rejected = map[string]uint64{}
	}
	nodes := map[string]*Node{}
	for i := range t.Nodes {
		nodes[t.Nodes[i].ID] = &t.Nodes[i]
	}
	node := func(id string) *Node {
		if n := nodes[id]; n != nil {
			return n
		}
		t.Nodes = append(t.Nodes, Node{ID: id})
		// t.Nodes may have moved: index again.
		for i := range t.Nodes {
			nodes[t.Nodes[i].ID] = &t.Nodes[i]
		}
		return nodes[id]
	}
	self := node(t.Hub)
	self.Role, self.Reachable = "hub", true
	for _, r := range t.Routes {
		n := node(r.Destination)
		n.Reachable = n.Reachable || r.Feasible
		if r.Hub && n.Role == "" {
			n.Role = "hub"
		}
	}
	b.mu.Lock()
	for id, a := range b.agents {
		n := node(id.String())
		if a.rec.Role != "" {
			n.Role = a.rec.Role
		}
		if a.rec.Announced {
			n.DeviceID = meshapp.DeviceID(id)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(t.Nodes, func(x, y Node) int {
		if x.ID == t.Hub || y.ID == t.Hub {
			return boolCmp(y.ID == t.Hub, x.ID == t.Hub)
		}
		return strings.Compare(x.ID, y.ID)
	})
	return t
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// topologyRequest is VerbTopology's request.
type topologyRequest struct {
	Home string `json:"home"`
}

// Client asks the home's border over the bus.
type Client struct {
	conn *natsbus.Conn
	home string
}

// NewClient returns a client for home's border.
func NewClient(conn *natsbus.Conn, home string) *Client { return &Client{conn: conn, home: home} }

// Topology returns the mesh as the border sees it; KindUnavailable when
// no border runs.
func (c *Client) Topology(ctx context.Context) (Topology, error) {
	var t Topology
	err := c.conn.Request(ctx, bus.ServiceSubject(ServiceName, VerbTopology), topologyRequest{Home: c.home}, &t)
	return t, err
}
