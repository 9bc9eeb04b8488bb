package sim

import (
	"errors"
	"fmt"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/route"
)

// With Config.Link every virtual link runs the real link layer: each node
// has a mesh/link Endpoint with a certificate from one simulated home CA,
// every link session is a Noise handshake between the two endpoints, and
// every frame on a link is sealed by the sender's session and opened by
// the receiver's. Loss, latency and retransmission apply to the sealed
// frames; the overhead figures then include the link layer's bytes.
//
// A frame's buffer keeps the plaintext packet (bufs) beside the sealed
// frame (wire), so that the drop accounting can tell what a lost frame
// carried; the receiver acts only on what its session opened.

// linkHome is the simulated home's name in the node certificates.
const linkHome = "sim"

// linkState is the link layer of a simulation.
type linkState struct {
	home      *linktest.Home
	endpoints []*link.Endpoint
	sessions  [][]*link.Session // by node and port; nil while the link is down
	wire      [][]byte          // by buffer: the sealed frame in flight
	// handshakeFailures counts link sessions whose handshake did not
	// complete.
	handshakeFailures uint64
	// closed counts sessions the link layer closed under a running link.
	closed uint64
	// wireBytes is the link layer's own control bytes: handshakes, rekeys
	// and the transport overhead of control packets.
	wireBytes uint64
}

// newLinks makes the home CA, each node's identity and endpoint, and the
// node ids from their keys, as a real node's id is the hash of its key.
func (s *sim) newLinks() error {
	home, err := linktest.NewHome(linkHome, s.cfg.Seed, epoch)
	if err != nil {
		return err
	}
	ls := &linkState{home: home, endpoints: make([]*link.Endpoint, len(s.nodes)), sessions: make([][]*link.Session, len(s.nodes))}
	for n := range s.nodes {
		role := link.RoleRouter
		if s.nodes[n].hub {
			role = link.RoleHub
		}
		seed := s.cfg.Seed<<20 ^ uint64(n)
		id, err := home.Identity(role, linktest.Rand(seed))
		if err != nil {
			return fmt.Errorf("node %d identity: %w", n, err)
		}
		ep, err := link.New(link.Config{Identity: id, Verifier: home.Verifier, Rand: linktest.Rand(^seed)}, epoch)
		if err != nil {
			return fmt.Errorf("node %d endpoint: %w", n, err)
		}
		ls.endpoints[n] = ep
		ls.sessions[n] = make([]*link.Session, len(s.topo.Ports(n)))
		s.nodes[n].id = ep.ID()
	}
	s.links = ls
	return nil
}

// linkMaxPacket is the largest route packet that fits one link frame.
var linkMaxPacket = link.MaxWhole(link.DefaultMTU)

// handshakeLink runs the Noise handshake between n's port p and its peer's
// port q, as their link session starts: IK, since each side knows the
// other's key from the registry of the simulated home. The handshake's
// round trip is already the delay before linkUp; its frames are counted
// as link bytes but not exposed to loss (a lost handshake frame is
// retried by the initiator, which only delays the link further).
func (s *sim) handshakeLink(n, p, peer, q int) error {
	ls := s.links
	now := s.clock()
	a, b := ls.endpoints[n], ls.endpoints[peer]
	sa, first, err := a.Initiate(now, b.Self().Key)
	if err != nil {
		return err
	}
	ls.wireBytes += uint64(len(first))
	sb, answer, err := b.Accept(now, first)
	if err != nil {
		return err
	}
	ls.wireBytes += uint64(len(answer))
	// Pass frames back and forth until both sides hold keys: IK takes two
	// messages, key confirmation may add one.
	pending := [][]byte{answer}
	to := []*link.Session{sa}
	for round := 0; len(pending) > 0 && round < 6; round++ {
		var next [][]byte
		var nextTo []*link.Session
		for i, f := range pending {
			out, _, err := to[i].Handle(now, f)
			if err != nil {
				return err
			}
			other := sb
			if to[i] == sb {
				other = sa
			}
			for _, o := range out {
				ls.wireBytes += uint64(len(o))
				next = append(next, o)
				nextTo = append(nextTo, other)
			}
		}
		pending, to = next, nextTo
	}
	if !sa.Established() || !sb.Established() {
		ls.handshakeFailures++
		return errors.New("link handshake did not complete")
	}
	ls.sessions[n][p], ls.sessions[peer][q] = sa, sb
	return nil
}

