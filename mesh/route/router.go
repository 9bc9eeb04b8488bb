package route

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// LinkID is the host's handle for one neighbour link. Zero is not a link:
// Forward takes it to mean a packet originated by this node.
type LinkID uint32

// HopCost is the cost of a perfect link (no Hello lost either way). A path
// of n perfect links has metric n*HopCost, so metrics reach at most about
// 255 perfect hops, as far as a data packet's TTL reaches anyway.
const HopCost = 256

// Config configures a Router. Only ID is required; every tuning field has a
// default, used when the field is zero.
type Config struct {
	// ID is this node's id (IDFromKey of its static key).
	ID NodeID
	// Seqno is the seqno the host persisted from Router.Seqno; New starts
	// above it, so a restarted node's routes win over its old ones. Zero
	// (nothing persisted) works too: the network then asks for a newer
	// seqno, which costs one request round trip.
	Seqno uint16
	// Hub marks the node as a hub (the border to the home's services) in
	// its announcements, so other nodes can find the nearest one.
	Hub bool
	// Leaf makes the node a battery node: it attaches to one parent router,
	// announces only itself and only to that parent, holds no routes and
	// never relays.
	Leaf bool
	// HelloInterval is how often a Hello (with an IHU) goes on every link.
	// Default 1 s; it must lie between 10 ms and 10 min.
	HelloInterval time.Duration
	// DeadHellos sets how long a neighbour may stay silent before it is
	// dead: DeadHellos of its Hello intervals less half a one. While a
	// Hello is overdue the neighbour is probed, so that lost Hellos alone
	// do not kill it. Default 3 (2.5 s at 1 s Hellos); at least 2.
	DeadHellos int
	// Hysteresis is how much better (in metric units) another route must be
	// before the router switches to it. Default HopCost/4.
	Hysteresis uint16
	// UpdateThreshold is the smallest change of a route's metric that is
	// announced (changes of seqno, next hop and reachability always are);
	// the effective threshold is the larger of it and 1/16 of the metric.
	// Default HopCost/4.
	UpdateThreshold uint16
	// ParentHysteresis is how much cheaper another router's link must be
	// before a leaf moves to it. Default HopCost/2.
	ParentHysteresis uint16
	// RequestTimeout is how long a seqno request waits for its answer
	// before it is sent again (doubling each time), and how long a
	// forwarded request suppresses duplicates. Default 250 ms.
	RequestTimeout time.Duration
	// RequestInterval is the longest wait between the seqno requests of a
	// router that stays starved (the wait doubles from RequestTimeout up to
	// it), and how long a forwarded request is remembered to pass its
	// answer back. Requests are not acknowledged, so a lost one costs
	// this much at most. Default 1 s.
	RequestInterval time.Duration
	// SourceGCTime is how long an unreachable destination's feasibility
	// distance is kept before it is forgotten. Default 3 min.
	SourceGCTime time.Duration
	// MaxPacket is the largest control packet built, in bytes. Default
	// 1200, at least 64.
	MaxPacket int
	// UpdateWindow is how many unacknowledged update packets may be in
	// flight on a link. Default 16.
	UpdateWindow int
	// BatchDelay is how long a link waits after an update packet before it
	// sends the next one that is not full, so that changes arriving in a
	// burst share packets, and the longest an ack waits for a packet to
	// ride on. Default 10 ms.
	BatchDelay time.Duration
	// MaxRoutes caps the number of destinations held. Default 65536.
	MaxRoutes int
	// Seed seeds the router's own random source (used for timer phases),
	// so a simulation is reproducible. The node id is mixed in, so one
	// seed serves a whole network.
	Seed uint64
}

