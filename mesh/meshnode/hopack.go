package meshnode

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// Hop-by-hop acknowledgements. UDP tells a node nothing when a datagram
// to a neighbour goes nowhere: a neighbour that lost power or hung would
// be noticed only when its Hellos stop, 2.5 Hello intervals later, and
// every data packet sent into it meanwhile would be lost. So each data
// packet goes on its link with a sequence number, the neighbour
// acknowledges it at once, and a packet not acknowledged within a few
// round trips is sent again, twice, as a radio MAC retries a frame. If
// it still is not, the node tells the router (Router.DeliveryFailed,
// which probes the neighbour and declares it dead within an eighth of a
// Hello interval unless it answers) and takes the packet back: it goes
// again once the route leads to a neighbour not in doubt, or waits in
// the route queues.
//
// The link payloads:
//
//	0xA1 seq(4) packet   a route data packet whose arrival the sender
//	                     wants acknowledged
//	0xA2 seq(4)…         the sequence numbers of 0xA1 payloads received
const (
	dataAckReq = 0xA1
	dataAck    = 0xA2
)

const (
	// hopRetries is how often an unacknowledged data packet is sent
	// again before the neighbour is reported.
	hopRetries = 2
	// maxUnacked and maxUnackedBytes bound the packets a link keeps for
	// retransmission; beyond them packets go without an ack request.
	maxUnacked      = 128
	maxUnackedBytes = 256 << 10
	// maxPendingAcks bounds the acknowledgements a link owes; they go at
	// the end of every event, so this is only reached by a flood.
	maxPendingAcks = 1024
	// maxAcksPerMsg bounds one ack payload (5 KiB, fragmented if the
	// MTU is smaller).
	maxAcksPerMsg = 1024
	// minHopRTO and initialHopRTO bound the retransmission timeout: three
	// smoothed round trips, at least minHopRTO; initialHopRTO before any
	// round trip was measured.
	minHopRTO     = 20 * time.Millisecond
	initialHopRTO = 200 * time.Millisecond
	maxHopRTO     = 2 * time.Second
)

// unacked is a data packet sent on a link and not yet acknowledged.
type unacked struct {
	seq    uint32
	packet []byte
	first  time.Time // when it was first sent, for the round trip
	due    time.Time // when it is sent again, or given up
	tries  uint8
}

// hopState is a link's side of the acknowledgements.
type hopState struct {
	nextSeq      uint32
	unacked      []unacked // oldest first
	unackedBytes int
	acks         []uint32 // owed to the neighbour
	srtt         time.Duration
}

func (h *hopState) rto(tries uint8) time.Duration {
	rto := initialHopRTO
	if h.srtt > 0 {
		rto = max(3*h.srtt, minHopRTO)
	}
	return min(rto<<(tries-1), maxHopRTO)
}

// sendData seals a route data packet onto link l with an ack request, and
// keeps a copy until the neighbour acknowledges it. A packet too large
// for the request's 5 bytes, or beyond the link's bounds, goes without.
func (n *Node) sendData(now time.Time, l *peerLink, packet []byte) {
	h := &l.hop
	if len(packet)+5 > link.MaxPayload || len(h.unacked) >= maxUnacked || h.unackedBytes+len(packet) > maxUnackedBytes {
		n.sealOn(now, l, packet)
		return
	}
	h.nextSeq++
	u := unacked{seq: h.nextSeq, packet: bytes.Clone(packet), first: now, tries: 1}
	u.due = now.Add(h.rto(1))
	h.unacked = append(h.unacked, u)
	h.unackedBytes += len(packet)
	n.sealOn(now, l, appendAckRequest(nil, u.seq, packet))
}

func appendAckRequest(b []byte, seq uint32, packet []byte) []byte {
	b = append(b, dataAckReq)
	b = binary.BigEndian.AppendUint32(b, seq)
	return append(b, packet...)
}

// onAckRequest acknowledges a data packet that came with a request and
// handles it.
func (n *Node) onAckRequest(now time.Time, l *peerLink, p []byte) {
	if len(p) < 5 || !route.IsData(p[5:]) {
		n.c.reject(RejectLinkPayload, 1)
		return
	}
	h := &l.hop
	if len(h.acks) == 0 {
		n.acksOwed = append(n.acksOwed, l)
	}
	if len(h.acks) < maxPendingAcks {
		h.acks = append(h.acks, binary.BigEndian.Uint32(p[1:5]))
	}
	n.onData(now, l, p[5:])
}