// sealFrame seals the packet in buffer b for n's port p. It reports false
// when the session cannot send (the link is down or its keys expired):
// the frame is then lost like one on a dead link.
func (s *sim) sealFrame(n, p int, b uint32, data bool) bool {
	ls := s.links
	s.growWire(b)
	sess := ls.sessions[n][p]
	if sess == nil {
		return false
	}
	frames, err := sess.Seal(s.clock(), s.bufs[b])
	if err != nil || len(frames) == 0 {
		if errors.Is(err, link.ErrClosed) {
			s.sessionClosed(n, p)
		}
		return false
	}
	ls.wire[b] = append(ls.wire[b][:0], frames[0]...)
	if !data {
		ls.wireBytes += uint64(len(frames[0]) - len(s.bufs[b]))
	}
	// A packet that fits the MTU is one frame; a rekey's first message
	// may follow it.
	for _, f := range frames[1:] {
		s.sendLinkFrame(n, p, f)
	}
	return true
}

// sendLinkFrame puts a frame of the link layer's own (a handshake or key
// confirmation message) on n's port p.
func (s *sim) sendLinkFrame(n, p int, frame []byte) {
	s.links.wireBytes += uint64(len(frame))
	b := s.buffer(nil)
	s.growWire(b)
	s.links.wire[b] = append(s.links.wire[b][:0], frame...)
	s.sendFrame(n, p, b, false)
}

func (s *sim) growWire(b uint32) {
	for int(b) >= len(s.links.wire) {
		s.links.wire = append(s.links.wire, nil)
	}
}

// openFrame gives the frame in buffer b, arrived on n's port p, to n's
// session. It returns the packet the frame carried, or false when the
// frame carried none (a handshake message, or one the session refused,
// which the session counts).
func (s *sim) openFrame(n, p int, b uint32) ([]byte, bool) {
	ls := s.links
	sess := ls.sessions[n][p]
	if sess == nil || int(b) >= len(ls.wire) {
		return nil, false
	}
	send, delivered, err := sess.Handle(s.clock(), ls.wire[b])
	for _, f := range send {
		s.sendLinkFrame(n, p, f)
	}
	if err != nil {
		s.sessionClosed(n, p)
		return nil, false
	}
	if len(delivered) != 1 {
		return nil, false
	}
	if s.attack != nil {
		s.noteDelivered(n, p, ls.wire[b])
	}
	return delivered[0], true
}

// tickLinks runs the timers of n's sessions (rekeys, handshake repeats).
func (s *sim) tickLinks(n int) {
	now := s.clock()
	for p, sess := range s.links.sessions[n] {
		if sess == nil {
			continue
		}
		if d := sess.Deadline(); d.IsZero() || d.After(now) {
			continue
		}
		frames, err := sess.Tick(now)
		for _, f := range frames {
			s.sendLinkFrame(n, p, f)
		}
		if err != nil {
			s.sessionClosed(n, p)
		}
	}
}

// linkDeadline is the earliest deadline of n's sessions; zero when none.
func (s *sim) linkDeadline(n int) (d int64) {
	for _, sess := range s.links.sessions[n] {
		if sess == nil {
			continue
		}
		if t := sess.Deadline(); !t.IsZero() {
			at := int64(t.Sub(epoch))
			if d == 0 || at < d {
				d = at
			}
		}
	}
	return d
}

// sessionClosed takes down n's link on port p whose session the link
// layer closed, as a node does: the router is told at once.
func (s *sim) sessionClosed(n, p int) {
	s.links.closed++
	s.links.sessions[n][p] = nil
	if s.session[n][p] {
		s.session[n][p] = false
		s.unwatch(n, p)
		s.transmit(n, s.nodes[n].r.LinkDown(s.clock(), route.LinkID(p+1)))
	}
}

// linkCounters sums every endpoint's counters.
func (s *sim) linkCounters() link.Counters {
	var total link.Counters
	for _, ep := range s.links.endpoints {
		c := ep.Counters()
		total.FramesSent += c.FramesSent
		total.FramesReceived += c.FramesReceived
		total.BytesSent += c.BytesSent
		total.HandshakesCompleted += c.HandshakesCompleted
		total.Rekeys += c.Rekeys
		total.Replayed += c.Replayed
		total.Forged += c.Forged
		total.BadCert += c.BadCert
		total.ForeignHome += c.ForeignHome
		total.UnknownKey += c.UnknownKey
		total.Malformed += c.Malformed
		total.StaleHandshake += c.StaleHandshake
		total.Closed += c.Closed
	}
	return total
}
