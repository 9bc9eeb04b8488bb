package meshnode

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// startMsg is the first byte of a link start message: a link payload that
// carries the 8-byte random epoch of the sender's session, sent once when
// the sender's side of a link comes up. A neighbour that restarts keeps its
// address and key, so the surviving side's session simply takes the new
// handshake as a rekey; the new epoch tells it that the routing state
// behind the link is new too, and the router starts the link afresh (a full
// table goes to the restarted neighbour).
const startMsg = 0xE1

const startMsgLen = 1 + 8

// peerLink is one link session with a neighbour address.
type peerLink struct {
	id       route.LinkID
	addr     netip.AddrPort
	sess     *link.Session
	accepted bool // made by Accept, not dialled by this node
	up       bool // the router was told LinkUp
	peer     link.Peer
	upSince  time.Time
	// epoch is this side's start epoch; peerEpoch the last one heard.
	epoch, peerEpoch uint64
	// hop is the link's side of the hop-by-hop acknowledgements.
	hop hopState
}

// dialState is a configured peer's redial schedule.
type dialState struct {
	next    time.Time
	backoff time.Duration
}

// onDatagram handles one datagram from the node's socket or, for beacons,
// from a multicast socket.
func (n *Node) onDatagram(now time.Time, d datagram) {
	if d.beacon {
		n.onBeacon(now, d)
		return
	}
	n.c.datagramsIn++
	n.c.bytesIn += uint64(len(d.b))
	if len(d.b) == 0 {
		n.c.reject(RejectEmptyDatagram, 1)
		return
	}
	l := n.byAddr[d.addr]
	if l == nil {
		n.accept(now, d)
		return
	}
	send, payloads, err := l.sess.Handle(now, d.b)
	n.sendFrames(l.addr, send)
	if err != nil {
		n.removeLink(now, l, RejectSessionClosed, err)
		return
	}
	if !l.up && l.sess.Established() && !n.bringUp(now, l) {
		return
	}
	for _, p := range payloads {
		if !l.up {
			n.c.reject(RejectNotUp, 1)
			continue
		}
		n.onLinkPayload(now, l, p)
	}
}

// accept answers a first handshake message from an address without a
// session, within the node's bounds.
func (n *Node) accept(now time.Time, d datagram) {
	if !link.IsInit(d.b) {
		n.c.reject(RejectNoSession, 1)
		return
	}
	_, configured := n.dials[d.addr]
	if !configured {
		pending := 0
		for _, l := range n.links {
			if l.accepted && !l.up {
				pending++
			}
		}
		if pending >= maxPendingAccepts || !n.accepts.take(now, acceptRate, acceptBurst) {
			n.c.reject(RejectHandshakeRate, 1)
			return
		}
	}
	if len(n.links) >= n.cfg.MaxLinks {
		n.c.reject(RejectLinksFull, 1)
		return
	}
	sess, reply, err := n.ep.Accept(now, d.b)
	if err != nil {
		n.c.reject(RejectHandshake, 1)
		n.log.Debug("mesh handshake refused", "peer", d.addr.String(), "err", err)
		return
	}
	l := n.addLink(d.addr, sess)
	l.accepted = true
	n.sendFrames(d.addr, [][]byte{reply})
	// An IK handshake's responder knows its peer at once, but its keys
	// wait for the initiator's first frame, so the link is never up yet.
}

// dial starts a link session with addr (XX: the peer's key is not known).
func (n *Node) dial(now time.Time, addr netip.AddrPort) {
	if n.byAddr[addr] != nil {
		return
	}
	if len(n.links) >= n.cfg.MaxLinks {
		n.c.reject(RejectLinksFull, 1)
		return
	}
	sess, frame, err := n.ep.Initiate(now, nil)
	if err != nil {
		n.log.Error("mesh dial", "peer", addr.String(), "err", err)
		return
	}
	n.addLink(addr, sess)
	n.sendFrames(addr, [][]byte{frame})
}

