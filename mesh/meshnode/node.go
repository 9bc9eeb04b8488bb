package meshnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// Errors that Node methods return; match them with errors.Is.
var (
	// ErrStopped: the node's Run has returned.
	ErrStopped = homemesh.Errorf(homemesh.KindUnavailable, "mesh node stopped")
	// ErrBusy: Send found maxSendQueue payloads still waiting for the node
	// goroutine; the payload was not taken. Retrying later may succeed.
	ErrBusy = homemesh.Errorf(homemesh.KindUnavailable, "mesh node send queue full")
)

// Node is a running mesh node. Its methods are safe for concurrent use.
type Node struct {
	cfg    settings
	log    *slog.Logger
	conn   *net.UDPConn
	addr   *net.UDPAddr
	ep     *link.Endpoint
	self   link.Peer
	seqnos *seqnoFile // nil: not persisted
	mcast  []*beaconConn

	// Send hands payloads to the node goroutine through queue; wake tells
	// it there is something to take.
	qmu      sync.Mutex
	queue    []outgoing
	revoking []route.NodeID // Revoke's ids, for the node goroutine
	// unreachable are addresses the kernel reported unreachable (ICMP),
	// for the node goroutine; at most maxUnreachable wait.
	unreachable []netip.AddrPort
	wake        chan struct{}

	run    atomic.Int32 // runNew, runRunning, runStopped
	sentOK atomic.Uint64
	busy   atomic.Uint64

	// mu guards the state below. The node goroutine holds it while it
	// handles one event; Topology and NearestHub take it briefly.
	mu       sync.Mutex
	router   *route.Router
	e2e      *link.E2E
	links    map[route.LinkID]*peerLink
	byAddr   map[netip.AddrPort]*peerLink
	dials    map[netip.AddrPort]*dialState
	lastLink route.LinkID
	// pending holds the packets originated here, relaying those relayed,
	// while they wait for a route.
	pending  routeQueue
	relaying routeQueue
	// acksOwed are the links that owe their neighbour acknowledgements,
	// sent at the end of the event.
	acksOwed []*peerLink
	keys     map[route.NodeID][]byte
	probes   probeState
	seqno    uint16 // the seqno last persisted
	flowSalt uint32
	accepts  tokenBucket
	beacons  beaconState
	c        nodeCounters
	// out and delivered collect what an event produced; they are sent and
	// delivered after the lock is released.
	out       []datagram
	delivered []delivery

	// forwardHook, when set (by tests), sees and may alter every data
	// packet this node relays, just before it is sealed for the next hop.
	forwardHook func(packet []byte)
}

const (
	runNew int32 = iota
	runRunning
	runStopped
)

type outgoing struct {
	dst     route.NodeID
	payload []byte
}

type datagram struct {
	addr   netip.AddrPort
	b      []byte
	beacon bool // came on a multicast socket
}

type delivery struct {
	from    link.Peer
	payload []byte
}

