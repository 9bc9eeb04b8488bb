package sim

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/homemesh/homemesh/mesh/route"
)

// flow is one direction of a node's exchange with its hub: a packet every
// FlowInterval, forwarded hop by hop by the routers.
type flow struct {
	src, dst int32
	// brokenAt is when a failure broke the flow's path, -1 while it is
	// not broken; until a packet sent after it arrives, the flow probes.
	brokenAt int64
	probing  bool
}

// dropReason says why a frame or data packet did not arrive.
type dropReason uint8

const (
	dropLoss    dropReason = iota // the link lost it (data: every retry)
	dropCut                       // the link is cut by a partition
	dropDeadHop                   // the next hop is dead
	dropNoRoute                   // a router had no route: a blackhole
	dropTTL                       // the TTL ran out: a loop indicator
	dropError                     // a router rejected the packet
	dropStale                     // sent in a link session since replaced
	dropReasons
)

var dropNames = [dropReasons]string{"link_loss", "cut", "dead_next_hop", "no_route", "ttl_expired", "rejected", "stale_session"}

// startFlows picks the nodes that exchange traffic with their nearest hub
// and builds their flows, both ways.
func (s *sim) startFlows() {
	hubOf := make([]int, len(s.nodes))
	best := make([]int, len(s.nodes))
	for i := range best {
		best[i] = -1
	}
	for _, h := range s.topo.Hubs {
		for v, d := range s.topo.Hops(h) {
			if d >= 0 && (best[v] < 0 || d < best[v]) {
				best[v], hubOf[v] = d, h
			}
		}
	}
	var members []int
	for v := range s.nodes {
		if !s.nodes[v].hub {
			members = append(members, v)
		}
	}
	want := s.cfg.Flows
	if want == 0 {
		want = 1000
	}
	if want < len(members) {
		s.rngTraffic.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		members = members[:want]
		slices.Sort(members)
	}
	for _, v := range members {
		s.flows = append(s.flows,
			flow{src: int32(v), dst: int32(hubOf[v]), brokenAt: -1},
			flow{src: int32(hubOf[v]), dst: int32(v), brokenAt: -1})
	}
	s.traffic = true
	interval := int64(s.cfg.FlowInterval)
	for f := range s.flows {
		s.queue.push(event{at: s.now + s.rngTraffic.Int64N(interval), kind: evSend, arg: uint32(f)})
	}
}

// connected reports whether a and b are both alive and joined by live links.
func (s *sim) connected(a, b int32) bool {
	s.components()
	return s.comp[a] >= 0 && s.comp[a] == s.comp[b]
}

func (s *sim) sendRegular(f int) {
	if !s.traffic {
		return
	}
	s.queue.push(event{at: s.now + int64(s.cfg.FlowInterval), kind: evSend, arg: uint32(f)})
	fl := &s.flows[f]
	if !s.nodes[fl.src].alive {
		return
	}
	var flags byte
	if s.connected(fl.src, fl.dst) {
		flags |= flagEligible
		s.m.sent++
	}
	s.originate(f, flags)
}

func (s *sim) sendProbe(f int) {
	fl := &s.flows[f]
	switch {
	case fl.brokenAt < 0:
		fl.probing = false
		return
	case s.now-fl.brokenAt > int64(s.cfg.Timeout):
		s.m.unrecovered++
		fl.brokenAt, fl.probing = -1, false
		return
	case !s.connected(fl.src, fl.dst):
		// A later failure cut the flow's ends apart: nothing to recover.
		s.m.abandoned++
		fl.brokenAt, fl.probing = -1, false
		return
	}
	s.m.probes++
	s.originate(f, flagProbe|flagEligible)
	s.queue.push(event{at: s.now + int64(s.cfg.Probe), kind: evProbe, arg: uint32(f)})
}