// onAck takes the neighbour's acknowledgements: the packets are
// delivered, and a first try's round trip tunes the timeout.
func (n *Node) onAck(now time.Time, l *peerLink, p []byte) {
	if len(p) < 5 || (len(p)-1)%4 != 0 {
		n.c.reject(RejectLinkPayload, 1)
		return
	}
	h := &l.hop
	for b := p[1:]; len(b) >= 4; b = b[4:] {
		seq := binary.BigEndian.Uint32(b)
		for i := range h.unacked {
			u := &h.unacked[i]
			if u.seq != seq {
				continue
			}
			if u.tries == 1 {
				rtt := now.Sub(u.first)
				if h.srtt == 0 {
					h.srtt = rtt
				} else {
					h.srtt += (rtt - h.srtt) / 8
				}
			}
			h.unackedBytes -= len(u.packet)
			h.unacked = append(h.unacked[:i], h.unacked[i+1:]...)
			break
		}
	}
}

// sendAcks sends what the links owe, at the end of every event.
func (n *Node) sendAcks(now time.Time) {
	for _, l := range n.acksOwed {
		h := &l.hop
		for len(h.acks) > 0 {
			k := min(len(h.acks), maxAcksPerMsg)
			msg := make([]byte, 1, 1+4*k)
			msg[0] = dataAck
			for _, s := range h.acks[:k] {
				msg = binary.BigEndian.AppendUint32(msg, s)
			}
			h.acks = h.acks[k:]
			if n.links[l.id] == l && l.up {
				n.sealOn(now, l, msg)
			}
		}
		h.acks = nil
	}
	n.acksOwed = n.acksOwed[:0]
}

// hopDeadline returns when the next unacknowledged packet is due (zero:
// none).
func (n *Node) hopDeadline() time.Time {
	var d time.Time
	for _, l := range n.links {
		for _, u := range l.hop.unacked {
			if d.IsZero() || u.due.Before(d) {
				d = u.due
			}
		}
	}
	return d
}

// retransmitData sends again what is due, and gives up on what was tried
// hopRetries times: the router hears of the failed delivery, and the
// packets are taken back.
func (n *Node) retransmitData(now time.Time) {
	for _, l := range n.sortedLinks() {
		h := &l.hop
		var failed [][]byte
		kept := h.unacked[:0]
		for _, u := range h.unacked {
			switch {
			case now.Before(u.due):
				kept = append(kept, u)
			case u.tries <= hopRetries:
				u.tries++
				u.due = now.Add(h.rto(u.tries))
				n.c.hopRetransmits++
				n.sealOn(now, l, appendAckRequest(nil, u.seq, u.packet))
				kept = append(kept, u)
			default:
				h.unackedBytes -= len(u.packet)
				failed = append(failed, u.packet)
			}
		}
		clear(h.unacked[len(kept):])
		h.unacked = kept
		if len(failed) > 0 {
			n.c.hopFailures += uint64(len(failed))
			n.sendRoute(now, n.router.DeliveryFailed(now, l.id))
			for _, p := range failed {
				n.salvage(now, p)
			}
		}
	}
}

// takeBack salvages every packet link l still waits to hear about: the
// link is going away.
func (n *Node) takeBack(now time.Time, l *peerLink) {
	for _, u := range l.hop.unacked {
		n.salvage(now, u.packet)
	}
	l.hop.unacked, l.hop.unackedBytes = nil, 0
}

// salvage sends a data packet a link failed to deliver again, now if the
// route leads to a neighbour not in doubt, else once it does (it waits in
// the route queues like a packet without a route).
func (n *Node) salvage(now time.Time, packet []byte) {
	h, _, err := route.ParseData(packet)
	if err != nil {
		return
	}
	q := &n.relaying
	if h.Src == n.self.ID {
		q = &n.pending
	}
	if l, ok := n.router.NextHop(h.Dst); !ok || n.router.InDoubt(l) {
		q.add(now, h.Dst, packet, &n.c)
		return
	}
	n.resume(now, packet)
}