// withDefaults returns cfg with every zero tuning field set, or an error for
// a value that cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ID == (NodeID{}) {
		return cfg, errors.New("route config: the node id is zero")
	}
	if cfg.Leaf && cfg.Hub {
		return cfg, errors.New("route config: a leaf cannot be a hub")
	}
	if cfg.HelloInterval == 0 {
		cfg.HelloInterval = time.Second
	}
	if cfg.HelloInterval < 10*time.Millisecond || cfg.HelloInterval > 10*time.Minute {
		return cfg, fmt.Errorf("route config: hello interval %v: want 10ms to 10m", cfg.HelloInterval)
	}
	setDefault(&cfg.DeadHellos, 3)
	setDefault(&cfg.Hysteresis, HopCost/4)
	setDefault(&cfg.UpdateThreshold, HopCost/4)
	setDefault(&cfg.ParentHysteresis, HopCost/2)
	setDefault(&cfg.RequestTimeout, 250*time.Millisecond)
	setDefault(&cfg.RequestInterval, time.Second)
	setDefault(&cfg.SourceGCTime, 3*time.Minute)
	setDefault(&cfg.MaxPacket, 1200)
	setDefault(&cfg.UpdateWindow, 16)
	setDefault(&cfg.BatchDelay, 10*time.Millisecond)
	setDefault(&cfg.MaxRoutes, 1<<16)
	switch {
	case cfg.DeadHellos < 2 || cfg.DeadHellos > 16:
		return cfg, fmt.Errorf("route config: dead hellos %d: want 2 to 16", cfg.DeadHellos)
	case cfg.MaxPacket < 64 || cfg.MaxPacket > 65535:
		return cfg, fmt.Errorf("route config: max packet %d: want 64 to 65535", cfg.MaxPacket)
	case cfg.UpdateWindow < 1, cfg.RequestInterval < 0, cfg.MaxRoutes < 1,
		cfg.RequestTimeout < 0, cfg.SourceGCTime < 0, cfg.BatchDelay < 0:
		return cfg, errors.New("route config: a negative or zero limit")
	}
	return cfg, nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Send is a packet for the host to send on a link.
type Send struct {
	Link   LinkID
	Packet []byte
}

// Router is one node's routing state. It is not safe for concurrent use:
// the host calls it from one goroutine (or under one lock).
type Router struct {
	cfg   Config
	id    NodeID
	seqno uint16
	flags uint8
	rng   *rand.Rand
	start time.Time

	// dests holds every known destination; index 0 is this node. Slots
	// of forgotten destinations are reused (free).
	dests []dest
	index destIndex
	free  []uint32

	// nbrs holds the neighbours by slot (nil: free); links maps the
	// host's link handles to slots.
	nbrs  []*neighbour
	links map[LinkID]int
	// parent is a leaf's parent slot, -1 while it has none.
	parent int

	requests map[uint32]*request
	// nextRequest is the earliest due time among requests (zero: none);
	// it may be early, never late.
	nextRequest time.Time
	nextGC      time.Time
	counters    Counters

	msgs []message // scratch for decoding
}

// New returns a router for cfg, started at now with its seqno one above
// cfg.Seqno.
func New(cfg Config, now time.Time) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Router{
		cfg:      cfg,
		id:       cfg.ID,
		seqno:    cfg.Seqno + 1,
		rng:      rand.New(rand.NewPCG(cfg.Seed, idSeed(cfg.ID))),
		start:    now,
		index:    newDestIndex(rand.NewPCG(cfg.Seed^indexKeySalt, idSeed(cfg.ID)).Uint64()),
		links:    map[LinkID]int{},
		parent:   -1,
		requests: map[uint32]*request{},
		nextGC:   now.Add(cfg.SourceGCTime / 4),
	}
	if cfg.Hub {
		r.flags |= flagHub
	}
	if cfg.Leaf {
		r.flags |= flagLeaf
	}
	r.newDest(cfg.ID)
	r.dests[0].selMetric = 0
	r.dests[0].advMetric = 0
	return r, nil
}

// indexKeySalt sets the destination index's key apart from the router's
// random source, which draws from the same seed.
const indexKeySalt = 0x6d65736820696478

