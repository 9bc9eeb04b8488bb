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
// measurement noise neither floods updates nor makes routes flap.
//
// A neighbour is dead when nothing (Hello, ack, anything) has come from it
// for DeadHellos (3) of its Hello intervals less half a one: 2.5 s at 1 s
// Hellos, so that a failure is noticed within 2.5 s plus a link latency of
// the dead node's last packet, under the 3 s that three missed Hellos
// would take. Lost Hellos alone must not kill a live neighbour, so once a
// Hello is overdue (by 1/16 of an interval) the neighbour is probed every
// quarter interval with an empty update batch (a Serial alone), which it
// acknowledges at once: it is declared dead only if two Hellos in a row
// and every probe in between, or its answers, are lost. A host whose link
// layer reports a frame it could not deliver (a radio MAC without an
// acknowledgement after its retries) calls DeliveryFailed: the neighbour
// is probed at once and three times more and is dead after an eighth of
// an interval (or three round trips, if longer) without an answer. A dead neighbour revives on its next Hello,
// when both sides exchange their tables again. LinkDown drops a neighbour
// at once.
//
// # Updates: incremental and acknowledged
//
// There are no periodic table dumps: over unicast links they would cost
// routes × links every period. A new (or revived) neighbour gets the whole
// table once; after that a destination is queued on a link only when what
// is announced for it changes. The queue sends the current announcement in
// batches: a Serial TLV numbers the batch, the neighbour returns an Ack,
// and a batch not acknowledged within the retransmission timeout (measured
// from the acks as in TCP, RFC 6298, with exponential backoff) puts its
// destinations back in the queue, so what goes again is the current
// announcement, never a stale one. At most UpdateWindow batches are in
// flight per link. The receiver keeps with every route the serial it came
// in and ignores an older one, so batches may be lost, duplicated or
// reordered. Seqno requests travel in the same batches, so they are
// reliable hop by hop. After a batch a link waits BatchDelay (10 ms) before
// the next batch that is not full, and acks wait as long for a packet to
// ride on, so that changes arriving in a burst share packets.
//
// Acknowledged batches were chosen over a periodic per-link digest with a
// full dump on mismatch: a lost update is repaired within a round trip
// instead of a digest period; changes in flight cannot make a digest
// mismatch and trigger a dump of the whole table; and a steady mesh sends
// nothing but Hellos and IHUs. In a 100-node grid with 1 % loss that is
// 40 B/s per node (IHU 14, Hello 22, header and the rare update the rest),
// where the digest's own traffic would come on top.
//
// What changes of a route are announced, and to whom:
//
//	change                                  announced to
//	reachability (gained, lost: retraction) every neighbour
//	metric by UpdateThreshold (64) and 1/16 every neighbour
//	next hop only                           the old and the new next hop
//	seqno only                              the neighbours that asked for it
//
// Smaller metric changes are not announced at all: one lost Hello moves a
// link's ETX by 6 %, and announcing that would send an update for every
// route over the link, onwards through the mesh. A new seqno alone goes
// only to the neighbours whose seqno request it answers: loop freedom does
// not need it anywhere else (see below), and announcing it everywhere
// would flood the whole mesh for every request.
//
// # Route selection and loop freedom
//
// Each destination has a feasibility distance (FD): the best (seqno,
// metric) this router has announced for it, newer seqnos being better. An
// announcement (s, m) from a neighbour is feasible when s is newer than
// the FD's seqno, or equal with m below the FD's metric (RFC 8966
// §3.5.1), and only feasible routes are selected. Along any chain of next
// hops the FDs then strictly improve, so the chain cannot close into a
// loop, at any instant; this holds whatever seqno a router announces, as
// long as its FD moves to whatever it announces before it goes out.
// Retractions are always accepted. Among feasible routes the cheapest wins,
// but the selected one is kept unless another is better by Hysteresis (64,
// a quarter of a perfect hop), and while neighbours wait for a newer seqno
// through this router, routes that carry it win. The next hop gets a
// retraction instead of the route (poisoned reverse).
//
// A router left with no feasible route while a neighbour still announces
// an unfeasible one (or with an unfeasible one markedly better than its
// selected route) asks the best such neighbour for a seqno above its FD's:
// at most one request per destination per RequestTimeout (250 ms), at once
// again if the best neighbour to ask changes, and otherwise with the wait
// doubling up to RequestInterval (1 s) for as long as it stays starved.
// Routers on the way answer if their selected route is new enough, and
// otherwise forward the request along it and remember who asked, dropping
// duplicates for half a RequestTimeout; the source bumps its seqno to the
// one asked for, and the answer follows the requests back.
//
// Each node's seqno is persisted by the host and New starts one above it,
// so a restarted node's announcements are feasible at once; a node
// restarted without it hears its old seqno from its neighbours' tables (or
// receives requests) and jumps past it. A destination unreachable for
// SourceGCTime (3 min) is forgotten, FD included.
//
// # Timers
//
//	timer                     default  what happens
//	HelloInterval             1 s      IHU and Hello on every link
//	Hello × 17/16             1.06 s   silence: probe, then every Hello/4
//	(DeadHellos − ½) × Hello  2.5 s    silence: neighbour dead
//	max(Hello/8, 3 RTT)       125 ms   failed delivery: dead (4 probes)
//	retransmission            RTO      srtt + 4 rttvar, doubling per timeout
//	BatchDelay                10 ms    gap between update batches, ack delay
//	RequestTimeout            250 ms   first seqno request retry
//	RequestInterval           1 s      later retries; forwarded request memory
//	SourceGCTime              3 min    unreachable destination forgotten
//
// # Roles and security
//
// Routers (hubs and mains-powered nodes) route. A leaf (battery node)
// exchanges Hellos with every router it has a link to, picks the cheapest
// as its parent (kept until another is cheaper by ParentHysteresis), and
// announces only itself, only to the parent, with a fresh seqno at every
// change of parent, so the new parent's route is feasible everywhere at
// once; the parent originates the leaf's route into the mesh. A leaf holds
// no routes and never relays; its NextHop is its parent.
//
// Only a node announces its own id with metric 0: such an update from any
// other neighbour is refused and counted (RejectForeignOrigin), as is any
// route a leaf announces for another id (RejectLeafRelay). Links are
// authenticated by mesh/link, so the neighbour's id is trustworthy; a
// router that lies about its distance to another node is not detected
// (that would take updates signed by their origin).
//
// # Memory
//
// A destination costs a 28-byte entry in one slice plus a 4-byte slot
// number in an index table kept at most half full (open addressing keyed
// by the id, cheaper in bytes and lookups than a Go map), and each
// neighbour an 8-byte entry (seqno, metric and the serial of the batch it
// came in) per destination it announces; there are no pointers per route.
// With 10,000 destinations and 6 neighbours that is about 115 bytes per
// destination on the heap (BenchmarkStateBytes); StateBytes estimates it
// from the same capacities.
package route
