package link

import (
	"fmt"
	"slices"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// MaxE2EPayload is the largest end-to-end payload: a sealed message in a
// route data packet must fit in one link payload (MaxPayload).
const MaxE2EPayload = MaxPayload - route.DataHeaderLen - TransportOverhead

// E2E holds a node's end-to-end channels: one Noise IK session with each
// node it exchanges data with, carried as the payload of routed data
// packets. Relays forward those packets and see only the route data
// header (source, destination, TTL, flow id); the payload is encrypted
// and authenticated between the two ends, with the source and destination
// ids bound into every message, and has its own replay window and rekeys.
// An E2E is not safe for concurrent use.
type E2E struct {
	ep     *Endpoint
	lookup func(route.NodeID) ([]byte, bool)
	c      counters
	peers  map[route.NodeID]*e2ePeer
}

type e2ePeer struct {
	ch       *channel
	queue    [][]byte // payloads waiting for the handshake
	lastUsed time.Time
}

// Message is an end-to-end message for the host to carry, as the payload
// of a routed data packet, to Peer.
type Message struct {
	Peer    route.NodeID
	Payload []byte
}

// NewE2E returns the end-to-end layer of e. lookup returns the static
// X25519 public key of a destination (from the registry or an earlier
// link), for the IK handshake; the destination proves it holds the key
// and presents its certificate, which is verified, before any payload is
// sent to it.
func (e *Endpoint) NewE2E(lookup func(id route.NodeID) (key []byte, ok bool)) *E2E {
	return &E2E{ep: e, lookup: lookup, c: counters{ep: e}, peers: map[route.NodeID]*e2ePeer{}}
}

func (e *E2E) newChannel(now time.Time, peer route.NodeID) *channel {
	ch := newChannel(e.ep, &e.c, e2ePrologue, now)
	self := e.ep.self.ID
	ch.sendAD = append(self[:], peer[:]...)
	ch.recvAD = append(peer[:], self[:]...)
	ch.wantID, ch.hasWantID = peer, true
	return ch
}

// add keeps p, dropping the least recently used channel to stay within
// MaxE2EPeers.
func (e *E2E) add(id route.NodeID, p *e2ePeer) {
	if len(e.peers) >= e.ep.cfg.MaxE2EPeers {
		var oldest route.NodeID
		var at time.Time
		first := true
		for pid, q := range e.peers {
			if first || q.lastUsed.Before(at) || q.lastUsed.Equal(at) && pid.String() < oldest.String() {
				oldest, at, first = pid, q.lastUsed, false
			}
		}
		e.remove(oldest)
	}
	e.peers[id] = p
}

func (e *E2E) remove(id route.NodeID) {
	if p := e.peers[id]; p != nil {
		e.c.add(cQueueDropped, uint64(len(p.queue)))
		delete(e.peers, id)
	}
}

// Seal encrypts payload (1 to MaxE2EPayload bytes) for dst, unless dst is
// revoked (ErrRevoked), and returns the
// messages to carry to dst. Without a channel to dst it starts an IK
// handshake and returns its first message; the payload waits (up to
// MaxE2EQueue of them) and is returned, sealed, by the Open that
// completes the handshake.
func (e *E2E) Seal(now time.Time, dst route.NodeID, payload []byte) ([][]byte, error) {
	switch {
	case len(payload) == 0:
		return nil, homemesh.Invalid("payload", "must not be empty")
	case len(payload) > MaxE2EPayload:
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(payload), MaxE2EPayload)
	case dst == e.ep.self.ID:
		return nil, homemesh.Invalid("dst", "is this node")
	case e.ep.cfg.Verifier.Revoked(dst):
		e.c.inc(cRevoked)
		return nil, fmt.Errorf("%w: %s", ErrRevoked, dst)
	}
	p := e.peers[dst]
	if p == nil {
		key, ok := e.lookup(dst)
		if !ok || len(key) != dhLen || route.IDFromKey(key) != dst {
			return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, dst)
		}
		p = &e2ePeer{ch: e.newChannel(now, dst)}
		p.ch.peer = Peer{ID: dst, Key: append([]byte(nil), key...)}
		p.ch.hasPeer = true
		e.add(dst, p)
	}
	p.lastUsed = now
	e.c.inc(cPayloadsSent)
	if p.ch.established() && p.ch.sendable(now) {
		frame, err := p.ch.seal(now, e.buffer(payload))
		if err != nil {
			return nil, err
		}
		return append([][]byte{frame}, p.ch.maybeRekey(now)...), nil
	}
	p.queue = append(p.queue, payload)
	if len(p.queue) > e.ep.cfg.MaxE2EQueue {
		p.queue = p.queue[1:]
		e.c.inc(cQueueDropped)
	}
	if p.ch.pending != nil || p.ch.next != nil {
		return nil, nil // a handshake is under way; its end sends the queue
	}
	frame, err := p.ch.initiate(now, now)
	if err != nil {
		return nil, err
	}
	return [][]byte{frame}, nil
}