func idSeed(id NodeID) uint64 {
	var s uint64
	for _, b := range id {
		s = s<<8 | uint64(b)
	}
	return s
}

// ID returns the router's node id.
func (r *Router) ID() NodeID { return r.id }

// Seqno returns the router's current seqno. The host persists it whenever it
// changes (a check after each call is enough) and passes it back as
// Config.Seqno after a restart.
func (r *Router) Seqno() uint16 { return r.seqno }

// Counters returns a copy of the router's counters.
func (r *Router) Counters() Counters { return r.counters }

// LinkUp tells the router a link to peer is up: the host has authenticated
// peer (and learned from its certificate whether it is a leaf). A LinkUp for
// a link that is already up starts it afresh, as a new session does.
func (r *Router) LinkUp(now time.Time, l LinkID, peer NodeID, peerLeaf bool) []Send {
	if l == 0 || peer == r.id {
		r.counters.Rejected[RejectUnknownLink]++
		return nil
	}
	if slot, ok := r.links[l]; ok {
		r.removeNeighbour(now, slot)
	}
	r.addNeighbour(now, l, peer, peerLeaf)
	return r.flush(now)
}

// LinkDown tells the router a link is gone (a transport or session error):
// its routes are dropped at once.
func (r *Router) LinkDown(now time.Time, l LinkID) []Send {
	slot, ok := r.links[l]
	if !ok {
		return nil
	}
	r.removeNeighbour(now, slot)
	return r.flush(now)
}

// DeliveryFailed tells the router that the link layer gave up on a frame
// to the neighbour on l: a radio MAC got no acknowledgement after all its
// retries. That hints that the neighbour is gone long before its Hellos
// are missed, but a burst of interference looks the same, so the router
// checks: it probes the neighbour at once and three times more, and
// declares it dead unless it hears from it within an eighth of a Hello
// interval (or three round trips, if longer). A host whose links acknowledge nothing (plain UDP) never
// calls it and relies on the Hellos alone.
func (r *Router) DeliveryFailed(now time.Time, l LinkID) []Send {
	slot, ok := r.links[l]
	if !ok {
		return nil
	}
	nb := r.nbrs[slot]
	if nb.dead || !nb.suspectSince.IsZero() {
		return nil
	}
	r.counters.DeliveryFailures++
	nb.suspectSince = now
	nb.probeDue = now
	r.checkLiveness(now, slot)
	return r.flush(now)
}

// InDoubt reports whether the neighbour on link l is in doubt: a frame to
// it went unacknowledged (DeliveryFailed) and it has not answered the
// probes yet, or it is dead, or l is not a link. A host whose link gave a
// data packet back undelivered holds it until its route no longer leads
// to a neighbour in doubt: it then either goes another way or, the
// neighbour having answered, the same way again.
func (r *Router) InDoubt(l LinkID) bool {
	slot, ok := r.links[l]
	if !ok {
		return true
	}
	nb := r.nbrs[slot]
	return nb.dead || !nb.suspectSince.IsZero()
}

// Receive handles a control packet received on a link and returns the
// packets to send in response. A packet that does not parse, or comes on a
// link that is not up, is refused whole with an error (and counted);
// messages refused one by one (a forged origin, say) are only counted.
func (r *Router) Receive(now time.Time, from LinkID, packet []byte) ([]Send, error) {
	slot, ok := r.links[from]
	if !ok {
		r.counters.Rejected[RejectUnknownLink]++
		return nil, fmt.Errorf("route: packet on link %d, which is not up", from)
	}
	msgs, unknown, err := decodeControl(packet, r.msgs[:0])
	r.msgs = msgs[:0]
	if err != nil {
		r.counters.Rejected[RejectMalformed]++
		return nil, fmt.Errorf("route: link %d: %w", from, err)
	}
	r.counters.Rejected[RejectUnknownTLV] += uint64(unknown)
	countPacket(&r.counters.Received, packet)
	nb := r.nbrs[slot]
	nb.noteHeard(now)
	var serial uint32
	batch := false
	for i := range msgs {
		m := &msgs[i]
		switch m.typ {
		case tlvHello:
			r.handleHello(now, slot, m)
		case tlvIHU:
			r.handleIHU(slot, m.cost)
		case tlvSerial:
			serial, batch = m.serial, true
		case tlvUpdate:
			r.handleUpdate(now, slot, serial, m)
		case tlvAck:
			r.handleAck(now, nb, m.serial)
		case tlvRouteRequest:
			r.handleRouteRequest(slot, m)
		case tlvSeqnoRequest:
			r.handleSeqnoRequest(now, slot, m)
		}
	}
	if batch {
		// A batch from a neighbour held dead is not acknowledged, so its
		// updates come again once the neighbour is back.
		if nb.dead {
			r.counters.Rejected[RejectDeadNeighbour]++
		} else {
			r.queueAck(now, nb, serial)
		}
	}
	return r.flush(now), nil
}

