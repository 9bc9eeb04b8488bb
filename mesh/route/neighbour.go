package route

import (
	"math/bits"
	"time"
)

// neighbour is the state of one link: the Hello exchange that measures it,
// the routes learned over it and the reliable update stream sent on it.
type neighbour struct {
	link LinkID
	peer NodeID
	leaf bool // the peer is a leaf
	// dead is set when nothing was heard from the peer for deadAfter;
	// its routes are dropped and nothing but Hellos is sent until it is
	// heard again.
	dead bool
	upAt time.Time

	// Hello reception, as in RFC 8966 Appendix A: history holds one bit
	// per expected Hello (bit 0 the latest), expected the next seqno.
	heard     bool
	history   uint16
	expected  uint16
	interval  time.Duration // the peer's Hello interval, from its Hellos
	lastHello time.Time
	missDue   time.Time // when the next Hello counts as missed
	// lastHeard is when the last packet of any kind came from the peer;
	// probeDue is when the next probe may go while it is silent.
	lastHeard time.Time
	probeDue  time.Time
	probe     bool // a probe is due with the next flush
	// suspectSince is when the host reported a frame to the peer
	// undeliverable (zero: not suspect); unless the peer is heard from
	// after it, it is dead suspectTime later.
	suspectSince time.Time
	// rxcost is measured here, txcost is the peer's rxcost from its IHU,
	// cost is the link's ETX cost as routes use it; smoothed is a moving
	// average of the measured cost, in sixteenths (0: none yet).
	rxcost, txcost, cost uint16
	smoothed             uint32

	helloSeqno uint16
	nextHello  time.Time

	// routes holds what the peer announced, by destination index. A leaf
	// peer announces only itself, so it gets one entry instead of a slice
	// as long as the table.
	routes    []entry
	leafDest  uint32 // index+1 of a leaf peer's destination; 0 if none yet
	leafRoute entry

	// Outgoing: control TLVs queued during one call, serials to
	// acknowledge, and the update stream.
	out       []byte
	acks      []uint32
	ackDue    time.Time // when queued acks go even without other traffic
	lastBatch time.Time // when the last update batch went
	serial    uint32
	queue     destQueue  // destinations to announce, in order
	reqs      []seqnoReq // seqno requests to send
	queued    []uint64   // bitset over destination indices: in queue
	inflight  []flight   // unacknowledged update batches, oldest first
	srtt      time.Duration
	rttvar    time.Duration
	backoff   uint8
}

// entry is one route a neighbour announced. serial is the serial of the
// batch it came in, so that a reordered older batch cannot overwrite it.
type entry struct {
	seqno, metric uint16
	serial        uint32
}

var noEntry = entry{metric: MetricInfinity}

// flight is one update batch waiting for its ack.
type flight struct {
	serial uint32
	sentAt time.Time
	dests  []uint32
	reqs   []seqnoReq
}

// seqnoReq is a seqno request waiting to go on a link, or in flight.
type seqnoReq struct {
	dest  NodeID
	seqno uint16
	hops  uint8
}

// entry returns the route the neighbour announced for destination d.
func (nb *neighbour) entry(d uint32) entry {
	if nb.leaf {
		if nb.leafDest == d+1 {
			return nb.leafRoute
		}
		return noEntry
	}
	if int(d) < len(nb.routes) {
		return nb.routes[d]
	}
	return noEntry
}

// entryRef returns a pointer to the neighbour's entry for d, growing the
// table to n destinations if needed.
func (nb *neighbour) entryRef(d uint32, n int) *entry {
	if nb.leaf {
		if nb.leafDest != d+1 {
			nb.leafDest, nb.leafRoute = d+1, noEntry
		}
		return &nb.leafRoute
	}
	if int(d) >= len(nb.routes) {
		old := len(nb.routes)
		if n > cap(nb.routes) {
			grown := make([]entry, n, n+n/4)
			copy(grown, nb.routes)
			nb.routes = grown
		} else {
			nb.routes = nb.routes[:n]
		}
		for i := old; i < n; i++ {
			nb.routes[i] = noEntry
		}
	}
	return &nb.routes[d]
}

// helloTolerance is how late a Hello may be before it counts as missed: a
// little, for jitter in the link's latency.
func helloTolerance(interval time.Duration) time.Duration { return interval / 16 }