// originate builds a data packet of flow f and hands it to the source's
// router as locally originated.
func (s *sim) originate(f int, flags byte) {
	fl := &s.flows[f]
	binary.BigEndian.PutUint64(s.payload, uint64(s.now))
	s.payload[8] = flags
	var i uint32
	if n := len(s.freeBufs); n > 0 {
		i = s.freeBufs[n-1]
		s.freeBufs = s.freeBufs[:n-1]
	} else {
		i = uint32(len(s.bufs))
		s.bufs = append(s.bufs, nil)
	}
	s.bufs[i] = route.AppendData(s.bufs[i][:0], route.DataHeader{
		Src:  s.nodes[fl.src].id,
		Dst:  s.nodes[fl.dst].id,
		TTL:  s.ttl,
		Flow: uint32(f),
	}, s.payload)
	s.forward(int(fl.src), 0, i, false)
}

// forward lets node n's router decide on the data packet in buffer b,
// received on link from (0: originated here), or held here for want of a
// route when resumed is set.
func (s *sim) forward(n int, from route.LinkID, b uint32, resumed bool) {
	if !resumed {
		s.m.dataHops++
	}
	act, link, pkt, err := decide(s.nodes[n].r, s.clock(), from, s.bufs[b], resumed)
	if err != nil {
		s.dropFrame(b, true, dropError)
		return
	}
	switch act {
	case actDeliver:
		s.delivered(n, b)
	case actForward:
		if len(pkt) > 0 && &pkt[0] != &s.bufs[b][0] {
			s.bufs[b] = append(s.bufs[b][:0], pkt...)
		} else {
			s.bufs[b] = pkt
		}
		p := int(link) - 1
		if p < 0 || p >= len(s.topo.Ports(n)) {
			s.m.badLink++
			s.dropFrame(b, true, dropError)
			return
		}
		s.sendFrame(n, p, b, true)
	case actDropTTL:
		s.dropFrame(b, true, dropTTL)
	default:
		if !resumed && s.hold(n, b, from != 0) {
			return
		}
		s.dropFrame(b, true, dropNoRoute)
	}
}

// Bounds of the packets a node holds while it has no route, as
// mesh/meshnode bounds its queues: one for the packets it originated, one
// for those it relays.
const (
	maxHeldPerDst      = 64
	maxHeld            = 1024
	maxRelayHeldPerDst = 32
	maxRelayHeld       = 256
)

// held is a data packet a node holds until it has a route.
type held struct {
	buf     uint32
	flow    int32
	at      int64
	relayed bool
}

// holdLimit is how long a node holds a packet it originated, or relays.
func (s *sim) holdLimit(relayed bool) time.Duration {
	if relayed {
		return s.cfg.RelayHold
	}
	return s.cfg.Hold
}

// hold keeps the regular packet in b, which node n originated or relays
// and has no route for, until a route appears or the hold passes; false if
// it may not (holding is off, a probe, or the bounds are reached).
func (s *sim) hold(n int, b uint32, relayed bool) bool {
	if s.holdLimit(relayed) <= 0 {
		return false
	}
	h, _, flags, ok := s.payloadOf(b)
	if !ok || flags&flagProbe != 0 || int(h.Flow) >= len(s.flows) {
		return false
	}
	perDst, total := maxHeldPerDst, maxHeld
	if relayed {
		perDst, total = maxRelayHeldPerDst, maxRelayHeld
	}
	dst := s.flows[h.Flow].dst
	nd := &s.nodes[n]
	same, all := 0, 0
	for _, p := range nd.held {
		if p.relayed == relayed {
			all++
			if s.flows[p.flow].dst == dst {
				same++
			}
		}
	}
	if same >= perDst || all >= total {
		return false
	}
	nd.held = append(nd.held, held{buf: b, flow: int32(h.Flow), at: s.now, relayed: relayed})
	if relayed {
		s.m.relayHeld++
	} else {
		s.m.held++
	}
	return true
}

// salvageable reports whether the data packet in b may be given back to
// its sender's router when its link fails to deliver it: regular packets
// may, probes may not (they measure when the path is restored).
func (s *sim) salvageable(b uint32) bool {
	_, _, flags, ok := s.payloadOf(b)
	return ok && flags&flagProbe == 0
}