// msgTypeOf maps a TLV type to its counter: serials count as updates,
// unknown types as nothing (NumMsgTypes).
func msgTypeOf(t tlvType, metric uint16) MsgType {
	switch t {
	case tlvHello:
		return MsgHello
	case tlvIHU:
		return MsgIHU
	case tlvSerial:
		return MsgUpdate
	case tlvUpdate:
		if metric == MetricInfinity {
			return MsgRetraction
		}
		return MsgUpdate
	case tlvAck:
		return MsgAck
	case tlvRouteRequest:
		return MsgRouteRequest
	case tlvSeqnoRequest:
		return MsgSeqnoRequest
	}
	return NumMsgTypes
}

// Tick runs the timers that are due at now: Hellos, missed-Hello checks,
// probes of silent neighbours and their deaths, update retransmissions,
// seqno request retries and garbage collection.
func (r *Router) Tick(now time.Time) []Send {
	for slot, nb := range r.nbrs {
		if nb == nil {
			continue
		}
		r.checkHellos(now, slot)
		r.checkLiveness(now, slot)
		if !now.Before(nb.nextHello) {
			r.queueHello(nb)
			nb.nextHello = nb.nextHello.Add(r.cfg.HelloInterval)
			if !nb.nextHello.After(now) {
				nb.nextHello = now.Add(r.cfg.HelloInterval)
			}
		}
		r.checkRetransmit(now, nb)
	}
	r.retryRequests(now)
	if !now.Before(r.nextGC) {
		r.collectGarbage(now)
		r.nextGC = now.Add(r.cfg.SourceGCTime / 4)
	}
	return r.flush(now)
}

// Deadline returns when Tick must next be called. Calling it earlier is
// harmless; calling it later delays Hellos and failure detection.
func (r *Router) Deadline() time.Time {
	d := r.nextGC
	for _, nb := range r.nbrs {
		if nb == nil {
			continue
		}
		d = earliest(d, nb.nextHello)
		if !nb.dead {
			d = earliest(d, nb.missDue)
			d = earliest(d, nextProbe(nb))
			d = earliest(d, r.deadAt(nb))
		}
		if len(nb.inflight) > 0 {
			d = earliest(d, nb.inflight[0].sentAt.Add(nb.rto()))
		}
		if len(nb.acks) > 0 {
			d = earliest(d, nb.ackDue)
		}
		if !nb.dead && (nb.queue.len() > 0 || len(nb.reqs) > 0) && len(nb.inflight) < r.cfg.UpdateWindow {
			d = earliest(d, nb.lastBatch.Add(r.cfg.BatchDelay))
		}
	}
	if !r.nextRequest.IsZero() {
		d = earliest(d, r.nextRequest)
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// flush turns everything queued for each link (control messages, acks,
// update batches the window allows) into packets.
func (r *Router) flush(now time.Time) []Send {
	var sends []Send
	for slot, nb := range r.nbrs {
		if nb != nil {
			sends = r.flushLink(now, slot, sends)
		}
	}
	return sends
}