func centiseconds(d time.Duration) uint16 {
	return uint16(min(d/(10*time.Millisecond), 0xFFFF))
}

func (r *Router) addNeighbour(now time.Time, l LinkID, peer NodeID, peerLeaf bool) {
	hello := r.cfg.HelloInterval
	nb := &neighbour{
		link:       l,
		peer:       peer,
		leaf:       peerLeaf,
		upAt:       now,
		lastHeard:  now,
		history:    0xFFFF,
		interval:   hello,
		missDue:    now.Add(hello + helloTolerance(hello)),
		rxcost:     HopCost,
		txcost:     HopCost,
		cost:       HopCost,
		helloSeqno: uint16(r.rng.Uint32()),
		// The first Hello goes out now, the next at a random phase, so
		// that links brought up together do not tick in lockstep.
		nextHello: now.Add(hello/2 + time.Duration(r.rng.Int64N(int64(hello/2)+1))),
		backoff:   1,
	}
	slot := -1
	for i, other := range r.nbrs {
		if other == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		slot = len(r.nbrs)
		r.nbrs = append(r.nbrs, nil)
	}
	r.nbrs[slot] = nb
	r.links[l] = slot
	r.queueHello(nb)
	switch {
	case r.cfg.Leaf:
		r.chooseParent()
	case !peerLeaf:
		r.enqueueDump(slot)
	}
}

// removeNeighbour forgets a link and everything learned over it.
func (r *Router) removeNeighbour(now time.Time, slot int) {
	nb := r.nbrs[slot]
	r.nbrs[slot] = nil
	delete(r.links, nb.link)
	r.reselectFrom(now, nb)
	if r.cfg.Leaf && r.parent == slot {
		r.parent = -1
		r.chooseParent()
	}
}

// reselectFrom re-runs route selection for every destination nb announced,
// after nb's routes became unusable or its cost changed.
func (r *Router) reselectFrom(now time.Time, nb *neighbour) {
	if nb.leaf {
		if nb.leafDest != 0 {
			r.reselect(now, nb.leafDest-1)
		}
		return
	}
	for d, e := range nb.routes {
		if e.metric != MetricInfinity {
			r.reselect(now, uint32(d))
		}
	}
}

// queueHello queues a Hello with an IHU in front of it, so that the peer
// has our measurement of the link when the Hello makes it measure its own.
func (r *Router) queueHello(nb *neighbour) {
	nb.out = appendIHU(nb.out, nb.rxcost)
	nb.out = appendHello(nb.out, nb.helloSeqno, centiseconds(r.cfg.HelloInterval))
	nb.helloSeqno++
}

func (r *Router) handleHello(now time.Time, slot int, m *message) {
	nb := r.nbrs[slot]
	interval := time.Duration(m.interval) * 10 * time.Millisecond
	if interval <= 0 {
		interval = r.cfg.HelloInterval
	}
	nb.interval = interval
	if nb.dead {
		r.revive(slot)
	}
	if !nb.heard {
		nb.heard = true
		nb.history = 0xFFFF
		nb.expected = m.seqno + 1
	} else {
		switch delta := int16(m.seqno - nb.expected); {
		case delta >= 0 && delta < 16:
			nb.history = nb.history<<(delta+1) | 1
			nb.expected = m.seqno + 1
		case delta < 0 && delta >= -16:
			// A late Hello, already counted as missed.
			nb.history |= 1 << (-delta - 1)
		default:
			// The peer restarted its Hello seqnos or we lost track.
			nb.history = 0xFFFF
			nb.expected = m.seqno + 1
		}
	}
	nb.lastHello = now
	nb.missDue = now.Add(interval + helloTolerance(interval))
	nb.rxcost = rxcostOf(nb.history)
	r.updateCost(now, slot)
}

// handleIHU records the peer's measurement; it enters the link cost with
// the next Hello, so that every Hello interval gives one sample.
func (r *Router) handleIHU(slot int, rxcost uint16) {
	if nb := r.nbrs[slot]; !nb.dead {
		nb.txcost = rxcost
	}
}