// salvage takes back the data packet in b, which node n's link failed to
// deliver, as a radio MAC that gives up on a frame hands it back to the
// routing: it goes again at once if the route now leads to a neighbour
// not in doubt, or else waits like a packet without a route (within the
// same bounds) until the router has probed the silent neighbour and kept
// or replaced it. What cannot wait is lost to why.
func (s *sim) salvage(n int, b uint32, why dropReason) {
	h, _, _, ok := s.payloadOf(b)
	if !ok {
		s.dropFrame(b, true, why)
		return
	}
	s.m.salvaged++
	if s.canSend(n, h.Dst) {
		s.restamp(b)
		s.forward(n, 0, b, true)
		return
	}
	if !s.hold(n, b, h.Src != s.nodes[n].id) {
		s.dropFrame(b, true, why)
	}
}

// canSend reports whether node n has a route to dst whose next hop is not
// in doubt.
func (s *sim) canSend(n int, dst route.NodeID) bool {
	r := s.nodes[n].r
	l, ok := r.NextHop(dst)
	return ok && !r.InDoubt(l)
}

// restamp sets the send time in the data packet in b to now: a packet that
// waited counts from when it got going again, not from when it was made,
// so that the recovery times stay those of the routing.
func (s *sim) restamp(b uint32) {
	binary.BigEndian.PutUint64(s.bufs[b][route.DataHeaderLen:], uint64(s.now))
}

// releaseHeld sends the packets node n holds whose destination it now has
// a route to, stamped with the time they leave (so that a recovery counts
// from when a packet got going again, not from when it was made), and
// drops those held in vain for as long as they may be.
func (s *sim) releaseHeld(n int) {
	nd := &s.nodes[n]
	kept := nd.held[:0]
	var ready []held
	for _, p := range nd.held {
		switch {
		case s.now-p.at >= int64(s.holdLimit(p.relayed)):
			s.dropFrame(p.buf, true, dropNoRoute)
		case s.canSend(n, s.nodes[s.flows[p.flow].dst].id):
			ready = append(ready, p)
		default:
			kept = append(kept, p)
		}
	}
	nd.held = kept
	for _, p := range ready {
		s.restamp(p.buf)
		s.forward(n, 0, p.buf, true)
	}
}

// dropHeld drops every packet node n holds: it died, or the run ends.
func (s *sim) dropHeld(n int) {
	nd := &s.nodes[n]
	for _, p := range nd.held {
		s.dropFrame(p.buf, true, dropNoRoute)
	}
	nd.held = nd.held[:0]
}

// payloadOf returns the send time and flags the simulator put in the data
// packet in b, or ok false if it cannot read them.
func (s *sim) payloadOf(b uint32) (h route.DataHeader, sent int64, flags byte, ok bool) {
	h, payload, err := route.ParseData(s.bufs[b])
	if err != nil || len(payload) < payloadHeader {
		return h, 0, 0, false
	}
	return h, int64(binary.BigEndian.Uint64(payload)), payload[8], true
}

// delivered accounts for a data packet that reached node n.
func (s *sim) delivered(n int, b uint32) {
	h, sent, flags, ok := s.payloadOf(b)
	s.release(b)
	if !ok || int(h.Flow) >= len(s.flows) || s.flows[h.Flow].dst != int32(n) {
		s.m.misdelivered++
		return
	}
	if flags&flagEligible != 0 && flags&flagProbe == 0 {
		s.m.delivered++
	}
	fl := &s.flows[h.Flow]
	if fl.brokenAt >= 0 && sent > fl.brokenAt {
		s.m.recovery = append(s.m.recovery, time.Duration(sent-fl.brokenAt).Seconds())
		fl.brokenAt = -1
	}
}

// dropFrame releases the frame in b and counts why it was lost: control
// frames by reason only, data packets by reason when they were regular
// traffic between connected ends.
func (s *sim) dropFrame(b uint32, data bool, why dropReason) {
	if !data {
		s.release(b)
		s.m.ctrlDrops[why]++
		return
	}
	if why == dropTTL {
		s.m.loops++
	}
	_, _, flags, ok := s.payloadOf(b)
	s.release(b)
	if ok && flags&flagEligible != 0 && flags&flagProbe == 0 {
		s.m.dataDrops[why]++
	}
}
