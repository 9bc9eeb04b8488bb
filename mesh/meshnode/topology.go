package meshnode

import (
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// Topology is a snapshot of what a node knows: itself, its neighbours, its
// routes and its counters. It shares no memory with the node.
type Topology struct {
	Self       NodeInfo
	Neighbours []NeighbourInfo // sorted by id
	Routes     []RouteInfo     // sorted by destination
	Counters   Counters
}

// NodeInfo describes the node itself.
type NodeInfo struct {
	ID    route.NodeID
	Home  string
	Role  link.Role
	Addr  string // the UDP address the node listens on
	Seqno uint16 // its current routing seqno
}

// NeighbourInfo describes one link whose Noise session is established and
// whose peer's certificate was verified.
type NeighbourInfo struct {
	ID   route.NodeID
	Addr string // the neighbour's UDP address
	Role link.Role
	// Cost is the ETX link cost routes use (route.HopCost for a perfect
	// link); RxCost is measured here from the neighbour's Hellos, TxCost by
	// the neighbour from this node's.
	Cost, RxCost, TxCost uint16
	// Quality is route.HopCost / Cost: 1 for a perfect link, lower as
	// Hellos are lost either way.
	Quality float64
	// UpSince is when the link came up; LastHello when the neighbour's last
	// Hello arrived (zero before the first).
	UpSince, LastHello time.Time
	// Dead is set when the neighbour missed too many Hellos; the node then
	// takes the link down and redials a configured peer.
	Dead bool
	// Parent says this leaf uses the neighbour as its parent.
	Parent bool
	// Routes is how many destinations the neighbour announces.
	Routes int
}

// RouteInfo describes the route to one destination.
type RouteInfo struct {
	Dest    route.NodeID
	NextHop route.NodeID
	Metric  uint16 // route.HopCost per perfect hop
	Seqno   uint16
	// Feasible is false for a route held but not usable while the router
	// waits for a newer seqno.
	Feasible bool
	// Hub and Leaf are what the destination announced about itself.
	Hub, Leaf bool
}

// Counters are a node's cumulative counts since New.
type Counters struct {
	// Route is the routing core's: control messages by type, refused
	// control messages by reason, data packets delivered, originated,
	// forwarded and dropped (TTL, no route, leaf asked to relay).
	Route route.Counters
	// Link counts the hop-by-hop Noise sessions, refused handshakes
	// included: frames, handshakes, and refusals by reason (replayed,
	// forged, bad certificate, foreign home …).
	Link link.Counters
	// E2E counts the end-to-end channels in the same way.
	E2E link.Counters
	// Datagrams and bytes through the node's UDP socket.
	DatagramsIn, DatagramsOut, BytesIn, BytesOut uint64
	// MessagesSent counts payloads accepted by Send; MessagesDelivered
	// those handed to OnMessage.
	MessagesSent, MessagesDelivered uint64
	// LinksUp and LinksDown count links brought up and taken down.
	LinksUp, LinksDown uint64
	// Unreachable counts the kernel's reports (ICMP, on Linux) that a
	// neighbour's address had nobody listening, each taken as a failed
	// delivery to that neighbour.
	Unreachable uint64
	// HopRetransmits counts data packets sent again on a link for want of
	// the neighbour's acknowledgement; HopFailures those given up after
	// every retry, each reported to the router as a failed delivery and
	// sent again another way.
	HopRetransmits, HopFailures uint64
	// Rejected counts what the node itself refused or dropped, by reason
	// (see the Reject constants); reasons never seen are absent.
	Rejected map[string]uint64
}

// The node's own reject reasons, as keys of Counters.Rejected.
const (
	// RejectEmptyDatagram: a datagram with no bytes.
	RejectEmptyDatagram = "empty_datagram"
	// RejectNoSession: a datagram from an address without a session that
	// does not start a handshake.
	RejectNoSession = "no_session"
	// RejectHandshakeRate: a first handshake message from an address
	// without a session, over the accept rate or the pending limit.
	RejectHandshakeRate = "handshake_rate"
	// RejectLinksFull: a handshake beyond Config.MaxLinks.
	RejectLinksFull = "links_full"
	// RejectHandshake: a first handshake message that Accept refused
	// (the link counters say why).
	RejectHandshake = "handshake_refused"
	// RejectLinkRole: an established link to a node that may not be a
	// neighbour: this node's own identity, or a leaf linking to a leaf.
	RejectLinkRole = "link_role"
	// RejectNotUp: a payload on a session whose link is not up yet.
	RejectNotUp = "link_not_up"
	// RejectLinkPayload: a link payload that is neither a route packet
	// nor a link start message.
	RejectLinkPayload = "link_payload"
	// RejectDataMalformed: a data packet whose header does not parse.
	RejectDataMalformed = "data_malformed"
	// RejectE2E: an end-to-end message that E2E refused (the E2E
	// counters say why).
	RejectE2E = "e2e_refused"
	// RejectE2EPayload: an end-to-end plaintext that is neither an
	// application payload nor a probe.
	RejectE2EPayload = "e2e_payload"
	// RejectSendQueueFull: a Send refused because the node goroutine is
	// behind by maxSendQueue payloads.
	RejectSendQueueFull = "send_queue_full"
	// RejectUnknownDestination: a Send to a node whose static key is not
	// known.
	RejectUnknownDestination = "unknown_destination"
	// RejectNoRoute: an originated packet dropped after waiting
	// maxRouteWait for a route, or beyond the route queue's bounds.
	RejectNoRoute = "no_route"
	// RejectRelayNoRoute: a relayed packet dropped after waiting
	// maxRelayWait for a route, or beyond the relay queue's bounds.
	RejectRelayNoRoute = "relay_no_route"
	// RejectSealFailed: a packet for a link whose session could not
	// seal it (keys expired while a rekey runs).
	RejectSealFailed = "seal_failed"
	// RejectNeighbourDead: a link taken down because the router declared
	// the neighbour dead.
	RejectNeighbourDead = "neighbour_dead"
	// RejectSessionClosed: a link taken down because its session died.
	RejectSessionClosed = "session_closed"
	// RejectRevoked: a link taken down, or a packet waiting for a route
	// dropped or a Send's payload refused, because its peer was revoked
	// (Node.Revoke).
	RejectRevoked = "revoked"
	// RejectBeaconMalformed, RejectBeaconForeign and RejectBeaconRate:
	// beacons that do not parse, of another home, or over the dial rate.
	RejectBeaconMalformed = "beacon_malformed"
	RejectBeaconForeign   = "beacon_foreign"
	RejectBeaconRate      = "beacon_rate"
	// RejectWrite: a datagram the socket refused to send.
	RejectWrite = "write_failed"
)