// New checks cfg, binds the node's UDP socket (and its multicast sockets)
// and loads the persisted seqno. Nothing is sent before Run.
func New(cfg Config) (*Node, error) {
	s, err := cfg.check()
	if err != nil {
		return nil, fmt.Errorf("meshnode: %w", err)
	}
	now := time.Now()
	lc := s.Link
	lc.Identity, lc.Verifier = s.Identity, s.Verifier
	if lc.MaxE2EQueue == 0 {
		// An agent sends its announcement and then its states at once to
		// a hub it has no channel with yet; link's default of 16 would
		// drop the announcement, the oldest, to keep the states.
		lc.MaxE2EQueue = defaultE2EQueue
	}
	ep, err := link.New(lc, now)
	if err != nil {
		return nil, fmt.Errorf("meshnode: %w", err)
	}
	self := ep.Self()
	s.role = self.Role
	n := &Node{
		cfg:      s,
		ep:       ep,
		self:     self,
		wake:     make(chan struct{}, 1),
		links:    map[route.LinkID]*peerLink{},
		byAddr:   map[netip.AddrPort]*peerLink{},
		dials:    map[netip.AddrPort]*dialState{},
		pending:  newRouteQueue(routeQueueLimits{maxRouteQueuePerDst, maxRouteQueue, maxRouteQueueBytes, maxRouteWait, RejectNoRoute}),
		relaying: newRouteQueue(routeQueueLimits{maxRelayQueuePerDst, maxRelayQueue, maxRelayQueueBytes, maxRelayWait, RejectRelayNoRoute}),
		keys:     map[route.NodeID][]byte{},
		probes:   probeState{sent: map[route.NodeID]time.Time{}, bucket: tokenBucket{tokens: probeRate, at: now}},
		accepts:  tokenBucket{tokens: acceptBurst, at: now},
	}
	n.log = s.Log.With("service", "mesh", "node", self.ID.String())
	var salt [4]byte
	_, _ = rand.Read(salt[:])
	n.flowSalt = binary.BigEndian.Uint32(salt[:])

	rc := s.Route
	rc.ID, rc.Hub, rc.Leaf = self.ID, self.Role == link.RoleHub, self.Role == link.RoleLeaf
	if s.StateDir != "" {
		n.seqnos = &seqnoFile{dir: s.StateDir}
		saved, err := n.seqnos.load()
		if err != nil {
			// A corrupt file must not keep a device off the mesh: without
			// the seqno the network asks for a newer one, which costs a
			// round trip; the file is rewritten below.
			n.log.Warn("mesh seqno state unreadable, starting without it", "err", err)
			saved = 0
		}
		rc.Seqno = saved
	}
	if rc.MaxPacket == 0 {
		// A full update packet fits one link frame: one of two fragments
		// lost would lose both.
		mtu := s.Link.MTU
		if mtu == 0 {
			mtu = link.DefaultMTU
		}
		rc.MaxPacket = max(64, link.MaxWhole(mtu))
	}
	if rc.Seed == 0 {
		var seed [8]byte
		_, _ = rand.Read(seed[:])
		rc.Seed = binary.BigEndian.Uint64(seed[:])
	}
	n.router, err = route.New(rc, now)
	if err != nil {
		return nil, fmt.Errorf("meshnode: %w", err)
	}
	if err := n.persistSeqno(); err != nil {
		return nil, err
	}
	n.e2e = ep.NewE2E(n.lookupKey)
	for _, p := range s.peers {
		n.dials[p] = &dialState{next: now, backoff: minRedial}
	}

	n.conn, err = net.ListenUDP("udp", s.listen)
	if err != nil {
		return nil, fmt.Errorf("meshnode: listen on %s: %w", s.listen, err)
	}
	watchUnreachable(n.conn)
	_ = n.conn.SetReadBuffer(socketBuffer)
	_ = n.conn.SetWriteBuffer(socketBuffer)
	n.addr = n.conn.LocalAddr().(*net.UDPAddr)
	for _, name := range s.Multicast {
		bc, err := listenBeacons(name, s.group)
		if err != nil {
			n.closeSockets()
			return nil, fmt.Errorf("meshnode: multicast on %s: %w", name, err)
		}
		n.mcast = append(n.mcast, bc)
	}
	n.beacons = beaconState{next: now, tried: map[route.NodeID]time.Time{}, dials: tokenBucket{tokens: beaconDialRate, at: now}}
	return n, nil
}

// Close releases the sockets of a node that will not run (New succeeded
// but the caller gave up before Run); Run closes them itself, and Close
// then does nothing.
func (n *Node) Close() error {
	if n.run.CompareAndSwap(runNew, runStopped) {
		n.closeSockets()
	}
	return nil
}

func (n *Node) closeSockets() {
	_ = n.conn.Close()
	for _, bc := range n.mcast {
		_ = bc.conn.Close()
		_ = bc.send.Close()
	}
}

// ID returns the node's id (from its static key).
func (n *Node) ID() route.NodeID { return n.self.ID }

// Addr returns the address the node's UDP socket is bound to.
func (n *Node) Addr() *net.UDPAddr { return n.addr }

