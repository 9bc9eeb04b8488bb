package link

import (
	"fmt"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// Session is the secure link with one neighbour: one Noise channel, its
// rekeys, and the fragmentation of payloads into frames of at most MTU
// bytes. The host feeds it every frame that arrives on the link and sends
// every frame it returns, in order. It is not safe for concurrent use.
type Session struct {
	ch    channel
	c     counters
	reasm reassembler
	msgID uint32
}

func (e *Endpoint) newSession(now time.Time) *Session {
	s := &Session{c: counters{ep: e}}
	s.ch = *newChannel(e, &s.c, linkPrologue, now)
	s.ch.allowXX = true
	s.ch.rekeyOnTick = true
	s.reasm = reassembler{cfg: &e.cfg, c: &s.c}
	return s
}

// Initiate starts a link: an IK handshake when peerKey (the neighbour's
// static X25519 public key, from an earlier link or the registry) is
// given, an XX handshake on first contact when it is nil. It returns the
// session and the first frame to send. The link is up once Established
// reports true, which needs the neighbour's certificate to have been
// verified.
func (e *Endpoint) Initiate(now time.Time, peerKey []byte) (*Session, []byte, error) {
	s := e.newSession(now)
	if peerKey != nil {
		if len(peerKey) != dhLen {
			return nil, nil, homemesh.Invalid("peer_key", "must be a %d-byte X25519 public key", dhLen)
		}
		if sameKey(peerKey, e.static.Public) {
			return nil, nil, homemesh.Invalid("peer_key", "is this node's own key")
		}
		s.ch.peer = Peer{ID: route.IDFromKey(peerKey), Key: append([]byte(nil), peerKey...)}
		s.ch.hasPeer = true
	}
	frame, err := s.ch.initiate(now, now)
	if err != nil {
		return nil, nil, err
	}
	return s, frame, nil
}

// Accept answers a first handshake message (IsInit) that arrived on a link
// without a Session. It refuses, and counts in the Endpoint's counters, a
// node of another home (ErrForeignHome) or with a certificate the Verifier
// refuses (ErrBadCert); an XX first message carries no identity, so there
// the certificate is checked when the handshake finishes, in Handle.
func (e *Endpoint) Accept(now time.Time, frame []byte) (*Session, []byte, error) {
	s := e.newSession(now)
	if !IsInit(frame) {
		s.c.inc(cFramesReceived)
		s.c.add(cBytesReceived, uint64(len(frame)))
		s.c.inc(cMalformed)
		return nil, nil, fmt.Errorf("%w: not a first handshake message", ErrMalformed)
	}
	_, out, err := s.ch.handle(now, frame)
	if err != nil {
		return nil, nil, err
	}
	if len(out) != 1 {
		return nil, nil, fmt.Errorf("%w: handshake not answered", ErrMalformed)
	}
	return s, out[0], nil
}

// Handle processes one frame received on the link. It returns frames to
// send back (handshake answers, key confirmations) and the payloads the
// frame completed. Frames that are refused (replayed, forged, malformed,
// for unknown keys, bad certificates on a rekey) are dropped and counted,
// not reported: an attacker who can inject frames must not be able to
// take a link down. A non-nil error wraps ErrClosed and means the session
// is dead: the host takes the link down.
func (s *Session) Handle(now time.Time, frame []byte) (send, delivered [][]byte, err error) {
	plain, send, err := s.ch.handle(now, frame)
	if s.ch.closeErr != nil {
		return send, nil, s.ch.closeErr
	}
	if err != nil || len(plain) == 0 {
		return send, nil, nil
	}
	switch plain[0] {
	case kindWhole:
		s.c.inc(cPayloadsDelivered)
		return send, [][]byte{plain[1:]}, nil
	case kindFragment:
		f, err := parseFragment(plain)
		if err != nil {
			s.c.inc(cMalformed)
			return send, nil, nil
		}
		payload, err := s.reasm.add(now, f)
		if err != nil || payload == nil {
			return send, nil, nil
		}
		s.c.inc(cPayloadsDelivered)
		return send, [][]byte{payload}, nil
	}
	s.c.inc(cMalformed)
	return send, nil, nil
}

// Seal encrypts payload (at most MaxPayload bytes) into one frame, or
// several fragments when it does not fit the MTU, followed by the first
// message of a rekey when one is due. It fails with ErrNotEstablished
// before the handshake has completed and with ErrClosed after the session
// died.
func (s *Session) Seal(now time.Time, payload []byte) ([][]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(payload), MaxPayload)
	}
	if s.ch.closeErr != nil {
		return nil, s.ch.closeErr
	}
	if !s.Established() || !s.ch.sendable(now) {
		return nil, ErrNotEstablished
	}
	mtu := s.ch.cfg.MTU
	var out [][]byte
	if len(payload)+wholeOverhead <= mtu {
		buf := make([]byte, transportHeaderLen, len(payload)+wholeOverhead)
		buf = append(append(buf, kindWhole), payload...)
		frame, err := s.ch.seal(now, buf)
		if err != nil {
			return nil, err
		}
		out = append(out, frame)
	} else {
		chunk := mtu - fragmentOverhead
		count := (len(payload) + chunk - 1) / chunk
		s.msgID++
		for i := range count {
			piece := payload[i*chunk : min((i+1)*chunk, len(payload))]
			buf := make([]byte, transportHeaderLen, len(piece)+fragmentOverhead)
			buf = appendFragment(buf, fragment{id: s.msgID, index: uint8(i), count: uint8(count), data: piece})
			frame, err := s.ch.seal(now, buf)
			if err != nil {
				return nil, err
			}
			out = append(out, frame)
		}
	}
	s.c.inc(cPayloadsSent)
	return append(out, s.ch.maybeRekey(now)...), nil
}

// Tick does what time requires and returns frames to send: handshake and
// confirmation repeats, rekeys; it also drops expired keys and stale
// reassemblies. A non-nil error wraps ErrClosed: the session is dead
// (the handshake or a rekey did not complete within HandshakeTimeout).
func (s *Session) Tick(now time.Time) ([][]byte, error) {
	s.reasm.expire(now)
	return s.ch.tick(now)
}

// Deadline returns when Tick must next be called; the zero time when
// nothing is scheduled. Handle and Seal may move it earlier.
func (s *Session) Deadline() time.Time {
	d := s.ch.deadline()
	if r := s.reasm.deadline(); !r.IsZero() && (d.IsZero() || r.Before(d)) {
		d = r
	}
	return d
}

// Established reports whether the link is up: the peer's certificate was
// verified and there are keys to send with.
func (s *Session) Established() bool { return s.ch.established() }

// Peer returns the neighbour's verified identity; ok is false until its
// certificate has been verified.
func (s *Session) Peer() (p Peer, ok bool) {
	if !s.ch.peerVerified {
		return Peer{}, false
	}
	return s.ch.peer, true
}

// Counters returns this session's counters.
func (s *Session) Counters() Counters { return countersOf(&s.c.local) }

// ReassemblyBytes returns an upper bound of the memory the session holds
// for payloads being reassembled.
func (s *Session) ReassemblyBytes() int { return s.reasm.heldBytes() }
