package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/homemesh/homemesh/mesh/route"
)

// epoch is virtual time zero. A fixed date keeps runs identical: the
// routers see the same clock readings every time.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// sim is one run: the true network, its routers, the event queue and the
// measurements. Everything happens on one goroutine in virtual time.
type sim struct {
	cfg  Config
	topo *Topology
	ctx  context.Context

	now    int64 // virtual nanoseconds since epoch
	queue  eventQueue
	timers *timerHeap
	stop   bool
	events uint64
	// reported is when Config.Progress was last called (wall clock).
	reported time.Time

	nodes    []node
	peerPort [][]int32 // peerPort[n][p]: the port at the far end of n's port p
	session  [][]bool  // session[n][p]: n's router was told its port p is up
	cut      []bool    // by link: the link carries nothing (a partition)
	epoch    []uint32  // by link: counts the link's sessions
	comp     []int32   // by node: live component, -1 when dead

	bufs     [][]byte
	freeBufs []uint32
	actions  []func()
	freeActs []uint32

	rngLink, rngTraffic, rngScenario *rand.Rand

	flows   []flow
	traffic bool // regular flows send
	payload []byte
	ttl     uint8

	compDirty                bool // comp needs recomputing
	scenarioFrom, scenarioTo int64
	scenarioOver             bool
	reach                    reachState

	watches []watch
	m       metrics
	// links is the link layer, with Config.Link; nil without.
	links *linkState
	// attack is the attacker, with Config.Attack; nil without.
	attack *attacker
}

// node is one router in the simulated network.
type node struct {
	id    route.NodeID
	r     *route.Router
	alive bool
	hub   bool
	seqno uint16 // the seqno the node persisted when it went down
	gen   uint32 // counts kills, so that a stale restart is ignored
	// watched counts detection watches on this node, so that only a few
	// nodes pay for the check after each call.
	watched int32
	// held are the packets the node originated or relayed and holds for
	// want of a route.
	held []held
}

// watch waits for node to notice that the neighbour on port is gone.
type watch struct {
	node  int32
	port  int32
	since int64
}

// payloadHeader is the simulator's part of a data packet's payload: the
// virtual send time and flags.
const payloadHeader = 9

const (
	flagProbe    = 1 << 0 // sent while the flow recovers, not regular traffic
	flagEligible = 1 << 1 // both ends were alive and connected when it was sent
)

func newSim(cfg Config) (*sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	topo, err := buildTopology(cfg)
	if err != nil {
		return nil, err
	}
	s := &sim{
		cfg:         cfg,
		topo:        topo,
		timers:      newTimerHeap(len(topo.Nodes)),
		nodes:       make([]node, len(topo.Nodes)),
		peerPort:    make([][]int32, len(topo.Nodes)),
		session:     make([][]bool, len(topo.Nodes)),
		cut:         make([]bool, len(topo.Links)),
		epoch:       make([]uint32, len(topo.Links)),
		comp:        make([]int32, len(topo.Nodes)),
		rngLink:     rand.New(rand.NewPCG(cfg.Seed, 2)),
		rngTraffic:  rand.New(rand.NewPCG(cfg.Seed, 3)),
		rngScenario: rand.New(rand.NewPCG(cfg.Seed, 4)),
		payload:     make([]byte, cfg.Payload),
	}
	for i := range s.nodes {
		s.nodes[i].id = nodeID(cfg.Seed, i)
	}
	for _, h := range topo.Hubs {
		s.nodes[h].hub = true
	}
	if cfg.Link {
		if err := s.newLinks(); err != nil {
			return nil, err
		}
	}
	if cfg.Attack {
		if err := s.newAttacker(); err != nil {
			return nil, err
		}
	}
	s.ttl = uint8(cfg.TTL)
	if cfg.TTL == 0 {
		s.ttl = route.DefaultTTL
		// Routes may be longer than the fewest hops; leave room for that.
		for _, d := range topo.Hops(topo.Hubs...) {
			if 2*d > route.DefaultTTL {
				s.ttl = 255
			}
		}
	}
	// The reverse port of every port, found once so that a frame knows at
	// once where it arrives.
	for n := range s.nodes {
		ports := topo.Ports(n)
		s.peerPort[n] = make([]int32, len(ports))
		s.session[n] = make([]bool, len(ports))
		for p, pt := range ports {
			for q, back := range topo.Ports(pt.Peer) {
				if back.Link == pt.Link {
					s.peerPort[n][p] = int32(q)
					break
				}
			}
		}
	}
	return s, nil
}