// checkHellos counts the Hellos that are overdue into the reception
// history, which is what the link's cost is measured from.
func (r *Router) checkHellos(now time.Time, slot int) {
	nb := r.nbrs[slot]
	if nb.dead || now.Before(nb.missDue) {
		return
	}
	for !now.Before(nb.missDue) {
		nb.history <<= 1
		nb.expected++
		nb.missDue = nb.missDue.Add(nb.interval)
	}
	nb.rxcost = rxcostOf(nb.history)
	r.updateCost(now, slot)
}

// deadAfter is how long a neighbour may stay silent before it is dead:
// Config.DeadHellos of its Hello intervals less half a one. The last Hello
// is not waited for in full because the silence has been checked by then:
// from the first overdue Hello on, the neighbour is probed every
// probeEvery, and a live one answers each probe within a round trip. So a
// neighbour that dies is noticed within that time of its last packet, and
// a live one is declared dead only if two Hellos in a row and every probe
// in between are lost.
func (r *Router) deadAfter(nb *neighbour) time.Duration {
	return time.Duration(r.cfg.DeadHellos)*nb.interval - nb.interval/2
}

// probeEvery is the time between the probes of a silent neighbour.
func probeEvery(interval time.Duration) time.Duration { return interval / 4 }

// suspectTime is how long a neighbour the link layer could not deliver to
// has to answer a probe before it is dead: an eighth of a Hello interval,
// or three measured round trips if that is longer, so that three probes
// can go and come back. It is probed every suspectProbeEvery meanwhile.
func suspectTime(nb *neighbour) time.Duration { return max(nb.interval/8, 3*nb.srtt) }

func suspectProbeEvery(nb *neighbour) time.Duration { return suspectTime(nb) / 4 }

// nextProbe is when a silent neighbour is probed next: once a Hello is
// overdue (with the same slack a Hello gets), then every probeEvery; a
// suspect one at once, then every suspectProbeEvery.
func nextProbe(nb *neighbour) time.Time {
	first := nb.lastHeard.Add(nb.interval + helloTolerance(nb.interval))
	if !nb.suspectSince.IsZero() {
		first = nb.suspectSince
	}
	if nb.probeDue.After(first) {
		return nb.probeDue
	}
	return first
}

// deadAt is when a neighbour that stays silent is declared dead.
func (r *Router) deadAt(nb *neighbour) time.Time {
	at := nb.lastHeard.Add(r.deadAfter(nb))
	if !nb.suspectSince.IsZero() {
		at = earliest(at, nb.suspectSince.Add(suspectTime(nb)))
	}
	return at
}

// checkLiveness declares a neighbour dead after deadAfter of silence (or
// suspectTime after a failed delivery), and probes it while it is silent.
// A probe is an update batch, which the peer acknowledges: an empty one (a
// Serial alone) unless an update batch goes anyway (see flushLink), so it
// needs nothing new on the wire.
func (r *Router) checkLiveness(now time.Time, slot int) {
	nb := r.nbrs[slot]
	if nb.dead {
		return
	}
	if !now.Before(r.deadAt(nb)) {
		r.declareDead(now, slot)
		return
	}
	if !now.Before(nextProbe(nb)) {
		nb.probe = true
		every := probeEvery(nb.interval)
		if !nb.suspectSince.IsZero() {
			every = suspectProbeEvery(nb)
		}
		nb.probeDue = now.Add(every)
		r.counters.Probes++
	}
}

// noteHeard records a packet from the neighbour: it is alive, whatever was
// suspected.
func (nb *neighbour) noteHeard(now time.Time) {
	nb.lastHeard = now
	nb.suspectSince = time.Time{}
}

// rxcostOf is the ETX estimator of RFC 8966 Appendix A.2.2: 256 divided by
// the fraction of the last 16 Hellos received.
func rxcostOf(history uint16) uint16 {
	n := bits.OnesCount16(history)
	if n == 0 {
		return MetricInfinity
	}
	return uint16(HopCost * 16 / n)
}

// linkCost combines both directions' costs into the link's ETX cost:
// 256/(α·β) = txcost·rxcost/256, each direction at least perfect.
func linkCost(rxcost, txcost uint16) uint16 {
	if rxcost == MetricInfinity || txcost == MetricInfinity {
		return MetricInfinity
	}
	c := uint32(max(rxcost, HopCost)) * uint32(max(txcost, HopCost)) / HopCost
	if c >= uint32(MetricInfinity) {
		return MetricInfinity
	}
	return uint16(c)
}