func (e *E2E) buffer(payload []byte) []byte {
	buf := make([]byte, transportHeaderLen, len(payload)+TransportOverhead)
	return append(buf, payload...)
}

// Open processes a message that arrived from src (the source id of the
// data packet that carried it). It returns messages to send back to src
// (handshake answers, key confirmations, payloads that waited for the
// handshake) and the plaintext, if msg carried one. A message that is
// refused (forged, replayed, from a node other than src, of another home,
// from a revoked node) yields an error and is counted; it changes nothing.
func (e *E2E) Open(now time.Time, src route.NodeID, msg []byte) (send [][]byte, plaintext []byte, err error) {
	if e.ep.cfg.Verifier.Revoked(src) {
		// Refused before any Diffie-Hellman: a revoked node must cost
		// this one as little as it can.
		e.c.inc(cFramesReceived)
		e.c.add(cBytesReceived, uint64(len(msg)))
		e.c.inc(cRevoked)
		return nil, nil, fmt.Errorf("%w: %s", ErrRevoked, src)
	}
	p := e.peers[src]
	if p == nil {
		if !IsInit(msg) {
			e.c.inc(cFramesReceived)
			e.c.add(cBytesReceived, uint64(len(msg)))
			if len(msg) > 0 && msg[0] == typeTransport {
				e.c.inc(cUnknownKey)
				return nil, nil, fmt.Errorf("%w: no channel with %s", ErrUnknownKey, src)
			}
			e.c.inc(cStaleHandshake)
			return nil, nil, fmt.Errorf("%w: no channel with %s", ErrMalformed, src)
		}
		ch := e.newChannel(now, src)
		_, out, err := ch.handle(now, msg)
		if err != nil {
			return nil, nil, err
		}
		e.add(src, &e2ePeer{ch: ch, lastUsed: now})
		return out, nil, nil
	}
	plain, out, err := p.ch.handle(now, msg)
	if p.ch.closeErr != nil {
		e.remove(src)
		return out, nil, err
	}
	if err != nil {
		return out, nil, err
	}
	p.lastUsed = now
	if len(p.queue) > 0 && p.ch.established() && p.ch.sendable(now) {
		for _, q := range p.queue {
			frame, err := p.ch.seal(now, e.buffer(q))
			if err != nil {
				break
			}
			out = append(out, frame)
		}
		p.queue = nil
	}
	if len(plain) == 0 {
		return out, nil, nil
	}
	e.c.inc(cPayloadsDelivered)
	return out, plain, nil
}

// Tick does what time requires for every channel: repeats handshakes and
// confirmations, forgets expired keys and drops channels that hold none
// (with the payloads they queued, when their handshake failed). It
// returns the messages to send, in a stable order.
func (e *E2E) Tick(now time.Time) []Message {
	ids := make([]route.NodeID, 0, len(e.peers))
	for id := range e.peers {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b route.NodeID) int { return slices.Compare(a[:], b[:]) })
	var out []Message
	for _, id := range ids {
		p := e.peers[id]
		frames, err := p.ch.tick(now)
		for _, f := range frames {
			out = append(out, Message{Peer: id, Payload: f})
		}
		ch := p.ch
		idle := ch.current == nil && ch.pending == nil && ch.next == nil && ch.responding == nil
		if err != nil || idle {
			e.remove(id)
		}
	}
	return out
}

// Deadline returns when Tick must next be called; the zero time when
// nothing is scheduled.
func (e *E2E) Deadline() time.Time {
	var d time.Time
	for _, p := range e.peers {
		if t := p.ch.deadline(); !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// Peer returns the verified identity of the node at the other end of the
// channel with id; ok is false when there is none yet.
func (e *E2E) Peer(id route.NodeID) (Peer, bool) {
	p := e.peers[id]
	if p == nil || !p.ch.peerVerified {
		return Peer{}, false
	}
	return p.ch.peer, true
}

// Forget drops the channel with id, its keys and the payloads it queued,
// as if it had never existed: used when id is revoked, so that nothing
// more is sent to or accepted from it under keys agreed before.
func (e *E2E) Forget(id route.NodeID) { e.remove(id) }

// Len returns the number of end-to-end channels held.
func (e *E2E) Len() int { return len(e.peers) }

// Counters returns the counters of all end-to-end channels of e.
func (e *E2E) Counters() Counters { return countersOf(&e.c.local) }