func buildTopology(cfg Config) (*Topology, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	lp := LinkParams{LatencyMin: cfg.LatencyMin, LatencyMax: cfg.LatencyMax, Loss: cfg.Loss}
	var t *Topology
	var err error
	switch cfg.Topology {
	case TopologyLine:
		t = Line(cfg.Nodes, lp, rng)
	case TopologyGrid:
		t = Grid(cfg.Nodes, lp, rng)
	case TopologyRandom:
		t, err = Random(cfg.Nodes, cfg.Degree, lp, rng)
	case TopologyHouse:
		t, err = House(cfg.Nodes, lp, rng)
	default:
		err = fmt.Errorf("unknown topology %q", cfg.Topology)
	}
	if err != nil {
		return nil, err
	}
	t.pickHubs(cfg.Hubs)
	return t, nil
}

// nodeID derives node i's id as a real node does, from a static public key,
// here one made up from the seed and the index.
func nodeID(seed uint64, i int) route.NodeID {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seed)
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	key := sha256.Sum256(b[:])
	return route.IDFromKey(key[:])
}

func (s *sim) clock() time.Time { return epoch.Add(time.Duration(s.now)) }

// at schedules f at virtual time t.
func (s *sim) at(t int64, f func()) {
	var i uint32
	if n := len(s.freeActs); n > 0 {
		i = s.freeActs[n-1]
		s.freeActs = s.freeActs[:n-1]
		s.actions[i] = f
	} else {
		i = uint32(len(s.actions))
		s.actions = append(s.actions, f)
	}
	s.queue.push(event{at: max(t, s.now), kind: evAction, arg: i})
}

// run processes events until an action sets stop or nothing is left. A
// timer due at the same instant as a frame arrives fires after it: a
// deadline means "if nothing has come by then", so an ack arriving exactly
// at its retransmission deadline is in time.
func (s *sim) run() {
	for !s.stop {
		tn, tat, tok := s.timers.next()
		if s.queue.len() == 0 && !tok {
			return
		}
		if tok && (s.queue.len() == 0 || tat < s.queue.peek().at) {
			s.now = tat
			s.events++
			s.tick(tn)
			continue
		}
		e := s.queue.pop()
		s.now = e.at
		s.events++
		if s.events%(1<<16) == 0 {
			if s.ctx != nil && s.ctx.Err() != nil {
				s.abort(s.ctx.Err())
				return
			}
			// The wall clock only paces the reports: nothing simulated
			// depends on it.
			if s.cfg.Progress != nil && time.Since(s.reported) >= progressInterval {
				s.reported = time.Now()
				s.cfg.Progress(Progress{Virtual: time.Duration(s.now), Events: s.events})
			}
		}
		switch e.kind {
		case evFrame:
			s.arrive(e)
		case evSend:
			s.sendRegular(int(e.arg))
		case evProbe:
			s.sendProbe(int(e.arg))
		case evAction:
			f := s.actions[e.arg]
			s.actions[e.arg] = nil
			s.freeActs = append(s.freeActs, e.arg)
			f()
		}
	}
}

// boot starts node n's router, with the seqno it persisted if it ran
// before.
func (s *sim) boot(n int) error {
	nd := &s.nodes[n]
	rc := route.Config{
		ID:            nd.id,
		Seqno:         nd.seqno,
		Hub:           nd.hub,
		HelloInterval: s.cfg.Hello,
		Seed:          s.cfg.Seed,
	}
	if s.links != nil {
		rc.MaxPacket = linkMaxPacket
	}
	r, err := route.New(rc, s.clock())
	if err != nil {
		return fmt.Errorf("node %d: %w", n, err)
	}
	nd.r = r
	nd.alive = true
	s.rearm(int32(n), false)
	return nil
}

// kill stops node n at once, as a power cut does: its neighbours are not
// told and must notice the silence.
func (s *sim) kill(n int) {
	nd := &s.nodes[n]
	nd.seqno = nd.r.Seqno()
	s.dropHeld(n)
	s.m.routers.add(nd.r)
	nd.r = nil
	nd.alive = false
	clear(s.session[n])
	if s.links != nil {
		clear(s.links.sessions[n])
	}
	s.timers.remove(int32(n))
	s.dropWatches(n)
}