// Run runs the node until ctx ends, then closes its sockets and returns nil.
// A Node runs once.
func (n *Node) Run(ctx context.Context) error {
	if !n.run.CompareAndSwap(runNew, runRunning) {
		return errors.New("meshnode: Run called twice, or after Close")
	}
	rx := make(chan datagram, rxQueue)
	readers := sync.WaitGroup{}
	done := make(chan struct{})
	readers.Go(func() { n.read(n.conn, rx, done) })
	for _, bc := range n.mcast {
		readers.Go(func() { n.readBeacons(bc, rx, done) })
	}
	n.log.Info("mesh node running", "addr", n.addr.String(), "role", n.self.Role.String())

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	n.mu.Lock()
	start := time.Now()
	n.onTimer(start)
	n.afterEvent(start)
	n.mu.Unlock()
	lastWasTimer := false
	for {
		n.flush()
		n.mu.Lock()
		wait := time.Until(n.deadline())
		n.mu.Unlock()
		if wait <= 0 && lastWasTimer {
			// A deadline that a tick did not move must not spin the loop.
			wait = time.Millisecond
		}
		timer.Reset(max(wait, 0))
		lastWasTimer = false
		select {
		case <-ctx.Done():
			n.run.Store(runStopped)
			close(done)
			n.closeSockets()
			readers.Wait()
			n.log.Info("mesh node stopped")
			return nil
		case d := <-rx:
			n.mu.Lock()
			now := time.Now()
			n.onDatagram(now, d)
			// Take what else has arrived in the same go, so that a burst
			// costs one lock and one flush.
			for more := true; more && len(n.out) < 256; {
				select {
				case d := <-rx:
					n.onDatagram(now, d)
				default:
					more = false
				}
			}
			n.afterEvent(now)
			n.mu.Unlock()
		case <-timer.C:
			lastWasTimer = true
			n.mu.Lock()
			now := time.Now()
			n.onTimer(now)
			n.afterEvent(now)
			n.mu.Unlock()
		case <-n.wake:
			n.qmu.Lock()
			q, revoked, unreachable := n.queue, n.revoking, n.unreachable
			n.queue, n.revoking, n.unreachable = nil, nil, nil
			n.qmu.Unlock()
			n.mu.Lock()
			now := time.Now()
			if len(revoked) > 0 {
				n.onRevoke(now, revoked)
			}
			for _, a := range unreachable {
				n.onUnreachable(now, a)
			}
			for _, o := range q {
				n.onSend(now, o)
			}
			n.afterEvent(now)
			n.mu.Unlock()
		}
	}
}

// read hands every datagram the socket receives to the node goroutine.
func (n *Node) read(conn *net.UDPConn, rx chan<- datagram, done <-chan struct{}) {
	buf := make([]byte, 64<<10)
	for {
		size, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if isUnreachableErr(err) {
				n.noteUnreachable()
				continue
			}
			// ICMP errors reported on the socket and the like: not fatal,
			// but a socket that keeps failing must not spin a core.
			n.log.Debug("mesh read", "err", err)
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
				continue
			}
		}
		select {
		case rx <- datagram{addr: canonical(from), b: bytes.Clone(buf[:size])}:
		case <-done:
			return
		}
	}
}

