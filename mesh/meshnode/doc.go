// Package meshnode is the mesh node runtime: the real, networked node that
// the device agent (homemesh agent) and the hub's border run. It composes
// the sans-IO packages mesh/route (routing) and mesh/link (Noise links and
// end-to-end channels) over one UDP socket.
//
// # Using it
//
//	n, err := meshnode.New(meshnode.Config{
//		Identity: id, Verifier: v, Listen: ":4790",
//		Peers:     []string{"192.0.2.10:4790"},
//		OnMessage: func(from link.Peer, payload []byte) { … },
//		KeyOf:     registryKeys,
//	})
//	go n.Run(ctx)
//	err = n.Send(hubID, payload)
//
// Send seals a payload end to end for its destination and routes it over
// any number of hops; OnMessage receives what arrives for this node, with
// the source's verified certificate identity. Topology is a snapshot of
// the neighbours, routes and counters for the API and metrics.
//
// # How it runs
//
// One goroutine owns the state (the route.Router, one link.Session per
// neighbour address, the link.E2E) under a lock that Topology and
// NearestHub take briefly. It is woken by datagrams (a reader goroutine per
// socket hands them over a channel), by a timer set to the earliest
// deadline of the router, the sessions, the end-to-end channels, the
// redials and the beacons, and by Send, which queues. Datagrams are
// written and OnMessage called after each event, without the lock.
//
// A link is a Noise session with a neighbour's UDP address. It comes up
// (router.LinkUp) when the session is established and the peer's
// certificate verified: the neighbour's node id and role come from its
// certificate, never from anything it says, so no node can claim another's
// id. It goes down (router.LinkDown) when the session dies or the router
// declares the neighbour dead after missed Hellos; configured Peers are
// then redialled with exponential backoff (100 ms to 30 s). Neighbours are
// found through the configured Peers and through beacons, sent every
// BeaconInterval to a multicast group on the named interfaces:
//
//	0xB1 | node id [8] | port u16 | home length u8 | home
//
// A beacon is not signed; it only makes the receiver dial the sender's
// address at the given port (at most once per BeaconInterval per node id,
// and at most 10 a second in all), and the handshake decides.
//
// # Link payloads
//
// Every link payload starts with a byte that says what it is:
//
//	0xC1  route control packet (mesh/route), for the router
//	0xD1  route data packet, whose payload is an end-to-end message
//	0xA1  a 4-byte sequence number and a route data packet whose arrival
//	      the sender wants acknowledged
//	0xA2  acknowledgements: the 4-byte sequence numbers of 0xA1 payloads
//	0xE1  link start: the sender's 8-byte session epoch
//
// Data packets go with an ack request and are acknowledged at once: UDP
// says nothing of a datagram that went nowhere, and a neighbour that lost
// power would otherwise be noticed only when its Hellos stop. A packet
// not acknowledged within three round trips (at least 20 ms) is sent
// again, twice, with the wait doubling; then the router hears of the
// failed delivery (it probes the neighbour and declares it dead an eighth
// of a Hello interval later unless it answers) and the packet is taken
// back, to go again once its route leads to a neighbour not in doubt.
// Counters.HopRetransmits and HopFailures count both steps.
//
// A data packet is delivered here (its end-to-end message opened and the
// plaintext passed to OnMessage), forwarded to the next hop's link, or
// dropped (counted by the router, by reason). The link start message is
// sent once when a side's link comes up: a neighbour that restarts with
// the same address and key is taken by the surviving side's session as a
// rekey, and the new epoch tells it to start the link afresh in the
// router, so the restarted neighbour gets the full table.
//
// # End-to-end payloads
//
// The plaintext of every end-to-end message starts with a byte too:
//
//	0x01  an application payload (what Send took), for OnMessage
//	0x02  a probe, never delivered
//
// A node that receives a message under end-to-end keys it does not hold
// (it restarted, and the sender still has the old channel) seals a probe
// for the sender, at most once a second per sender and 20 a second in
// all. The probe's handshake is taken by the sender's channel as a rekey,
// so the sender's messages get through again at once rather than after
// its next rekey, minutes later.
//
// # Revoked nodes
//
// Revoke takes the ids of nodes the home revoked (the border learns them
// from auth and tells its agents). The Verifier refuses their
// certificates from then on, so they get no link and no end-to-end
// channel; the node goroutine takes down the links it had with them at
// once, forgets their end-to-end channels and keys, and drops the packets
// waiting for a route to them; Send to them fails. A revoked node's
// certificate is still valid for a node that was not told, which may link
// with it and relay its packets; end-to-end messages between a revoked
// node and a node that knows are refused whatever the path.
//
// # Dead neighbours
//
// The router declares a neighbour dead when it has been silent for 2.5
// Hello intervals. On Linux the node also asks for the ICMP errors its
// datagrams draw (IP_RECVERR): a neighbour whose process stopped has its
// port answered with "port unreachable", which the node passes to the
// router as a failed delivery (Router.DeliveryFailed), so the neighbour is
// probed at once and declared dead within a fraction of a Hello interval
// unless it answers. ICMP can be forged, so it never kills a neighbour by
// itself.
//
// # Bounds and refusals
//
// Nothing a peer sends can crash the node or make it hold unbounded
// state. Sessions are capped (MaxLinks); handshakes from addresses that are
// not configured peers are answered at most 50 a second and at most 16 at
// a time while they are incomplete; Send's queue, the queues of packets
// waiting for a route (originated here: 10 s at most; relayed: 5 s, in a
// smaller queue of their own, so that other nodes' traffic cannot crowd
// this node's out) and the learned keys are bounded.
// Every datagram, frame, packet or message refused is counted under its
// reason: the node's own reasons in Counters.Rejected, the link and
// end-to-end layers' in Counters.Link and Counters.E2E (replayed, forged,
// foreign home …), the router's in Counters.Route.
//
// # State
//
// With a StateDir the router's seqno is written (to a temporary file,
// synced and renamed) whenever it changes, before any packet carrying it
// goes out, and read back by New, so that a restarted node's routes are
// feasible at once. A file that cannot be read is logged and ignored: the
// network then asks for a newer seqno, which costs a round trip.
package meshnode
