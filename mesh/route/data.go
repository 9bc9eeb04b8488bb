package route

import (
	"errors"
	"fmt"
	"time"
)

// Action is what to do with a data packet.
type Action uint8

// The actions Forward decides on.
const (
	// ActionDrop: discard the packet (Decision.Reason says why).
	ActionDrop Action = iota
	// ActionDeliver: the packet is for this node.
	ActionDeliver
	// ActionForward: send Decision.Packet on Decision.Link.
	ActionForward
)

// DropReason says why a data packet was dropped.
type DropReason uint8

// The drop reasons.
const (
	// DropNone: the packet was not dropped.
	DropNone DropReason = iota
	// DropTTLExpired: the packet ran out of hops, which in a loop-free
	// mesh means a transient loop (or a path longer than its TTL).
	DropTTLExpired
	// DropNoRoute: no route to the destination (a blackhole).
	DropNoRoute
	// DropNotRouter: a leaf was asked to relay, which it never does.
	DropNotRouter
)

// String returns the reason's name in snake case.
func (d DropReason) String() string {
	switch d {
	case DropNone:
		return "none"
	case DropTTLExpired:
		return "ttl_expired"
	case DropNoRoute:
		return "no_route"
	case DropNotRouter:
		return "not_router"
	}
	return "unknown"
}

// Decision is Forward's verdict on a data packet.
type Decision struct {
	Action Action
	// Link is the next hop's link, for ActionForward.
	Link LinkID
	// Packet is the packet to send, for ActionForward, or to deliver.
	Packet []byte
	// Header is the packet's parsed header.
	Header DataHeader
	Reason DropReason
}

// Forward decides what to do with a data packet received on link from, or
// originated by this node when from is 0. A relayed packet's TTL is
// decremented in place (packet is modified and returned in the decision); a
// packet whose TTL would reach zero is dropped. An originated packet must
// carry this node as its source and a TTL of at least 1. The error is for
// packets that are not data packets or break those rules.
func (r *Router) Forward(now time.Time, from LinkID, packet []byte) (Decision, error) {
	h, _, err := ParseData(packet)
	if err != nil {
		return Decision{}, err
	}
	dec := Decision{Header: h, Packet: packet}
	if from == 0 {
		if h.Src != r.id {
			return Decision{}, fmt.Errorf("route: originating a packet from %s, which is not this node (%s)", h.Src, r.id)
		}
		if h.TTL == 0 {
			return Decision{}, errors.New("route: originating a packet with TTL 0")
		}
		r.counters.DataOriginated++
	}
	if h.Dst == r.id {
		r.counters.DataDelivered++
		dec.Action = ActionDeliver
		return dec, nil
	}
	if from != 0 {
		if r.cfg.Leaf {
			r.counters.DataNotRouter++
			dec.Reason = DropNotRouter
			return dec, nil
		}
		if h.TTL <= 1 {
			r.counters.DataTTLExpired++
			dec.Reason = DropTTLExpired
			return dec, nil
		}
		h.TTL--
		packet[ttlOffset] = h.TTL
		dec.Header.TTL = h.TTL
	}
	return r.sendOn(dec, from != 0), nil
}

// sendOn completes a decision on a packet not for this node: forward it to
// the next hop, or drop it for want of a route. Relayed says whether the
// packet came from another node, for the counters.
func (r *Router) sendOn(dec Decision, relayed bool) Decision {
	link, ok := r.NextHop(dec.Header.Dst)
	if !ok {
		r.counters.DataNoRoute++
		dec.Reason = DropNoRoute
		return dec
	}
	if relayed {
		r.counters.DataForwarded++
	}
	dec.Action = ActionForward
	dec.Link = link
	return dec
}

// Reroute decides again on a data packet that Forward dropped for want of a
// route (DropNoRoute) and the host held until the router had one. Its TTL
// was already decremented here, so it is not again, and its source may be
// any node: a relay holds packets too, for the moments after a failure
// while it waits for a feasible route, instead of dropping them. A packet
// that still has no route is dropped (and counted) as Forward drops it.
func (r *Router) Reroute(now time.Time, packet []byte) (Decision, error) {
	h, _, err := ParseData(packet)
	if err != nil {
		return Decision{}, err
	}
	dec := Decision{Header: h, Packet: packet}
	if h.Dst == r.id {
		r.counters.DataDelivered++
		dec.Action = ActionDeliver
		return dec, nil
	}
	relayed := h.Src != r.id
	if relayed && r.cfg.Leaf {
		r.counters.DataNotRouter++
		dec.Reason = DropNotRouter
		return dec, nil
	}
	return r.sendOn(dec, relayed), nil
}