// noteUnreachable drains the socket's error queue and hands the
// unreachable addresses to the node goroutine.
func (n *Node) noteUnreachable() {
	addrs := unreachableAddrs(n.conn)
	if len(addrs) == 0 {
		return
	}
	n.qmu.Lock()
	for _, a := range addrs {
		if len(n.unreachable) < maxUnreachable {
			n.unreachable = append(n.unreachable, canonical(a))
		}
	}
	n.qmu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// maxUnreachable bounds the ICMP reports waiting for the node goroutine:
// anyone on the path can forge them.
const maxUnreachable = 64

// onUnreachable takes the kernel's word that nothing listens at a
// neighbour's address any more (its process died, or its host is gone)
// as a failed delivery: the router probes the neighbour at once and
// declares it dead if the probes go unanswered, within a fraction of a
// Hello interval instead of 2.5 of them. A forged report costs a few
// probes: a live neighbour answers them.
func (n *Node) onUnreachable(now time.Time, a netip.AddrPort) {
	l := n.byAddr[a]
	if l == nil || !l.up {
		return
	}
	n.c.unreachable++
	n.sendRoute(now, n.router.DeliveryFailed(now, l.id))
}

// flush sends the datagrams the last event produced and delivers its
// payloads, without the lock, so OnMessage may call the node.
func (n *Node) flush() {
	n.mu.Lock()
	out, delivered := n.out, n.delivered
	n.out, n.delivered = nil, nil
	n.mu.Unlock()
	var sent, bytesOut, failed uint64
	for _, d := range out {
		if _, err := n.conn.WriteToUDPAddrPort(d.b, d.addr); err != nil {
			if isUnreachableErr(err) {
				// The write took the error an earlier datagram's ICMP
				// left on the socket; the error queue says whose.
				n.noteUnreachable()
			}
			failed++
			n.log.Debug("mesh write", "peer", d.addr.String(), "err", err)
			continue
		}
		sent++
		bytesOut += uint64(len(d.b))
	}
	if len(out) > 0 {
		n.mu.Lock()
		n.c.datagramsOut += sent
		n.c.bytesOut += bytesOut
		n.c.reject(RejectWrite, failed)
		n.mu.Unlock()
	}
	if n.cfg.OnMessage != nil {
		for _, d := range delivered {
			n.cfg.OnMessage(d.from, d.payload)
		}
	}
}

// Send seals payload (1 to MaxPayload bytes, just under 64 KiB)
// end to end for dst and routes it. It queues while the end-to-end
// handshake or the route is missing (up to maxRouteWait). It returns an
// error for bad input, a stopped node (ErrStopped), or a node so far behind
// that maxSendQueue payloads wait (ErrBusy), or a revoked destination
// (link.ErrRevoked). Delivery is not confirmed:
// like UDP, a payload may be lost, and a destination whose key is unknown
// is counted (RejectUnknownDestination) rather than reported.
func (n *Node) Send(dst route.NodeID, payload []byte) error {
	switch {
	case dst == (route.NodeID{}):
		return homemesh.Invalid("dst", "is the zero node id")
	case dst == n.self.ID:
		return homemesh.Invalid("dst", "is this node")
	case len(payload) == 0:
		return homemesh.Invalid("payload", "must not be empty")
	case len(payload) > MaxPayload:
		return homemesh.Invalid("payload", "%d bytes, at most %d", len(payload), MaxPayload)
	case n.run.Load() == runStopped:
		return ErrStopped
	case n.cfg.Verifier.Revoked(dst):
		return fmt.Errorf("meshnode: send to %s: %w", dst, link.ErrRevoked)
	}
	n.qmu.Lock()
	if len(n.queue) >= maxSendQueue {
		n.qmu.Unlock()
		n.busy.Add(1)
		return ErrBusy
	}
	msg := make([]byte, 1+len(payload))
	msg[0] = e2eApp
	copy(msg[1:], payload)
	n.queue = append(n.queue, outgoing{dst: dst, payload: msg})
	n.qmu.Unlock()
	n.sentOK.Add(1)
	select {
	case n.wake <- struct{}{}:
	default:
	}
	return nil
}

// NearestHub returns the id of the reachable hub with the smallest metric
// (this node, if it is a hub); false when no hub is reachable. A leaf,
// which holds no routes, reports its parent if that is a hub, else the
// first of Config.Hubs while it has a parent.
func (n *Node) NearestHub() (route.NodeID, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ri, ok := n.router.NearestHub(); ok {
		return ri.Dest, true
	}
	if n.self.Role != link.RoleLeaf {
		return route.NodeID{}, false
	}
	for _, nb := range n.router.Neighbours() {
		if !nb.Parent || nb.Dead {
			continue
		}
		if l := n.links[nb.Link]; l != nil && l.peer.Role == link.RoleHub {
			return nb.Peer, true
		}
		if len(n.cfg.Hubs) > 0 {
			return n.cfg.Hubs[0], true
		}
	}
	return route.NodeID{}, false
}

// Topology returns a snapshot of the node's neighbours, routes and
// counters. It is safe from any goroutine, before, during and after Run.
func (n *Node) Topology() Topology {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := Topology{Self: NodeInfo{
		ID: n.self.ID, Home: n.self.Home, Role: n.self.Role,
		Addr: n.addr.String(), Seqno: n.router.Seqno(),
	}}
	t.Neighbours = n.neighbours()
	for _, ri := range n.router.Routes() {
		t.Routes = append(t.Routes, RouteInfo{
			Dest: ri.Dest, NextHop: ri.NextHop, Metric: ri.Metric, Seqno: ri.Seqno,
			Feasible: ri.Feasible, Hub: ri.Hub, Leaf: ri.Leaf,
		})
	}
	slices.SortFunc(t.Routes, func(a, b RouteInfo) int { return bytes.Compare(a.Dest[:], b.Dest[:]) })
	all, e2e := n.ep.Counters(), n.e2e.Counters()
	t.Counters = Counters{
		Route: n.router.Counters(), Link: subCounters(all, e2e), E2E: e2e,
		DatagramsIn: n.c.datagramsIn, DatagramsOut: n.c.datagramsOut,
		BytesIn: n.c.bytesIn, BytesOut: n.c.bytesOut,
		MessagesSent: n.sentOK.Load(), MessagesDelivered: n.c.delivered,
		LinksUp: n.c.linksUp, LinksDown: n.c.linksDown, Unreachable: n.c.unreachable,
		HopRetransmits: n.c.hopRetransmits, HopFailures: n.c.hopFailures,
		Rejected: n.c.rejectedMap(n.busy.Load()),
	}
	return t
}

// Neighbours returns the node's neighbours as Topology lists them, without
// the routes and counters, so that an agent can watch its links often. It
// is safe from any goroutine.
func (n *Node) Neighbours() []NeighbourInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.neighbours()
}

