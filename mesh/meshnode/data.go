package meshnode

import (
	"bytes"
	"errors"
	"log/slog"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// onSend seals a payload from Send end to end and routes what comes out.
func (n *Node) onSend(now time.Time, o outgoing) {
	msgs, err := n.e2e.Seal(now, o.dst, o.payload)
	if err != nil {
		if errors.Is(err, link.ErrUnknownPeer) {
			n.c.reject(RejectUnknownDestination, 1)
		} else if errors.Is(err, link.ErrRevoked) {
			n.c.reject(RejectRevoked, 1)
		} else {
			n.c.reject(RejectSealFailed, 1)
		}
		n.log.Warn("mesh send refused", "peer", o.dst.String(), "err", err)
		return
	}
	for _, m := range msgs {
		n.originate(now, o.dst, m)
	}
}

// originate wraps an end-to-end message for dst in a route data packet and
// sends it towards dst, or queues it until there is a route.
func (n *Node) originate(now time.Time, dst route.NodeID, msg []byte) {
	h := route.DataHeader{Src: n.self.ID, Dst: dst, TTL: route.DefaultTTL, Flow: n.flow(dst)}
	packet := route.AppendData(make([]byte, 0, route.DataHeaderLen+len(msg)), h, msg)
	dec, err := n.router.Forward(now, 0, packet)
	switch {
	case err != nil:
		n.log.Error("mesh originate", "err", err)
	case dec.Action == route.ActionForward:
		n.sendOwn(now, dec)
	case dec.Reason == route.DropNoRoute:
		n.pending.add(now, dst, packet, &n.c)
	}
}

// flow is the flow id of this node's packets to dst: one flow per pair of
// end points, so relays could keep a flow's packets on one path, salted so
// that it reveals nothing a relay does not already see.
func (n *Node) flow(dst route.NodeID) uint32 {
	h := n.flowSalt
	for _, b := range dst {
		h = h*16777619 ^ uint32(b)
	}
	return h
}

// resume sends on a packet that waited here (for a route, or taken back
// from a link that failed to deliver it), originated here or relayed.
func (n *Node) resume(now time.Time, packet []byte) {
	dec, err := n.router.Reroute(now, packet)
	if err != nil || dec.Action != route.ActionForward {
		return // counted by the router
	}
	if dec.Header.Src == n.self.ID {
		n.sendOwn(now, dec)
	} else {
		n.sendOn(now, dec)
	}
}

// sendOwn sends a packet originated here to the next hop the router chose.
func (n *Node) sendOwn(now time.Time, dec route.Decision) {
	if l := n.links[dec.Link]; l != nil && l.up {
		n.sendData(now, l, dec.Packet)
	}
}

// onData handles a data packet that arrived on link l: deliver it here, or
// forward it to the next hop.
func (n *Node) onData(now time.Time, l *peerLink, packet []byte) {
	dec, err := n.router.Forward(now, l.id, packet)
	if err != nil {
		n.c.reject(RejectDataMalformed, 1)
		return
	}
	switch dec.Action {
	case route.ActionDeliver:
		_, msg, _ := route.ParseData(dec.Packet)
		n.deliver(now, dec.Header.Src, msg)
	case route.ActionForward:
		n.sendOn(now, dec)
	case route.ActionDrop:
		// Drops are counted by the router, by reason. A packet without a
		// route waits for one: the packet buffer is the receive
		// buffer's, so the queue gets a copy.
		if dec.Reason == route.DropNoRoute {
			n.relaying.add(now, dec.Header.Dst, bytes.Clone(dec.Packet), &n.c)
		}
	}
}

// sendOn seals a relayed packet for the next hop the router chose.
func (n *Node) sendOn(now time.Time, dec route.Decision) {
	next := n.links[dec.Link]
	if next == nil || !next.up {
		return
	}
	if n.forwardHook != nil {
		n.forwardHook(dec.Packet)
	}
	n.sendData(now, next, dec.Packet)
}

// End-to-end plaintexts start with a byte that says what they are: an
// application payload for OnMessage, or a probe that only exists to make
// the receiver's E2E open a channel (see probe).
const (
	e2eApp   = 0x01
	e2eProbe = 0x02
)

// MaxPayload is the largest payload Send takes: what an end-to-end message
// carries, less the byte that says it is an application payload.
const MaxPayload = link.MaxE2EPayload - 1

// deliver opens an end-to-end message from src and hands an application
// payload to OnMessage.
func (n *Node) deliver(now time.Time, src route.NodeID, msg []byte) {
	send, plain, err := n.e2e.Open(now, src, msg)
	for _, m := range send {
		n.originate(now, src, m)
	}
	if err != nil {
		n.c.reject(RejectE2E, 1)
		n.log.Debug("mesh end-to-end message refused", "peer", src.String(), "err", err)
		if errors.Is(err, link.ErrUnknownKey) {
			n.probe(now, src)
		}
		return
	}
	if plain == nil {
		return
	}
	peer, ok := n.e2e.Peer(src)
	if !ok {
		// Open returns plaintext only on a channel whose peer was verified.
		n.c.reject(RejectE2E, 1)
		return
	}
	n.learnKey(peer)
	switch {
	case len(plain) > 1 && plain[0] == e2eApp:
		n.c.delivered++
		n.delivered = append(n.delivered, delivery{from: peer, payload: plain[1:]})
	case len(plain) == 1 && plain[0] == e2eProbe:
	default:
		n.c.reject(RejectE2EPayload, 1)
	}
}

// probe answers a message from src under keys this node does not hold: src
// still has a channel this node lost (it restarted, or dropped the channel
// as idle), and src's messages would be refused until src rekeys, minutes
// later. A probe sealed for src starts a new handshake, which src's channel
// takes as a rekey. Probes are rate limited per source and in all, since
// anyone can send frames under unknown keys.
func (n *Node) probe(now time.Time, src route.NodeID) {
	if last, ok := n.probes.sent[src]; ok && now.Sub(last) < probeInterval {
		return
	}
	if _, ok := n.lookupKey(src); !ok || !n.probes.bucket.take(now, probeRate, probeRate) {
		return
	}
	if len(n.probes.sent) >= maxProbeSources {
		clear(n.probes.sent)
	}
	n.probes.sent[src] = now
	msgs, err := n.e2e.Seal(now, src, []byte{e2eProbe})
	if err != nil {
		return
	}
	n.log.Debug("mesh end-to-end probe", "peer", src.String())
	for _, m := range msgs {
		n.originate(now, src, m)
	}
}

// probeState rate-limits probes.
type probeState struct {
	sent   map[route.NodeID]time.Time
	bucket tokenBucket
}

const (
	probeInterval   = time.Second
	probeRate       = 20
	maxProbeSources = 1024
)

// routeQueue holds data packets waiting for a route, per destination,
// within its limits: the packets this node originated (a route may not
// exist yet, or be lost for a moment), or those it relays (after a failure
// a relay may have no feasible route until a new seqno arrives).
type routeQueue struct {
	limits  routeQueueLimits
	byDst   map[route.NodeID]*dstQueue
	packets int
	bytes   int
}

// routeQueueLimits bound a routeQueue; reject names the counter of the
// packets it drops.
type routeQueueLimits struct {
	perDst, packets, bytes int
	wait                   time.Duration
	reject                 string
}

type dstQueue struct {
	packets [][]byte
	since   time.Time // when the oldest packet was queued
}

func newRouteQueue(l routeQueueLimits) routeQueue {
	return routeQueue{limits: l, byDst: map[route.NodeID]*dstQueue{}}
}

func (q *routeQueue) add(now time.Time, dst route.NodeID, packet []byte, c *nodeCounters) {
	l := &q.limits
	dq := q.byDst[dst]
	if dq == nil {
		if q.packets >= l.packets || q.bytes+len(packet) > l.bytes {
			c.reject(l.reject, 1)
			return
		}
		dq = &dstQueue{since: now}
		q.byDst[dst] = dq
	}
	if len(dq.packets) >= l.perDst || q.packets >= l.packets || q.bytes+len(packet) > l.bytes {
		// The oldest goes: what is sent last is the most current.
		if len(dq.packets) == 0 {
			c.reject(l.reject, 1)
			return
		}
		q.packets--
		q.bytes -= len(dq.packets[0])
		dq.packets = dq.packets[1:]
		c.reject(l.reject, 1)
	}
	dq.packets = append(dq.packets, packet)
	q.packets++
	q.bytes += len(packet)
}

func (q *routeQueue) remove(dst route.NodeID) [][]byte {
	dq := q.byDst[dst]
	if dq == nil {
		return nil
	}
	delete(q.byDst, dst)
	q.packets -= len(dq.packets)
	for _, p := range dq.packets {
		q.bytes -= len(p)
	}
	return dq.packets
}

// expiry returns when the oldest queue times out (zero: none).
func (q *routeQueue) expiry() time.Time {
	var d time.Time
	for _, dq := range q.byDst {
		if t := dq.since.Add(q.limits.wait); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// ready removes and returns the queued packets whose destination r now
// has a route to, through a neighbour not in doubt (a packet a link
// failed to deliver waits until the router has probed the neighbour).
func (q *routeQueue) ready(r *route.Router) [][]byte {
	if q.packets == 0 {
		return nil
	}
	var out [][]byte
	for dst := range q.byDst {
		if l, ok := r.NextHop(dst); ok && !r.InDoubt(l) {
			out = append(out, q.remove(dst)...)
		}
	}
	return out
}

// expire drops the queues that waited their limit in vain.
func (q *routeQueue) expire(now time.Time, c *nodeCounters, log *slog.Logger) {
	for dst, dq := range q.byDst {
		if !now.Before(dq.since.Add(q.limits.wait)) {
			dropped := q.remove(dst)
			c.reject(q.limits.reject, uint64(len(dropped)))
			log.Debug("mesh no route", "peer", dst.String(), "dropped", len(dropped), "queue", q.limits.reject)
		}
	}
}

// retryRouteQueues sends the queued packets whose destination has a route.
func (n *Node) retryRouteQueues(now time.Time) {
	for _, p := range n.pending.ready(n.router) {
		n.resume(now, p)
	}
	for _, p := range n.relaying.ready(n.router) {
		n.resume(now, p)
	}
}

// expireRouteQueues drops the queues that waited their limit in vain.
func (n *Node) expireRouteQueues(now time.Time) {
	n.pending.expire(now, &n.c, n.log)
	n.relaying.expire(now, &n.c, n.log)
}