// dialDue dials the configured peers that have no session and are due.
func (n *Node) dialDue(now time.Time) {
	for addr, ds := range n.dials {
		if n.byAddr[addr] == nil && !now.Before(ds.next) {
			// The next attempt, should this one fail, waits longer; a link
			// that comes up resets the wait.
			ds.next = now.Add(ds.backoff)
			ds.backoff = min(2*ds.backoff, maxRedial)
			n.dial(now, addr)
		}
	}
}

func (n *Node) addLink(addr netip.AddrPort, sess *link.Session) *peerLink {
	// LinkIDs are never reused, so a packet the router queued for an old
	// link can never go out on a new one.
	n.lastLink++
	if n.lastLink == 0 {
		n.lastLink++
	}
	l := &peerLink{id: n.lastLink, addr: addr, sess: sess}
	n.links[l.id] = l
	n.byAddr[addr] = l
	return l
}

// bringUp tells the router about a link whose session just became
// established, once the peer's certificate allows a link; it reports
// whether the link is up.
func (n *Node) bringUp(now time.Time, l *peerLink) bool {
	peer, ok := l.sess.Peer()
	if !ok {
		return false
	}
	if peer.ID == n.self.ID || peer.Role == link.RoleLeaf && n.self.Role == link.RoleLeaf {
		n.c.reject(RejectLinkRole, 1)
		n.removeLink(now, l, "", nil)
		return false
	}
	l.up, l.peer, l.upSince = true, peer, now
	n.c.linksUp++
	n.learnKey(peer)
	if ds := n.dials[l.addr]; ds != nil {
		ds.backoff = minRedial
	}
	n.log.Info("mesh link up", "peer", peer.ID.String(), "addr", l.addr.String(), "role", peer.Role.String())
	n.sendRoute(now, n.router.LinkUp(now, l.id, peer.ID, peer.Role == link.RoleLeaf))
	var b [8]byte
	_, _ = rand.Read(b[:])
	l.epoch = binary.BigEndian.Uint64(b[:]) | 1 // never zero: zero means none heard
	msg := make([]byte, startMsgLen)
	msg[0] = startMsg
	binary.BigEndian.PutUint64(msg[1:], l.epoch)
	n.sealOn(now, l, msg)
	return true
}

// removeLink takes a link down and forgets its session; a configured peer
// is redialled after its backoff. reason is counted unless empty.
func (n *Node) removeLink(now time.Time, l *peerLink, reason string, err error) {
	if n.links[l.id] != l {
		return
	}
	delete(n.links, l.id)
	if n.byAddr[l.addr] == l {
		delete(n.byAddr, l.addr)
	}
	if reason != "" {
		n.c.reject(reason, 1)
	}
	if l.up {
		n.c.linksDown++
		n.log.Info("mesh link down", "peer", l.peer.ID.String(), "addr", l.addr.String(), "reason", reason, "err", err)
		n.sendRoute(now, n.router.LinkDown(now, l.id))
		n.takeBack(now, l)
	} else if err != nil {
		n.log.Debug("mesh session closed", "peer", l.addr.String(), "err", err)
	}
	if ds := n.dials[l.addr]; ds != nil && ds.next.Before(now) {
		ds.next = now.Add(ds.backoff)
	}
}

// onLinkPayload demultiplexes a payload that arrived on an up link by its
// first byte: route data (with an ack request or without), an ack, link
// start, or route control.
func (n *Node) onLinkPayload(now time.Time, l *peerLink, p []byte) {
	switch {
	case len(p) == 0:
		n.c.reject(RejectLinkPayload, 1)
	case route.IsData(p):
		n.onData(now, l, p)
	case p[0] == dataAckReq:
		n.onAckRequest(now, l, p)
	case p[0] == dataAck:
		n.onAck(now, l, p)
	case p[0] == startMsg:
		if len(p) != startMsgLen {
			n.c.reject(RejectLinkPayload, 1)
			return
		}
		epoch := binary.BigEndian.Uint64(p[1:])
		if l.peerEpoch != 0 && epoch != l.peerEpoch {
			n.log.Info("mesh neighbour restarted", "peer", l.peer.ID.String())
			n.sendRoute(now, n.router.LinkUp(now, l.id, l.peer.ID, l.peer.Role == link.RoleLeaf))
		}
		l.peerEpoch = epoch
	default:
		sends, err := n.router.Receive(now, l.id, p)
		if err != nil {
			n.log.Debug("mesh control packet refused", "peer", l.peer.ID.String(), "err", err)
		}
		n.sendRoute(now, sends)
	}
}

