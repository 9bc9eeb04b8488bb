// Package route is the mesh's routing core: a Babel-style distance-vector
// protocol (RFC 8966 semantics in homemesh's own compact wire format). It
// is sans-IO: it consumes packets and clock ticks and returns packets to
// send, with no sockets, goroutines or wall clock inside, so the same code
// runs in a real node, in the deterministic simulator and in tests.
//
// # Using it
//
// The host (a node, or the simulator) owns the links. It calls New with the
// node's id and the seqno it persisted, then:
//
//   - LinkUp when a link's Noise session is established (the peer's id and
//     role come from its certificate) and LinkDown on any transport or
//     session error;
//   - Receive for every control packet (IsData tells them from data
//     packets by the first byte) and Forward for every data packet;
//   - Tick at Deadline.
//
// Every call returns the packets to send, each on one link. The host
// persists Seqno whenever it changes. Nothing in a Router blocks, and the
// only randomness comes from Config.Seed, so a simulation is reproducible.
//
// # Wire format
//
// Byte 0 of every packet is kind<<4 | version: 0xC1 for control packets,
// 0xD1 for data packets (wire version 1). Integers are big-endian.
//
// A data packet is a 22-byte header, then the payload:
//
//	0xD1 | src id [8] | dst id [8] | TTL u8 | flow u32 | payload
//
// A control packet is 0xC1 followed by TLVs, each type u8, length u8 and a
// body. A body longer than its type's fixed part is accepted and the rest
// ignored, and an unknown type is skipped, so later versions can extend
// the protocol; anything else that does not parse refuses the whole packet.
//
//	type  name            body                                    bytes
//	1     Hello           seqno u16, interval u16 (centiseconds)      6
//	2     IHU             rxcost u16                                  4
//	3     Serial          serial u32 (numbers the packet's updates)   6
//	4     Update          flags u8, seqno u16, metric u16, id [8]    15
//	5     Ack             serial u32, repeated                     2+4n
//	6     RouteRequest    empty (whole table) or id [8]            2|10
//	7     SeqnoRequest    seqno u16, hop limit u8, id [8]            13
//
// An IHU travels just before its Hello. Update flags are 1 (hub) and 2 (leaf); metric 0xFFFF retracts
// the route. Links are point-to-point Noise sessions, so nothing carries
// addresses: the link says who the neighbour is, and a node's router-id is
// its NodeID, which is also its only prefix.
//
// # Links and timers
//
// Every HelloInterval (1 s) each link carries an IHU and a Hello. The Hello
// seqnos give a 16-Hello reception history per neighbour and from it the
// ETX rxcost of RFC 8966 Appendix A.2.2 (256 × 16 / Hellos received); the
// IHU returns it, so each side knows both directions and the link cost is
// txcost × rxcost / 256 (256 for a perfect link). Routes use a moving
// average of that cost that moves only when it leaves a ±25 % band, so that
// measurement noise neither floods updates nor makes routes flap. A
// neighbour is dead when DeadHellos (3) Hellos in a row are overdue (each
// gets 1/16 of an interval of slack); it revives on its next Hello, when
// both sides exchange their tables again. LinkDown drops a neighbour at
// once.
//
// # Updates: incremental and acknowledged
//
// There are no periodic table dumps (over unicast links they would cost
// O(routes × links) every period). A new neighbour gets the whole table
// once; after that a destination is queued on a link only when what is
// announced for it changes: its seqno, its next hop (for the poisoned
// reverse), reachability, or its metric by at least UpdateThreshold (64, a
// quarter hop) and 1/16. The queue sends the current announcement in
// batches, each numbered by a Serial TLV and acknowledged by an Ack; a
// batch not acknowledged within an RTO (measured from the acks, as in TCP)
// puts its destinations back in the queue, with exponential backoff, and
// at most UpdateWindow batches are in flight. The receiver keeps, per
// route, the serial it came with and ignores older ones, so batches may be
// lost, duplicated or reordered. Compared with a periodic table digest,
// this repairs a lost update within a round trip rather than a digest
// period, and a steady network sends nothing but Hellos and IHUs.
//
// # Route selection and loop freedom
//
// Each destination has a feasibility distance: the best (seqno, metric)
// this router has announced for it. An announcement (s, m) from a
// neighbour is feasible when s is newer, or s is equal and m is smaller;
// only feasible routes are selected, which keeps the next-hop graph free of
// loops at every instant (RFC 8966 §3.5.1). Retractions are always
// accepted. The router switches away from its selected route only to one
// better by Hysteresis (64). The next hop is sent a retraction (poisoned
// reverse).
//
// When no feasible route is left but a neighbour still announces an
// unfeasible one (or one markedly better than the selected route), the
// router sends a seqno request towards the source, at most one per
// destination per RequestTimeout, retried with backoff. Routers on the way
// answer if their route is new enough, forward it along their route
// otherwise, and drop duplicates; the source bumps its seqno to the
// requested one, and the new seqno makes every route feasible again.
//
// Each node's seqno is persisted by the host and New starts one above it,
// so a restarted node's announcements win; a node restarted without it
// hears its old seqno from its neighbours (or receives requests) and jumps
// past it.
//
// # Roles and security
//
// Routers (hubs and mains-powered nodes) route. A leaf (battery node)
// exchanges Hellos with every router it has a link to, picks the cheapest
// as its parent (kept until another is cheaper by ParentHysteresis), and
// announces only itself, only to the parent, with a fresh seqno at every
// change of parent; the parent originates the leaf's route into the mesh.
// A leaf holds no routes and never relays; its NextHop is its parent.
//
// Only a node announces its own id with metric 0: such an update from any
// other neighbour is refused and counted (RejectForeignOrigin), as is any
// route a leaf announces for another id (RejectLeafRelay). Links are
// authenticated by mesh/link, so the neighbour's id is trustworthy.
//
// # Memory
//
// A destination costs a 28-byte entry in one slice plus its index entry,
// and each neighbour keeps an 8-byte entry per destination it announces;
// there are no pointers per route. StateBytes estimates the total.
package route
