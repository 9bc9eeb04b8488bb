package sim

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/link/linktest"
	"github.com/homemesh/homemesh/mesh/route"
)

// With Config.Attack (which needs Link) an attacker works on the network
// while the scenario runs, once per second on a random live link:
//
//   - it replays the last frame the link delivered, and a copy with one
//     bit flipped (a forgery), to the receiving node, as anyone on the
//     link could;
//   - a node with a certificate from another CA (same home name) tries to
//     link with the receiving node;
//   - the sending node, an insider with a valid certificate, announces a
//     route to a random other node's id at metric 0, as if it were that
//     node, with a seqno far ahead of the victim's.
//
// The result counts what was attempted and what got through; every
// "accepted" figure must stay 0 and the routing's properties must hold.

// AttackResult is what the attacker tried and what got through.
type AttackResult struct {
	Replays           uint64 `json:"replays"`
	ReplaysAccepted   uint64 `json:"replays_accepted"`
	Forgeries         uint64 `json:"forgeries"`
	ForgeriesAccepted uint64 `json:"forgeries_accepted"`
	Intruders         uint64 `json:"intruders"`
	IntrudersLinked   uint64 `json:"intruders_linked"`
	// Hijacks are the metric-0 announcements of other nodes' ids; the
	// routers refuse them as foreign_origin (see routers.rejected).
	Hijacks uint64 `json:"hijacks"`
}

// attacker is the state of the attack.
type attacker struct {
	rng      *rand.Rand
	intruder *link.Endpoint
	// last holds, by receiving node and port, the last frame the link
	// delivered there, for replays.
	last [][][]byte
	res  AttackResult
}

func (s *sim) newAttacker() error {
	other, err := linktest.NewHome(linkHome, s.cfg.Seed+1, epoch)
	if err != nil {
		return err
	}
	id, err := other.Identity(link.RoleRouter, linktest.Rand(s.cfg.Seed^0xA77AC4))
	if err != nil {
		return err
	}
	// The intruder trusts its own CA; the nodes must not trust it.
	ep, err := link.New(link.Config{Identity: id, Verifier: other.Verifier, Rand: linktest.Rand(s.cfg.Seed ^ 0xBAD)}, epoch)
	if err != nil {
		return err
	}
	a := &attacker{rng: rand.New(rand.NewPCG(s.cfg.Seed, 5)), intruder: ep, last: make([][][]byte, len(s.nodes))}
	for n := range s.nodes {
		a.last[n] = make([][]byte, len(s.topo.Ports(n)))
	}
	s.attack = a
	return nil
}

// noteDelivered keeps the frame a link just delivered at n's port p.
func (s *sim) noteDelivered(n, p int, frame []byte) {
	a := s.attack
	a.last[n][p] = append(a.last[n][p][:0], frame...)
}

// attackRound runs one round of the attack and schedules the next while
// the scenario lasts.
func (s *sim) attackRound() {
	if s.scenarioOver {
		return
	}
	defer s.at(s.now+int64(1e9), s.attackRound)
	a := s.attack
	n := a.rng.IntN(len(s.nodes))
	if !s.nodes[n].alive {
		return
	}
	ports := s.topo.Ports(n)
	p := a.rng.IntN(len(ports))
	sess := s.links.sessions[n][p]
	if sess == nil || !s.session[n][p] {
		return
	}
	now := s.clock()
	if frame := a.last[n][p]; len(frame) > 0 {
		a.res.Replays++
		if _, got, err := sess.Handle(now, frame); err == nil && len(got) > 0 {
			a.res.ReplaysAccepted++
		}
		// A forgery under a fresh counter (bytes 2–9 of the header), so
		// that the replay window lets it through to the authentication,
		// with one bit of its ciphertext or tag flipped too.
		forged := append([]byte(nil), frame...)
		if len(forged) > 10 {
			forged[4] ^= 0x80
			forged[10+a.rng.IntN(len(forged)-10)] ^= 1 << a.rng.IntN(8)
		}
		a.res.Forgeries++
		if _, got, err := sess.Handle(now, forged); err == nil && len(got) > 0 {
			a.res.ForgeriesAccepted++
		}
	}

	a.res.Intruders++
	if _, first, err := a.intruder.Initiate(now, s.links.endpoints[n].Self().Key); err == nil {
		if _, _, err := s.links.endpoints[n].Accept(now, first); err == nil {
			a.res.IntrudersLinked++
		}
	}

	// The neighbour at the far end of the link, an insider, claims a
	// random other node's id.
	peer := ports[p].Peer
	victim := a.rng.IntN(len(s.nodes))
	if victim == peer || victim == n || !s.nodes[peer].alive || !s.nodes[victim].alive {
		return
	}
	q := int(s.peerPort[n][p])
	a.res.Hijacks++
	s.transmit(peer, []route.Send{{Link: route.LinkID(q + 1),
		Packet: hijackUpdate(0xF0000000|uint32(a.res.Hijacks), s.nodes[victim].r.Seqno()+100, s.nodes[victim].id)}})
}

// hijackUpdate is a control packet announcing dest at metric 0, numbered
// serial: what only dest itself may send.
func hijackUpdate(serial uint32, seqno uint16, dest route.NodeID) []byte {
	b := []byte{0xC1, 3, 4} // Serial TLV
	b = binary.BigEndian.AppendUint32(b, serial)
	b = append(b, 4, 13, 0) // Update TLV, no flags
	b = binary.BigEndian.AppendUint16(b, seqno)
	b = binary.BigEndian.AppendUint16(b, 0)
	return append(b, dest[:]...)
}

func (s *sim) attackResult() *AttackResult {
	if s.attack == nil {
		return nil
	}
	r := s.attack.res
	return &r
}
