package border

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/meshapp"
)

// Topology is the mesh as one hub sees it: the nodes it knows, the links
// between them, its routes and its counters. A distance-vector hub knows
// the first hop and the cost of the route to every node, not the links
// between other nodes: those come from the agents, each of which reports
// its own live links (the meshapp links message) about once a minute.
// Links therefore holds the hub's own links (ReportedBy "hub") and each
// agent's reported links from the agent to its neighbours (ReportedBy
// "agent", with ReportedAt), a report older than Config.LinksMaxAge left
// out since its agent may be gone. Costs are per direction, so a link
// both ends report appears once each way, each with the costs its From
// measured.
type Topology struct {
	// Hub is this hub's node id.
	Hub string `json:"hub"`
	// Address is the hub's UDP address.
	Address string `json:"address"`
	// Nodes are the hub first, then every other node the hub has a route
	// to, knows as an agent or finds named in a link, by id.
	Nodes []Node `json:"nodes"`
	// Links are the hub's own, then the agents' reports by From and To.
	Links []Link `json:"links"`
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

// Who measured a Link.
const (
	ReportedByHub   = "hub"   // the hub's own link
	ReportedByAgent = "agent" // a link From reported
)

// Link is one direction of a link between two nodes, as From measures
// it.
type Link struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Address is the neighbour's UDP address, for the hub's own links.
	Address string `json:"address,omitempty"`
	// Cost is the link's ETX cost in route metric units (256 for a
	// perfect link); RxCost and TxCost are its two directions.
	Cost   int `json:"cost"`
	RxCost int `json:"rx_cost"`
	TxCost int `json:"tx_cost"`
	// Quality is the share of Hellos that get through both ways, 0 to 1.
	Quality float64   `json:"quality"`
	UpSince time.Time `json:"up_since,omitzero"`
	// ReportedBy is ReportedByHub or ReportedByAgent.
	ReportedBy string `json:"reported_by"`
	// ReportedAt is when the agent's report arrived; absent from the
	// hub's own links, which are current.
	ReportedAt time.Time `json:"reported_at,omitzero"`
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
// knows and the links they reported.
func (b *Border) Topology() Topology {
	t := b.mesh.Topology()
	// A copy, which is never null: the agents' links join it.
	t.Links = append([]Link{}, t.Links...)
	for i := range t.Links {
		t.Links[i].ReportedBy = ReportedByHub
	}
	if t.Counters.Dropped == nil {
		t.Counters.Dropped = map[string]uint64{}
	}
	if t.Counters.Rejected == nil {
		t.Counters.Rejected = map[string]uint64{}
	}
	index := make(map[string]int, len(t.Nodes))
	for i := range t.Nodes {
		index[t.Nodes[i].ID] = i
	}
	// node returns the node id, added when new; the pointer is good
	// until the next call, which may move t.Nodes.
	node := func(id string) *Node {
		i, ok := index[id]
		if !ok {
			i = len(t.Nodes)
			t.Nodes = append(t.Nodes, Node{ID: id})
			index[id] = i
		}
		return &t.Nodes[i]
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
	reported := b.reportedLinks(time.Now())
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
	type direction struct{ from, to string }
	seen := make(map[direction]bool, len(t.Links)+len(reported))
	for _, l := range t.Links {
		seen[direction{l.From, l.To}] = true
		node(l.To)
	}
	for _, r := range reported {
		if seen[direction{r.From, r.To}] {
			continue
		}
		seen[direction{r.From, r.To}] = true
		t.Links = append(t.Links, r.Link)
		node(r.From)
		if n := node(r.To); n.Role == "" {
			n.Role = r.role
		}
	}
	slices.SortFunc(t.Nodes, func(x, y Node) int {
		if x.ID == t.Hub || y.ID == t.Hub {
			return boolCmp(y.ID == t.Hub, x.ID == t.Hub)
		}
		return strings.Compare(x.ID, y.ID)
	})
	return t
}

// reportedLink is a link an agent reported, with the role its report
// gave the neighbour.
type reportedLink struct {
	Link
	role string
}

// reportedLinks returns the links in the agents' reports that are at most
// LinksMaxAge old, by From and To; older reports are dropped. Links to
// the reporting agent itself and to revoked nodes are left out.
func (b *Border) reportedLinks(now time.Time) []reportedLink {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []reportedLink
	for id, a := range b.agents {
		r := a.links
		if r == nil {
			continue
		}
		if now.Sub(r.at) > b.cfg.LinksMaxAge {
			a.links = nil
			continue
		}
		from := id.String()
		for _, nb := range r.neighbours {
			if nb.ID == id || b.revoked[nb.ID] {
				continue
			}
			out = append(out, reportedLink{Link: Link{
				From: from, To: nb.ID.String(),
				Cost: int(nb.Cost), RxCost: int(nb.RxCost), TxCost: int(nb.TxCost), Quality: nb.Quality,
				ReportedBy: ReportedByAgent, ReportedAt: r.at,
			}, role: nb.Role.String()})
		}
	}
	slices.SortFunc(out, func(x, y reportedLink) int {
		return cmp.Or(strings.Compare(x.From, y.From), strings.Compare(x.To, y.To))
	})
	return out
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