// sendRoute seals the router's packets onto their links.
func (n *Node) sendRoute(now time.Time, sends []route.Send) {
	for _, s := range sends {
		if l := n.links[s.Link]; l != nil && l.up {
			n.sealOn(now, l, s.Packet)
		}
	}
}

// sealOn seals payload onto link l.
func (n *Node) sealOn(now time.Time, l *peerLink, payload []byte) {
	frames, err := l.sess.Seal(now, payload)
	if err != nil {
		n.c.reject(RejectSealFailed, 1)
		return
	}
	n.sendFrames(l.addr, frames)
}

// learnKey remembers the static key of a verified peer, so this node can
// open an end-to-end channel to it without asking KeyOf.
func (n *Node) learnKey(p link.Peer) {
	if _, ok := n.keys[p.ID]; ok {
		return
	}
	if len(n.keys) >= maxLearnedKeys {
		clear(n.keys)
	}
	n.keys[p.ID] = p.Key
}

// lookupKey is the E2E layer's key lookup: KeyOf first, then the keys
// learned from verified certificates.
func (n *Node) lookupKey(id route.NodeID) ([]byte, bool) {
	if n.cfg.KeyOf != nil {
		if k, ok := n.cfg.KeyOf(id); ok {
			return k, true
		}
	}
	k, ok := n.keys[id]
	return k, ok
}

// Revoke makes the node refuse the nodes ids from now on, as the home
// revoked them: Config.Verifier learns them (a Verifier shared with other
// nodes refuses them there too), so their handshakes and end-to-end
// messages are refused, and Send to them fails with link.ErrRevoked. The
// node goroutine then takes down the links to them at once (counted as
// RejectRevoked), forgets their end-to-end channels and learned keys, and
// drops the packets that wait for a route to them. This node's own id is
// ignored: a node cannot refuse itself, and a revoked node learns nothing
// useful from its own revocation. Revoke is safe from any goroutine,
// before, during and after Run.
func (n *Node) Revoke(ids []route.NodeID) {
	ids = slices.DeleteFunc(slices.Clone(ids), func(id route.NodeID) bool { return id == n.self.ID })
	if len(ids) == 0 {
		return
	}
	n.cfg.Verifier.Revoke(ids...)
	n.qmu.Lock()
	n.revoking = append(n.revoking, ids...)
	n.qmu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// onRevoke cuts the node off from the revoked nodes ids, which the
// verifier already refuses.
func (n *Node) onRevoke(now time.Time, ids []route.NodeID) {
	revoked := make(map[route.NodeID]bool, len(ids))
	for _, id := range ids {
		revoked[id] = true
	}
	for _, l := range n.sortedLinks() {
		// A session whose link is not up yet may know its peer already
		// (an IK responder, or keys not confirmed).
		peer, ok := l.peer, l.up
		if !ok {
			peer, ok = l.sess.Peer()
		}
		if ok && revoked[peer.ID] {
			n.log.Warn("mesh link to a revoked node taken down", "peer", peer.ID.String(), "addr", l.addr.String())
			n.removeLink(now, l, RejectRevoked, nil)
		}
	}
	for id := range revoked {
		n.e2e.Forget(id)
		delete(n.keys, id)
		delete(n.probes.sent, id)
		n.c.reject(RejectRevoked, uint64(len(n.pending.remove(id))+len(n.relaying.remove(id))))
	}
}
