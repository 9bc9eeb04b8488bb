package route

// MsgType is a kind of control message, for the counters.
type MsgType uint8

// The control message types. An update with an infinite metric is counted
// as a retraction; a packet's serial is counted with its updates, and the
// one-byte packet header only in the totals.
const (
	MsgHello MsgType = iota
	MsgIHU
	MsgUpdate
	MsgRetraction
	MsgAck
	MsgRouteRequest
	MsgSeqnoRequest
	// NumMsgTypes is the number of types, for arrays indexed by them.
	NumMsgTypes
)

var msgTypeNames = [NumMsgTypes]string{"hello", "ihu", "update", "retraction", "ack", "route_request", "seqno_request"}

// String returns the type's name in snake case, as metrics and JSON use it.
func (t MsgType) String() string {
	if t < NumMsgTypes {
		return msgTypeNames[t]
	}
	return "unknown"
}

// RejectReason says why a control message or packet was not accepted.
type RejectReason uint8

// The reject reasons.
const (
	// RejectMalformed: a packet that does not parse; nothing in it is used.
	RejectMalformed RejectReason = iota
	// RejectUnknownLink: a packet on a link that is not up.
	RejectUnknownLink
	// RejectUnknownTLV: a TLV of a type this version does not know (skipped).
	RejectUnknownTLV
	// RejectForeignOrigin: an update with metric 0 for an id other than
	// the sending neighbour's: only a node may originate its own id.
	RejectForeignOrigin
	// RejectLeafRelay: a leaf neighbour announced an id other than its own.
	RejectLeafRelay
	// RejectOwnID: a neighbour announced this router's own id with a
	// newer seqno than its own (after a restart without the persisted
	// seqno); the router jumps past it.
	RejectOwnID
	// RejectDeadNeighbour: updates from a neighbour this router holds dead
	// (it was silent too long); they are not acknowledged, so they come
	// again once its Hellos do.
	RejectDeadNeighbour
	// RejectNotRouter: route updates sent to a leaf, which holds no routes.
	RejectNotRouter
	// RejectTableFull: a new destination beyond Config.MaxRoutes.
	RejectTableFull
	// RejectRequestDuplicate: a seqno request already forwarded recently.
	RejectRequestDuplicate
	// RejectRequestUnroutable: a seqno request with no hops left or no
	// route to forward it on.
	RejectRequestUnroutable
	// NumRejectReasons is the number of reasons, for arrays indexed by
	// them.
	NumRejectReasons
)

var rejectNames = [NumRejectReasons]string{
	"malformed", "unknown_link", "unknown_tlv", "foreign_origin", "leaf_relay", "own_id",
	"dead_neighbour", "not_router", "table_full", "request_duplicate", "request_unroutable",
}

// String returns the reason's name in snake case.
func (r RejectReason) String() string {
	if r < NumRejectReasons {
		return rejectNames[r]
	}
	return "unknown"
}

// MsgCount counts one message type.
type MsgCount struct {
	Messages uint64 // TLVs of this type
	Packets  uint64 // packets that carried at least one
	Bytes    uint64 // bytes of those TLVs, headers included
}

// Counters are a router's cumulative counts since New.
type Counters struct {
	// Sent and Received count control messages by type (received ones
	// from packets that parsed).
	Sent, Received [NumMsgTypes]MsgCount
	// ControlPackets and ControlBytes count every control packet sent, all
	// headers included (the link layer's own overhead is not).
	ControlPackets, ControlBytes uint64
	// Rejected counts refused packets and messages by reason.
	Rejected [NumRejectReasons]uint64
	// SeqnoBumps counts increases of this router's own seqno after New,
	// in answer to requests or to re-attach a leaf.
	SeqnoBumps uint64
	// RouteChanges counts changes of a selected next hop, including
	// gaining and losing a route: how much the routes flap.
	RouteChanges uint64
	// Retransmits counts update batches sent again after an ack timeout.
	Retransmits uint64
	// NeighboursLost counts neighbours declared dead after a silence.
	NeighboursLost uint64
	// Probes counts probes sent to neighbours whose Hellos were overdue
	// or to which a delivery failed.
	Probes uint64
	// DeliveryFailures counts the host's reports of undeliverable frames
	// that made a neighbour suspect.
	DeliveryFailures uint64
	// The data plane: packets delivered here, originated here, relayed,
	// and dropped because the TTL ran out (a loop indicator), because
	// there was no route (a blackhole), or because a leaf was asked to
	// relay.
	DataDelivered, DataOriginated, DataForwarded uint64
	DataTTLExpired, DataNoRoute, DataNotRouter   uint64
}