// updateCost takes one sample of the link's cost (per Hello received or
// missed) into a moving average, and moves the cost routes use only when
// the average leaves a ±25 % band around it. Every change of a link's cost
// changes the metric of every route over it, which is announced onwards,
// and one Hello lost in 16 already moves ETX by 6 %: measurement noise must
// neither cost updates nor make routes flap.
func (r *Router) updateCost(now time.Time, slot int) {
	nb := r.nbrs[slot]
	raw := linkCost(nb.rxcost, nb.txcost)
	next := raw
	if raw == MetricInfinity {
		nb.smoothed = 0
	} else {
		sample := uint32(raw) * 16
		if nb.smoothed == 0 {
			nb.smoothed = sample
		} else {
			nb.smoothed = uint32(int64(nb.smoothed) + (int64(sample)-int64(nb.smoothed))/costSmoothing)
		}
		next = uint16(min(nb.smoothed/16, uint32(MetricInfinity-1)))
	}
	cur := nb.cost
	if next == cur {
		return
	}
	// A link back to perfect is taken exactly, so that equal paths over
	// good links have equal metrics.
	if next != MetricInfinity && cur != MetricInfinity && next != HopCost &&
		uint32(next)*4 <= uint32(cur)*5 && uint32(next)*5 >= uint32(cur)*4 {
		return
	}
	nb.cost = next
	r.reselectFrom(now, nb)
	if r.cfg.Leaf {
		r.chooseParent()
	}
}

// costSmoothing is the weight of the moving average of link costs: each
// sample moves it 1/costSmoothing of the way.
const costSmoothing = 4

// declareDead drops a silent neighbour's routes and stops its update
// stream; Hellos keep going so that it can come back.
func (r *Router) declareDead(now time.Time, slot int) {
	nb := r.nbrs[slot]
	nb.dead = true
	nb.heard = false
	nb.suspectSince = time.Time{}
	r.counters.NeighboursLost++
	nb.cost = MetricInfinity
	nb.rxcost = MetricInfinity
	r.reselectFrom(now, nb)
	nb.routes = nil
	nb.leafDest = 0
	r.clearStream(nb)
	if r.cfg.Leaf {
		if r.parent == slot {
			r.parent = -1
		}
		r.chooseParent()
	}
}

// revive brings a dead neighbour back when it is heard again: both sides
// may have dropped what they learned from each other, so each sends its
// whole table and asks for the other's.
func (r *Router) revive(slot int) {
	nb := r.nbrs[slot]
	nb.dead = false
	nb.rxcost, nb.txcost, nb.cost, nb.smoothed = HopCost, HopCost, HopCost, 0
	nb.backoff = 1
	nb.out = appendRouteRequest(nb.out, NodeID{}, true)
	switch {
	case r.cfg.Leaf:
		r.chooseParent()
	case !nb.leaf:
		r.enqueueDump(slot)
	}
}

func (r *Router) clearStream(nb *neighbour) {
	nb.queue = destQueue{}
	nb.queued = nil
	nb.reqs = nil
	nb.inflight = nil
	nb.acks = nil
}

// chooseParent picks a leaf's parent: the live router neighbour with the
// cheapest link, kept until another is cheaper by Config.ParentHysteresis.
// A new parent gets a new seqno with the announcement, so the route through
// it is feasible everywhere at once; the old one gets a retraction.
func (r *Router) chooseParent() {
	best := -1
	for slot, nb := range r.nbrs {
		if nb == nil || nb.dead || nb.leaf || nb.cost == MetricInfinity {
			continue
		}
		if best < 0 || nb.cost < r.nbrs[best].cost {
			best = slot
		}
	}
	cur := r.parent
	if cur >= 0 {
		if nb := r.nbrs[cur]; nb == nil || nb.dead || nb.cost == MetricInfinity {
			cur = -1
		}
	}
	if cur >= 0 && (best < 0 || uint32(r.nbrs[best].cost)+uint32(r.cfg.ParentHysteresis) >= uint32(r.nbrs[cur].cost)) {
		best = cur
	}
	if best == r.parent {
		return
	}
	old := r.parent
	r.parent = best
	if old >= 0 && r.nbrs[old] != nil && !r.nbrs[old].dead {
		r.enqueue(r.nbrs[old], 0)
	}
	if best >= 0 {
		r.bumpSeqno(r.seqno + 1)
	}
}