// linkUp tells both ends of n's port p that their link session is
// established, replacing any session they had.
func (s *sim) linkUp(n, p int) {
	peer := s.topo.Ports(n)[p].Peer
	q := int(s.peerPort[n][p])
	link := s.topo.Ports(n)[p].Link
	if !s.nodes[n].alive || !s.nodes[peer].alive || s.cut[link] {
		return
	}
	s.epoch[link]++
	if s.links != nil {
		if err := s.handshakeLink(n, p, peer, q); err != nil {
			return
		}
	}
	for _, end := range [2][2]int{{n, p}, {peer, q}} {
		a, ap := end[0], end[1]
		other := s.topo.Ports(a)[ap].Peer
		r := s.nodes[a].r
		if s.session[a][ap] {
			s.unwatch(a, ap)
			s.transmit(a, r.LinkDown(s.clock(), route.LinkID(ap+1)))
		}
		s.session[a][ap] = true
		s.transmit(a, r.LinkUp(s.clock(), route.LinkID(ap+1), s.nodes[other].id, false))
		s.rearm(int32(a), false)
	}
}

// handshake schedules linkUp on every link of n whose far end is up, one
// round trip from now, as a link handshake would take.
func (s *sim) handshake(n int) {
	for p, pt := range s.topo.Ports(n) {
		if !s.nodes[pt.Peer].alive {
			continue
		}
		rtt := 2 * int64(s.topo.Links[pt.Link].Latency)
		s.at(s.now+rtt, func() { s.linkUp(n, p) })
	}
}

func (s *sim) tick(n int32) {
	nd := &s.nodes[n]
	s.transmit(int(n), nd.r.Tick(s.clock()))
	if s.links != nil {
		s.tickLinks(int(n))
	}
	s.rearm(n, true)
	if len(nd.held) > 0 {
		s.releaseHeld(int(n))
	}
	if nd.watched > 0 {
		s.checkWatches(int(n))
	}
}

// rearm queues node n's next Tick at its router's deadline. A router that
// asks, right after a Tick, to be ticked again at once is moved a
// millisecond on and counted, so that a bug cannot stall virtual time.
func (s *sim) rearm(n int32, afterTick bool) {
	d := s.nodes[n].r.Deadline()
	var at int64
	if !d.IsZero() {
		at = int64(d.Sub(epoch))
	}
	if s.links != nil {
		if l := s.linkDeadline(int(n)); l != 0 && (at == 0 || l < at) {
			at = l
		}
	}
	if at == 0 {
		s.timers.remove(n)
		return
	}
	if at <= s.now {
		at = s.now
		if afterTick {
			at = s.now + int64(time.Millisecond)
			s.m.timerSpins++
		}
	}
	if s.timers.pos[n] < 0 || s.timers.at[n] != at {
		s.timers.set(n, at)
	}
}

// buffer returns a pooled buffer holding a copy of b.
func (s *sim) buffer(b []byte) uint32 {
	var i uint32
	if n := len(s.freeBufs); n > 0 {
		i = s.freeBufs[n-1]
		s.freeBufs = s.freeBufs[:n-1]
	} else {
		i = uint32(len(s.bufs))
		s.bufs = append(s.bufs, nil)
	}
	s.bufs[i] = append(s.bufs[i][:0], b...)
	return i
}

func (s *sim) release(i uint32) { s.freeBufs = append(s.freeBufs, i) }

// transmit puts a router's control packets on their links.
func (s *sim) transmit(n int, sends []route.Send) {
	for _, snd := range sends {
		p := int(snd.Link) - 1
		if p < 0 || p >= len(s.topo.Ports(n)) {
			s.m.badLink++
			continue
		}
		s.m.ctrlPackets++
		s.m.ctrlBytes += uint64(len(snd.Packet))
		s.sendFrame(n, p, s.buffer(snd.Packet), false)
	}
}

// sendFrame puts the frame in buffer b on n's port p. Control frames see the
// link's raw loss; data frames are retransmitted up to Retries times, each
// attempt costing a round trip more.
func (s *sim) sendFrame(n, p int, b uint32, data bool) {
	pt := s.topo.Ports(n)[p]
	link := &s.topo.Links[pt.Link]
	if s.cut[pt.Link] {
		s.dropFrame(b, data, dropCut)
		return
	}
	if s.links != nil && len(s.bufs[b]) > 0 && !s.sealFrame(n, p, b, data) {
		s.dropFrame(b, data, dropStale)
		return
	}
	delay := int64(link.Latency)
	tries := 1
	if data {
		tries += s.cfg.Retries
	}
	for try := 0; ; try++ {
		if link.Loss == 0 || s.rngLink.Float64() >= link.Loss {
			break
		}
		if try+1 == tries {
			if data {
				s.reportUndelivered(n, p, s.now+delay+int64(link.Latency)+int64(time.Millisecond), b, dropLoss)
			} else {
				s.dropFrame(b, false, dropLoss)
			}
			return
		}
		delay += 2*int64(link.Latency) + int64(time.Millisecond)
	}
	s.queue.push(event{at: s.now + delay, kind: evFrame, node: int32(pt.Peer), port: s.peerPort[n][p], arg: b, epoch: s.epoch[pt.Link]})
}