// neighbours lists the neighbours, sorted by id. n.mu is held.
func (n *Node) neighbours() []NeighbourInfo {
	var out []NeighbourInfo
	for _, nb := range n.router.Neighbours() {
		l := n.links[nb.Link]
		if l == nil {
			continue
		}
		info := NeighbourInfo{
			ID: nb.Peer, Addr: l.addr.String(), Role: l.peer.Role,
			Cost: nb.Cost, RxCost: nb.RxCost, TxCost: nb.TxCost,
			UpSince: l.upSince, LastHello: nb.LastHello,
			Dead: nb.Dead, Parent: nb.Parent, Routes: nb.Routes,
		}
		if nb.Cost > 0 && nb.Cost != route.MetricInfinity {
			info.Quality = min(1, float64(route.HopCost)/float64(nb.Cost))
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b NeighbourInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// subCounters returns a − b field by field: the endpoint's totals minus the
// end-to-end layer's are the hop-by-hop links'.
func subCounters(a, b link.Counters) link.Counters {
	return link.Counters{
		FramesSent: a.FramesSent - b.FramesSent, FramesReceived: a.FramesReceived - b.FramesReceived,
		BytesSent: a.BytesSent - b.BytesSent, BytesReceived: a.BytesReceived - b.BytesReceived,
		PayloadsSent: a.PayloadsSent - b.PayloadsSent, PayloadsDelivered: a.PayloadsDelivered - b.PayloadsDelivered,
		HandshakesStarted:   a.HandshakesStarted - b.HandshakesStarted,
		HandshakesCompleted: a.HandshakesCompleted - b.HandshakesCompleted,
		Rekeys:              a.Rekeys - b.Rekeys, Replayed: a.Replayed - b.Replayed, Forged: a.Forged - b.Forged,
		BadCert: a.BadCert - b.BadCert, ForeignHome: a.ForeignHome - b.ForeignHome, Revoked: a.Revoked - b.Revoked,
		PeerChanged: a.PeerChanged - b.PeerChanged, UnknownKey: a.UnknownKey - b.UnknownKey,
		Malformed: a.Malformed - b.Malformed, StaleHandshake: a.StaleHandshake - b.StaleHandshake,
		ReassemblyTimeouts: a.ReassemblyTimeouts - b.ReassemblyTimeouts,
		ReassemblyEvicted:  a.ReassemblyEvicted - b.ReassemblyEvicted,
		QueueDropped:       a.QueueDropped - b.QueueDropped, Closed: a.Closed - b.Closed,
	}
}

// nodeCounters are the node's own counts, guarded by Node.mu.
type nodeCounters struct {
	datagramsIn, datagramsOut, bytesIn, bytesOut uint64
	delivered, linksUp, linksDown, unreachable   uint64
	hopRetransmits, hopFailures                  uint64
	rejected                                     map[string]uint64
}

func (c *nodeCounters) reject(reason string, k uint64) {
	if k == 0 {
		return
	}
	if c.rejected == nil {
		c.rejected = map[string]uint64{}
	}
	c.rejected[reason] += k
}

func (c *nodeCounters) rejectedMap(busy uint64) map[string]uint64 {
	m := make(map[string]uint64, len(c.rejected)+1)
	for k, v := range c.rejected {
		m[k] = v
	}
	if busy > 0 {
		m[RejectSendQueueFull] = busy
	}
	return m
}

// deadline returns when onTimer must next run: the earliest timer of the
// router, the sessions, the end-to-end channels, the redials, the route
// queue and the beacons.
func (n *Node) deadline() time.Time {
	d := n.router.Deadline()
	at := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	for _, l := range n.links {
		at(l.sess.Deadline())
	}
	at(n.e2e.Deadline())
	for addr, ds := range n.dials {
		if n.byAddr[addr] == nil {
			at(ds.next)
		}
	}
	at(n.pending.expiry())
	at(n.relaying.expiry())
	at(n.hopDeadline())
	if len(n.mcast) > 0 {
		at(n.beacons.next)
	}
	return d
}

// onTimer runs everything that is due at now.
func (n *Node) onTimer(now time.Time) {
	n.sendRoute(now, n.router.Tick(now))
	for _, l := range n.sortedLinks() {
		frames, err := l.sess.Tick(now)
		n.sendFrames(l.addr, frames)
		if err != nil {
			n.removeLink(now, l, RejectSessionClosed, err)
		}
	}
	for _, m := range n.e2e.Tick(now) {
		n.originate(now, m.Peer, m.Payload)
	}
	// The router declares a neighbour dead after missed Hellos; the link
	// is then taken down for good and a configured peer redialled, since a
	// neighbour that stopped talking has most likely restarted or gone.
	for _, nb := range n.router.Neighbours() {
		if l := n.links[nb.Link]; nb.Dead && l != nil {
			n.removeLink(now, l, RejectNeighbourDead, nil)
		}
	}
	n.dialDue(now)
	n.retransmitData(now)
	n.expireRouteQueues(now)
	n.sendBeacons(now)
}

// afterEvent persists a changed seqno before anything that carries it goes
// out, and sends what waited for a route that now exists.
func (n *Node) afterEvent(now time.Time) {
	if s := n.router.Seqno(); s != n.seqno {
		if err := n.persistSeqno(); err != nil {
			// Logged once per seqno: the node keeps routing, and after a
			// restart the network asks for a newer seqno.
			n.log.Error("mesh seqno not persisted", "err", err)
			n.seqno = s
		}
	}
	n.retryRouteQueues(now)
	n.sendAcks(now)
}

func (n *Node) persistSeqno() error {
	s := n.router.Seqno()
	if n.seqnos != nil {
		if err := n.seqnos.store(s); err != nil {
			return fmt.Errorf("meshnode: %w", err)
		}
	}
	n.seqno = s
	return nil
}

// sortedLinks returns the links in LinkID order, so that ticks happen in a
// stable order.
func (n *Node) sortedLinks() []*peerLink {
	ls := make([]*peerLink, 0, len(n.links))
	for _, l := range n.links {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b *peerLink) int { return int(a.id) - int(b.id) })
	return ls
}

func (n *Node) sendFrames(to netip.AddrPort, frames [][]byte) {
	for _, f := range frames {
		n.out = append(n.out, datagram{addr: to, b: f})
	}
}

// tokenBucket rate-limits answers to handshakes from unknown addresses.
type tokenBucket struct {
	tokens float64
	at     time.Time
}

func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