// arrive hands a frame to the router at its far end.
func (s *sim) arrive(e event) {
	n := int(e.node)
	nd := &s.nodes[n]
	buf := s.bufs[e.arg]
	data := route.IsData(buf)
	if !nd.alive {
		s.undeliverable(n, int(e.port), e.arg, data, dropDeadHop)
		return
	}
	link := s.topo.Ports(n)[e.port].Link
	if s.cut[link] {
		s.undeliverable(n, int(e.port), e.arg, data, dropCut)
		return
	}
	if e.epoch != s.epoch[link] || !s.session[n][e.port] {
		s.dropFrame(e.arg, data, dropStale)
		return
	}
	if s.links != nil {
		pkt, ok := s.openFrame(n, int(e.port), e.arg)
		if !ok {
			// A frame of the link layer's own carries no packet; a data
			// frame the session refused is lost.
			if data {
				s.dropFrame(e.arg, true, dropStale)
			} else {
				s.release(e.arg)
			}
			s.rearm(e.node, false)
			return
		}
		s.bufs[e.arg] = append(s.bufs[e.arg][:0], pkt...)
		buf = s.bufs[e.arg]
	}
	if data {
		s.forward(n, route.LinkID(e.port+1), e.arg, false)
		return
	}
	sends, err := nd.r.Receive(s.clock(), route.LinkID(e.port+1), buf)
	s.release(e.arg)
	if err != nil {
		s.m.rejected++
	}
	s.transmit(n, sends)
	s.rearm(e.node, false)
	if len(nd.held) > 0 {
		s.releaseHeld(n)
	}
	if nd.watched > 0 {
		s.checkWatches(n)
	}
}

// undeliverable handles the frame in buffer b that reached n's port p but
// no receiver (a dead node, a cut link): a data frame is reported to its
// sender once the sender's link layer would have given up (no
// acknowledgement for the first try, a round trip after it arrived, nor
// for any retry); why is what it is lost to if it goes no further.
func (s *sim) undeliverable(n, p int, b uint32, data bool, why dropReason) {
	if !data {
		s.dropFrame(b, false, why)
		return
	}
	lat := int64(s.topo.Links[s.topo.Ports(n)[p].Link].Latency)
	giveUp := lat + int64(time.Millisecond) + int64(s.cfg.Retries)*(2*lat+int64(time.Millisecond))
	s.reportUndelivered(s.topo.Ports(n)[p].Peer, int(s.peerPort[n][p]), s.now+giveUp, b, why)
}

// reportUndelivered tells node n's router at time at that the data frame
// in buffer b, sent on its port p, went unacknowledged, if the links
// report that and the link session is still the one the frame went on;
// with Config.Salvage the link also gives the packet back to be sent
// again. What goes no further is lost to why.
func (s *sim) reportUndelivered(n, p int, at int64, b uint32, why dropReason) {
	if !s.cfg.LinkFeedback {
		s.dropFrame(b, true, why)
		return
	}
	link := s.topo.Ports(n)[p].Link
	ep := s.epoch[link]
	s.m.undelivered++
	keep := s.cfg.Salvage && s.salvageable(b)
	if !keep {
		s.dropFrame(b, true, why)
	}
	s.at(at, func() {
		if !s.nodes[n].alive || !s.session[n][p] || s.epoch[link] != ep {
			if keep {
				s.dropFrame(b, true, why)
			}
			return
		}
		s.transmit(n, s.nodes[n].r.DeliveryFailed(s.clock(), linkID(p)))
		s.rearm(int32(n), false)
		if keep {
			s.salvage(n, b, why)
		}
		if s.nodes[n].watched > 0 {
			s.checkWatches(n)
		}
	})
}

// Run runs the simulation cfg describes and returns its measurements. A
// large network takes a while: it stops with ctx's error once ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	s, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.script(); err != nil {
		return nil, err
	}
	s.ctx = ctx
	s.run()
	if s.m.err != nil {
		return nil, s.m.err
	}
	return s.result(), nil
}
